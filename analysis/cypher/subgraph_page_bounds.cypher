// Where the next page of a large subgraph pull ends: the |weight| $page places above the first
// edge of one task's edges at one checkpoint with |weight| >= $min_abs_weight and > $above, in
// increasing order. A range seek on the ATTRIBUTES_TO index in its own order (it holds model,
// checkpoint, task and abs_weight): it reads $page index entries and no relationship, and holds
// nothing. Counts every run and granularity: a page is about $page edges; the pull's own query
// filters them.
// Parameters: $model, $checkpoint, $task (strings), $min_abs_weight, $above (floats), $page (int >= 0)
// Returns:    bound (one row; none when fewer edges are left)
MATCH ()-[r:ATTRIBUTES_TO]->()
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
  AND r.abs_weight > $above
WITH r.abs_weight AS w ORDER BY w
SKIP $page LIMIT 1
RETURN w AS bound
