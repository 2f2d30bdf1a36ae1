// One stored prompt graph's :Prompt node (text, tokens, targets, scores).
// params: $prompt
// returns: props
MATCH (p:Prompt {prompt: $prompt})
RETURN properties(p) AS props
LIMIT 1
