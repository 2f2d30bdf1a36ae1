// Writer template: MERGE one batch of nodes by key and set their properties.
// Placeholders, filled by graphdb.writer from graphdb.schema enums only (never user text):
//   __KEY_LABEL__    the label whose uniqueness constraint on `key` the MERGE uses
//   __SET_LABELS__   extra labels to add, e.g. "n:Feature, " (empty for none)
// Parameters: $rows  list of {key: string, props: map}
// Returns:    written (integer, rows merged)
UNWIND $rows AS row
MERGE (n:__KEY_LABEL__ {key: row.key})
SET __SET_LABELS__n += row.props
RETURN count(n) AS written
