// name: neighbourhood
// summary: The k-hop neighbourhood of one node in one task's graph (edges in either direction, |weight| >= a threshold), nearest first. hops is capped at 3.
// param key: string  the node's key, e.g. feature|sample-tiny|final|blocks.1.hook_resid_post|sae|0
// param task: string  task name
// param hops: int = 2 [1..3]  path length
// param min_abs_weight: float = 0.0  ignore weaker edges
// param limit: int = 200  at most this many nodes
// returns: node, kind, layer, distance
// A run still writing this task's graph (its Run node's tasks_writing names the task) is left out.
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
MATCH (n:Node {key: $key})
MATCH p = (n)-[:ATTRIBUTES_TO*1..3]-(m:Node)
WHERE m <> n AND length(p) <= $hops
  AND all(r IN relationships(p) WHERE r.task = $task AND r.abs_weight >= $min_abs_weight AND NOT r.run IN writing)
WITH m, min(length(p)) AS distance
RETURN m.key AS node, [l IN labels(m) WHERE l <> 'Node'][0] AS kind, m.layer AS layer, distance
ORDER BY distance, node
LIMIT $limit
