// The edges of several stored prompt graphs on position-free keys (for the task graph).
// params: $keys (the :Prompt keys), $granularity (the prompt granularity, 'prompt')
// returns: prompt, src, dst (PromptNode.feature of each end), weight
MATCH (p:Prompt) WHERE p.key IN $keys
MATCH (p)<-[:IN_PROMPT]-(a:PromptNode)-[r:ATTRIBUTES_TO]->(b:PromptNode)-[:IN_PROMPT]->(p)
WHERE r.granularity = $granularity
RETURN p.prompt AS prompt, a.feature AS src, b.feature AS dst, r.weight AS weight
