// name: subgraph_columns
// summary: One task's graph at one checkpoint as three parallel columns in a single record (the bulk path analyses pull subgraphs through: no per-edge records).
// param model: string  model name, e.g. mt-small
// param checkpoint: string  checkpoint name, e.g. step-3000
// param task: string  task name, e.g. ioi
// param granularity: string = feature  feature, head or roi
// param min_abs_weight: float = 0.0  keep edges with |weight| at or above this
// param run: string = *  one run id, or * for every run of the task
// returns: sources, targets, weights
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task AND r.abs_weight >= $min_abs_weight
  AND r.granularity = $granularity AND ($run = '*' OR r.run = $run)
RETURN collect(a.key) AS sources, collect(b.key) AS targets, collect(r.weight) AS weights
