// name: report_evaluations
// summary: The summaries of every evaluation (`mechgraph evaluate`): CPR and CMD per ablation of each judged graph, with the curve's CSV and PNG.
// returns: run, graph_run, model, checkpoint, task, ablation, baseline, cpr, cmd, csv, png
MATCH (e:Evaluation)
WHERE e.name ENDS WITH '-summary'
RETURN e.run AS run, e.graph_run AS graph_run, e.model AS model, e.checkpoint AS checkpoint, e.task AS task,
       e.ablation AS ablation, e.baseline AS baseline, e.cpr AS cpr, e.cmd AS cmd, e.csv AS csv, e.png AS png
ORDER BY model, checkpoint, task, run, ablation
