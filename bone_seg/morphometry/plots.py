"""The PNG page of a morphometry run: profiles along Z and thickness histograms.

One volume, or a reference (solid lines) and a prediction (dashed) on the same axes; a 2D image
(one slice, no profile along Z) gets its thickness histograms and its measures. Built on
:class:`matplotlib.figure.Figure` without ``pyplot`` (no global state, headless).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from bone_seg.morphometry.analysis import ScanResult

_STYLES = ("-", "--", ":")
_SUMMARY = ("BV/TV", "Po.V/TV", "B.Th", "Po.Th", "BS/BV", "Conn.D")
_SUMMARY_2D = ("B.Ar/T.Ar", "Po.Ar/T.Ar", "B.Th", "Po.Th", "B.Pm/B.Ar", "J")


def _z_axis(res: ScanResult) -> tuple[np.ndarray, str]:
    z = res.slices["z"]
    if res.voxel_size_um is None:
        return z, "slice"
    return z * res.spacing[0], "z (mm)"


def _profiles(axes, runs: Sequence[tuple[str, ScanResult]], area_unit: str,
              moment_unit: str) -> None:
    ax_area, ax_frac, ax_moment, ax_centroid = axes
    for (label, res), style in zip(runs, _STYLES, strict=False):
        z, z_label = _z_axis(res)
        s = res.slices
        for key, colour in (("Tt.Ar", "tab:grey"), ("B.Ar", "tab:orange"), ("Po.Ar", "tab:blue")):
            ax_area.plot(z, s[key], style, color=colour, label=f"{key} {label}".strip())
        ax_frac.plot(z, s["B.Ar/Tt.Ar"], style, color="tab:orange", label=label or None)
        for key, colour in (("Imin", "tab:green"), ("Imax", "tab:red"), ("J", "black")):
            ax_moment.plot(z, s[key], style, color=colour, label=f"{key} {label}".strip())
        for key, colour in (("Xc", "tab:purple"), ("Yc", "tab:brown")):
            ax_centroid.plot(z, s[key], style, color=colour, label=f"{key} {label}".strip())
    titles = ((ax_area, f"cross-sectional areas ({area_unit})"),
              (ax_frac, "bone area fraction B.Ar/Tt.Ar"),
              (ax_moment, f"second moments of bone area ({moment_unit})"),
              (ax_centroid, "bone centroid"))
    for ax, title in titles:
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(z_label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)


def _histograms(axes, runs: Sequence[tuple[str, ScanResult]], edges: Mapping[str, np.ndarray],
                unit: str) -> None:
    for ax, phase, colour in zip(axes, ("bone", "pores"), ("tab:orange", "tab:blue"),
                                 strict=True):
        width = np.diff(edges[phase])
        for (label, res), style in zip(runs, _STYLES, strict=False):
            dist = res.thickness.get(phase)
            if dist is None or not dist.voxels:
                continue
            counts = dist.histogram(edges[phase], res.thickness_scale)
            density = counts / counts.sum() / width
            ax.stairs(density, edges[phase], linestyle=style, color=colour, linewidth=1.5,
                      label=label or None)
        ax.set_title(f"local thickness of {phase}", fontsize=10)
        ax.set_xlabel(f"thickness ({unit})")
        element = "pixels" if all(res.dims == 2 for _, res in runs) else "voxels"
        ax.set_ylabel(f"fraction of {phase} {element} per {unit}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)


def _summary(runs: Sequence[tuple[str, ScanResult]], measures: Sequence[Mapping],
             units: Mapping[str, str]) -> str:
    lines = []
    for (label, res), values in zip(runs, measures, strict=True):
        keys = _SUMMARY_2D if res.dims == 2 else _SUMMARY
        parts = [f"{k} {values[k]:.4g} {units[k]}".rstrip() for k in keys
                 if values.get(k) is not None]
        lines.append(f"{label + ': ' if label else ''}{res.path}  —  " + ", ".join(parts))
    return "\n".join(lines)


def morphometry_figure(runs: Sequence[tuple[str, ScanResult]], measures: Sequence[Mapping],
                       units: Mapping[str, str], edges: Mapping[str, np.ndarray]) -> Figure:
    """Profiles along Z (areas, bone fraction, moments, centroid) and thickness histograms.

    Args:
        runs: ``(label, result)`` pairs: ``[("", one)]`` or ``[("reference", r),
            ("prediction", p)]``.
        measures: the measures of each run (for the summary line).
        units: unit of each measure.
        edges: thickness bin edges of each phase, shared by all runs.
    """
    if all(res.dims == 2 for _, res in runs):
        fig = Figure(figsize=(11, 4.8), layout="constrained")
        axes = fig.subplots(1, 2)
        _histograms(axes, runs, edges, units["B.Th"])
        fig.suptitle("2D image: " + _summary(runs, measures, units), fontsize=9)
        return fig
    fig = Figure(figsize=(15, 8.6), layout="constrained")
    grid = fig.subplots(2, 3)
    _profiles([grid[0, 0], grid[0, 1], grid[0, 2], grid[1, 0]], runs, units["Tt.Ar.mean"],
              units["J.mean"])
    _histograms([grid[1, 1], grid[1, 2]], runs, edges, units["B.Th"])
    fig.suptitle(_summary(runs, measures, units), fontsize=9)
    return fig
