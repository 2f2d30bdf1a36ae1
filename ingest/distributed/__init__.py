"""Attribution across many workers on Ray: ``mechgraph ingest ... --ray [ADDRESS]``.

The driver (the process that ran the command) splits the work into units, runs each unit as a
Ray task and merges the partial results in a fixed order, so the stored graph is the one a
single process stores; it alone writes to Neo4j. Units: one batch of one task's examples
(``--graph resid/module``: the unit returns its batch's accumulator, sums/counts/maxima, and
the driver merges them, :mod:`ingest.distributed.attribution`), or one prompt
(``--graph transcoders``: the unit returns its pruned prompt graph, the driver stores it,
:mod:`ingest.distributed.prompts`). Nothing here is imported without ``--ray``.
"""
