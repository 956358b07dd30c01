"""Weighted performance/efficiency ranking of configurations (paper 2.5.3 and Table 7).

Each metric is min-max normalised over the configurations compared: ``(x − min)/(max − min)`` where
higher is better (mIoU, batch size, GPU utilisation), ``1 − (x − min)/(max − min)`` where lower is
better (FLOPs, parameters, VRAM, fitting time). The weighted score is ``Σ w_m · norm_m`` with the
paper's default weights 0.85 for mIoU and 0.025 for each of the six efficiency metrics; the
sensitivity sweep sets the mIoU weight to 1.00, 0.95, …, 0.70 and each efficiency weight to
``(1 − w)/6``.

Policies (each a documented choice, shown in the report's notes):

* **Constant metric** (max = min, which includes a single configuration): every configuration gets
  the normalised value 1.0 — they all share the best value, exactly as the best of a varying
  metric gets 1.0. This adds the same constant to every score, so the ranking is the one the other
  metrics give, and scores keep the paper's scale (an ideal configuration scores 1.0; a single
  configuration scores 1.0). 0.0 would rank identically but would cap every score below 1.
* **Missing metric** (``None``/NaN, e.g. GPU utilisation and VRAM of a CPU run), ``missing=``:
  ``"drop"`` (default) drops that metric's term for *all* configurations (a term is compared
  across every configuration or not at all) and rescales the remaining efficiency weights in
  proportion so they still sum to the requested total efficiency weight (1 − w_mIoU); ``"error"``
  refuses. A missing mIoU is always an error. A missing value is never read as zero.
* **Ties**: scores equal to :data:`TIE_DECIMALS` decimal places share a rank (competition
  ranking: 1, 1, 3) and are listed by name. A "top three" lists every configuration whose rank is
  at most three, so a tie at third place shows all tied configurations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bone_seg.errors import BoneSegError
from bone_seg.table import markdown_table


@dataclass(frozen=True)
class Metric:
    """A metric of the weighted score."""

    key: str
    title: str
    higher_is_better: bool


METRICS: tuple[Metric, ...] = (
    Metric("miou", "mIoU", True),
    Metric("batch_size", "batch size", True),
    Metric("gpu_util", "GPU utilisation (%)", True),
    Metric("flops", "FLOPs", False),
    Metric("params", "parameters", False),
    Metric("vram", "VRAM (GB)", False),
    Metric("fit_time", "fitting time (s)", False),
)
METRIC_KEYS = tuple(m.key for m in METRICS)
EFFICIENCY_KEYS = METRIC_KEYS[1:]
DEFAULT_MIOU_WEIGHT = 0.85
SENSITIVITY_MIOU_WEIGHTS: tuple[float, ...] = tuple(round(1.0 - 0.05 * i, 2) for i in range(7))
MISSING_POLICIES = ("drop", "error")
CONSTANT_NORMALISED = 1.0  # the normalised value of a metric equal for every configuration
TIE_DECIMALS = 12  # scores equal to this many decimals are ties (float sums differ by ulps)
WEIGHT_SUM_TOL = 1e-6

RANKING_CSV_FIELDS = (
    ("rank", "name", "arch", "encoder", "patch_size", "score")
    + METRIC_KEYS
    + tuple(f"norm_{k}" for k in METRIC_KEYS)
)
SENSITIVITY_CSV_FIELDS = ("miou_weight", "efficiency_weight", "rank", "name", "score")


def paper_weights(miou_weight: float = DEFAULT_MIOU_WEIGHT) -> dict[str, float]:
    """The paper's weights: ``miou_weight`` for mIoU, ``(1 − miou_weight)/6`` for each other."""
    if not 0.0 <= miou_weight <= 1.0:
        raise BoneSegError(f"the mIoU weight must lie in [0, 1], got {miou_weight}")
    eff = (1.0 - miou_weight) / len(EFFICIENCY_KEYS)
    return {"miou": miou_weight, **{k: eff for k in EFFICIENCY_KEYS}}


