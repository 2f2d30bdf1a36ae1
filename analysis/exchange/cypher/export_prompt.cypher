// One stored prompt graph's :Prompt properties.
// params: $key (the :Prompt key)
// returns: prompt (every property of the :Prompt)
MATCH (p:Prompt {key: $key})
RETURN p {.*} AS prompt
