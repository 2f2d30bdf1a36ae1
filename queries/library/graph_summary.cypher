// name: graph_summary
// summary: Size of every attribution graph in the store: edges and total |weight| per model, checkpoint, task, run and granularity.
// returns: model, checkpoint, task, run, granularity, edges, total_abs_weight
// Graphs still being written (a Run node's tasks_writing names the task) are left out.
CALL () {
  MATCH (x:Run) WHERE size(coalesce(x.tasks_writing, [])) > 0
  UNWIND x.tasks_writing AS t
  RETURN collect(x.run + '|' + t) AS writing
}
MATCH ()-[r:ATTRIBUTES_TO]->()
WHERE NOT (r.run + '|' + r.task) IN writing
RETURN r.model AS model, r.checkpoint AS checkpoint, r.task AS task, r.run AS run,
       r.granularity AS granularity, count(r) AS edges, sum(r.abs_weight) AS total_abs_weight
ORDER BY model, checkpoint, task, run, granularity
