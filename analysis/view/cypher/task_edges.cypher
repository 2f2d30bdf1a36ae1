// One page of a task graph's strongest edges: the composite index attr_task_ckpt_weight seeks
// (model, checkpoint, task, abs_weight >= threshold) and provides the order. The ORDER BY names
// all four index properties on purpose: ordered by abs_weight alone, Neo4j 5.26 sorts every
// matching edge (3 s on a 1M-edge task graph); by the whole index key it reads just the first
// page from the index (30 ms). The run and granularity filters come after the order, so they do
// not break it.
// params: $model, $checkpoint, $task, $run ('*' = any), $granularity ('*' = any), $min_abs_weight, $limit
// returns: source, target, weight, model, checkpoint, task, run, granularity
MATCH ()-[r:ATTRIBUTES_TO]->()
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
WITH r ORDER BY r.model DESC, r.checkpoint DESC, r.task DESC, r.abs_weight DESC
WHERE ($run = '*' OR r.run = $run) AND ($granularity = '*' OR r.granularity = $granularity)
WITH r LIMIT $limit
RETURN startNode(r).key AS source, endNode(r).key AS target, r.weight AS weight, r.model AS model,
       r.checkpoint AS checkpoint, r.task AS task, r.run AS run, r.granularity AS granularity
