// The keys of the graph nodes with the given nids, as two parallel columns in one record
// (the second half of a bulk subgraph pull; served by the Node(nid) index).
// Parameters: $nids  list of integers (graphdb.keys.key_id of each key)
// Returns:    nids (list of integers), keys (list of strings), aligned; a nid two nodes share
//             appears twice
MATCH (n:Node) WHERE n.nid IN $nids
RETURN collect(n.nid) AS nids, collect(n.key) AS keys
