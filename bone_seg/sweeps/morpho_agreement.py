"""``bone-morpho sweep=<name>``: what a sweep's segmentation errors do to the measures.

The sweep's FINISHED fit runs are read from MLflow as ``bone-report`` reads them
(:func:`bone_seg.tracking.runs.fetch_runs`; ``seed=`` keeps one seed). Each run's test
scans are those of its ``test_scores.json``; their references are the masks of the store the run
recorded as its dataset input (``store_path=`` when it recorded none). A fit keeps its test-fold
predictions only with ``test.keep_predictions=true`` (``<run dir>/test_predictions/<scan>.zarr``);
otherwise the scan is predicted again with the run's best weights (the run directory's, else its
artifact) and its ``test.*`` settings through :func:`bone_seg.inference.predict_scan` — the same
labels the fit scored, since prediction is bitwise reproducible on one device type — into
``<out>/predictions/<run name>/<scan>.zarr``. Reference and prediction are measured as
``bone-morpho`` measures them (each reference once), without thickness maps; the agreement goes
to :mod:`bone_seg.sweeps.agreement_files` and, as the CV report does, to an MLflow run
``report-morpho-<sweep>`` tagged ``bone_seg.report=morpho``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml
from omegaconf import DictConfig
from tqdm import tqdm

from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.labels_path import labels_array
from bone_seg.inference.output import is_complete
from bone_seg.measuring.morpho import open_volumes, options_from, voxel_size_option
from bone_seg.morphometry.agreement import compare
from bone_seg.morphometry.analysis import ScanAnalysis
from bone_seg.morphometry.measures import scan_measures, units
from bone_seg.morphometry.source import resolve_voxel_size
from bone_seg.reports.run_scores import run_scan_scores
from bone_seg.sweeps.agreement_files import write_agreement
from bone_seg.sweeps.weights import best_weights as _weights
from bone_seg.sweeps.weights import selected_runs as _selected
from bone_seg.tracking.publish import log_report_run
from bone_seg.tracking.records import MORPHO_REPORT
from bone_seg.tracking.runs import fetch_runs

log = logging.getLogger(__name__)

#: the fit's ``test.*`` parameters that set how its test scans were predicted
TEST_SETTINGS = ("overlap", "blending", "threshold", "batch_size")


def _store(client, run, fallback: str) -> Path:
    """The store a fit recorded as its dataset input (a ``file:`` URI), else ``fallback``."""
    inputs = getattr(client.get_run(run.info.run_id), "inputs", None)
    for item in getattr(inputs, "dataset_inputs", None) or []:
        try:
            uri = json.loads(item.dataset.source).get("uri", "")
        except (TypeError, ValueError, AttributeError):
            continue
        if uri.startswith("file:"):
            return Path(unquote(urlparse(uri).path))
    return Path(fallback)


def _settings(run, device: str) -> PredictSettings:
    """The fit's test-fold prediction settings (its ``test.*`` parameters)."""
    node = {k: yaml.safe_load(run.data.params[f"test.{k}"]) for k in TEST_SETTINGS
            if f"test.{k}" in run.data.params}
    return PredictSettings.from_config(node, device=device, progress=False)


class _Sweep:
    """One sweep's measuring: predictions found or made, references measured once."""

    def __init__(self, cfg: DictConfig, client):
        self.cfg, self.client = cfg, client
        self.out = Path(cfg.out)
        self.options = options_from(cfg)
        self.references: dict[tuple, dict] = {}
        self.kept = self.predicted = 0

    def prediction(self, run, scan: str, store: Path) -> Path:
        kept = Path(run.data.tags.get("output_dir", "")) / "test_predictions" / f"{scan}.zarr"
        if is_complete(kept):
            self.kept += 1
            return labels_array(kept)
        target = self.out / "predictions" / (run.info.run_name or run.info.run_id) / f"{scan}.zarr"
        predict_scan(_weights(self.client, run, self.out), scan, target, store_path=store,
                     settings=_settings(run, str(self.cfg.device)))
        self.predicted += 1
        return labels_array(target)

    def _values(self, volume, size) -> dict:
        analysis = ScanAnalysis(volume, size, self.options)
        analysis.first_pass()
        if self.options.thickness:
            analysis.second_pass(None)
        return scan_measures(analysis.result, self.options.bone_label, self.options.pore_label)

    def compare(self, run, score) -> list[dict]:
        store = _store(self.client, run, str(self.cfg.store_path))
        reference = store / "scans" / score.scan / "mask"
        prediction = self.prediction(run, score.scan, store)
        volumes = open_volumes({"reference": str(reference), "prediction": str(prediction)})
        size = resolve_voxel_size(voxel_size_option(self.cfg), list(volumes.values()))
        key = (str(reference), size)
        if key not in self.references:
            self.references[key] = self._values(volumes["reference"], size)
        rows = compare(self.references[key], self._values(volumes["prediction"], size),
                       units(size is not None))
        return [{"fold": score.fold, "seed": score.seed, "scan": score.scan,
                 "run_id": run.info.run_id, **row} for row in rows]


def run_sweep(cfg: DictConfig, log_to_mlflow: bool = True) -> dict:
    """Measure every test scan of the sweep's runs; write the agreement; log it to MLflow."""
    runs = fetch_runs(cfg.logger.tracking_uri, cfg.logger.experiment_name, str(cfg.sweep))
    chosen = _selected(cfg, runs)
    sweep = _Sweep(cfg, runs.client)
    rows: list[dict] = []
    for run in tqdm(chosen, desc="runs", unit="run", disable=None):
        for score in run_scan_scores(runs.client, run):
            rows.extend(sweep.compare(run, score))
    size_known = any(r["unit"] == "mm³" for r in rows)
    selection = runs.selection + (f", seed {cfg.seed}" if cfg.seed is not None else "")
    report = write_agreement(rows, units(size_known), cfg.out, cfg.name,
                             f"Morphometry agreement: {selection}")
    print(report.markdown, flush=True)
    log.info("%d runs, %d test scans: %d predictions kept by the fits, %d predicted again; "
             "wrote %s", len(chosen), len({(r["run_id"], r["scan"]) for r in rows}), sweep.kept,
             sweep.predicted, ", ".join(p.name for p in report.files))
    if log_to_mlflow:
        params = {"report.kind": MORPHO_REPORT, "report.selection": selection,
                  "report.runs": str(len(chosen)),
                  "report.scans": str(len({(r["run_id"], r["scan"]) for r in rows})),
                  "report.predictions_kept": str(sweep.kept),
                  "report.predictions_made": str(sweep.predicted)}
        run_id = log_report_run(runs.tracking_uri, runs.experiment_id,
                                f"report-{MORPHO_REPORT}-{cfg.sweep}", MORPHO_REPORT,
                                report.files, sweep=str(cfg.sweep), metrics=report.metrics,
                                params=params)
        log.info("logged the agreement to MLflow run %s (%s)", run_id, runs.tracking_uri)
    return {"summary": report.summary, "files": [str(p) for p in report.files]}
