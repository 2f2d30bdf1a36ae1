// name: run_edges
// summary: The edges one run wrote for one task at one granularity, strongest first: the selection the evaluator turns into ablation masks.
// param run: string  run id, e.g. ingest-303e2ffa6a51 (`mechgraph query run runs`)
// param task: string  task name, e.g. ioi
// param granularity: string = feature  feature, head or roi
// param min_abs_weight: float = 0.0  keep edges with |weight| at or above this
// param limit: int = 10000000  at most this many edges
// returns: source, target, weight, model, checkpoint
// A run still writing this task's graph (its Run node's tasks_writing names the task) is left out.
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.run = $run AND r.task = $task AND r.granularity = $granularity AND r.abs_weight >= $min_abs_weight
  AND NOT r.run IN writing
RETURN a.key AS source, b.key AS target, r.weight AS weight, r.model AS model, r.checkpoint AS checkpoint
ORDER BY abs(r.weight) DESC, source, target
LIMIT $limit
