"""Resource monitoring shared by fitting (callbacks) and prediction (inference).

Pure Python + psutil + NVML (``nvidia-ml-py``) + torch; never imports Lightning, so the
sliding-window predictor can use it too.

- :mod:`bone_seg.monitoring.resources`: :class:`ResourceMonitor`, a background sampler of peak
  VRAM, mean GPU utilisation and the peak RAM of a process tree (BONe's GPU/RAM monitor).
- :mod:`bone_seg.monitoring.nvml`: the NVML sampler of the watched GPUs.
- :mod:`bone_seg.monitoring.summary`: summaries of several nodes merged; a readable table.
- :mod:`bone_seg.monitoring.memory`: free memory of a device and a batch size that fits in it.
"""

from bone_seg.monitoring.memory import batch_size_for, free_memory_bytes
from bone_seg.monitoring.resources import ResourceMonitor
from bone_seg.monitoring.summary import format_summary, merge_node_summaries

__all__ = [
    "ResourceMonitor",
    "batch_size_for",
    "format_summary",
    "free_memory_bytes",
    "merge_node_summaries",
]
