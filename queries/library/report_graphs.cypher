// name: report_graphs
// summary: Every stored graph (run, task, granularity) with its model, checkpoint, node and edge counts and total |weight|: the sizes table of a project report.
// returns: run, kind, model, checkpoint, task, granularity, nodes, edges, total_abs_weight
// Graphs still being written (a Run node's tasks_writing names the task) are left out.
CALL () {
  MATCH (x:Run) WHERE size(coalesce(x.tasks_writing, [])) > 0
  UNWIND x.tasks_writing AS t
  RETURN collect(x.run + '|' + t) AS writing
}
MATCH (a)-[r:ATTRIBUTES_TO]->(b)
WHERE NOT (r.run + '|' + r.task) IN writing
WITH r.run AS run, r.model AS model, r.checkpoint AS checkpoint, r.task AS task, r.granularity AS granularity,
     count(r) AS edges, sum(r.abs_weight) AS total_abs_weight, collect(DISTINCT a.key) + collect(DISTINCT b.key) AS ends
MATCH (x:Run {run: run})
UNWIND ends AS e
WITH run, x.kind AS kind, model, checkpoint, task, granularity, edges, total_abs_weight, count(DISTINCT e) AS nodes
RETURN run, kind, model, checkpoint, task, granularity, nodes, edges, total_abs_weight
ORDER BY model, checkpoint, task, granularity, run