def _value(value: object, where: str) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BoneSegError(f"{where} is {value!r}, not a number") from None
    if math.isnan(v):
        return None
    if math.isinf(v):
        raise BoneSegError(f"{where} is {v}, not a finite number")
    return v


@dataclass(frozen=True)
class ConfigResult:
    """The results of one configuration; ``None`` marks a metric that was not measured."""

    name: str
    miou: float | None
    batch_size: float | None
    gpu_util: float | None
    flops: float | None
    params: float | None
    vram: float | None
    fit_time: float | None
    arch: str | None = None
    encoder: str | None = None
    patch_size: int | str | None = None

    @classmethod
    def from_mapping(cls, record: Mapping[str, object], where: str = "record") -> ConfigResult:
        """Build from a mapping with the fields of this class (absent metrics are ``None``).

        ``name`` defaults to ``"<arch> | <encoder> | <patch_size> px"``.

        Raises:
            BoneSegError: no name (nor arch/encoder/patch size), or a metric is not a number.
        """
        name = record.get("name")
        if not name:
            parts = [record.get(k) for k in ("arch", "encoder", "patch_size")]
            if any(p is None for p in parts):
                raise BoneSegError(f"{where}: give 'name' or all of 'arch', 'encoder', "
                                   "'patch_size'")
            name = f"{parts[0]} | {parts[1]} | {parts[2]} px"
        metrics = {k: _value(record.get(k), f"{where} ({name}): {k!r}") for k in METRIC_KEYS}
        ps = record.get("patch_size")
        if isinstance(ps, str) and ps.strip().isdigit():
            ps = int(ps)
        return cls(
            name=str(name),
            arch=None if record.get("arch") is None else str(record["arch"]),
            encoder=None if record.get("encoder") is None else str(record["encoder"]),
            patch_size=ps,  # type: ignore[arg-type]
            **metrics,
        )

    def metric(self, key: str) -> float | None:
        """The raw value of metric ``key``."""
        return getattr(self, key)


def normalise(values: Sequence[float], higher_is_better: bool) -> list[float]:
    """Min-max normalise ``values`` (``1 − …`` when lower is better).

    A constant metric (max = min) gives :data:`CONSTANT_NORMALISED` for every value.
    """
    lo, hi = min(values), max(values)
    if hi == lo:
        return [CONSTANT_NORMALISED] * len(values)
    scaled = [(v - lo) / (hi - lo) for v in values]
    return scaled if higher_is_better else [1.0 - s for s in scaled]


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Validate weights: known metric names, non-negative, summing to 1.

    Metrics left out get weight 0.

    Raises:
        BoneSegError: an unknown name, a negative weight, or a sum other than 1.
    """
    unknown = sorted(set(weights) - set(METRIC_KEYS))
    if unknown:
        raise BoneSegError(
            f"unknown ranking weight(s) {', '.join(unknown)}; valid: {', '.join(METRIC_KEYS)}"
        )
    out = {k: float(weights.get(k, 0.0)) for k in METRIC_KEYS}
    negative = [k for k, w in out.items() if w < 0]
    if negative:
        raise BoneSegError(f"ranking weights must be >= 0; negative: {', '.join(negative)}")
    total = math.fsum(out.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise BoneSegError(
            f"ranking weights must sum to 1 (the score is a weighted mean), they sum to "
            f"{total:.6g}: {out}. Set the mIoU weight alone to get (1 − w)/6 for each of the "
            "six efficiency metrics"
        )
    return out


@dataclass(frozen=True)
class RankedConfig:
    """One configuration's place in a ranking."""

    rank: int
    config: ConfigResult
    score: float
    normalised: Mapping[str, float]  # metric -> normalised value (dropped metrics absent)

    @property
    def name(self) -> str:
        """The configuration's name."""
        return self.config.name


