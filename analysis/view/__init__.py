"""Looking at the stored graph: ``mechgraph view`` (a graph explorer in the browser, served on
loopback by FastAPI, drawn by cytoscape.js) and the commands that open Neo4j's own tools on the
store (``mechgraph db browser``, ``mechgraph db bloom-perspective``).

- ``reads``: the explorer's Cypher (``cypher/*.cypher``), each request a bounded page;
- ``api``: the JSON endpoints over those reads;
- ``server``: the FastAPI app (token check, loopback host check, static assets) and its runner;
- ``cli``: ``view``, and the ``db browser`` / ``db bloom-perspective`` bodies.
"""
