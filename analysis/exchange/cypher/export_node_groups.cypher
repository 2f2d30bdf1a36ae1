// The communities of one run and the ROIs that given task-graph nodes belong to.
// params: $keys (list of node keys), $community_run (a communities run id, or '' for none)
// returns: kind ('community' or 'roi'), group (every property), members (node keys)
CALL () {
  MATCH (n:Node)-[:IN_COMMUNITY {run: $community_run}]->(c:Community)
  WHERE n.key IN $keys
  WITH c, n ORDER BY n.key
  RETURN 'community' AS kind, c {.*} AS group, collect(n.key) AS members
  UNION ALL
  MATCH (n:Node)-[:IN_ROI]->(r:ROI)
  WHERE n.key IN $keys
  WITH r, n ORDER BY n.key
  RETURN 'roi' AS kind, r {.*} AS group, collect(n.key) AS members
}
RETURN kind, group, members
ORDER BY kind, group.level, group.index, group.key
