"""Files written whole or not at all: text, CSV and PNG through a temporary name and a rename."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # io does not import matplotlib; callers that plot pass their figure
    from matplotlib.figure import Figure

from bone_seg import atomic


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename.

    Returns:
        The path written.
    """
    return atomic.write_text_atomic(path, text if text.endswith("\n") else text + "\n")


def write_csv_atomic(
    path: str | os.PathLike, fieldnames: Sequence[str], rows: Sequence[Mapping[str, object]]
) -> Path:
    """Write ``rows`` (dicts keyed by ``fieldnames``) as CSV; ``None`` becomes an empty field.

    Floats are written with ``repr`` precision (the csv module's default), so a reader recovers
    the exact value.

    Returns:
        The path written.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fieldnames})
    return write_text_atomic(path, buf.getvalue())


def save_figure_atomic(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save a Matplotlib figure as PNG through a temporary file and an atomic rename.

    Returns:
        The path written.
    """
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)
