// name: prompt_feature_edges
// summary: A feature's in- and out-edges across the stored prompt graphs of a task, summed over prompts and positions.
// param feature: string  the position-free feature key (PromptNode.feature, the task graph's Feature key)
// param task: string  task name (the prompts' task; 'trace' for single traces)
// returns: direction, other, other_kind, prompts, total_weight, mean_weight
MATCH (n:PromptNode {feature: $feature})-[r:ATTRIBUTES_TO]-(m:PromptNode)
WHERE r.granularity = 'prompt' AND r.task = $task
WITH CASE WHEN startNode(r) = n THEN 'out' ELSE 'in' END AS direction, m.feature AS other, m.kind AS other_kind,
     count(DISTINCT n.prompt) AS prompts, sum(r.weight) AS total_weight, avg(r.weight) AS mean_weight
RETURN direction, other, other_kind, prompts, total_weight, mean_weight
ORDER BY direction, abs(total_weight) DESC
