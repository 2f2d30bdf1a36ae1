"""The main job: every capability in order on the embedded server (:mod:`.pipeline`), and
``mechgraph demo`` (:mod:`.cli`)."""
