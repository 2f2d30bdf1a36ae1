// Every task-disentanglement run: its summary scores and kill-table heatmaps.
// params: $limit
// returns: run, model, checkpoint, tasks, nmi, ari, z, communities, pngs
MATCH (s:Disentanglement {name: 'summary'})
RETURN s.run AS run, s.model AS model, s.checkpoint AS checkpoint, s.tasks AS tasks, s.nmi AS nmi, s.ari AS ari,
       s.z AS z, s.communities AS communities, s.pngs AS pngs
ORDER BY run
LIMIT $limit
