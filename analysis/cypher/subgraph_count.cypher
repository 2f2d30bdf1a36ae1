// Whether a subgraph pull is larger than a page: one task's edges at one checkpoint with
// |weight| >= $min_abs_weight (every run and granularity), counted up to $limit. A range seek on
// the ATTRIBUTES_TO index that reads at most $limit entries and no relationship.
// Parameters: $model, $checkpoint, $task (strings), $min_abs_weight (float), $limit (int)
// Returns:    edges (one row; at most $limit)
MATCH ()-[r:ATTRIBUTES_TO]->()
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
WITH r LIMIT $limit
RETURN count(r) AS edges
