"""The PNG summary of a prediction (``<out>/summary.png``): three orthogonal slices of the scan
through its centre with the labels overlaid in the class colours, a scale bar in µm, and the
class volumes (voxels, mm³, % of the envelope = every class but background).

Memory stays bounded: the XY slice is one slice; the XZ and YZ slices are gathered slice by slice
from at most :data:`MAX_ROWS` slices spread over the depth (drawn with the matching aspect).
Built on :class:`matplotlib.figure.Figure` without ``pyplot`` (headless).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bone_seg.classes import class_colours
from bone_seg.io.files import save_figure_atomic

MAX_ROWS = 512
OVERLAY_ALPHA = 0.45


def _views(image, labels, shape) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """``(title, image, labels, aspect)`` of the XY, XZ and YZ slices through the centre."""
    z, y, x = shape
    zc, yc, xc = z // 2, y // 2, x // 2
    stride = max(1, math.ceil(z / MAX_ROWS))
    rows_i, rows_l = [], []
    for zz in range(0, z, stride):
        rows_i.append(np.asarray(image.read(zz, zz + 1))[0])
        rows_l.append(np.asarray(labels[zz:zz + 1])[0])
    xy_i, xy_l = np.asarray(image.read(zc, zc + 1))[0], np.asarray(labels[zc:zc + 1])[0]
    return [(f"XY, z = {zc}", xy_i, xy_l, 1.0),
            (f"XZ, y = {yc}", np.stack([r[yc] for r in rows_i]),
             np.stack([r[yc] for r in rows_l]), float(stride)),
            (f"YZ, x = {xc}", np.stack([r[:, xc] for r in rows_i]),
             np.stack([r[:, xc] for r in rows_l]), float(stride))]


def _overlay(labels: np.ndarray, num_classes: int) -> np.ndarray:
    lut = np.zeros((256, 4), np.float32)
    for i, rgb in enumerate(class_colours(num_classes)):
        lut[i] = [*(c / 255 for c in rgb), 0.0 if i == 0 else OVERLAY_ALPHA]
    return lut[labels]


def _nice_length(span: float) -> float:
    """1, 2 or 5 × 10^n, about a fifth of ``span``."""
    target = span / 5
    power = 10 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target * 1.0001)


def _scale_bar(ax, width_px: int, height_px: int, voxel_um: float | None) -> None:
    unit_len = voxel_um or 1.0
    length = _nice_length(width_px * unit_len)
    px = length / unit_len
    y0 = height_px * 0.94
    ax.plot([width_px * 0.04, width_px * 0.04 + px], [y0, y0], color="white", lw=3)
    text = f"{length:g} µm" if voxel_um else f"{length:g} px (voxel size unknown)"
    ax.text(width_px * 0.04, y0 - height_px * 0.03, text, color="white", fontsize=8)


def volume_rows(counts: dict[str, int], voxel_um: float | None) -> list[list[str]]:
    """Rows ``class, voxels, mm³, % of envelope`` (envelope: every class but the first)."""
    names = list(counts)
    envelope = sum(counts[n] for n in names[1:])
    rows = []
    for i, name in enumerate(names):
        n = counts[name]
        mm3 = f"{n * (voxel_um * 1e-3) ** 3:.4g}" if voxel_um else "n/a"
        frac = f"{100 * n / envelope:.1f}" if i and envelope else "—"
        rows.append([name, f"{n:,}", mm3, frac])
    return rows


def write_summary(path: str | Path, image, labels, counts: dict[str, int],
                  voxel_um: float | None, title: str, note: str | None = None) -> Path:
    """Draw the summary of ``labels`` (a Zarr array) over ``image`` (a Volume) into ``path``
    (``note``: a line under the table, e.g. the per-scan check's verdict)."""
    fig = Figure(figsize=(12, 9), layout="constrained")
    axes = fig.subplots(2, 2)
    for ax, (name, img, lab, aspect) in zip(axes.flat, _views(image, labels, labels.shape),
                                            strict=False):
        lo, hi = np.percentile(img, [1, 99]) if img.size else (0, 1)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect,
                  interpolation="nearest")
        ax.imshow(_overlay(lab, len(counts)), aspect=aspect, interpolation="nearest")
        _scale_bar(ax, img.shape[1], img.shape[0], voxel_um)
        ax.set_title(name)
        ax.set_axis_off()
    ax = axes.flat[3]
    ax.set_axis_off()
    table = ax.table(cellText=volume_rows(counts, voxel_um),
                     colLabels=["class", "voxels", "mm³", "% of envelope"], loc="center")
    table.scale(1, 1.6)
    if note:  # wrapped to the panel's width
        import textwrap

        ax.text(0.5, 0.05, textwrap.fill(note, 60), ha="center", va="bottom",
                transform=ax.transAxes, fontsize=10,
                color="#b00000" if "check it" in note else "#205020")
    for i, rgb in enumerate(class_colours(len(counts))):
        table[i + 1, 0].set_facecolor([c / 255 for c in rgb] + [0.35 if i else 0.0])
    vs = f"voxel {voxel_um:g} µm" if voxel_um else "voxel size unknown"
    fig.suptitle(f"{title} — {labels.shape[0]}×{labels.shape[1]}×{labels.shape[2]} voxels, {vs}")
    return save_figure_atomic(fig, path, dpi=110)
