// name: roi_members
// summary: The member features of one ROI of an ROI run, with their layer and head (attention dictionaries).
// param run: string  ROI run id (printed by `mechgraph roi fit`)
// param hook: string  the dictionary's hook, e.g. blocks.0.hook_attn_out
// param index: int = 0  ROI index within the dictionary (0 = the largest)
// returns: feature, index, layer, head
MATCH (f:Feature)-[:IN_ROI {run: $run}]->(r:ROI {run: $run, hook: $hook, index: $index})
RETURN f.key AS feature, f.index AS index, f.layer AS layer, f.head AS head
ORDER BY index
