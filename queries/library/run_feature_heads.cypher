// name: run_feature_heads
// summary: The head each feature of one attention dictionary is assigned to in one ingest run: its largest IN_HEAD share.
// param run: string  ingest run id
// param hook: string  the dictionary's hook, e.g. blocks.0.hook_attn_out
// returns: feature, index, head, share
MATCH (f:Feature)-[s:IN_HEAD {run: $run}]->(h:Head)
WHERE f.hook = $hook
WITH f, h, s ORDER BY s.share DESC, h.head
WITH f, collect({head: h.head, share: s.share})[0] AS top
RETURN f.key AS feature, f.index AS index, top.head AS head, top.share AS share
ORDER BY index
