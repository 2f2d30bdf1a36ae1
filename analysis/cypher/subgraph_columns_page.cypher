// One page of a large subgraph pull: the library query subgraph_columns (queries/library/)
// restricted to the edges whose source node's nid is in [$nid_from, $nid_to], a range seek on the
// Node(nid) index and an expansion of those nodes' ATTRIBUTES_TO relationships. Pages over
// disjoint nid ranges read disjoint edges, each once, so a pull in pages is linear in its edges.
// One MATCH: a WITH between the node seek and the expansion lets the planner seek the whole
// relationship index for every node instead (EXPLAIN showed it on a 10M-edge store).
// Parameters: as subgraph_columns ($model, $checkpoint, $task, $granularity, $min_abs_weight,
//             $run, $kinds, $layers), and $nid_from, $nid_to (integers)
// Returns:    source_nids, target_nids, weights (three parallel lists)
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
WITH writing, split($kinds, ',') AS kinds, [x IN split($layers, ',') | toInteger(x)] AS layers
MATCH (a:Node) USING INDEX a:Node(nid)
WHERE a.nid >= $nid_from AND a.nid <= $nid_to
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
  AND r.granularity = $granularity AND ($run = '*' OR r.run = $run) AND NOT r.run IN writing
  AND ($kinds = '*' OR (any(l IN labels(a) WHERE l IN kinds) AND any(l IN labels(b) WHERE l IN kinds)))
  AND ($layers = '*' OR (a.layer IN layers AND b.layer IN layers))
RETURN collect(a.nid) AS source_nids, collect(coalesce(b.nid, -1)) AS target_nids, collect(r.weight) AS weights
