"""Analysis over graphs pulled from Neo4j, and the CLI that composes every package."""
