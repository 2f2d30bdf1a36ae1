// One page of a task graph's strongest edges: the composite index attr_task_ckpt_weight seeks
// (model, checkpoint, task, abs_weight >= threshold).
// params: $model, $checkpoint, $task, $run ('*' = any), $granularity ('*' = any), $min_abs_weight, $limit
// returns: source, target, weight, model, checkpoint, task, run, granularity
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
  AND ($run = '*' OR r.run = $run) AND ($granularity = '*' OR r.granularity = $granularity)
WITH a, b, r ORDER BY r.abs_weight DESC LIMIT $limit
RETURN a.key AS source, b.key AS target, r.weight AS weight, r.model AS model, r.checkpoint AS checkpoint,
       r.task AS task, r.run AS run, r.granularity AS granularity
