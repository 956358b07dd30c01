"""MLflow round trip: fit runs logged as the contract says -> records -> bone-report files.

The runs are written here the way a fit run writes them (tags, params, metrics, the
``test_scores.json`` artifact); the report's numbers are compared with values recomputed directly
from what was logged.
"""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from bone_seg.errors import BoneSegError  # noqa: E402
from bone_seg.reports.run_scores import config_results, cv_records  # noqa: E402
from bone_seg.tracking.runs import fetch_runs  # noqa: E402

# MLflow's own SQLAlchemy use warns about a deprecated loader; nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")

CLASSES = ("background", "bone", "pores")
EXPERIMENT = "bone_seg"


def scan_scores(rng_seed, n_scans, fold, seed):
    """Per-scan records as a fit computes them: class-wise IoU, Dice per class, means per scan."""
    import random

    rng = random.Random(rng_seed)
    out = []
    for i in range(n_scans):
        iou = {c: rng.uniform(0.4, 0.999) for c in CLASSES}
        dice = {c: 2 * v / (1 + v) for c, v in iou.items()}
        out.append({"scan": f"scan_{fold}{i}", "fold": fold, "seed": seed,
                    "miou": statistics.mean(iou.values()), "mdice": statistics.mean(dice.values()),
                    "iou": iou, "dice": dice})
    return out


def log_fit_run(client, eid, tmp, *, sweep, fold=1, seed=42, scores=(), artifact=True,
                per_scan_metrics=True, arch="Unet", encoder="resnet18", patch=256, batch=64,
                resources=None, status="FINISHED", parent=None, drop_metric=None):
    """Log one fit run with the contract's tags, params, metrics and artifact."""
    tags = {"fold": str(fold), "seed": str(seed), "arch": arch, "encoder": encoder,
            "patch_size": str(patch), "mode": "2d", "experiment": "test"}
    if sweep:
        tags["bone_seg.sweep"] = sweep
    if parent:
        tags["mlflow.parentRunId"] = parent
    run_id = client.create_run(eid, tags=tags).info.run_id
    client.log_param(run_id, "data.batch_size", batch)
    metrics = dict(resources or {})
    for key in ("miou", "mdice"):
        if scores and all(s[key] is not None for s in scores):
            metrics[f"test/{key}"] = statistics.mean(s[key] for s in scores)
    if per_scan_metrics:
        for s in scores:
            metrics[f"test/{s['scan']}/miou"] = s["miou"]
            metrics[f"test/{s['scan']}/mdice"] = s["mdice"]
            for c in CLASSES:
                metrics[f"test/{s['scan']}/iou_{c}"] = s["iou"][c]
                metrics[f"test/{s['scan']}/dice_{c}"] = s["dice"][c]
    metrics.pop(drop_metric, None)
    for k, v in metrics.items():
        client.log_metric(run_id, k, v)
    if artifact and scores:
        path = Path(tmp) / run_id / "test_scores.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(list(scores)))
        client.log_artifact(run_id, str(path))
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
    return run_id


GPU = {"resources/peak_vram_gb": 7.5, "resources/gpu_util_mean_pct": 81.0}


def resources(flops, params, fit_time, gpu=None):
    return {"complexity/flops_batch": flops, "complexity/params": params,
            "resources/fit_time_s": fit_time, **(gpu or {})}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A tracking database holding the sweeps 'cv', 'grid', 'broken' and a few bad runs."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    eid = client.create_experiment(EXPERIMENT, artifact_location=str(root / "mlartifacts"))
    logged = {"cv": [], "grid": {}}
    for fold in (1, 2, 3):
        for k, seed in enumerate((42, 1701)):
            scores = scan_scores(100 * fold + k, 2 + (fold + k) % 3, fold, seed)
            # fold 1 seed 42 has no artifact: its scores come from the per-scan metrics
            log_fit_run(client, eid, root, sweep="cv", fold=fold, seed=seed, scores=scores,
                        artifact=(fold, seed) != (1, 42),
                        per_scan_metrics=(fold, seed) in ((1, 42), (2, 1701)),
                        resources=resources(1e9, 1e6, 60.0))
            logged["cv"].extend(scores)
    # unfinished runs of the sweep are ignored
    log_fit_run(client, eid, root, sweep="cv", fold=9, scores=scan_scores(9, 2, 9, 42),
                status="FAILED", resources=resources(1e9, 1e6, 60.0))
    log_fit_run(client, eid, root, sweep="cv", fold=8, scores=scan_scores(8, 2, 8, 42),
                status="RUNNING", resources=resources(1e9, 1e6, 60.0))
    grid = [
        ("Unet", "resnet18", 256, 64, resources(2.0e10, 1.4e7, 900.0, GPU)),
        ("Unet", "resnet18", 512, 32, resources(8.0e10, 1.4e7, 2400.0, GPU)),
        ("UnetPlusPlus", "efficientnet-b3", 256, 32, resources(9.0e10, 1.3e7, 7000.0, GPU)),
        ("Segformer", "mit_b1", 512, 32, resources(5.0e10, 1.4e7, 3000.0)),  # a CPU run
    ]
    for i, (arch, enc, patch, batch, res) in enumerate(grid):
        scores = scan_scores(500 + i, 4, 1, 42)
        log_fit_run(client, eid, root, sweep="grid", scores=scores, arch=arch, encoder=enc,
                    patch=patch, batch=batch, resources=res, artifact=i % 2 == 0)
        logged["grid"][f"{arch} | {enc} | {patch} px"] = {
            "miou": statistics.mean(s["miou"] for s in scores), "batch_size": batch,
            "gpu_util": res.get("resources/gpu_util_mean_pct"),
            "vram": res.get("resources/peak_vram_gb"), "flops": res["complexity/flops_batch"],
            "params": res["complexity/params"], "fit_time": res["resources/fit_time_s"]}
    log_fit_run(client, eid, root, sweep="broken", scores=scan_scores(1, 2, 1, 42),
                status="FAILED")
    yield {"root": root, "uri": uri, "client": client, "eid": eid, "logged": logged}


