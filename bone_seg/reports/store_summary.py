"""A readable summary of a dataset store: scans, shapes, dtypes, class fractions (of the labelled
voxels), the labelled share and labelled slices (sparse labels; 100 % and every slice for a fully
labelled mask), statistics."""

from __future__ import annotations

from bone_seg.io.store import DatasetStore
from bone_seg.table import markdown_table


def store_summary(store: DatasetStore, policy: str = "positive") -> str:
    """Return a Markdown table with one row per scan of ``store``."""
    names = store.class_names
    headers = ["#", "scan", "shape (Z×Y×X)", "dtype", "voxel µm"]
    headers += [f"% {n}" for n in names]
    headers += ["% labelled", "labelled slices"]
    headers += [f"mean ({policy})", "SD", "min", "max"]
    rows = []
    for i, r in enumerate(store.summary_rows(), 1):
        s = r["stats"][policy]
        fr = r["class_fractions"]
        rows.append(
            [i, r["scan"], "×".join(map(str, r["shape"])), r["dtype"], r["voxel_size"] or "–"]
            + ([f"{100 * f:.1f}" for f in fr] if fr else ["–"] * len(names))
            + _labelled(r)
            + [_num(s["mean"]), _num(s["std"]), _num(s["min"]), _num(s["max"])]
        )
    return markdown_table(headers, rows, align="rllll" + "r" * (len(names) + 6))


def _labelled(row: dict) -> list[str]:
    """``% labelled`` and ``labelled slices`` cells (``–`` without a mask)."""
    if row["labelled_fraction"] is None:
        return ["–", "–"]
    return [_percent(row["labelled_fraction"]), str(row["labelled_slices"])]


def _percent(fraction: float) -> str:
    """One decimal; 100 only when every voxel is labelled (99.96 % shows as 99.9, not 100.0)."""
    if fraction >= 1:
        return "100"
    return f"{min(100 * fraction, 99.9):.1f}"


def _num(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