@dataclass(frozen=True)
class Ranking:
    """A full ranking with the weights actually used and what the policies did."""

    rows: tuple[RankedConfig, ...]
    requested_weights: Mapping[str, float]
    weights: Mapping[str, float]  # effective: dropped metrics 0, the others rescaled
    dropped: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # metric -> configs
    constant: tuple[str, ...] = ()  # metrics equal for every configuration
    missing: str = "drop"

    def top(self, k: int = 3) -> list[RankedConfig]:
        """Every configuration ranked ``k`` or better (ties at the boundary all included)."""
        return [r for r in self.rows if r.rank <= k]

    def notes(self) -> list[str]:
        """Plain sentences stating the weights and every policy that applied."""
        w = self.weights
        used = ", ".join(f"{metric_title(k)} {w[k]:.4g}" for k in METRIC_KEYS
                         if k not in self.dropped)
        notes = [
            "Score = Σ weight × min-max normalised metric; higher is better for mIoU, batch "
            "size and GPU utilisation, lower is better (1 − normalised) for FLOPs, parameters, "
            f"VRAM and fitting time. Weights used: {used}."
        ]
        for k, names in self.dropped.items():
            which = (f"any of the {len(names)} configurations (e.g. CPU runs)"
                     if len(names) == len(self.rows) else
                     f"{len(names)} of {len(self.rows)} configurations ({_names(names)}; e.g. "
                     "CPU runs)")
            notes.append(
                f"{metric_title(k)} not measured for {which}: term dropped for all, "
                "its weight "
                f"{self.requested_weights[k]:.4g} spread over the remaining efficiency metrics "
                f"in proportion (missing={self.missing})."
            )
        if self.constant:
            notes.append(
                f"Equal for every configuration (max = min, normalised to "
                f"{CONSTANT_NORMALISED:g} for all; the ranking is unaffected): "
                f"{', '.join(metric_title(k) for k in self.constant)}."
            )
        notes.append(
            f"Ties: scores equal to {TIE_DECIMALS} decimals share a rank and are listed by name."
        )
        return notes

    def csv_rows(self) -> list[dict[str, object]]:
        """One row per configuration, columns :data:`RANKING_CSV_FIELDS`."""
        rows = []
        for r in self.rows:
            c = r.config
            row: dict[str, object] = {
                "rank": r.rank, "name": c.name, "arch": c.arch, "encoder": c.encoder,
                "patch_size": c.patch_size, "score": r.score,
            }
            row.update({k: c.metric(k) for k in METRIC_KEYS})
            row.update({f"norm_{k}": r.normalised.get(k) for k in METRIC_KEYS})
            rows.append(row)
        return rows

    def markdown(self, title: str | None = None) -> str:
        """The full ranking as Markdown, notes first."""
        headers = ["Rank", "Model", "Score", "mIoU", "Batch", "GPU util %", "FLOPs", "Params",
                   "VRAM GB", "Fit time s"]
        rows = [
            [r.rank, md_escape(r.name), f"{r.score:.4f}", f"{r.config.miou:.4f}"]
            + [_fmt(r.config.metric(k)) for k in EFFICIENCY_KEYS]
            for r in self.rows
        ]
        head = [f"# {title}", ""] if title else []
        notes = [f"- {n}" for n in self.notes()]
        table = markdown_table(headers, rows, align="rlrrrrrrrr")
        return "\n".join(head + notes + ["", table]) + "\n"


def md_escape(text: str) -> str:
    """Escape ``|`` so a name like "U-Net | ResNet-18 | 256 px" stays in one Markdown cell."""
    return text.replace("|", "\\|")


def metric_title(key: str) -> str:
    return next(m.title for m in METRICS if m.key == key)


def _names(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.0f}" if float(v).is_integer() and abs(v) < 1e6 else f"{v:.4g}"


