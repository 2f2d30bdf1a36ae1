// One page of a large subgraph pull: the library query subgraph_columns (queries/library/)
// restricted to $min_abs_weight <= |weight| < $below_abs_weight, a range seek on the
// ATTRIBUTES_TO index. The pull's last page is subgraph_columns itself (no upper bound), so an
// infinite weight is not lost.
// Parameters: as subgraph_columns ($model, $checkpoint, $task, $granularity, $min_abs_weight,
//             $run, $kinds, $layers), and $below_abs_weight (float)
// Returns:    source_nids, target_nids, weights (three parallel lists)
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
WITH writing, split($kinds, ',') AS kinds, [x IN split($layers, ',') | toInteger(x)] AS layers
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
  AND r.abs_weight < $below_abs_weight
  AND r.granularity = $granularity AND ($run = '*' OR r.run = $run) AND NOT r.run IN writing
  AND ($kinds = '*' OR (any(l IN labels(a) WHERE l IN kinds) AND any(l IN labels(b) WHERE l IN kinds)))
  AND ($layers = '*' OR (a.layer IN layers AND b.layer IN layers))
RETURN collect(coalesce(a.nid, -1)) AS source_nids, collect(coalesce(b.nid, -1)) AS target_nids,
       collect(r.weight) AS weights
