// Graph nodes by key, with their labels (an exported task graph or selection).
// params: $keys (list of node keys)
// returns: node (every property), labels (the node's labels)
MATCH (n:Node) WHERE n.key IN $keys
RETURN n {.*} AS node, labels(n) AS labels