def as_config_results(configs: Iterable[ConfigResult | Mapping[str, object]]) -> list[ConfigResult]:
    """Turn mappings into :class:`ConfigResult`, refusing an empty list and duplicate names.

    Raises:
        BoneSegError: no configurations, a bad record, or two configurations with one name.
    """
    out = [
        c if isinstance(c, ConfigResult) else ConfigResult.from_mapping(c, where=f"record {i}")
        for i, c in enumerate(configs)
    ]
    if not out:
        raise BoneSegError("no configurations to rank")
    names = [c.name for c in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BoneSegError(
            f"configuration name(s) appear more than once: {', '.join(dup)}; rank one run per "
            "configuration (select a single sweep, or give the runs distinct names)"
        )
    return out


def effective_weights(
    weights: Mapping[str, float], dropped: Iterable[str]
) -> dict[str, float]:
    """Weights with ``dropped`` metrics at 0 and the other efficiency weights rescaled.

    The remaining efficiency weights keep their proportions and again sum to the requested
    total efficiency weight (1 − w_mIoU).

    Raises:
        BoneSegError: efficiency weight is requested but every weighted efficiency metric is
            dropped.
    """
    dropped = set(dropped)
    out = {k: (0.0 if k in dropped else float(weights[k])) for k in METRIC_KEYS}
    requested = math.fsum(weights[k] for k in EFFICIENCY_KEYS)
    kept = math.fsum(out[k] for k in EFFICIENCY_KEYS)
    if requested > 0 and kept == 0:
        raise BoneSegError(
            f"efficiency weight {requested:.4g} cannot be kept: no weighted efficiency metric "
            f"was measured (dropped: {', '.join(sorted(dropped))}); rank on mIoU alone "
            "(mIoU weight 1) or give weight to a measured metric"
        )
    if kept > 0:
        for k in EFFICIENCY_KEYS:
            out[k] *= requested / kept
    return out


def rank_configs(
    configs: Iterable[ConfigResult | Mapping[str, object]],
    weights: Mapping[str, float] | None = None,
    missing: str = "drop",
) -> Ranking:
    """Score and rank configurations by the paper's weighted score (see the module docstring).

    Args:
        configs: one per configuration (:class:`ConfigResult` or mappings of its fields).
        weights: metric -> weight, summing to 1 (default: :func:`paper_weights`).
        missing: policy for unmeasured efficiency metrics: ``"drop"`` or ``"error"``.

    Returns:
        The ranking, best first; equal scores share a rank and are ordered by name.

    Raises:
        BoneSegError: bad weights or policy, a missing mIoU, a missing efficiency metric under
            ``missing="error"``, duplicate names, or no configurations.
    """
    if missing not in MISSING_POLICIES:
        raise BoneSegError(f"missing={missing!r} is not a policy; use one of "
                           f"{', '.join(MISSING_POLICIES)}")
    configs = as_config_results(configs)
    requested = check_weights(paper_weights() if weights is None else weights)
    dropped: dict[str, tuple[str, ...]] = {}
    for k in METRIC_KEYS:
        lacking = tuple(c.name for c in configs if c.metric(k) is None)
        if not lacking:
            continue
        if k == "miou" or missing == "error":
            raise BoneSegError(
                f"{metric_title(k)} ({k!r}) is missing for {_names(lacking)}"
                + ("" if k == "miou" else
                   "; with missing=drop the term is dropped and its weight spread over the "
                   "other efficiency metrics")
            )
        dropped[k] = lacking
    used = effective_weights(requested, dropped)
    kept = [k for k in METRIC_KEYS if k not in dropped]
    norm = {
        m.key: normalise([c.metric(m.key) for c in configs], m.higher_is_better)  # type: ignore[misc]
        for m in METRICS if m.key in kept
    }
    constant = tuple(k for k in kept if len({c.metric(k) for c in configs}) == 1)
    scored = []
    for i, c in enumerate(configs):
        n = {k: norm[k][i] for k in kept}
        scored.append((math.fsum(used[k] * n[k] for k in kept), c, n))
    scored.sort(key=lambda t: (-round(t[0], TIE_DECIMALS), t[1].name))
    rows: list[RankedConfig] = []
    for pos, (score, c, n) in enumerate(scored, 1):
        tie = rows and round(rows[-1].score, TIE_DECIMALS) == round(score, TIE_DECIMALS)
        rows.append(RankedConfig(rows[-1].rank if tie else pos, c, score, n))
    return Ranking(tuple(rows), requested, used, dropped, constant, missing)
