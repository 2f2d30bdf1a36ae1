// Finish one write of a disentangle run, in one transaction (graphdb/generations.py): delete the
// run's :Disentanglement nodes and their relationships that this write (generation $gen) did
// not write again, and mark the run as holding generation $gen. Nothing happens when another
// write of the run began after this one (the run's writing_gen is not $gen): no row is returned.
// Parameters: $key  the :Run node's key
//             $run  run id
//             $gen  this write's generation
// Returns:    rows, links (integers, stale nodes and relationships deleted)
MATCH (r:Run {key: $key})
WHERE r.writing_gen = $gen
CALL (r) {
  OPTIONAL MATCH (d:Disentanglement {run: $run})
  WHERE d.gen IS NULL OR d.gen <> $gen
  DETACH DELETE d
  RETURN count(d) AS rows
}
CALL (r) {
  OPTIONAL MATCH (:Disentanglement {run: $run})-[x]->()
  WHERE x.gen IS NULL OR x.gen <> $gen
  DELETE x
  RETURN count(x) AS links
}
SET r.gen = $gen, r.finished_at = timestamp() / 1000.0
REMOVE r.writing_gen
RETURN rows, links
