// name: paths_to_output
// summary: Directed paths (up to 4 edges) from one node to its task's output node, ranked by |product of edge weights|.
// param key: string  the start node's key
// param task: string  task name
// param limit: int = 10  at most this many paths
// returns: path, hops, path_weight
// A run still writing this task's graph (its Run node's tasks_writing names the task) is left out.
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
MATCH (n:Node {key: $key})
MATCH p = (n)-[:ATTRIBUTES_TO*1..4]->(o:Output {task: $task})
WHERE all(r IN relationships(p) WHERE r.task = $task AND NOT r.run IN writing)
WITH p, reduce(w = 1.0, r IN relationships(p) | w * r.weight) AS path_weight
RETURN [x IN nodes(p) | x.key] AS path, length(p) AS hops, path_weight
ORDER BY abs(path_weight) DESC
LIMIT $limit
