// Where to cut a large subgraph pull into pages: every $page-th |weight| of one task's edges
// at one checkpoint, in increasing order, read from the ATTRIBUTES_TO range index alone (the
// index holds model, checkpoint, task and abs_weight, so no relationship is read). Counts every
// run and granularity, so the pages are only about $page edges each; the pull's own query
// filters them.
// Parameters: $model, $checkpoint, $task (strings), $min_abs_weight (float), $page (int > 0)
// Returns:    edges (the count), bounds (list of floats, increasing; empty when edges <= $page)
MATCH ()-[r:ATTRIBUTES_TO]->()
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
WITH r.abs_weight AS w ORDER BY w
WITH collect(w) AS ws   // (Cypher's range(a, b, s) with b < a is [a], hence the WHERE below)
RETURN size(ws) AS edges, [i IN range($page, size(ws) - 1, $page) WHERE i < size(ws) | ws[i]] AS bounds
