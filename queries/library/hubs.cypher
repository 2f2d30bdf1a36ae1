// name: hubs
// summary: The nodes with the largest total |weight| (in plus out) in one task's graph at one checkpoint.
// param model: string  model name
// param checkpoint: string  checkpoint name
// param task: string  task name
// param limit: int = 20  at most this many nodes
// returns: node, kind, layer, degree, strength
// A run still writing this task's graph (its Run node's tasks_writing names the task) is left out.
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
MATCH (n:Node)-[r:ATTRIBUTES_TO]-()
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND NOT r.run IN writing
RETURN n.key AS node, [l IN labels(n) WHERE l <> 'Node'][0] AS kind, n.layer AS layer,
       count(r) AS degree, sum(r.abs_weight) AS strength
ORDER BY strength DESC
LIMIT $limit
