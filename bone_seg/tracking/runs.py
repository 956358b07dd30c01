"""Read the fit runs of a sweep from MLflow: select them, and read their tags, metrics and files.

The records a fit run leaves are the contract in ``docs/development.md`` ("MLflow records of a
fit"): tags ``bone_seg.sweep, fold, seed, arch, encoder, patch_size, mode, experiment``; the param
``data.batch_size``; metrics ``test/miou``, ``test/<scan_id>/miou``, ``test/<scan_id>/mdice``,
``complexity/flops_batch``, ``complexity/params``, ``resources/peak_vram_gb``,
``resources/gpu_util_mean_pct``, ``resources/fit_time_s``; and the artifact ``test_scores.json``.
Turning the runs into report records (per-scan scores, configurations) is
:mod:`bone_seg.reports.run_scores`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bone_seg.errors import BoneSegError
from bone_seg.tracking.records import (
    PARENT_TAG,
    REPORT_TAG,
    SCORES_ARTIFACT,
    SWEEP_PARENT_TAG,
    SWEEP_TAG,
)
from bone_seg.tracking.store import sqlite_path

DEFAULT_TRACKING_URI = "sqlite:///bone_seg_out/mlflow.db"
FINISHED = "FINISHED"


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


def tag(run, key: str) -> str:
    """A tag of ``run`` (refused when missing or empty, naming the run and the key)."""
    value = run.data.tags.get(key)
    if value is None or value == "":
        raise BoneSegError(f"run {run.info.run_id}: missing tag {key!r} (see 'MLflow records of "
                           "a fit' in docs/development.md)")
    return value


def metric(run, key: str, required: bool = True) -> float | None:
    """A metric of ``run`` (None when absent or NaN and not ``required``; else refused)."""
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


def has_artifact(client, run, path: str) -> bool:
    """Whether ``run`` holds the artifact ``path`` (at its root)."""
    return path in {f.path for f in client.list_artifacts(run.info.run_id)}


def artifact_records(client, run) -> list | None:
    """The parsed ``test_scores.json`` of ``run``, or None when the run has no such artifact."""
    run_id = run.info.run_id
    if not has_artifact(client, run, SCORES_ARTIFACT):
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
