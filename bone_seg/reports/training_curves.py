"""The training curves of a fit as one PNG: loss, mIoU and each class's validation IoU per epoch.

Drawn from the epoch log's history (:class:`~bone_seg.callbacks.epoch_log.EpochLog`: one entry per
epoch, Lightning's epoch counted from 0; drawn from 1 as the log prints them), with
:class:`matplotlib.figure.Figure` directly (no ``pyplot`` state, headless).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(e["epoch"] + 1, e["metrics"].get(key)) for e in history]
    kept = [(x, y) for x, y in points if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def curves_figure(history: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> Figure:
    """Loss (train, val) and mIoU (train, val, per class) against the epoch; the best epoch
    (the monitored score's) marked in both panels."""
    fig = Figure(figsize=(11, 4.2))
    loss_ax, iou_ax = fig.subplots(1, 2)
    for key, style in (("train/loss", "-"), ("val/loss", "--")):
        loss_ax.plot(*_series(history, key), style, marker="o", ms=3, label=key, color="black")
    for key, style in (("train/miou", "-"), ("val/miou", "--")):
        iou_ax.plot(*_series(history, key), style, marker="o", ms=3, label=key, color="black")
    for name in class_names:
        epochs, values = _series(history, f"val/iou_{name}")
        if epochs:
            iou_ax.plot(epochs, values, marker=".", label=f"val IoU {name}")
    best = [e for e in history if e.get("is_best")]
    if best:
        for ax in (loss_ax, iou_ax):
            ax.axvline(best[-1]["epoch"] + 1, color="grey", lw=0.8, ls=":",
                       label=f"best epoch {best[-1]['epoch'] + 1}")
    loss_ax.set(title="loss", xlabel="epoch", yscale="log")
    iou_ax.set(title="IoU", xlabel="epoch", ylim=(0, 1))
    for ax in (loss_ax, iou_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
