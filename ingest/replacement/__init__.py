"""The replacement graph of one prompt (circuit tracing with transcoders) and its storage.

Modules, each one role:

* :mod:`.config`    — :class:`TraceConfig`, every choice that defines a prompt graph;
* :mod:`.graph`     — :class:`PromptGraph`, the dense adjacency and what its nodes are;
* :mod:`.targets`   — the target nodes: salient logits or a logit difference;
* :mod:`.attribute` — the frozen local replacement model and the batched-backward edges;
* :mod:`.prune`     — influence pruning, replacement and completeness scores;
* :mod:`.store`     — writing prompt graphs into Neo4j and reading them back;
* :mod:`.aggregate` — a task's prompt graphs into the position-free task graph;
* :mod:`.task`      — ``mechgraph ingest --graph transcoders``;
* :mod:`.cli`       — ``mechgraph trace``.

Nothing heavy is imported here.
"""
