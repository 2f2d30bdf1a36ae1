// name: community_top_edges
// summary: The strongest stored edges with both endpoints in one community, among the edges the communities run partitioned (its model, checkpoint, tasks, graph run, granularity and minimum |weight|).
// param community: string  the :Community node's key, community|<run>|<level>|<index> (printed by `mechgraph communities`)
// param limit: int = 20  at most this many edges
// returns: source, target, task, run, weight
// Graphs still being written (a Run node's tasks_writing names the task) are left out.
CALL () {
  MATCH (x:Run) WHERE size(coalesce(x.tasks_writing, [])) > 0
  UNWIND x.tasks_writing AS t
  RETURN collect(x.run + '|' + t) AS writing
}
MATCH (c:Community {key: $community})
MATCH (a)-[:IN_COMMUNITY {run: c.run}]->(c)
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE r.model = c.model AND r.checkpoint = c.checkpoint AND r.task IN c.tasks
  AND r.granularity = coalesce(c.granularity, 'feature') AND r.abs_weight >= coalesce(c.min_abs_weight, 0.0)
  AND (coalesce(c.graph_run, '*') = '*' OR r.run = c.graph_run) AND NOT (r.run + '|' + r.task) IN writing
  AND EXISTS { (b)-[:IN_COMMUNITY {run: c.run}]->(c) }
RETURN a.key AS source, b.key AS target, r.task AS task, r.run AS run, r.weight AS weight
ORDER BY abs(weight) DESC, source, target, task, run
LIMIT $limit
