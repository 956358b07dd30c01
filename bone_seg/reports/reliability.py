"""The reliability diagram of a calibration (``reliability.png``): accuracy against confidence per
equal-width bin, before and after the temperature, top-label and per class, with each ECE.

Built on :class:`matplotlib.figure.Figure` without ``pyplot`` (headless); the data are the
summaries of :class:`bone_seg.metrics.calibration.ReliabilityBins`.
"""

from __future__ import annotations

from matplotlib.figure import Figure


def reliability_figure(before: dict, after: dict, temperature: list[float],
                       title: str = "") -> Figure:
    """One panel for the top label and one per class: before (grey) and after (blue)."""
    names = ["top label", *before["per_class"]]
    fig = Figure(figsize=(4 * len(names), 4.3), layout="constrained")
    axes = fig.subplots(1, len(names))
    for ax, name in zip(axes, names, strict=True):
        for summary, colour, label in ((before, "0.55", "before"), (after, "tab:blue", "after")):
            curve = summary["top_label"] if name == "top label" else summary["per_class"][name]
            ece = summary["ece"] if name == "top label" else summary["ece_per_class"][name]
            pts = [(c, a) for c, a in zip(curve["confidence"], curve["accuracy"], strict=True)
                   if c is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, "o-", color=colour, ms=4, label=f"{label}: ECE {ece:.4f}")
        ax.plot([0, 1], [0, 1], ":", color="k", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (mean of the bin)")
        ax.set_ylabel("accuracy" if name == "top label" else f"share that is {name}")
        ax.set_title(name)
        ax.legend(loc="upper left", fontsize=9)
    t = ", ".join(f"{v:.3f}" for v in temperature)
    fig.suptitle(f"{title} reliability on {before['voxels']} sampled voxels, "
                 f"{before['bins']} bins; temperature {t}".strip())
    return fig
