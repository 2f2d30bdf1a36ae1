// Every ATTRIBUTES_TO relationship of the store, from its count store (no read of the edges): a
// store of at most a page of them is pulled in one query without counting the selection.
// Returns: edges (one row)
MATCH ()-[r:ATTRIBUTES_TO]->()
RETURN count(r) AS edges
