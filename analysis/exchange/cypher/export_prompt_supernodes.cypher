// The communities (imported supernodes included) and ROIs the nodes of one prompt graph belong
// to: a community through its prompt nodes, an ROI through the position-free feature of a node.
// params: $key (the :Prompt key)
// returns: kind ('community' or 'roi'), group (every property of the :Community / :ROI), members (prompt node keys)
CALL () {
  MATCH (:Prompt {key: $key})<-[:IN_PROMPT]-(n:PromptNode)-[m:IN_COMMUNITY]->(c:Community)
  WITH c, n, m ORDER BY coalesce(m.rank, 0), n.key
  WITH c, collect(n.key) AS members
  RETURN 'community' AS kind, c {.*} AS group, members, c.key AS sort
  UNION ALL
  MATCH (:Prompt {key: $key})<-[:IN_PROMPT]-(n:PromptNode {kind: 'feature'})
  MATCH (f:Node {key: n.feature})-[:IN_ROI]->(r:ROI)
  WITH r, n ORDER BY n.key
  WITH r, collect(n.key) AS members
  RETURN 'roi' AS kind, r {.*} AS group, members, r.key AS sort
}
RETURN kind, group, members
ORDER BY kind, group.run, group.level, group.index, sort
