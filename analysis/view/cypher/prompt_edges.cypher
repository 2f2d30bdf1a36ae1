// One page of a prompt graph's edges among the given nodes, strongest first.
// params: $prompt, $keys (the drawn node keys), $min_abs_weight, $limit
// returns: source, target, weight
MATCH (p:Prompt {prompt: $prompt})<-[:IN_PROMPT]-(a:PromptNode)-[r:ATTRIBUTES_TO]->(b:PromptNode)
WHERE r.granularity = 'prompt' AND r.abs_weight >= $min_abs_weight AND a.key IN $keys AND b.key IN $keys
WITH a, b, r ORDER BY r.abs_weight DESC LIMIT $limit
RETURN a.key AS source, b.key AS target, r.weight AS weight
