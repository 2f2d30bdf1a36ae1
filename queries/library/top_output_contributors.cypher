// name: top_output_contributors
// summary: The nodes with the strongest direct edge into a task's output metric at one checkpoint, in one run's graph (the newest by default) at one granularity.
// param model: string  model name
// param checkpoint: string  checkpoint name
// param task: string  task name
// param run: string = newest  newest (the newest finished run that wrote this graph), a run id, or * to mix every run (the run/runs column then says which)
// param granularity: string = feature  feature, head or roi: one granularity, never mixed
// param limit: int = 20  at most this many nodes
// returns: node, kind, layer, weight, metric, run
// A run still writing this task's graph (its Run node's tasks_writing names the task) is left out,
// whichever run is asked for.
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
WITH writing, COLLECT {
  MATCH (x:Run)-[:FOR_TASK]->(:Task {name: $task})
  WHERE (x.kind <> 'ingest' OR $task IN coalesce(x.tasks_done, []))
    AND EXISTS { MATCH ()-[e:ATTRIBUTES_TO]->() WHERE e.model = $model AND e.checkpoint = $checkpoint
                 AND e.task = $task AND e.run = x.run AND e.granularity = $granularity }
  RETURN x.run ORDER BY x.created_at DESC LIMIT 1
} AS newest
MATCH (n)-[r:ATTRIBUTES_TO]->(o:Output)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.granularity = $granularity AND NOT r.run IN writing
  AND ($run = '*' OR r.run = coalesce(CASE $run WHEN 'newest' THEN newest[0] ELSE $run END, ''))
RETURN n.key AS node, [l IN labels(n) WHERE l <> 'Node'][0] AS kind, n.layer AS layer,
       r.weight AS weight, o.metric AS metric, r.run AS run
ORDER BY abs(r.weight) DESC
LIMIT $limit
