"""Resource summaries: several nodes' (or ranks') summaries merged into one, and a readable table
(the summaries are :meth:`~bone_seg.monitoring.resources.ResourceMonitor.summary`'s)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _max_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def merge_node_summaries(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine the summaries of several nodes (or ranks) of one distributed run into one.

    Peaks are the max over nodes (``peak_rss_gb`` is the largest *per-node* peak;
    ``peak_rss_gb_per_node`` lists them all), GPU utilisation is the mean over every GPU of every
    node, ``max_processes`` is summed. Per-GPU dicts get keys ``"node<n>/gpu<i>"`` when there is
    more than one node. Summaries holding only process-level keys (``torch_peak_*``,
    ``peak_rss_getrusage_gb``; e.g. from ranks that do not sample the node) contribute to those
    keys only; give them ``"node_level": False``.

    Args:
        summaries: Dicts as returned by :meth:`ResourceMonitor.summary`, one per node, in node
            order.

    Returns:
        One summary with the same keys plus ``num_nodes`` and ``peak_rss_gb_per_node``.
    """
    if not summaries:
        raise ValueError("merge_node_summaries: no summaries given")
    nodes = [s for s in summaries if s.get("node_level", True)]
    multi = len(nodes) > 1

    def per_gpu(key: str) -> dict[Any, float] | None:
        out: dict[Any, float] = {}
        for n, s in enumerate(nodes):
            for index, value in (s.get(key) or {}).items():
                out[f"node{n}/gpu{index}" if multi else index] = value
        return out or None

    def everywhere(key: str) -> float | None:
        return _max_or_none([s.get(key) for s in summaries])

    peaks, utils = per_gpu("peak_vram_gb_per_gpu"), per_gpu("gpu_util_mean_pct_per_gpu")
    available = [s for s in nodes if s.get("gpu_available")]
    reasons = [s.get("gpu_unavailable_reason") for s in nodes if s.get("gpu_unavailable_reason")]
    procs = [s.get("max_processes") for s in nodes if s.get("max_processes") is not None]
    first = nodes[0] if nodes else summaries[0]
    return {
        "wall_time_s": _max_or_none([s.get("wall_time_s") for s in nodes]),
        "interval_s": first.get("interval_s"),
        "num_samples": _max_or_none([s.get("num_samples") for s in nodes]),
        "gpu_available": bool(available),
        "gpu_unavailable_reason": None if available else (reasons[0] if reasons else None),
        "gpu_count": sum(int(s.get("gpu_count") or 0) for s in nodes),
        "gpu_names": per_gpu("gpu_names"),
        "peak_vram_gb": max(peaks.values()) if peaks else None,
        "peak_vram_gb_per_gpu": peaks,
        "vram_baseline_gb_per_gpu": per_gpu("vram_baseline_gb_per_gpu"),
        "gpu_util_mean_pct": sum(utils.values()) / len(utils) if utils else None,
        "gpu_util_mean_pct_per_gpu": utils,
        "torch_peak_allocated_gb": everywhere("torch_peak_allocated_gb"),
        "torch_peak_reserved_gb": everywhere("torch_peak_reserved_gb"),
        "peak_rss_gb": _max_or_none([s.get("peak_rss_gb") for s in nodes]),
        "peak_rss_gb_per_node": [s.get("peak_rss_gb") for s in nodes],
        "peak_rss_process_gb": _max_or_none([s.get("peak_rss_process_gb") for s in nodes]),
        "peak_rss_getrusage_gb": everywhere("peak_rss_getrusage_gb"),
        "memory_metric": first.get("memory_metric"),
        "max_processes": sum(procs) if procs else None,
        "num_nodes": len(nodes),
    }


_LINES: tuple[tuple[str, str, str], ...] = (
    ("wall_time_s", "wall time", "{:.1f} s"),
    ("fit_time_s", "fitting time", "{:.1f} s"),
    ("peak_vram_gb", "peak VRAM (device)", "{:.2f} GB"),
    ("gpu_util_mean_pct", "GPU utilisation (mean)", "{:.1f} %"),
    ("torch_peak_allocated_gb", "peak VRAM (torch allocated)", "{:.2f} GB"),
    ("peak_rss_gb", "peak RAM (process tree)", "{:.2f} GB"),
    ("peak_rss_process_gb", "peak RAM (this process)", "{:.2f} GB"),
    ("peak_rss_getrusage_gb", "peak RAM (getrusage)", "{:.2f} GB"),
)


def format_summary(summary: dict[str, Any], title: str = "Resources") -> str:
    """A human-readable block of a (possibly extended) :meth:`ResourceMonitor.summary`.

    Args:
        summary: The summary dict (extra keys such as ``fit_time_s`` are shown when present).
        title: First line.

    Returns:
        Several lines; unavailable values read ``n/a`` (with the GPU reason for GPU values).
    """
    lines = [f"{title}:"]
    reason = summary.get("gpu_unavailable_reason")
    for key, label, fmt in _LINES:
        if key not in summary:
            continue
        value = summary[key]
        if value is None:
            text = "n/a"
            if key in ("peak_vram_gb", "gpu_util_mean_pct") and reason:
                text += f" ({reason})"
        else:
            text = fmt.format(value)
            per_gpu = summary.get(f"{key}_per_gpu")
            if per_gpu and len(per_gpu) > 1:
                text += " [" + ", ".join(f"gpu {i}: {v:.2f}" for i, v in per_gpu.items()) + "]"
            if key == "peak_rss_gb" and summary.get("max_processes"):
                n = summary["max_processes"]
                text += f" ({summary.get('memory_metric')}, up to {n} process{'es' * (n != 1)})"
        lines.append(f"  {label:<28} {text}")
    return "\n".join(lines)
