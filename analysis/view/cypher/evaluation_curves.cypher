// The curve points of one evaluation run (`mechgraph evaluate`), by ablation and edge budget.
// params: $run
// returns: ablation, edges, nodes, faithfulness, completeness, kl, loss
MATCH (e:Evaluation {run: $run})
WHERE e.budget IS NOT NULL
RETURN e.ablation AS ablation, e.edges AS edges, e.nodes AS nodes, e.faithfulness AS faithfulness,
       e.completeness AS completeness, e.kl AS kl, e.loss AS loss
ORDER BY ablation, edges
