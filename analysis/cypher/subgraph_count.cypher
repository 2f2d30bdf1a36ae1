// How many edges a large subgraph pull reads: one task's edges at one checkpoint with
// |weight| >= $min_abs_weight, every run and granularity (the pull's pages filter those). A range
// seek on the ATTRIBUTES_TO index that reads no relationship. The pull compares it with the edges
// its pages saw: pages keyed by the source's nid reach no edge whose source has none.
// Parameters: $model, $checkpoint, $task (strings), $min_abs_weight (float)
// Returns:    edges (one row)
MATCH ()-[r:ATTRIBUTES_TO]->()
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
RETURN count(r) AS edges
