// The community runs of one model, one row per run: the checkpoint its graph is of, its tasks,
// how many communities it has at one level, and its :Run's configuration (JSON) and time.
// Parameters: $model  stored model name, e.g. mt-small
//             $level  hierarchy level (0 = the only or finest)
// Returns:    run, checkpoint, tasks, communities, config, created_at (newest first per checkpoint)
MATCH (c:Community {level: $level})-[:PRODUCED_BY]->(r:Run)
WHERE c.model = $model
WITH r, c.checkpoint AS checkpoint, c.tasks AS tasks, count(c) AS communities
RETURN r.run AS run, checkpoint, tasks, communities, r.config AS config, r.created_at AS created_at
ORDER BY checkpoint, created_at DESC
