// Every relationship of the database with its endpoints, for graphdb.bulk.checksum.
// Parameters: none
// Returns:    type, src / dst (endpoint keys), src_labels / dst_labels, props (map of every property)
MATCH (a)-[r]->(b)
RETURN type(r) AS type, a.key AS src, labels(a) AS src_labels, b.key AS dst, labels(b) AS dst_labels,
       properties(r) AS props
