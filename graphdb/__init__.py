"""Neo4j: connection, schema, batched writes, the embedded server. Imports nothing of ours."""
