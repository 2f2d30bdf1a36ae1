// Writer fast path for new relationships: CREATE one batch through the launcher's Core-API
// procedure, without looking for an existing relationship (see create_relationships.cypher:
// only when none can exist). A row naming a missing node fails the whole batch.
// Parameters and result: as merge_relationships_procedure.cypher
CALL mechgraph.createRelationships($type, $src_label, $dst_label, $identity, $common, $src, $dst, $columns)
YIELD written, created
RETURN written, created
