// What the explorer draws for each node key: its kind, layer, description and group (community
// or ROI) of one run ('*' = the first found).
// params: $keys (list of node keys), $group_run ('*' = any)
// returns: key, kind, model, checkpoint, layer, index, description, group, group_kind
UNWIND $keys AS k
MATCH (n:Node {key: k})
OPTIONAL CALL (n) {
  MATCH (n)-[g:IN_COMMUNITY|IN_ROI]->(c)
  WHERE $group_run = '*' OR g.run = $group_run
  RETURN c.key AS group, type(g) AS group_kind
  ORDER BY g.run DESC LIMIT 1
}
RETURN n.key AS key, [l IN labels(n) WHERE l <> 'Node'][0] AS kind, n.model AS model, n.checkpoint AS checkpoint,
       n.layer AS layer, n.index AS index, n.description AS description, group, group_kind
