"""Figures of the reports: per-scan cross-validation scores, ranking scores, weight sensitivity.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no
global backend state is touched, no window opens, and saving as PNG uses the Agg renderer, so it
works on headless machines and in worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from bone_seg.reports.cv_table import ALL, CVTable, ScanScore
from bone_seg.reports.ranking import METRICS, Ranking
from bone_seg.reports.sensitivity import SensitivityRow


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def cv_figure(scores: Sequence[ScanScore], table: CVTable) -> Figure:
    """Per-scan mIoU by fold, points coloured by seed, fold means (all seeds) ± SD in black.

    Short coloured bars mark each fold × seed mean; the dashed line is the grand mean.
    """
    folds, seeds = table.folds, table.seeds
    fig = Figure(figsize=(max(5.0, 1.3 * len(folds) + 2.5), 4.2))
    ax = fig.add_subplot()
    width = 0.6
    step = width / max(len(seeds), 1)
    labelled: set = set()
    for j, (seed, colour) in enumerate(zip(seeds, _colours(len(seeds)), strict=True)):
        offset = -width / 2 + step * (j + 0.5)
        for i, fold in enumerate(folds):
            ys = [s.miou for s in scores if s.fold == fold and s.seed == seed]
            if not ys:
                continue
            ax.scatter([i + offset] * len(ys), ys, s=22, color=colour, alpha=0.8,
                       label=None if seed in labelled else f"seed {seed}")
            labelled.add(seed)
            cell = table.cell(fold, seed)
            if cell is not None:
                ax.hlines(cell.miou_mean, i + offset - step * 0.4, i + offset + step * 0.4,
                          color=colour, linewidth=2)
    for i, fold in enumerate(folds):
        c = table.cell(fold, ALL)
        if c is not None:
            sd = None if math.isnan(c.miou_sd) else [c.miou_sd]
            ax.errorbar([i], [c.miou_mean], yerr=sd,
                        fmt="D", color="black", markersize=6, capsize=4,
                        label="fold mean ± SD (seeds pooled)" if i == 0 else None, zorder=5)
    ax.axhline(table.grand.miou_mean, color="grey", linestyle="--", linewidth=1,
               label=f"grand mean {table.grand.miou_mean:.4f}")
    ax.set_xticks(range(len(folds)), [str(f) for f in folds])
    ax.set_xlabel("test fold")
    ax.set_ylabel("mIoU per test scan")
    ax.set_title("Cross-validation: test-scan mIoU by fold and seed")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def ranking_figure(ranking: Ranking, limit: int = 40) -> Figure:
    """Horizontal bars of weighted scores, best on top, split into each metric's contribution."""
    rows = list(ranking.rows[:limit])
    fig = Figure(figsize=(9.0, 1.6 + 0.32 * len(rows)))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    left = [0.0] * len(rows)
    for m, colour in zip(METRICS, _colours(len(METRICS)), strict=True):
        weight = ranking.weights[m.key]
        if m.key in ranking.dropped or weight == 0:
            continue
        part = [weight * r.normalised[m.key] for r in rows]
        ax.barh(ys, part, left=left, color=colour, label=f"{m.title} (w={weight:.3g})")
        left = [a + b for a, b in zip(left, part, strict=True)]
    for y, r in zip(ys, rows, strict=True):
        ax.text(r.score, y, f" {r.score:.4f}", va="center", fontsize=7)
    ax.set_yticks(ys, [f"{r.rank}. {r.name}" for r in rows], fontsize=7)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("weighted score (stacked: weight × normalised metric)")
    title = "Weighted ranking"
    if len(ranking.rows) > limit:
        title += f" (top {limit} of {len(ranking.rows)})"
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def sensitivity_figure(rows: Sequence[SensitivityRow]) -> Figure:
    """Weighted score against the mIoU weight for every model that reaches a top list."""
    names: list[str] = []
    for r in rows:
        for t in r.top:
            if t.name not in names:
                names.append(t.name)
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    xs = [r.miou_weight for r in rows]
    for name, colour in zip(names, _colours(len(names)), strict=True):
        ys = [next(x.score for x in r.ranking.rows if x.name == name) for r in rows]
        ax.plot(xs, ys, marker="o", color=colour, label=name, linewidth=1.2, markersize=4)
    ax.set_xlabel("mIoU weight (each efficiency metric: (1 − w)/6)")
    ax.set_ylabel("weighted score")
    ax.set_title("Sensitivity of the ranking to the mIoU weight")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig
