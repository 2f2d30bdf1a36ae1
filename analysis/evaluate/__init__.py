"""Judging a stored graph by running it: selections from the store (:mod:`.selection`), edge-
and node-ablation sweeps with faithfulness/completeness curves (:mod:`.sweep`), the gender-
shortcut showcase (:mod:`.shortcut`), and their CLI (:mod:`.cli`). The model side of an
ablation is :mod:`ingest.ablation`."""
