// name: top_output_contributors
// summary: The nodes with the strongest direct edge into a task's output metric at one checkpoint.
// param model: string  model name
// param checkpoint: string  checkpoint name
// param task: string  task name
// param limit: int = 20  at most this many nodes
// returns: node, kind, layer, weight, metric
// A run still writing this task's graph (its Run node's tasks_writing names the task) is left out.
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
MATCH (n)-[r:ATTRIBUTES_TO]->(o:Output)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND NOT r.run IN writing
RETURN n.key AS node, [l IN labels(n) WHERE l <> 'Node'][0] AS kind, n.layer AS layer,
       r.weight AS weight, o.metric AS metric
ORDER BY abs(r.weight) DESC
LIMIT $limit
