// Every node of the database, for graphdb.bulk.checksum.
// Parameters: none
// Returns:    labels (list of strings), props (map of every property)
MATCH (n)
RETURN labels(n) AS labels, properties(n) AS props
