// name: prompt_graph
// summary: The pruned replacement graph of one traced prompt: its edges with both endpoints' kind, layer and position.
// param prompt: string  the prompt id (mechgraph trace prints it; :Prompt.prompt)
// param min_abs_weight: float = 0  only edges with |weight| at least this
// returns: source, source_kind, source_layer, source_position, target, target_kind, target_layer, target_position, weight
MATCH (p:Prompt {prompt: $prompt})<-[:IN_PROMPT]-(a:PromptNode)-[r:ATTRIBUTES_TO]->(b:PromptNode)-[:IN_PROMPT]->(p)
WHERE r.granularity = 'prompt' AND r.abs_weight >= $min_abs_weight
RETURN a.feature AS source, a.kind AS source_kind, a.layer AS source_layer, a.position AS source_position,
       b.feature AS target, b.kind AS target_kind, b.layer AS target_layer, b.position AS target_position,
       r.weight AS weight
ORDER BY abs(weight) DESC
