// name: coarse_members
// summary: The features each coarse node of a head- or ROI-level graph stands for (a head: the features whose largest IN_HEAD share of that ingest run is its; an ROI: its IN_ROI members); what the evaluator expands coarse edges into.
// param run: string  the run that wrote the coarse graph (an ingest run for heads, a roi run for ROIs)
// param granularity: string = head  head or roi
// returns: coarse, member
CALL () {
  MATCH (f:Feature)-[r:IN_HEAD]->(h:Head)
  WHERE $granularity = 'head' AND r.run = $run
  WITH f, h, r ORDER BY r.share DESC, h.head
  WITH f, collect(h.key)[0] AS coarse
  RETURN coarse, f.key AS member
  UNION
  MATCH (f:Feature)-[r:IN_ROI]->(g:ROI)
  WHERE $granularity = 'roi' AND r.run = $run
  RETURN g.key AS coarse, f.key AS member
}
RETURN coarse, member
ORDER BY coarse, member
