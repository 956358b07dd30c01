"""A readable summary of a dataset store: scans, shapes, dtypes, class fractions, statistics."""

from __future__ import annotations

from bone_seg.io.store import DatasetStore
from bone_seg.table import markdown_table


def store_summary(store: DatasetStore, policy: str = "positive") -> str:
    """Return a Markdown table with one row per scan of ``store``."""
    names = store.class_names
    headers = ["#", "scan", "shape (Z×Y×X)", "dtype", "voxel µm"]
    headers += [f"% {n}" for n in names]
    headers += [f"mean ({policy})", "SD", "min", "max"]
    rows = []
    for i, r in enumerate(store.summary_rows(), 1):
        s = r["stats"][policy]
        fr = r["class_fractions"]
        rows.append(
            [i, r["scan"], "×".join(map(str, r["shape"])), r["dtype"], r["voxel_size"] or "–"]
            + ([f"{100 * f:.1f}" for f in fr] if fr else ["–"] * len(names))
            + [_num(s["mean"]), _num(s["std"]), _num(s["min"]), _num(s["max"])]
        )
    return markdown_table(headers, rows, align="rllll" + "r" * (len(names) + 4))


def _num(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
