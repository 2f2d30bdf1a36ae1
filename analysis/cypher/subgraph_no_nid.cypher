// The edges of one task at one checkpoint whose source node has no nid (written before nids
// existed): a pull in pages keyed by the source's nid would miss them. A scan of the graph nodes'
// nid (no index holds a missing value) and an expansion of only the nodes without one.
// Parameters: $model, $checkpoint, $task (strings)
// Returns:    edges (one row)
MATCH (a:Node) WHERE a.nid IS NULL
MATCH (a)-[r:ATTRIBUTES_TO]->()
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task
RETURN count(r) AS edges
