"""Hydra plugins of bone_seg: the ``sweeps/`` search path and the one-process-per-job launcher."""
