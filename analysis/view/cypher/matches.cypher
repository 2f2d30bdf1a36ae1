// A feature's MATCHES to its counterparts at other checkpoints or sizes, best first.
// params: $key, $limit
// returns: other, model, checkpoint, direction, score, method, run
MATCH (f:Feature {key: $key})-[m:MATCHES]-(g:Feature)
RETURN g.key AS other, g.model AS model, g.checkpoint AS checkpoint,
       CASE WHEN startNode(m) = f THEN 'later' ELSE 'earlier' END AS direction,
       m.score AS score, m.method AS method, m.run AS run
ORDER BY score DESC
LIMIT $limit
