// name: group_members
// summary: The member nodes of one community or ROI, by its key: the node sets evaluation selections restrict a graph to.
// param key: string  a :Community or :ROI key (`mechgraph query run community_members`, `mechgraph roi show`)
// returns: member
CALL () {
  MATCH (n)-[:IN_COMMUNITY]->(:Community {key: $key})
  RETURN n.key AS member
  UNION
  MATCH (n)-[:IN_ROI]->(:ROI {key: $key})
  RETURN n.key AS member
}
RETURN member
ORDER BY member
