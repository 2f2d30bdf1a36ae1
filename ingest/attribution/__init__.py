"""Attribution: integrated-gradients edges between dictionary nodes (see :mod:`.engine`)."""
