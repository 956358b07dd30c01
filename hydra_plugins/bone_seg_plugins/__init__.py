"""Hydra plugins of bone_seg: the one-process-per-job launcher (the configs, ``sweeps/`` included,
are the package's own ``conf``)."""
