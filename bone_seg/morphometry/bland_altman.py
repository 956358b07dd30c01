"""A Bland–Altman plot of one measure: prediction − reference against their mean, per scan.

The mean difference (bias) is a solid line, the limits of agreement (bias ± 1.96 SD) dashed, zero
dotted; points are coloured by test fold. Built on :class:`matplotlib.figure.Figure` without
``pyplot`` (no global state, headless).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure


def bland_altman_figure(measure: str, unit: str, rows: Sequence[Mapping],
                        summary: Mapping) -> Figure:
    """The plot of ``measure`` over the per-scan ``rows`` (``reference``, ``prediction``,
    ``fold``) with the figures of ``summary`` (:func:`~bone_seg.morphometry.agreement.
    limits_of_agreement`)."""
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    pairs = [r for r in rows if r["reference"] is not None and r["prediction"] is not None]
    folds = sorted({str(r.get("fold", "")) for r in pairs})
    colours = {f: f"C{i % 10}" for i, f in enumerate(folds)}
    for fold in folds:
        mine = [r for r in pairs if str(r.get("fold", "")) == fold]
        ax.scatter([(r["reference"] + r["prediction"]) / 2 for r in mine],
                   [r["prediction"] - r["reference"] for r in mine], s=28, alpha=0.85,
                   color=colours[fold], label=f"fold {fold}" if fold else None)
    ax.axhline(0.0, color="grey", linestyle=":", linewidth=1)
    bias = summary.get("mean_difference")
    if bias is not None:
        ax.axhline(bias, color="black", linewidth=1.2, label=f"mean difference {bias:.4g}")
    for key, side in (("loa_high", "upper"), ("loa_low", "lower")):
        if summary.get(key) is not None:
            ax.axhline(summary[key], color="tab:red", linestyle="--", linewidth=1,
                       label=f"{side} limit of agreement (1.96 SD) {summary[key]:.4g}")
    suffix = f" ({unit})" if unit else ""
    ax.set_xlabel(f"mean of reference and prediction{suffix}")
    ax.set_ylabel(f"prediction − reference{suffix}")
    ax.set_title(f"{measure}: Bland–Altman, {summary.get('n', len(pairs))} scans", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig
