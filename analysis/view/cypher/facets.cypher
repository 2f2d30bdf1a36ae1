// What the explorer's filters offer: every model/checkpoint pair, task, run and prompt-graph model.
// params: $limit (at most this many rows)
// returns: facet ('checkpoint', 'task', 'run'), model, value, kind, created_at
CALL () {
  MATCH (c:Checkpoint)
  RETURN 'checkpoint' AS facet, c.model AS model, c.name AS value, null AS kind, null AS created_at
  UNION
  MATCH (p:Prompt)
  WITH DISTINCT p.model AS model, p.checkpoint AS value
  RETURN 'checkpoint' AS facet, model, value, null AS kind, null AS created_at
  UNION
  MATCH (t:Task)
  RETURN 'task' AS facet, null AS model, t.name AS value, null AS kind, null AS created_at
  UNION
  MATCH (r:Run)
  RETURN 'run' AS facet, null AS model, r.run AS value, r.kind AS kind, r.created_at AS created_at
}
RETURN facet, model, value, kind, created_at
ORDER BY facet, model, value
LIMIT $limit
