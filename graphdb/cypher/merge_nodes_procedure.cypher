// Writer fast path: MERGE one batch of nodes through the launcher's Core-API procedure
// (registered by the embedded server; a standalone server can load the same jar as a plugin).
// Parameters: $key_label     label with the `key` uniqueness constraint (from graphdb.schema)
//             $extra_labels  labels to add (from graphdb.schema)
//             $common        properties shared by every node of the batch
//             $keys          list of node keys
//             $columns       map property name -> list (one value per key; null = not set)
// Returns:    written, created (integers)
CALL mechgraph.mergeNodes($key_label, $extra_labels, $common, $keys, $columns) YIELD written, created
RETURN written, created
