"""bone-morpho's MLflow records (a real process): the measures as metrics morpho/<measure> (in
comparison mode morpho/reference|prediction|difference/<measure>), the files as artifacts, into a
new run or an existing one."""

import json

import pytest
from morpho_shapes import run_morpho_cli, store_like_pair

from bone_seg.tracking.morpho_names import measure_metrics, metric_name
from bone_seg.tracking.store import ensure_experiment

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")
VOXEL = [20.0, 10.0, 10.0]


def _cli(tmp_path, *args):
    return run_morpho_cli(tmp_path, *args)


@pytest.fixture
def volumes(tmp_path):
    store_like_pair(tmp_path, (12, 28, 28), 3, slice(12, 15), VOXEL)
    return tmp_path / "scan" / "mask", tmp_path / "pred.npy"


def _only_run(client, name):
    exp = client.get_experiment_by_name(name)
    (run,) = client.search_runs([exp.experiment_id])
    return run


def test_metric_names():
    assert metric_name("BV/TV") == "BV_TV" and metric_name("Po.V/TV") == "Po.V_TV"
    doc = {"measures": {"BV/TV": 0.5, "B.Th": None, "Conn.D": float("nan"), "BV.vox": 7}}
    assert measure_metrics(doc) == {"morpho/BV_TV": 0.5, "morpho/BV.vox": 7.0}
    rows = [{"measure": "BV", "reference": 2.0, "prediction": 3.0, "difference": 1.0,
             "relative_difference": 0.5}]
    assert measure_metrics({"agreement": rows}, "test/s1/") == {
        "test/s1/morpho/reference/BV": 2.0, "test/s1/morpho/prediction/BV": 3.0,
        "test/s1/morpho/difference/BV": 1.0, "test/s1/morpho/relative_difference/BV": 0.5}


def test_one_volume_logged(tmp_path, volumes, tracking):
    mask, _ = volumes
    out = tmp_path / "res"
    r = _cli(tmp_path, f"labels={mask}", f"out={out}", "mlflow=true", "thickness_map=false",
             *tracking.overrides)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "morpho.json").read_text())
    client = mlflow.MlflowClient(tracking.uri)
    run = _only_run(client, tracking.experiment)
    assert run.info.status == "FINISHED" and run.data.tags["bone_seg.app"] == "morpho"
    m = run.data.metrics
    measures = {k: v for k, v in doc["measures"].items() if v is not None}
    assert {metric_name(k) for k in measures} == {k.removeprefix("morpho/") for k in m}
    for name, value in measures.items():
        assert m[f"morpho/{metric_name(name)}"] == pytest.approx(value, rel=1e-15)
    assert run.data.params["labels"] == str(mask.resolve())
    assert json.loads(run.data.params["voxel_size_um"].replace("'", '"')) == VOXEL
    arts = sorted(a.path for a in client.list_artifacts(run.info.run_id, "morpho"))
    assert arts == ["morpho/morpho.csv", "morpho/morpho.json", "morpho/morpho.png",
                    "morpho/morpho_slices.csv"]


def test_comparison_into_an_existing_run(tmp_path, volumes):
    mask, pred = volumes
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(ensure_experiment(uri, "fits")).info.run_id
    out = tmp_path / "res"
    r = _cli(tmp_path, f"reference={mask}", f"prediction={pred}", f"out={out}",
             "thickness=false", "mlflow=true", f"mlflow_run_id={run_id}",
             "mlflow_prefix=test/s1/", f"logger.tracking_uri={uri}")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "morpho.json").read_text())
    after = client.get_run(run_id)
    m = after.data.metrics
    rows = {row["measure"]: row for row in doc["agreement"]}
    assert m["test/s1/morpho/reference/BV_TV"] == rows["BV/TV"]["reference"]
    assert m["test/s1/morpho/prediction/BV_TV"] == rows["BV/TV"]["prediction"]
    assert m["test/s1/morpho/difference/BV"] == pytest.approx(rows["BV"]["difference"])
    assert m["test/s1/morpho/difference/BV.vox"] > 0  # the prediction filled pores with bone
    assert "test/s1/morpho/reference/B.Th" not in m  # thickness=false: not measured, not logged
    assert after.data.tags["test/s1/morpho.prediction"] == str(pred.resolve())
    assert after.info.status == "RUNNING"  # someone else's run is left as it was
    arts = {a.path for a in client.list_artifacts(run_id, "morpho")}
    assert "morpho/morpho_prediction_slices.csv" in arts and "morpho/morpho.json" in arts
    r = _cli(tmp_path, f"labels={mask}", f"out={tmp_path / 'x'}", "mlflow=true",
             "mlflow_run_id=0123abc", f"logger.tracking_uri={uri}")
    assert r.returncode == 2 and "mlflow_run_id=0123abc is not a run of the tracking" in r.stderr
    assert not (tmp_path / "x").exists()  # refused before measuring
    r = _cli(tmp_path, f"labels={mask}", "seed=3")
    assert r.returncode == 2 and "seed=3 selects runs of a sweep" in r.stderr
