// name: latest_run
// summary: The newest run of one kind that wrote a graph of one task for one model checkpoint (an ingest run only once the task is finished), with its configuration.
// param kind: string  run kind, e.g. ingest
// param model: string  model name, e.g. mt-small
// param checkpoint: string  checkpoint name, e.g. step-3000
// param task: string  task name, e.g. ioi
// returns: run, config, created_at
MATCH (r:Run)-[:FOR_TASK]->(:Task {name: $task})
WHERE r.kind = $kind AND ($kind <> 'ingest' OR $task IN coalesce(r['tasks_done'], []))
  AND EXISTS { MATCH ()-[e:ATTRIBUTES_TO]->() WHERE e.model = $model AND e.checkpoint = $checkpoint AND e.task = $task AND e.run = r.run }
RETURN r.run AS run, r.config AS config, r.created_at AS created_at
ORDER BY r.created_at DESC
LIMIT 1
