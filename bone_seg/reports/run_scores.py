"""Turn the fit runs of a sweep (:mod:`bone_seg.tracking.runs`) into report records.

The records a fit run leaves are the contract in ``docs/development.md`` ("MLflow records of a
fit"). Per-scan scores come from the artifact ``test_scores.json`` when the run has it, otherwise
from the per-scan metrics; a configuration's record (:class:`ConfigResult`) from its tags, the
param ``data.batch_size`` and its complexity and resource metrics.
"""

from __future__ import annotations

import math
import re

from tqdm import tqdm

from bone_seg.errors import BoneSegError
from bone_seg.reports.cv_table import ScanScore, label, score_value
from bone_seg.reports.ranking import ConfigResult
from bone_seg.tracking.records import (
    FIT_TIME,
    FLOPS,
    GPU_UTIL,
    PARAMS,
    PEAK_VRAM,
    SCORES_ARTIFACT,
    SWEEP_TAG,
    TEST_PREFIX,
)
from bone_seg.tracking.runs import SweepRuns, artifact_records, has_artifact, metric, tag

BATCH_SIZE_PARAM = "data.batch_size"
MIOU_METRIC = f"{TEST_PREFIX}miou"
# Per-scan metric names; ``mean_iou``/``mean_dice`` (the names bone-iou's score_metrics gives
# under a prefix) are read as aliases so a fit logging through that helper is understood too.
_SCAN_MIOU = re.compile(r"^test/(?P<scan>.+)/(?P<name>miou|mean_iou)$")
_DICE_FOR = {"miou": "mdice", "mean_iou": "mean_dice"}


def run_scan_scores(client, run) -> list[ScanScore]:
    """The per-scan test scores of one fit run (artifact first, metrics otherwise).

    Raises:
        BoneSegError: a missing tag, key or metric; or fold/seed in the artifact disagreeing with
            the run's tags. The message names the run id and the key.
    """
    run_id = run.info.run_id
    fold, seed = label(tag(run, "fold")), label(tag(run, "seed"))
    records = artifact_records(client, run)
    out = []
    if records is not None:
        for i, rec in enumerate(records):
            where = f"run {run_id}: {SCORES_ARTIFACT} record {i}"
            for key, tagged in (("fold", fold), ("seed", seed)):
                if rec.get(key) is not None and label(rec[key]) != tagged:
                    raise BoneSegError(f"{where}: {key}={rec[key]!r} but the run is tagged "
                                       f"{key}={tagged!r}")
            out.append(ScanScore.from_mapping({**rec, "fold": fold, "seed": seed}, where=where))
        if not out:
            raise BoneSegError(f"run {run_id}: {SCORES_ARTIFACT} holds no scans")
        return out
    metrics = run.data.metrics
    for key in sorted(metrics):
        m = _SCAN_MIOU.match(key)
        if not m:
            continue
        scan = m["scan"]
        dice_key = f"test/{scan}/{_DICE_FOR[m['name']]}"
        if dice_key not in metrics:
            raise BoneSegError(f"run {run_id}: missing metric {dice_key!r} (beside {key!r})")
        out.append(ScanScore(fold, seed, scan, score_value(metrics[key], f"run {run_id}: {key}"),
                             score_value(metrics[dice_key], f"run {run_id}: {dice_key}")))
    if not out:
        raise BoneSegError(
            f"run {run_id}: no per-scan test scores: neither the artifact {SCORES_ARTIFACT!r} nor "
            "metrics 'test/<scan_id>/miou'"
        )
    return out


def cv_records(sweep: SweepRuns) -> list[ScanScore]:
    """Per-scan records of every run, for :func:`bone_seg.reports.cv_table.cv_table`.

    Raises:
        BoneSegError: two runs hold the same fold and seed (both run ids named), or as
            :func:`run_scan_scores`.
    """
    owner: dict[tuple, str] = {}
    out: list[ScanScore] = []
    for run in tqdm(sweep.runs, desc="reading runs", unit="run", disable=None):
        scores = run_scan_scores(sweep.client, run)
        key = (scores[0].fold, scores[0].seed)
        if key in owner:
            raise BoneSegError(
                f"runs {owner[key]} and {run.info.run_id} of {sweep.selection} both hold fold "
                f"{key[0]}, seed {key[1]}; delete one of them in MLflow or tag one with another "
                f"{SWEEP_TAG}"
            )
        owner[key] = run.info.run_id
        out.extend(scores)
    return out


def run_miou(client, run) -> float:
    """The configuration's mIoU: the mean of its test scans' mIoU (as the paper), else test/miou."""
    per_scan = (any(_SCAN_MIOU.match(k) for k in run.data.metrics)
                or has_artifact(client, run, SCORES_ARTIFACT))
    if per_scan:
        scores = run_scan_scores(client, run)
        return math.fsum(s.miou for s in scores) / len(scores)
    value = metric(run, MIOU_METRIC)
    assert value is not None
    return value


def config_results(sweep: SweepRuns) -> list[ConfigResult]:
    """One :class:`ConfigResult` per run, for :func:`bone_seg.reports.ranking.rank_configs`.

    Names read ``"<arch> | <encoder> | <patch_size> px"`` (with ``" | <mode>"`` when the runs
    mix modes). GPU utilisation and VRAM are ``None`` when not logged (CPU runs).

    Raises:
        BoneSegError: a missing tag, param or metric (run id and key named), or two runs of one
            configuration (both run ids named).
    """
    runs = sweep.runs
    modes = {r.data.tags.get("mode") for r in runs}
    owner: dict[str, str] = {}
    out = []
    for run in tqdm(runs, desc="reading runs", unit="run", disable=None):
        result = run_result(sweep.client, run, with_mode=len(modes) > 1)
        if result.name in owner:
            raise BoneSegError(
                f"runs {owner[result.name]} and {run.info.run_id} of {sweep.selection} are both "
                f"{result.name!r}; rank one run per configuration (delete one, or tag it with "
                f"another {SWEEP_TAG}; a sweep over folds or seeds: bone-report by=mode)"
            )
        owner[result.name] = run.info.run_id
        out.append(result)
    return out


def run_result(client, run, with_mode: bool = False) -> ConfigResult:
    """The :class:`ConfigResult` of one fit run, named ``"<arch> | <encoder> | <patch_size> px"``
    (``" | <mode>"`` appended with ``with_mode``).

    Raises:
        BoneSegError: a missing tag, param or metric (run id and key named).
    """
    run_id = run.info.run_id
    arch, encoder, patch = (tag(run, k) for k in ("arch", "encoder", "patch_size"))
    name = f"{arch} | {encoder} | {patch} px"
    if with_mode:
        name += f" | {run.data.tags.get('mode')}"
    batch = run.data.params.get(BATCH_SIZE_PARAM)
    if batch is None:
        raise BoneSegError(f"run {run_id}: missing param {BATCH_SIZE_PARAM!r}")
    return ConfigResult.from_mapping({
        "name": name, "arch": arch, "encoder": encoder, "patch_size": label(patch),
        "miou": run_miou(client, run),
        "batch_size": batch,
        "gpu_util": metric(run, GPU_UTIL, required=False),
        "flops": metric(run, FLOPS),
        "params": metric(run, PARAMS),
        "vram": metric(run, PEAK_VRAM, required=False),
        "fit_time": metric(run, FIT_TIME),
    }, where=f"run {run_id}")
