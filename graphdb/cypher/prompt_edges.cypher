// The edges of one stored prompt graph.
// params: $key (the :Prompt key), $granularity (the prompt granularity, 'prompt')
// returns: src, dst (node keys), weight
MATCH (p:Prompt {key: $key})<-[:IN_PROMPT]-(a:PromptNode)-[r:ATTRIBUTES_TO]->(b:PromptNode)-[:IN_PROMPT]->(p)
WHERE r.granularity = $granularity
RETURN a.key AS src, b.key AS dst, r.weight AS weight
