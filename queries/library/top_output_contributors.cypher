// name: top_output_contributors
// summary: The nodes with the strongest direct edge into a task's output metric at one checkpoint.
// param model: string  model name
// param checkpoint: string  checkpoint name
// param task: string  task name
// param limit: int = 20  at most this many nodes
// returns: node, kind, layer, weight, metric
MATCH (n)-[r:ATTRIBUTES_TO]->(o:Output)
WHERE r.model = $model AND r.checkpoint = $checkpoint AND r.task = $task
RETURN n.key AS node, [l IN labels(n) WHERE l <> 'Node'][0] AS kind, n.layer AS layer,
       r.weight AS weight, o.metric AS metric
ORDER BY abs(r.weight) DESC
LIMIT $limit
