// One page of a node's attribution edges (in and out), strongest first, under the explorer's filters.
// params: $key, $model, $checkpoint, $task, $run, $granularity ('*' = any), $min_abs_weight, $limit
// returns: source, target, weight, model, checkpoint, task, run, granularity
MATCH (n:Node {key: $key})-[r:ATTRIBUTES_TO]-(m)
WHERE r.abs_weight >= $min_abs_weight
  AND ($model = '*' OR r.model = $model) AND ($checkpoint = '*' OR r.checkpoint = $checkpoint)
  AND ($task = '*' OR r.task = $task) AND ($run = '*' OR r.run = $run)
  AND ($granularity = '*' OR r.granularity = $granularity)
WITH r ORDER BY r.abs_weight DESC LIMIT $limit
RETURN startNode(r).key AS source, endNode(r).key AS target, r.weight AS weight, r.model AS model,
       r.checkpoint AS checkpoint, r.task AS task, r.run AS run, r.granularity AS granularity
