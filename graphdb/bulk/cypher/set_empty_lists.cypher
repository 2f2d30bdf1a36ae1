// After a bulk import: set the node properties that are empty lists (the importer reads an
// empty array as no property).
// Placeholder: __KEY_LABEL__, the label whose key constraint finds the node (graphdb.schema.Label).
// Parameters: $rows  list of {key: string, props: {name: []}}
// Returns:    nothing
UNWIND $rows AS row
MATCH (n:__KEY_LABEL__ {key: row.key})
SET n += row.props
