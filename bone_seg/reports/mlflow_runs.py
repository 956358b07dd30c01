"""Read the fit runs of a sweep from MLflow and turn them into report records.

The records a fit run leaves are the contract in ``docs/development.md`` ("MLflow records of a
fit"): tags ``bone_seg.sweep, fold, seed, arch, encoder, patch_size, mode, experiment``; the param
``data.batch_size``; metrics ``test/miou``, ``test/<scan_id>/miou``, ``test/<scan_id>/mdice``,
``complexity/flops_batch``, ``complexity/params``, ``resources/peak_vram_gb``,
``resources/gpu_util_mean_pct``, ``resources/fit_time_s``; and the artifact ``test_scores.json``.
Per-scan scores come from the artifact when the run has it, otherwise from the per-scan metrics.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bone_seg.errors import BoneSegError
from bone_seg.metrics.mlflow_store import sqlite_path
from bone_seg.records import (
    FIT_TIME,
    FLOPS,
    GPU_UTIL,
    PARAMS,
    PARENT_TAG,
    PEAK_VRAM,
    REPORT_TAG,
    SCORES_ARTIFACT,
    SWEEP_PARENT_TAG,
    SWEEP_TAG,
    TEST_PREFIX,
)
from bone_seg.reports.cv_table import ScanScore, label, score_value
from bone_seg.reports.ranking import ConfigResult

DEFAULT_TRACKING_URI = "sqlite:///bone_seg_out/mlflow.db"
FINISHED = "FINISHED"

BATCH_SIZE_PARAM = "data.batch_size"
MIOU_METRIC = f"{TEST_PREFIX}miou"
# Per-scan metric names; ``mean_iou``/``mean_dice`` (the names bone-iou's score_metrics gives
# under a prefix) are read as aliases so a fit logging through that helper is understood too.
_SCAN_MIOU = re.compile(r"^test/(?P<scan>.+)/(?P<name>miou|mean_iou)$")
_DICE_FOR = {"miou": "mdice", "mean_iou": "mean_dice"}


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


@dataclass
class SweepRuns:
    """The finished fit runs selected from one experiment, with the client that found them."""

    client: object  # mlflow.MlflowClient
    tracking_uri: str
    experiment_id: str
    experiment_name: str
    selection: str  # what was selected, for messages and report titles
    runs: list  # list[mlflow.entities.Run]


def _search(client, experiment_id: str, filter_string: str = "") -> list:
    from mlflow.entities import ViewType

    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, ViewType.ACTIVE_ONLY,
                                  max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _quoted(value: str, what: str) -> str:
    if "'" in value:
        raise BoneSegError(f"{what}={value!r}: a name with a single quote cannot be searched")
    return f"'{value}'"


def check_database(tracking_uri: str) -> None:
    """Refuse a ``sqlite:///`` URI whose database file does not exist.

    MLflow would silently create an empty database there; a report would then only say that the
    experiment is missing, hiding the real mistake (a wrong ``paths.root`` or tracking URI).

    Raises:
        BoneSegError: the database file is missing.
    """
    path = sqlite_path(tracking_uri)
    if path is not None:
        if not path.is_file():
            raise BoneSegError(
                f"no MLflow database at {path} (logger.tracking_uri={tracking_uri}); run a fit "
                "first, or point paths.root=... or logger.tracking_uri=... at the sweep's database"
            )


def sweep_names(client, experiment_id: str) -> list[str]:
    """The ``bone_seg.sweep`` tag values of the fit runs of an experiment, sorted."""
    runs = _search(client, experiment_id)
    return sorted({r.data.tags[SWEEP_TAG] for r in runs
                   if SWEEP_TAG in r.data.tags and not is_bookkeeping(r)})


def is_bookkeeping(run) -> bool:
    """A report's run or a sweep's parent run: never read as a fit."""
    return REPORT_TAG in run.data.tags or SWEEP_PARENT_TAG in run.data.tags


def fetch_runs(
    tracking_uri: str = DEFAULT_TRACKING_URI,
    experiment_name: str = "bone_seg",
    sweep: str | None = None,
    parent_run: str | None = None,
) -> SweepRuns:
    """Select the FINISHED fit runs of a sweep (or of a parent run, or of the whole experiment).

    Report runs (tag ``bone_seg.report``), sweeps' parent runs (tag ``bone_seg.sweep_parent``)
    and runs that are parents of other selected runs are left out.

    Args:
        tracking_uri: the MLflow tracking URI (``${logger.tracking_uri}``).
        experiment_name: the MLflow experiment holding the runs.
        sweep: select runs tagged ``bone_seg.sweep=<sweep>``.
        parent_run: otherwise, select the child runs of this MLflow run id.

    Raises:
        BoneSegError: unknown experiment (the message lists those present), unknown sweep (lists
            the sweeps present), no child runs, or no FINISHED run (gives the statuses found).
    """
    check_database(tracking_uri)
    client = _client(tracking_uri)
    eid = _experiment_id(client, tracking_uri, experiment_name)
    if sweep:
        runs = _search(client, eid, f'tags."{SWEEP_TAG}" = {_quoted(sweep, "sweep")}')
        selection = f"sweep {sweep!r}"
    elif parent_run:
        runs = _search(client, eid, f'tags."{PARENT_TAG}" = {_quoted(parent_run, "parent_run")}')
        selection = f"children of run {parent_run}"
    else:
        runs = _search(client, eid)
        selection = f"all runs of experiment {experiment_name!r}"
    runs = [r for r in runs if not is_bookkeeping(r)]
    if not runs:
        if sweep:
            present = sweep_names(client, eid)
            raise BoneSegError(
                f"no run of experiment {experiment_name!r} at {tracking_uri} is tagged "
                f"{SWEEP_TAG}={sweep!r}; sweeps present: {', '.join(present) or 'none'}"
            )
        raise BoneSegError(f"no runs found ({selection}) at {tracking_uri}")
    parents = {r.data.tags.get(PARENT_TAG) for r in runs}
    runs = [r for r in runs if r.info.run_id not in parents]
    finished = [r for r in runs if r.info.status == FINISHED]
    if not finished:
        states = Counter(r.info.status for r in runs)
        raise BoneSegError(
            f"{selection}: no FINISHED run ({', '.join(f'{n} {s}' for s, n in states.items())}); "
            "wait for the sweep to finish or rerun the failed runs"
        )
    finished.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
    return SweepRuns(client, tracking_uri, eid, experiment_name, selection, finished)


def _experiment_id(client, tracking_uri: str, experiment_name: str) -> str:
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise BoneSegError(
            f"experiment {experiment_name!r} not found at {tracking_uri}; experiments present: "
            f"{', '.join(names) or 'none'} (set logger.experiment_name=..., or "
            "logger.tracking_uri=... to read another database)"
        )
    return exp.experiment_id


def _tag(run, key: str) -> str:
    value = run.data.tags.get(key)
    if value is None or value == "":
        raise BoneSegError(f"run {run.info.run_id}: missing tag {key!r} (see 'MLflow records of "
                           "a fit' in docs/development.md)")
    return value


def _metric(run, key: str, required: bool = True) -> float | None:
    value = run.data.metrics.get(key)
    if value is None or math.isnan(value):
        if required:
            raise BoneSegError(f"run {run.info.run_id}: missing metric {key!r}")
        return None
    return float(value)


@contextmanager
def _no_artifact_bars():
    """Silence MLflow's per-file download bar (one bar per run would flood the terminal)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _artifact_records(client, run) -> list | None:
    """The parsed ``test_scores.json`` of ``run``, or None when the run has no such artifact."""
    run_id = run.info.run_id
    if SCORES_ARTIFACT not in {f.path for f in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as tmp, _no_artifact_bars():
        path = Path(client.download_artifacts(run_id, SCORES_ARTIFACT, tmp))
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise BoneSegError(f"run {run_id}: {SCORES_ARTIFACT} is not valid JSON ({err})") \
                from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BoneSegError(f"run {run_id}: {SCORES_ARTIFACT} must be a list of per-scan objects")
    return records


def run_scan_scores(client, run) -> list[ScanScore]:
    """The per-scan test scores of one fit run (artifact first, metrics otherwise).

    Raises:
        BoneSegError: a missing tag, key or metric; or fold/seed in the artifact disagreeing with
            the run's tags. The message names the run id and the key.
    """
    run_id = run.info.run_id
    fold, seed = label(_tag(run, "fold")), label(_tag(run, "seed"))
    records = _artifact_records(client, run)
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


def _run_miou(client, run) -> float:
    """The configuration's mIoU: the mean of its test scans' mIoU (as the paper), else test/miou."""
    per_scan = any(_SCAN_MIOU.match(k) for k in run.data.metrics) or SCORES_ARTIFACT in {
        f.path for f in client.list_artifacts(run.info.run_id)
    }
    if per_scan:
        scores = run_scan_scores(client, run)
        return math.fsum(s.miou for s in scores) / len(scores)
    value = _metric(run, MIOU_METRIC)
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
    arch, encoder, patch = (_tag(run, k) for k in ("arch", "encoder", "patch_size"))
    name = f"{arch} | {encoder} | {patch} px"
    if with_mode:
        name += f" | {run.data.tags.get('mode')}"
    batch = run.data.params.get(BATCH_SIZE_PARAM)
    if batch is None:
        raise BoneSegError(f"run {run_id}: missing param {BATCH_SIZE_PARAM!r}")
    return ConfigResult.from_mapping({
        "name": name, "arch": arch, "encoder": encoder, "patch_size": label(patch),
        "miou": _run_miou(client, run),
        "batch_size": batch,
        "gpu_util": _metric(run, GPU_UTIL, required=False),
        "flops": _metric(run, FLOPS),
        "params": _metric(run, PARAMS),
        "vram": _metric(run, PEAK_VRAM, required=False),
        "fit_time": _metric(run, FIT_TIME),
    }, where=f"run {run_id}")
