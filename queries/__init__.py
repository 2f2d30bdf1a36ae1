"""The analyst query library: named, parameterised Cypher queries (see ``queries.loader``)."""
