// The nodes of one stored prompt graph with the description of what each is an occurrence of.
// params: $key (the :Prompt key)
// returns: node (every property of a :PromptNode), description (its :Feature's label, or null)
MATCH (p:Prompt {key: $key})<-[:IN_PROMPT]-(n:PromptNode)
OPTIONAL MATCH (f:Node {key: n.feature})
RETURN n {.*} AS node, f.description AS description
