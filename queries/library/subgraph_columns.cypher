// name: subgraph_columns
// summary: One task's graph at one checkpoint as three parallel columns in a single record: endpoint nids (integer node ids, graphdb/keys.py key_id) and weights; the bulk path analyses pull subgraphs through (no per-edge records, no key strings). A node written before nids existed reads as -1.
// param model: string  model name, e.g. mt-small
// param checkpoint: string  checkpoint name, e.g. step-3000
// param task: string  task name, e.g. ioi
// param granularity: string = feature  feature, head or roi
// param min_abs_weight: float = 0.0  keep edges with |weight| at or above this
// param run: string = *  one run id, or * for every run of the task
// param kinds: string = *  node labels both endpoints must carry, comma-separated (Feature,ErrorNode,Input,Output,Head,ROI), or * for any
// param layers: string = *  layers both endpoints must be in, comma-separated (the embedding input is -1, the output n_layers), or * for any
// returns: source_nids, target_nids, weights
// A run still writing this task's graph (its Run node's tasks_writing names the task) is left out.
CALL () {
  MATCH (x:Run) WHERE $task IN x.tasks_writing
  RETURN collect(x.run) AS writing
}
WITH writing, split($kinds, ',') AS kinds, [x IN split($layers, ',') | toInteger(x)] AS layers
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
  AND r.granularity = $granularity AND ($run = '*' OR r.run = $run) AND NOT r.run IN writing
  AND ($kinds = '*' OR (any(l IN labels(a) WHERE l IN kinds) AND any(l IN labels(b) WHERE l IN kinds)))
  AND ($layers = '*' OR (a.layer IN layers AND b.layer IN layers))
RETURN collect(coalesce(a.nid, -1)) AS source_nids, collect(coalesce(b.nid, -1)) AS target_nids,
       collect(r.weight) AS weights
