"""How the ranking moves with the mIoU weight: the top configurations at each weight (a table and
CSV rows; the figure is :func:`bone_seg.reports.plots.sensitivity_figure`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bone_seg.reports.ranking import (
    EFFICIENCY_KEYS,
    SENSITIVITY_MIOU_WEIGHTS,
    ConfigResult,
    RankedConfig,
    Ranking,
    as_config_results,
    md_escape,
    metric_title,
    paper_weights,
    rank_configs,
)
from bone_seg.table import markdown_table


@dataclass(frozen=True)
class SensitivityRow:
    """The top configurations under one mIoU weight (a row of Table 7)."""

    miou_weight: float
    efficiency_weight: float  # per efficiency metric, as requested: (1 − w)/6
    ranking: Ranking
    top: tuple[RankedConfig, ...]

    @property
    def effective_efficiency_weight(self) -> float:
        """The weight per measured efficiency metric after dropping unmeasured ones."""
        kept = [k for k in EFFICIENCY_KEYS if k not in self.ranking.dropped]
        return self.ranking.weights[kept[0]] if kept else 0.0


def sensitivity(
    configs: Iterable[ConfigResult | Mapping[str, object]],
    miou_weights: Sequence[float] = SENSITIVITY_MIOU_WEIGHTS,
    top: int = 3,
    missing: str = "drop",
) -> list[SensitivityRow]:
    """Rank under each mIoU weight ``w`` (efficiency weights ``(1 − w)/6``); keep the top ``top``.

    Raises:
        BoneSegError: as :func:`rank_configs`, or an mIoU weight outside [0, 1].
    """
    configs = as_config_results(configs)
    out = []
    for w in miou_weights:
        weights = paper_weights(float(w))
        ranking = rank_configs(configs, weights, missing=missing)
        out.append(SensitivityRow(float(w), weights["batch_size"], ranking,
                                  tuple(ranking.top(top))))
    return out


def sensitivity_markdown(
    rows: Sequence[SensitivityRow], title: str | None = None, level: int = 1
) -> str:
    """Table 7's layout: mIoU weight, efficiency weight per metric, the top models with scores.

    ``level`` is the Markdown heading level of ``title``.
    """
    headers = ["mIoU weight", "Efficiency weight per metric", "Top models (weighted score)"]
    table_rows = []
    for r in rows:
        k = len(EFFICIENCY_KEYS) - len(r.ranking.dropped)
        eff = f"{r.efficiency_weight:.4f}" if r.efficiency_weight else "0"
        if r.ranking.dropped and r.efficiency_weight > 0:
            eff += f" → {r.effective_efficiency_weight:.4f} ({k} measured)"
        for i, t in enumerate(r.top):
            first = i == 0
            table_rows.append([f"{r.miou_weight:.2f}" if first else "", eff if first else "",
                               f"{t.rank}. {md_escape(t.name)} ({t.score:.4f})"])
    head = [f"{'#' * level} {title}", ""] if title else []
    notes = ["- Efficiency weight per metric = (1 − mIoU weight)/6, as the paper's Table 7."]
    if rows and rows[0].ranking.dropped:
        dropped = ", ".join(metric_title(k) for k in rows[0].ranking.dropped)
        notes.append(f"- Not measured, dropped for every weight ({dropped}): the remaining "
                     "efficiency metrics share 1 − mIoU weight (the value after the arrow).")
    notes.append("- Ties share a rank; every model ranked within the top places is listed.")
    table = markdown_table(headers, table_rows, align="rrl")
    return "\n".join(head + notes + ["", table]) + "\n"


def sensitivity_csv_rows(rows: Sequence[SensitivityRow]) -> list[dict[str, object]]:
    """One row per weight and listed model, columns :data:`SENSITIVITY_CSV_FIELDS`."""
    return [
        {"miou_weight": r.miou_weight, "efficiency_weight": r.efficiency_weight,
         "rank": t.rank, "name": t.name, "score": t.score}
        for r in rows for t in r.top
    ]
