"""Bulk loading: shards (CSV in the importer's header format) and Neo4j's offline importer.

* :mod:`graphdb.bulk.shards` writes the rows ``GraphWriter`` takes into node and relationship
  shards with exactly the keys, labels and properties the online writer would store.
* :mod:`graphdb.bulk.importer` runs ``neo4j-admin database import full`` (the jars come with
  the embedded server's build) into a data directory's store.
* :mod:`graphdb.bulk.load` is the whole path: import, start the server, create the schema.
* :mod:`graphdb.bulk.checksum` fingerprints a store's nodes and relationships, so a bulk load
  can be compared with an online write of the same graph.
"""
