// One page of a prompt graph's nodes: tokens and targets always, features and error nodes whose
// cumulative influence is within the node threshold (smaller = more influential, as pruned),
// with the community or ROI of what the node is an occurrence of (PromptNode.feature).
// params: $prompt, $node_threshold, $group_run ('*' = any), $limit
// returns: key, kind, layer, position, index, feature, activation, influence, text, label, group, group_kind
MATCH (p:Prompt {prompt: $prompt})<-[:IN_PROMPT]-(n:PromptNode)
WHERE n.kind IN ['token', 'target'] OR coalesce(n.influence, 0.0) <= $node_threshold
WITH n ORDER BY CASE WHEN n.kind IN ['token', 'target'] THEN 0 ELSE 1 END, n.influence, n.key
LIMIT $limit
OPTIONAL CALL (n) {
  MATCH (f:Node {key: n.feature})-[g:IN_COMMUNITY|IN_ROI]->(c)
  WHERE $group_run = '*' OR g.run = $group_run
  RETURN c.key AS group, type(g) AS group_kind
  ORDER BY g.run DESC LIMIT 1
}
RETURN n.key AS key, n.kind AS kind, n.layer AS layer, n.position AS position, n.index AS index,
       n.feature AS feature, n.activation AS activation, n.influence AS influence,
       coalesce(n.text, '') AS text, coalesce(n.label, '') AS label, group, group_kind
