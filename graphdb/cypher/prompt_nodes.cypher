// The nodes of one stored prompt graph.
// params: $key (the :Prompt key)
// returns: node (every property of a :PromptNode)
MATCH (p:Prompt {key: $key})<-[:IN_PROMPT]-(n:PromptNode)
RETURN n {.*} AS node
