"""``mechgraph report``: one self-contained HTML page read back from Neo4j through the library's
``report_*`` queries (:mod:`.html`), and its command (:mod:`.cli`)."""
