// Finish one write of a communities run, in one transaction (graphdb/generations.py): delete the
// run's communities and memberships that this write (generation $gen) did not write again, and
// mark the run as holding generation $gen. Nothing happens when another write of the run began
// after this one (the run's writing_gen is not $gen): no row is returned.
// Parameters: $key  the :Run node's key
//             $run  run id
//             $gen  this write's generation
// Returns:    communities, members (integers, stale ones deleted)
MATCH (r:Run {key: $key})
WHERE r.writing_gen = $gen
CALL (r) {
  OPTIONAL MATCH (c:Community {run: $run})
  WHERE c.gen IS NULL OR c.gen <> $gen
  DETACH DELETE c
  RETURN count(c) AS communities
}
CALL (r) {
  OPTIONAL MATCH (:Community {run: $run})<-[m:IN_COMMUNITY]-()
  WHERE m.gen IS NULL OR m.gen <> $gen
  DELETE m
  RETURN count(m) AS members
}
SET r.gen = $gen, r.finished_at = timestamp() / 1000.0
REMOVE r.writing_gen
RETURN communities, members
