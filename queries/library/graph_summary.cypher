// name: graph_summary
// summary: Size of every attribution graph in the store: edges and total |weight| per model, checkpoint, task, run and granularity.
// returns: model, checkpoint, task, run, granularity, edges, total_abs_weight
MATCH ()-[r:ATTRIBUTES_TO]->()
RETURN r.model AS model, r.checkpoint AS checkpoint, r.task AS task, r.run AS run,
       r.granularity AS granularity, count(r) AS edges, sum(r.abs_weight) AS total_abs_weight
ORDER BY model, checkpoint, task, run, granularity
