// What one run wrote for one task: edges per granularity (a finished ingest reports them).
// Parameters: $run  run id;  $task  task name
// Returns:    granularity (string), edges (integer)
MATCH ()-[r:ATTRIBUTES_TO]->()
WHERE r.run = $run AND r.task = $task
RETURN r.granularity AS granularity, count(r) AS edges
