// Finish one write of a matching run, in one transaction (graphdb/generations.py): delete the
// run's MATCHES relationships that this write (generation $gen) did not write again (the Feature
// nodes stay: other runs and graphs use them), and mark the run as holding generation $gen.
// Nothing happens when another write of the run began after this one: no row is returned.
// Parameters: $key  the :Run node's key
//             $run  matching run id
//             $gen  this write's generation
// Returns:    matches (integer, stale relationships deleted)
MATCH (r:Run {key: $key})
WHERE r.writing_gen = $gen
CALL (r) {
  OPTIONAL MATCH (:Feature)-[m:MATCHES {run: $run}]->(:Feature)
  WHERE m.gen IS NULL OR m.gen <> $gen
  DELETE m
  RETURN count(m) AS matches
}
SET r.gen = $gen, r.finished_at = timestamp() / 1000.0
REMOVE r.writing_gen
RETURN matches
