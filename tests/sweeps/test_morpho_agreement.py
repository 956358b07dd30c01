"""bone-morpho sweep=... seed=... over fit runs made directly in a temporary MLflow store (as a
fit records them): a run that kept its test predictions is measured on them, a run that did not is
predicted again with its best weights (an artifact) and its test settings; the tables equal the
measures recomputed here, the limits of agreement the formula; one Bland–Altman plot per measure;
the agreement is logged as report-morpho-<sweep>."""

import csv
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from inference_helpers import save_model

from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.labels_path import labels_array
from bone_seg.io.store import DatasetStore
from bone_seg.morphometry import Options, analyze, scan_measures
from bone_seg.tracking.morpho_names import metric_name
from bone_seg.tracking.store import ensure_experiment

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")
SETTINGS = {"overlap": 0.25, "blending": "gaussian", "threshold": 0.5, "batch_size": 8}


def _settings(**changes):
    return PredictSettings(**{**SETTINGS, **changes}, device="cpu", progress=False)


def _fit_run(client, eid, tmp, *, fold, seed, scans, output_dir, weights=None, store=None):
    tags = {"bone_seg.sweep": "cvt", "fold": str(fold), "seed": str(seed), "arch": "unet",
            "encoder": "resnet18", "patch_size": "32", "mode": "2.5d", "experiment": "t",
            "output_dir": str(output_dir)}
    run = client.create_run(eid, run_name=f"unet-f{fold}-s{seed}", tags=tags)
    run_id = run.info.run_id
    for key, value in SETTINGS.items():
        client.log_param(run_id, f"test.{key}", value)
    scores = tmp / run_id / "test_scores.json"
    scores.parent.mkdir(parents=True)
    scores.write_text(json.dumps([{"scan": s, "fold": fold, "seed": seed, "miou": 0.5,
                                   "mdice": 0.6} for s in scans]))
    client.log_artifact(run_id, str(scores))
    if weights is not None:
        client.log_artifact(run_id, str(weights))
    if store is not None:
        from mlflow.entities import Dataset, DatasetInput

        source = json.dumps({"uri": Path(store).resolve().as_uri()})
        client.log_inputs(run_id, datasets=[DatasetInput(Dataset(
            name="store", digest="d", source_type="local", source=source))])
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _measures(labels_path, voxel):
    return scan_measures(analyze(str(labels_path), voxel, Options(progress=False)))


def test_sweep_agreement(tmp_path, tiny_store):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    eid = ensure_experiment(uri, "bone_seg")
    client = mlflow.MlflowClient(uri)
    run_a = tmp_path / "run_a"  # kept its prediction (made with another threshold, to tell)
    weights = save_model(tmp_path / "best.safetensors", "2.5d", patch=32)
    kept = run_a / "test_predictions" / "tiny_01.zarr"
    predict_scan(weights, "tiny_01", kept, store_path=tiny_store, settings=_settings(threshold=0.9))
    a = _fit_run(client, eid, tmp_path, fold=1, seed=42, scans=["tiny_01"], output_dir=run_a,
                 store=tiny_store)
    b = _fit_run(client, eid, tmp_path, fold=2, seed=42, scans=["tiny_03", "tiny_04"],
                 output_dir=tmp_path / "gone", weights=weights)
    _fit_run(client, eid, tmp_path, fold=1, seed=7, scans=["tiny_05"], output_dir=tmp_path / "x")
    out = tmp_path / "agreement"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BONE_SEG_ROOT", None)
    cmd = [sys.executable, "-c", "from bone_seg.cli.morpho import main; main()",
           f"paths.root={tmp_path / 'root'}", f"logger.tracking_uri={uri}", "sweep=cvt",
           f"store_path={tiny_store}", "device=cpu", f"out={out}"]
    r = subprocess.run([*cmd, "seed=42"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    store = DatasetStore(tiny_store)
    expected = {}
    for scan in ("tiny_01", "tiny_03", "tiny_04"):
        pred = tmp_path / "check" / f"{scan}.zarr"
        if scan != "tiny_01":  # predicted again: the run's settings give the fit's labels
            predict_scan(weights, scan, pred, store_path=tiny_store, settings=_settings())
        labels = labels_array(kept if scan == "tiny_01" else pred)
        voxel = [float(store.open_scan(scan).attrs["voxel_size"])] * 3
        expected[scan] = (_measures(tiny_store / "scans" / scan / "mask", voxel),
                          _measures(labels, voxel))
    rows = list(csv.DictReader((out / "morpho_agreement_scans.csv").open()))
    assert {(r["run_id"], r["scan"]) for r in rows} == {(a, "tiny_01"), (b, "tiny_03"),
                                                        (b, "tiny_04")}
    for row in rows:
        ref, pred = expected[row["scan"]]
        name = row["measure"]
        if ref[name] is None or pred[name] is None:
            assert row["difference"] == ""
            continue
        assert float(row["reference"]) == ref[name] and float(row["prediction"]) == pred[name]
        assert float(row["difference"]) == pytest.approx(pred[name] - ref[name], abs=1e-12)
    summary = {r["measure"]: r for r in csv.DictReader((out / "morpho_agreement.csv").open())}
    for name in ("BV/TV", "B.Th", "BS/BV", "TV.vox"):
        diffs = [expected[s][1][name] - expected[s][0][name] for s in expected]
        mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
        row = summary[name]
        assert int(row["n"]) == 3
        assert float(row["mean_difference"]) == pytest.approx(mean, rel=1e-12, abs=1e-12)
        assert float(row["sd_difference"]) == pytest.approx(sd, rel=1e-9)
        assert float(row["loa_low"]) == pytest.approx(mean - 1.96 * sd, rel=1e-9, abs=1e-12)
        assert float(row["loa_high"]) == pytest.approx(mean + 1.96 * sd, rel=1e-9, abs=1e-12)
    plots = {p.name for p in (out / "bland_altman").glob("*.png")}
    assert plots == {f"{metric_name(n)}.png" for n, row in summary.items() if int(row["n"])}
    assert "BV_TV.png" in plots and "Morphometry agreement" in r.stdout
    assert not (out / "predictions" / "unet-f1-s42").exists()  # the kept one was used
    assert (out / "predictions" / "unet-f2-s42" / "tiny_03.zarr").is_dir()

    (report,) = client.search_runs([eid], "tags.`bone_seg.report` = 'morpho'")
    assert report.info.run_name == "report-morpho-cvt" and report.info.status == "FINISHED"
    assert report.data.tags["bone_seg.sweep"] == "cvt"
    m = report.data.metrics
    assert m["morpho/BV_TV/mean_difference"] == float(summary["BV/TV"]["mean_difference"])
    assert math.isclose(m["morpho/B.Th/loa_high"], float(summary["B.Th"]["loa_high"]))
    assert report.data.params["report.predictions_kept"] == "1"
    assert report.data.params["report.predictions_made"] == "2"
    arts = {f.path for f in client.list_artifacts(report.info.run_id)}
    assert {"morpho_agreement.csv", "morpho_agreement.md", "bland_altman"} <= arts
    assert "bland_altman/BV_TV.png" in {
        f.path for f in client.list_artifacts(report.info.run_id, "bland_altman")}

    r = subprocess.run([*cmd, "seed=9"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "no FINISHED run of seed=9; seeds present: 42, 7" in r.stderr
