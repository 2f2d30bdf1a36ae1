// Whether an imported prompt graph is stored completely.
// params: $key (the :Prompt key)
// returns: complete (bool), links (the number of links it was written with)
MATCH (p:Prompt {key: $key})
RETURN coalesce(p.complete, false) AS complete, coalesce(p.pruned_edges, 0) AS links
