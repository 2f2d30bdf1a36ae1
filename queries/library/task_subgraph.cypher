// name: task_subgraph
// summary: One task's attribution graph at one checkpoint, in one run (the newest by default) at one granularity, edges with |weight| >= a threshold, strongest first. Served by the composite relationship index attr_task_ckpt_weight.
// param model: string  model name, e.g. sample-tiny
// param checkpoint: string  checkpoint name, e.g. final
// param task: string  task name, e.g. ioi
// param run: string = newest  newest (the newest finished run that wrote this graph), a run id, or * to mix every run (the run/runs column then says which)
// param granularity: string = feature  feature, head or roi: one granularity, never mixed
// param min_abs_weight: float = 0.0  keep edges with |weight| at or above this
// param limit: int = 1000  at most this many edges
// returns: source, target, weight, abs_weight, source_layer, target_layer, run
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
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight AND NOT r.run IN writing
  AND r.granularity = $granularity AND ($run = '*' OR r.run = coalesce(CASE $run WHEN 'newest' THEN newest[0] ELSE $run END, ''))
RETURN a.key AS source, b.key AS target, r.weight AS weight, r.abs_weight AS abs_weight,
       a.layer AS source_layer, b.layer AS target_layer, r.run AS run
ORDER BY abs_weight DESC
LIMIT $limit