def independent_cv(records):
    """Table 6 arithmetic recomputed with statistics.mean / stdev."""
    out = {}
    folds = sorted({r["fold"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    cell_means = {}
    for f in folds:
        for s in seeds:
            vals = [r["miou"] for r in records if r["fold"] == f and r["seed"] == s]
            dice = [r["mdice"] for r in records if r["fold"] == f and r["seed"] == s]
            out[(str(f), str(s))] = (statistics.mean(vals), statistics.stdev(vals),
                                     statistics.mean(dice), statistics.stdev(dice))
            cell_means[(f, s)] = (statistics.mean(vals), statistics.mean(dice))
        vals = [r["miou"] for r in records if r["fold"] == f]
        dice = [r["mdice"] for r in records if r["fold"] == f]
        out[(str(f), "all")] = (statistics.mean(vals), statistics.stdev(vals),
                                statistics.mean(dice), statistics.stdev(dice))
    for s in seeds:
        m = [cell_means[(f, s)] for f in folds]
        out[("all", str(s))] = (statistics.mean(v[0] for v in m), statistics.stdev(v[0] for v in m),
                                statistics.mean(v[1] for v in m), statistics.stdev(v[1] for v in m))
    m = list(cell_means.values())
    out[("all", "all")] = (statistics.mean(v[0] for v in m), statistics.stdev(v[0] for v in m),
                           statistics.mean(v[1] for v in m), statistics.stdev(v[1] for v in m))
    return out


def bone_report(tracking, *args):
    root = tracking["root"]
    return subprocess.run(
        [sys.executable, "-c", "from bone_seg.cli.report import main; main()",
         f"paths.root={root}", f"logger.tracking_uri={tracking['uri']}", *args],
        capture_output=True, text=True, cwd=root,
        env={**os.environ, "BONE_SEG_ROOT": str(root)},
    )


def test_fetch_and_records_from_artifact_and_metrics(tracking):
    runs = fetch_runs(tracking["uri"], EXPERIMENT, sweep="cv")
    assert len(runs.runs) == 6 and all(r.info.status == "FINISHED" for r in runs.runs)
    got = {(s.fold, s.seed, s.scan): (s.miou, s.mdice) for s in cv_records(runs)}
    want = {(r["fold"], r["seed"], r["scan"]): (r["miou"], r["mdice"])
            for r in tracking["logged"]["cv"]}
    assert got == want  # exact: both paths (artifact JSON, metrics) keep float64 values


def test_config_results_from_runs(tracking):
    configs = config_results(fetch_runs(tracking["uri"], EXPERIMENT, sweep="grid"))
    got = {c.name: c for c in configs}
    assert set(got) == set(tracking["logged"]["grid"])
    for name, want in tracking["logged"]["grid"].items():
        for k, v in want.items():
            expected = None if v is None else pytest.approx(v, rel=1e-12)
            assert getattr(got[name], k) == expected, (name, k)
    assert got["Segformer | mit_b1 | 512 px"].gpu_util is None  # CPU run: not measured, not 0


def test_parent_run_selection(tracking, tmp_path):
    client, eid = tracking["client"], tracking["eid"]
    parent = client.create_run(eid, run_name="multirun").info.run_id
    scores = scan_scores(77, 3, 1, 42)
    log_fit_run(client, eid, tmp_path, sweep=None, scores=scores, parent=parent,
                resources=resources(1e9, 1e6, 60.0))
    client.set_terminated(parent)
    runs = fetch_runs(tracking["uri"], EXPERIMENT, parent_run=parent)
    assert [s.scan for s in cv_records(runs)] == [s["scan"] for s in scores]
    with pytest.raises(BoneSegError, match="no runs found \\(children of run nope\\)"):
        fetch_runs(tracking["uri"], EXPERIMENT, parent_run="nope")


def test_per_scan_metric_aliases(tmp_path):
    """Per-scan metrics named test/<scan>/mean_iou, mean_dice (bone-iou's names) are read too."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    eid = client.create_experiment(EXPERIMENT, artifact_location=str(tmp_path / "art"))
    rid = client.create_run(eid, tags={"bone_seg.sweep": "s", "fold": "2", "seed": "7"}).info.run_id
    client.log_metric(rid, "test/a/mean_iou", 0.5)
    client.log_metric(rid, "test/a/mean_dice", 0.6)
    client.set_terminated(rid)
    [rec] = cv_records(fetch_runs(uri, EXPERIMENT, sweep="s"))
    assert (rec.fold, rec.seed, rec.scan, rec.miou, rec.mdice) == (2, 7, "a", 0.5, 0.6)


def test_missing_values_name_the_run_and_key(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    eid = client.create_experiment(EXPERIMENT, artifact_location=str(tmp_path / "art"))
    scores = scan_scores(1, 2, 1, 42)
    rid = log_fit_run(client, eid, tmp_path, sweep="a", scores=scores, artifact=False,
                      drop_metric="test/scan_10/mdice", resources=resources(1e9, 1e6, 60.0))
    runs = fetch_runs(uri, EXPERIMENT, sweep="a")
    with pytest.raises(BoneSegError, match=f"run {rid}: missing metric 'test/scan_10/mdice'"):
        cv_records(runs)
    rid = log_fit_run(client, eid, tmp_path, sweep="b", scores=scores,
                      resources=resources(1e9, 1e6, 60.0), drop_metric="complexity/flops_batch")
    with pytest.raises(BoneSegError, match=f"run {rid}: missing metric 'complexity/flops_batch'"):
        config_results(fetch_runs(uri, EXPERIMENT, sweep="b"))
    bad = [{**s, "mdice": None} for s in scores]
    rid = log_fit_run(client, eid, tmp_path, sweep="c", scores=bad, per_scan_metrics=False)
    with pytest.raises(BoneSegError, match=f"run {rid}: test_scores.json record 0: missing "
                                           "'mdice'"):
        cv_records(fetch_runs(uri, EXPERIMENT, sweep="c"))
    r1 = log_fit_run(client, eid, tmp_path, sweep="d", scores=scores)
    r2 = log_fit_run(client, eid, tmp_path, sweep="d", scores=scores)
    with pytest.raises(BoneSegError, match=f"runs {r1} and {r2} of sweep 'd' both hold fold 1, "
                                           "seed 42"):
        cv_records(fetch_runs(uri, EXPERIMENT, sweep="d"))
    with pytest.raises(BoneSegError, match="experiment 'other' not found .*experiments present: "
                                           ".*bone_seg"):
        fetch_runs(uri, "other", sweep="a")
    with pytest.raises(BoneSegError, match="no MLflow database at .*nowhere.db"):
        fetch_runs(f"sqlite:///{tmp_path}/nowhere.db", EXPERIMENT, sweep="a")
    assert not (tmp_path / "nowhere.db").exists()


def test_cli_cv_round_trip(tracking):
    r = bone_report(tracking, "kind=cv", "sweep=cv")
    assert r.returncode == 0, r.stderr
    run_dirs = list((tracking["root"] / "runs" / "report").glob("*/*"))
    assert len(run_dirs) == 1
    out = run_dirs[0]
    rows = list(csv.DictReader(open(out / "cv_table.csv")))
    want = independent_cv(tracking["logged"]["cv"])
    assert {(row["fold"], row["seed"]) for row in rows} == set(want)
    for row in rows:
        m, sd, dm, dsd = want[(row["fold"], row["seed"])]
        assert float(row["miou_mean"]) == pytest.approx(m, rel=1e-12)
        assert float(row["miou_sd"]) == pytest.approx(sd, rel=1e-12)
        assert float(row["mdice_mean"]) == pytest.approx(dm, rel=1e-12)
        assert float(row["mdice_sd"]) == pytest.approx(dsd, rel=1e-12)
    g = want[("all", "all")]
    assert f"{g[0]:.4f} ± {g[1]:.4f} [{g[2]:.4f} ± {g[3]:.4f}]" in r.stdout  # printed table
    assert (out / "cv_table.md").read_text().strip() == r.stdout.strip()
    assert (out / "report.log").exists() and (out / ".hydra" / "config.yaml").exists()
    # the files are artifacts of a report run tagged with the sweep
    client = tracking["client"]
    reports = client.search_runs([tracking["eid"]], "tags.\"bone_seg.report\" = 'cv'")
    assert len(reports) == 1
    rep = reports[0]
    assert rep.info.run_name == "report-cv-cv" and rep.info.status == "FINISHED"
    assert rep.data.tags["bone_seg.sweep"] == "cv"
    names = {f.path for f in client.list_artifacts(rep.info.run_id)}
    assert names == {"cv_table.md", "cv_table.csv", "cv_scans.csv", "cv_scores.png"}
    got = Path(client.download_artifacts(rep.info.run_id, "cv_table.csv",
                                         str(tracking["root"] / "dl")))
    assert got.read_text() == (out / "cv_table.csv").read_text()
    # the report run is never read back as a fit run
    assert len(fetch_runs(tracking["uri"], EXPERIMENT, sweep="cv").runs) == 6
    # its figures are metrics and params, so that sweeps compare in MLflow
    metrics, params = rep.data.metrics, rep.data.params
    for key, prefix in (("all", "cv/"), ("1", "cv/fold_1/")):
        m, sd, dm, dsd = want[(key, "all")]
        assert metrics[f"{prefix}miou_mean"] == pytest.approx(m, rel=1e-12)
        assert metrics[f"{prefix}miou_sd"] == pytest.approx(sd, rel=1e-12)
        assert metrics[f"{prefix}mdice_mean"] == pytest.approx(dm, rel=1e-12)
        assert metrics[f"{prefix}mdice_sd"] == pytest.approx(dsd, rel=1e-12)
    for fold, seed in want:
        if "all" not in (fold, seed):
            assert metrics[f"cv/fold_{fold}/seed_{seed}/miou_mean"] == pytest.approx(
                want[(fold, seed)][0], rel=1e-12)
    assert params["report.kind"] == "cv" and params["report.runs"] == "6"
    assert params["report.selection"] == "sweep 'cv'"


def test_cli_rank_round_trip(tracking):
    out = tracking["root"] / "rank_out"
    r = bone_report(tracking, "kind=rank", "sweep=grid", f"out={out}")
    assert r.returncode == 0, r.stderr
    logged = tracking["logged"]["grid"]
    # recompute from the logged values: GPU metrics dropped (one CPU run), 0.15 over 4 metrics
    kept = {"miou": True, "batch_size": True, "flops": False, "params": False, "fit_time": False}
    weights = {"miou": 0.85, **{k: 0.15 / 4 for k in kept if k != "miou"}}
    want = {}
    for name, v in logged.items():
        total = 0.0
        for k, higher in kept.items():
            vals = [x[k] for x in logged.values()]
            lo, hi = min(vals), max(vals)
            n = 1.0 if hi == lo else (v[k] - lo) / (hi - lo)
            total += weights[k] * (n if higher or hi == lo else 1 - n)
        want[name] = total
    rows = list(csv.DictReader(open(out / "ranking.csv")))
    assert [row["name"] for row in rows] == sorted(want, key=lambda n: -want[n])
    for row in rows:
        assert float(row["score"]) == pytest.approx(want[row["name"]], abs=1e-12)
    assert "GPU utilisation (%) not measured for 1 of 4 configurations" in r.stdout
    assert "| Rank | Model" in r.stdout and "mIoU weight" in r.stdout
    assert len(list(csv.DictReader(open(out / "sensitivity.csv")))) == 21
    client = tracking["client"]
    rep = client.search_runs([tracking["eid"]], "tags.\"bone_seg.report\" = 'rank'")[0]
    assert rep.info.run_name == "report-rank-grid"
    assert {f.path for f in client.list_artifacts(rep.info.run_id)} == {
        "ranking.md", "ranking.csv", "sensitivity.csv", "ranking.png", "sensitivity.png"}
    from bone_seg.reports.report_summary import metric_name

    for row in rows:
        prefix = f"rank/{metric_name(row['name'])}/"
        assert rep.data.metrics[f"{prefix}score"] == pytest.approx(want[row["name"]], abs=1e-12)
        assert rep.data.metrics[f"{prefix}place"] == float(row["rank"])
    assert rep.data.params["report.best"] == rows[0]["name"]
    assert float(rep.data.params["report.weight.miou"]) == pytest.approx(0.85)


def test_cli_unknown_sweep_lists_sweeps(tracking):
    r = bone_report(tracking, "kind=cv", "sweep=nope")
    assert r.returncode == 2
    assert "tagged bone_seg.sweep='nope'; sweeps present: broken, cv, grid" in r.stderr


def test_cli_no_finished_runs(tracking):
    r = bone_report(tracking, "kind=rank", "sweep=broken")
    assert r.returncode == 2
    assert "sweep 'broken': no FINISHED run (1 FAILED)" in r.stderr
