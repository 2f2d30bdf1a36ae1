"""Feature descriptions: each dictionary latent's top-activating contexts on task prompts (or the
dictionary's corpus) and a short automatic label from them, stored on its ``:Feature`` node.

* :mod:`ingest.describe.contexts`: top contexts, labels, the write-back;
* :mod:`ingest.describe.cli`: ``mechgraph describe``.

Exports show the label as the node's ``clerp`` (``analysis.exchange``).
"""
