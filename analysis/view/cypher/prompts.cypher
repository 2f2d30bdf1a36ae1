// The stored prompt graphs (transcoder replacement graphs, `mechgraph trace`), newest run first.
// params: $model ('*' = any), $task ('*' = any), $limit
// returns: prompt, text, model, checkpoint, task, run, nodes, edges, replacement_score, completeness_score
MATCH (p:Prompt)
WHERE ($model = '*' OR p.model = $model) AND ($task = '*' OR p.task = $task)
RETURN p.prompt AS prompt, p.text AS text, p.model AS model, p.checkpoint AS checkpoint, p.task AS task,
       p.run AS run, p.pruned_nodes AS nodes, p.pruned_edges AS edges,
       p.replacement_score AS replacement_score, p.completeness_score AS completeness_score
ORDER BY run DESC, prompt
LIMIT $limit
