// Mark an imported prompt graph complete (the last write of an import) with what it holds.
// params: $key (the :Prompt key), $links (links written), $props (qParams fields read after the links)
// returns: nothing
MATCH (p:Prompt {key: $key})
SET p += $props, p.pruned_edges = $links, p.complete = true
