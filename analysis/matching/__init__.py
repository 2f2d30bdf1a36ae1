"""Matching across checkpoints and model sizes: the pure assignment and community-matching maths
(:mod:`.core`), feature matches written as ``MATCHES`` (:mod:`.features`), the community
emergence timeline (:mod:`.timeline`), communities across sizes (:mod:`.sizes`), and
``mechgraph match`` (:mod:`.cli`)."""
