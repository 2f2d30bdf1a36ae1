// Writer template: CREATE one batch of relationships between existing nodes (no search for an
// existing one: only for a caller that knows none exists, e.g. a new prompt graph's links, each
// pair once), and set their properties.
// Placeholders, filled by graphdb.writer from graphdb.schema enums only (never user text):
//   __SRC_LABEL__ / __DST_LABEL__   labels with a key constraint (usually Node)
//   __REL__                         the relationship type
// Parameters: $rows  list of {src: string, dst: string, props: map}
// Returns:    written (integer, rows whose two endpoints exist)
UNWIND $rows AS row
MATCH (a:__SRC_LABEL__ {key: row.src})
MATCH (b:__DST_LABEL__ {key: row.dst})
CREATE (a)-[r:__REL__]->(b)
SET r = row.props
RETURN count(r) AS written
