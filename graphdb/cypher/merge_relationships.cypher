// Writer template: MERGE one batch of relationships between existing nodes, by endpoint
// keys and the relationship type's identity properties, and set their properties.
// Placeholders, filled by graphdb.writer from graphdb.schema enums only (never user text):
//   __SRC_LABEL__ / __DST_LABEL__   labels with a key constraint (usually Node)
//   __REL__                         the relationship type
//   __IDENTITY__                    e.g. "{run: row.props.run, task: row.props.task}" or ""
// Parameters: $rows  list of {src: string, dst: string, props: map}
// Returns:    written (integer, rows whose two endpoints exist)
UNWIND $rows AS row
MATCH (a:__SRC_LABEL__ {key: row.src})
MATCH (b:__DST_LABEL__ {key: row.dst})
MERGE (a)-[r:__REL__ __IDENTITY__]->(b)
SET r += row.props
RETURN count(r) AS written
