"""The cross-validation table (the paper's Table 6): per-scan scores -> fold × seed means and SDs.

The paper aggregates in four ways, all reproduced here:

* cell (fold f, seed s): mean ± SD of the test scans' mIoU of that fold and seed;
* fold margin ("Mean ± SD across seeds"): mean ± SD over *all* scan-level values of fold f, every
  seed pooled (12 values for 4 scans × 3 seeds), not the SD of the three cell means;
* seed margin ("Mean ± SD across folds"): mean ± SD of the fold means (one per fold) of seed s;
* grand (bottom right): mean ± SD of all fold × seed means (15 for 5 folds × 3 seeds).

mDice (in brackets) goes through exactly the same arithmetic, starting from each scan's own mean
Dice (the mean of its class-wise Dice), never converted from a mean IoU.

Which SD: the sample SD (``ddof=1``, divisor n − 1) everywhere. The seed and grand margins are
stated as sample SDs by the paper. For the cells and the fold margins it is not stated, so we
checked Table 6 itself: the fold margin depends only on the three cells' means and SDs (n = 4
each), and with ddof = 1 for both cells and margin, sqrt((Σ 3·s_i² + Σ 4·(m_i − m)²) / 11)
gives 0.0092, 0.2142, 0.0367, 0.1425, 0.0972 for folds 1–5 — exactly the published values —
whereas ddof = 0 gives 0.0102, 0.2368, 0.0404, 0.1572, 0.1067 (and mixtures match neither).
``tests/reports/test_cv_table.py`` repeats that check through :func:`cv_table`.

An SD of a single value is undefined: it is NaN and shows as "–", never 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from bone_seg.errors import BoneSegError
from bone_seg.table import markdown_table

SD_DDOF = 1  # sample SD; see the module docstring for why this matches Table 6
ALL = "all"  # the fold/seed label of the margins in the CSV
DASH = "–"

CSV_FIELDS = ("fold", "seed", "n", "miou_mean", "miou_sd", "mdice_mean", "mdice_sd")

Label = int | str


def label(value: object) -> Label:
    """A fold or seed label: an int when it reads as one (MLflow tags are strings), else a str."""
    if isinstance(value, bool):
        raise BoneSegError(f"a fold/seed label must be an int or a str, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text


def label_order(value: Label) -> tuple[int, int, str]:
    """Sort key: integer labels numerically first, then text labels alphabetically."""
    return (0, value, "") if isinstance(value, int) else (1, 0, value)


@dataclass(frozen=True)
class ScanScore:
    """The scores of one test scan under one fold and seed."""

    fold: Label
    seed: Label
    scan: str
    miou: float
    mdice: float

    @classmethod
    def from_mapping(cls, record: Mapping[str, object], where: str = "record") -> ScanScore:
        """Build from a mapping with keys ``fold, seed, scan, miou, mdice``.

        Raises:
            BoneSegError: a key is missing or a score is not a number in [0, 1]; the message
                names ``where`` and the key.
        """
        missing = [k for k in ("fold", "seed", "scan", "miou", "mdice") if record.get(k) is None]
        if missing:
            raise BoneSegError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
        return cls(
            fold=label(record["fold"]),
            seed=label(record["seed"]),
            scan=str(record["scan"]),
            miou=score_value(record["miou"], f"{where}: 'miou'"),
            mdice=score_value(record["mdice"], f"{where}: 'mdice'"),
        )


def score_value(value: object, where: str) -> float:
    """A score as a float in [0, 1].

    Raises:
        BoneSegError: not a finite number in [0, 1].
    """
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BoneSegError(f"{where} is {value!r}, not a number") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise BoneSegError(f"{where} is {v}, not a score in [0, 1]")
    return v


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample SD (ddof=1) in float64; the SD of fewer than two values is NaN."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    sd = float(np.std(arr, ddof=SD_DDOF)) if arr.size > SD_DDOF else math.nan
    return float(np.mean(arr)), sd


@dataclass(frozen=True)
class CVCell:
    """Mean ± SD of one cell or margin of the table (``fold``/``seed`` = ``"all"`` for margins)."""

    fold: Label
    seed: Label
    n: int
    miou_mean: float
    miou_sd: float
    mdice_mean: float
    mdice_sd: float

    def as_row(self) -> dict[str, object]:
        """The CSV row (NaN SDs as empty fields)."""
        row = {k: getattr(self, k) for k in CSV_FIELDS}
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}

    def text(self) -> str:
        """``"0.9731 ± 0.0099 [0.9864 ± 0.0051]"``; an undefined SD shows as "–"."""
        return (
            f"{_num(self.miou_mean)} ± {_num(self.miou_sd)} "
            f"[{_num(self.mdice_mean)} ± {_num(self.mdice_sd)}]"
        )


def _num(v: float) -> str:
    return DASH if math.isnan(v) else f"{v:.4f}"


@dataclass(frozen=True)
class CVTable:
    """The aggregated cross-validation table: cells, fold margins, seed margins, grand mean."""

    folds: tuple[Label, ...]
    seeds: tuple[Label, ...]
    cells: tuple[CVCell, ...]

    def cell(self, fold: Label, seed: Label) -> CVCell | None:
        """The cell of ``fold`` and ``seed`` (``"all"`` for a margin), or None when empty."""
        for c in self.cells:
            if c.fold == fold and c.seed == seed:
                return c
        return None

    @property
    def grand(self) -> CVCell:
        """The grand mean ± SD of all fold × seed means (the bottom-right cell)."""
        c = self.cell(ALL, ALL)
        assert c is not None
        return c

    def csv_rows(self) -> list[dict[str, object]]:
        """One row per cell and margin, columns :data:`CSV_FIELDS`."""
        return [c.as_row() for c in self.cells]

    def markdown(self, title: str | None = None) -> str:
        """The table as Markdown (rows: folds + margin; columns: seeds + margin), with notes."""
        headers = ["Test fold"] + [f"mIoU (seed {s})" for s in self.seeds]
        headers.append("Mean ± SD across seeds")
        rows = []
        for f in [*self.folds, ALL]:
            name = "Mean ± SD across folds" if f == ALL else str(f)
            cells = [self.cell(f, s) for s in [*self.seeds, ALL]]
            rows.append([name] + [c.text() if c else DASH for c in cells])
        ns = sorted({c.n for c in self.cells if c.fold != ALL and c.seed != ALL})
        n_text = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}, see the CSV"
        notes = [
            "mIoU mean ± SD [mDice mean ± SD]; Dice is each scan's own mean Dice, not converted "
            "from the mIoU.",
            f"Cells: the test scans of one fold and seed (n = {n_text}). Across seeds: all "
            "scan-level values of the fold, seeds pooled. Across folds: the fold means of the "
            "seed. Bottom right: all fold × seed means.",
            "SD: sample SD (n − 1); \"–\" where it is undefined (one value).",
        ]
        head = [f"# {title}", ""] if title else []
        table = markdown_table(headers, rows, align="l" + "r" * (len(headers) - 1))
        return "\n".join(head + [table, ""] + [f"- {n}" for n in notes]) + "\n"


def as_scan_scores(records: Iterable[ScanScore | Mapping[str, object]]) -> list[ScanScore]:
    """Turn mappings into :class:`ScanScore` (index named in errors), refusing duplicates.

    Raises:
        BoneSegError: a record is incomplete, or a scan appears twice for one fold and seed.
    """
    out: list[ScanScore] = []
    seen: set[tuple[Label, Label, str]] = set()
    for i, r in enumerate(records):
        s = r if isinstance(r, ScanScore) else ScanScore.from_mapping(r, where=f"record {i}")
        key = (s.fold, s.seed, s.scan)
        if key in seen:
            raise BoneSegError(
                f"scan {s.scan!r} appears twice for fold {s.fold}, seed {s.seed}; each test "
                "scan must be scored once per fold and seed (remove the duplicate run or record)"
            )
        seen.add(key)
        out.append(s)
    return out


def cv_table(records: Iterable[ScanScore | Mapping[str, object]]) -> CVTable:
    """Aggregate per-scan scores exactly as the paper's Table 6 (see the module docstring).

    Args:
        records: one per test scan, fold and seed: :class:`ScanScore` or mappings with keys
            ``fold, seed, scan, miou, mdice``.

    Returns:
        The table, cells ordered fold by fold (seeds, then the fold margin), then the seed
        margins and the grand mean.

    Raises:
        BoneSegError: no records, an incomplete record, or a duplicate scan.
    """
    scores = as_scan_scores(records)
    if not scores:
        raise BoneSegError("no per-scan scores to aggregate: the cross-validation table is empty")
    folds = tuple(sorted({s.fold for s in scores}, key=label_order))
    seeds = tuple(sorted({s.seed for s in scores}, key=label_order))

    def summary(fold: Label, seed: Label, iou: list[float], dice: list[float]) -> CVCell:
        m_iou, sd_iou = mean_sd(iou)
        m_dice, sd_dice = mean_sd(dice)
        return CVCell(fold, seed, len(iou), m_iou, sd_iou, m_dice, sd_dice)

    cells: list[CVCell] = []
    means: dict[tuple[Label, Label], CVCell] = {}
    for f in folds:
        pooled = [s for s in scores if s.fold == f]
        for sd in seeds:
            group = [s for s in pooled if s.seed == sd]
            if group:
                c = summary(f, sd, [s.miou for s in group], [s.mdice for s in group])
                means[(f, sd)] = c
                cells.append(c)
        cells.append(summary(f, ALL, [s.miou for s in pooled], [s.mdice for s in pooled]))
    for sd in seeds:
        per_fold = [c for (_, s), c in means.items() if s == sd]
        cells.append(
            summary(ALL, sd, [c.miou_mean for c in per_fold], [c.mdice_mean for c in per_fold])
        )
    every = list(means.values())
    cells.append(summary(ALL, ALL, [c.miou_mean for c in every], [c.mdice_mean for c in every]))
    return CVTable(folds=folds, seeds=seeds, cells=tuple(cells))
