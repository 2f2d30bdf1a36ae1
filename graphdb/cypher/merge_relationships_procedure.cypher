// Writer fast path: MERGE one batch of relationships through the launcher's Core-API procedure.
// A row naming a missing node makes the procedure fail with "MissingEndpoint: ...", which
// rolls the whole batch back.
// Parameters: $type, $src_label, $dst_label   from graphdb.schema enums only
//             $identity   property names that, with the endpoints, identify a relationship
//             $common     properties shared by every relationship of the batch
//             $src, $dst  lists of endpoint keys
//             $columns    map property name -> list (one value per row; null = not set)
// Returns:    written, created (integers)
CALL mechgraph.mergeRelationships($type, $src_label, $dst_label, $identity, $common, $src, $dst, $columns)
YIELD written, created
RETURN written, created
