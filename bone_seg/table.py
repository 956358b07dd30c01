"""Plain-text tables for the terminal and Markdown files (used by every room)."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None
) -> str:
    """Format rows as a GitHub-flavoured Markdown table, columns padded to line up.

    Args:
        headers: column titles.
        rows: cell values (converted with ``str``; ``None`` shows as an empty cell).
        align: one letter per column, ``l`` or ``r`` (default: numbers right, text left).
    """
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if align is None:
        align = "".join(
            "r" if rows and isinstance(rows[0][i], (int, float)) else "l"
            for i in range(len(headers))
        )
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values):
        padded = [
            v.rjust(w) if a == "r" else v.ljust(w)
            for v, w, a in zip(values, widths, align, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
            for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    return "\n".join([line(headers), rule] + [line(r) for r in cells])
