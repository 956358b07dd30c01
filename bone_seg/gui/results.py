"""A command's output folder, written under a temporary name and renamed once the command
succeeded (removed when it failed or was cancelled): nothing half-written looks complete; and
the table the widgets show results in."""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtWidgets import QTableWidget, QTableWidgetItem

from bone_seg.atomic import remove, temporary_name


class Staged:
    """``tmp``: where the command writes; :meth:`commit` renames it to ``final``."""

    def __init__(self, final: Path):
        self.final = Path(final)
        self.tmp = temporary_name(self.final)

    def commit(self) -> Path:
        remove(self.final)
        os.replace(self.tmp, self.final)
        return self.final

    def discard(self) -> None:
        remove(self.tmp)


def fill_table(table: QTableWidget, header: list[str], rows: list[list]) -> None:
    """Show ``rows`` (numbers to 4 significant digits) under ``header``."""
    table.clear()
    table.setColumnCount(len(header))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels(header)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            table.setItem(r, c, QTableWidgetItem(text))
    table.resizeColumnsToContents()
