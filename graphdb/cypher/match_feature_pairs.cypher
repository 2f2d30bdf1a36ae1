// The MATCHES relationships from the features of one model checkpoint to those of another.
// Parameters: $model            stored model name of both ends, e.g. mt-small
//             $from_checkpoint  checkpoint of the earlier features, e.g. step-1466
//             $to_checkpoint    checkpoint of the later features, e.g. step-3000
//             $method           matching method (cosine, activation, ...), or '*' for any
// Returns:    source, target (feature keys), score, method, run; strongest first
MATCH (a:Feature)-[m:MATCHES]->(b:Feature)
WHERE a.model = $model AND a.checkpoint = $from_checkpoint
  AND b.model = $model AND b.checkpoint = $to_checkpoint
  AND ($method = '*' OR m.method = $method)
RETURN a.key AS source, b.key AS target, m.score AS score, m.method AS method, m.run AS run
ORDER BY score DESC, source, target
