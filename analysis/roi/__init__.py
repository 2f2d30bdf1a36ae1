"""Regions of Interest: blocks of functionally similar latents of one dictionary, fitted from
activations and attribution signals (:mod:`.fit`), written back with the ROI-level graph
(:mod:`.graph`), and ``mechgraph roi`` (:mod:`.cli`)."""
