// name: community_output_links
// summary: The direct edges from one community's members into :Output nodes (among the edges the communities run partitioned), each with its output's total signed weight from the community; outputs by decreasing |total|.
// param community: string  the :Community node's key, community|<run>|<level>|<index> (printed by `mechgraph communities`)
// returns: output, metric, member, task, weight, output_total_weight, output_edges
// Graphs still being written (a Run node's tasks_writing names the task) are left out.
CALL () {
  MATCH (x:Run) WHERE size(coalesce(x.tasks_writing, [])) > 0
  UNWIND x.tasks_writing AS t
  RETURN collect(x.run + '|' + t) AS writing
}
MATCH (c:Community {key: $community})
MATCH (a)-[:IN_COMMUNITY {run: c.run}]->(c)
MATCH (a)-[r:ATTRIBUTES_TO]->(o:Output)
WHERE r.model = c.model AND r.checkpoint = c.checkpoint AND r.task IN c.tasks
  AND r.granularity = coalesce(c.granularity, 'feature') AND r.abs_weight >= coalesce(c.min_abs_weight, 0.0)
  AND (coalesce(c.graph_run, '*') = '*' OR r.run = c.graph_run) AND NOT (r.run + '|' + r.task) IN writing
WITH o, collect({member: a.key, task: r.task, weight: r.weight}) AS links, sum(r.weight) AS total
UNWIND links AS link
RETURN o.key AS output, o.metric AS metric, link.member AS member, link.task AS task, link.weight AS weight,
       total AS output_total_weight, size(links) AS output_edges
ORDER BY abs(output_total_weight) DESC, output, abs(weight) DESC, member, task
