// name: prompt_recurring_features
// summary: Transcoder features that recur in the pruned prompt graphs of one task: in how many prompts, at which positions.
// param model: string  model name
// param checkpoint: string  checkpoint name
// param task: string  task name
// param min_prompts: int = 2  only features in at least this many prompts
// param limit: int = 50  at most this many features
// returns: feature, layer, prompts, occurrences, positions, mean_activation
MATCH (p:Prompt)<-[:IN_PROMPT]-(n:PromptNode)
WHERE p.model = $model AND p.checkpoint = $checkpoint AND p.task = $task AND n.kind = 'feature'
WITH n.feature AS feature, n.layer AS layer, count(DISTINCT p) AS prompts, count(n) AS occurrences,
     collect(DISTINCT n.position) AS positions, avg(n.activation) AS mean_activation
WHERE prompts >= $min_prompts
RETURN feature, layer, prompts, occurrences, positions, mean_activation
ORDER BY prompts DESC, occurrences DESC, feature
LIMIT $limit
