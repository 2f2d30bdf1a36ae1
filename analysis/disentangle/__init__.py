"""Task disentanglement: NMI/ARI/purity of a multi-task graph's communities against the tasks
with a null model (:mod:`.measure`), the kill table by ablation (:mod:`.kill`), and
``mechgraph disentangle`` (:mod:`.cli`)."""
