// Everything stored on one node, for the details panel (a graph node, community, ROI or prompt).
// params: $key
// returns: labels, props
CALL () {
  MATCH (n:Node {key: $key}) RETURN n
  UNION
  MATCH (n:Community {key: $key}) RETURN n
}
RETURN [l IN labels(n) WHERE l <> 'Node'] AS labels, properties(n) AS props
LIMIT 1
