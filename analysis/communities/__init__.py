"""Communities of a pulled subgraph (Leiden, Louvain, SBM, hierarchical Leiden) written back as
``:Community`` nodes (:mod:`.partition`), and ``mechgraph communities`` (:mod:`.cli`). Pulling
the subgraph is :mod:`analysis.subgraph`, shared with every capability that reads a graph."""
