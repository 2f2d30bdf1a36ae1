// name: feature_heads
// summary: Features of one layer at one checkpoint with the attention heads they are assigned to (IN_HEAD share), largest share first.
// param model: string  model name
// param checkpoint: string  checkpoint name
// param layer: int  layer index
// returns: feature, head, share
MATCH (f:Feature)-[s:IN_HEAD]->(h:Head)
WHERE f.model = $model AND f.checkpoint = $checkpoint AND f.layer = $layer
RETURN f.key AS feature, h.head AS head, s.share AS share
ORDER BY share DESC, feature
