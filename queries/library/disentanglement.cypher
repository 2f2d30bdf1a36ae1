// name: disentanglement
// summary: The communities of one task-disentanglement run with their task purity (and kill-table values, per task, when measured), and the run's NMI, ARI and z-score against its null model.
// param run: string  disentangle run id (printed by `mechgraph disentangle`)
// returns: community, size, dominant_task, purity, majority_task, majority_fraction, tasks, shares, kill_edge, keep_edge, nmi, ari, z
MATCH (s:Disentanglement {run: $run, name: 'summary'})
MATCH (d:Disentanglement {run: $run})-[:DESCRIBES]->(c:Community)
RETURN c.key AS community, d.size AS size, d.dominant_task AS dominant_task, d.purity AS purity,
       d.majority_task AS majority_task, d.majority_fraction AS majority_fraction, d.tasks AS tasks,
       d.shares AS shares, d.kill_edge AS kill_edge, d.keep_edge AS keep_edge,
       s.nmi AS nmi, s.ari AS ari, s.z AS z
ORDER BY d.index
