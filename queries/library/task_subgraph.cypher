// name: task_subgraph
// summary: One task's attribution graph at one checkpoint, edges with |weight| >= a threshold, strongest first. Served by the composite relationship index attr_task_ckpt_weight.
// param model: string  model name, e.g. sample-tiny
// param checkpoint: string  checkpoint name, e.g. final
// param task: string  task name, e.g. ioi
// param min_abs_weight: float = 0.0  keep edges with |weight| at or above this
// param limit: int = 1000  at most this many edges
// returns: source, target, weight, abs_weight, source_layer, target_layer, run
// A run still writing this task's graph (its Run node's tasks_writing names the task) is left out.
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
  AND NOT r.run IN writing
RETURN a.key AS source, b.key AS target, r.weight AS weight, r.abs_weight AS abs_weight,
       a.layer AS source_layer, b.layer AS target_layer, r.run AS run
ORDER BY abs_weight DESC
LIMIT $limit
