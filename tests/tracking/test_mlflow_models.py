"""Weights as MLflow models: logged without pickle, registered by bone-report, read back by
bone-predict as ``models:/<name>@<alias>`` — against SQLite and the PostgreSQL-backed server."""

import json
import os
import pickle
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from inference_helpers import save_model, scan

from bone_seg.tracking.fit_run import tracking_uri_kept
from bone_seg.tracking.models import log_model_metrics, log_weights_model
from bone_seg.tracking.store import ensure_experiment

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")
BIN = Path(sys.executable).parent


def _env():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("BONE_SEG_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _fit_like_run(tracking, root: Path, miou: float, seed: int) -> tuple[str, Path]:
    """A FINISHED fit run as bone-fit records it: tags, weights artifact, the model, test/miou."""
    client = tracking.client()
    eid = ensure_experiment(tracking.uri, tracking.experiment)
    out = root / f"run{seed}"
    out.mkdir(parents=True)
    weights = save_model(out / "best.safetensors", seed=seed)
    run = client.create_run(eid, run_name=f"unet-s{seed}", tags={
        "bone_seg.sweep": "reg", "seed": str(seed), "fold": "1", "arch": "unet",
        "encoder": "resnet18", "patch_size": "32", "mode": "2d",
        "output_dir": str(root / "elsewhere")})
    run_id = run.info.run_id
    client.log_artifact(run_id, str(weights))
    model_id = log_weights_model(client, run_id, weights)
    log_model_metrics(client, run_id, model_id, {"test/miou": miou, "test/s1/miou": miou,
                                                 "test/s1/mdice": miou})
    client.set_terminated(run_id, "FINISHED")
    return run_id, weights


def _run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_env(),
                          timeout=300, **kw)


def _one_error(proc) -> str:
    text = proc.stdout + proc.stderr
    lines = [x for x in text.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in text, text[-2000:]
    return lines[0]


def test_registry_round_trip_predicts_bitwise_as_the_file(tmp_path, tracking):
    """fit → model logged → registered with an alias by bone-report → bone-predict
    weights=models:/<name>@<alias> gives the labels of weights=<file>, bitwise."""
    _fit_like_run(tracking, tmp_path, 0.5, 1)
    best_id, best_file = _fit_like_run(tracking, tmp_path, 0.7, 2)
    name = f"bone_pores_{tracking.experiment.replace('-', '_')}"
    proc = _run([BIN / "bone-report", f"paths.root={tmp_path}", "kind=cv", "sweep=reg",
                 f"out={tmp_path / 'report'}", "log_to_mlflow=false", f"register={name}",
                 "alias=champion", *tracking.overrides])
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = tracking.client()
    mv = client.get_model_version_by_alias(name, "champion")
    assert mv.run_id == best_id  # the run of the higher mIoU
    model_id = mv.tags["bone_seg.model_id"]  # (the version read back may not carry model_id)
    linked = json.loads(client.get_logged_model(model_id).tags["mlflow.modelVersions"])
    # the UI's "Registered models": once (a server links it itself; its version is a number)
    assert [(v["name"], str(v["version"])) for v in linked] == [(name, str(mv.version))]
    np.save(tmp_path / "scan.npy", scan((6, 40, 36)))
    labels = []
    for weights in (f"models:/{name}@champion", best_file):
        out = tmp_path / f"{len(labels)}.zarr"
        proc = _run([BIN / "bone-predict", f"paths.root={tmp_path}", f"weights={weights}",
                     f"scan={tmp_path / 'scan.npy'}", f"out={out}", "slab_depth=3",
                     "batch_size=4", "threads=1", f"paths.cache={tmp_path / 'cache'}",
                     *tracking.overrides])
        assert proc.returncode == 0, proc.stderr[-3000:]
        labels.append(zarr.open_group(str(out), mode="r")["labels/segmentation/0"][:])
    np.testing.assert_array_equal(*labels)
    assert labels[0].any()
    # the run id and runs:/ name the same file; a missing alias or model is one error line
    from bone_seg.tracking.resolve import resolve_weights_uri

    for ref in (best_id, f"runs:/{best_id}", f"runs:/{best_id}/best.safetensors"):
        got = resolve_weights_uri(ref, tracking.uri, tmp_path / "cache2")
        assert Path(got).read_bytes() == best_file.read_bytes()
    base = [BIN / "bone-predict", f"paths.root={tmp_path}", f"scan={tmp_path / 'scan.npy'}",
            f"paths.cache={tmp_path / 'cache'}", *tracking.overrides]
    line = _one_error(_run([*base, f"weights=models:/{name}@nope"]))
    assert f"'{name}' has no alias 'nope'; its aliases: @champion (version 1)" in line
    line = _one_error(_run([*base, "weights=models:/no_such_model@champion"]))
    assert "no registered model 'no_such_model'" in line and name in line
    line = _one_error(_run([BIN / "bone-export", f"paths.root={tmp_path}",
                            "weights=models:/no_such_model@champion", f"out={tmp_path / 'x.pth'}",
                            *tracking.overrides]))
    assert "no registered model 'no_such_model'" in line
    # bone-export takes the registered model like bone-predict
    proc = _run([BIN / "bone-export", f"paths.root={tmp_path}", f"weights=models:/{name}@champion",
                 f"out={tmp_path / 'champion.pth'}", f"paths.cache={tmp_path / 'cache'}",
                 *tracking.overrides])
    assert proc.returncode == 0 and (tmp_path / "champion.pth").is_file(), proc.stderr[-2000:]


def test_the_mlflow_loader_unpickles_nothing(tmp_path, tracking, monkeypatch):
    """Loading the logged model and predicting with it reads the safetensors file through
    bone_seg's loader: pickle and torch.load raise if anything calls them."""
    import mlflow.pyfunc

    from bone_seg.weights.network import load_net

    run_id, weights = _fit_like_run(tracking, tmp_path, 0.5, 3)
    model_id = tracking.client().get_run(run_id).outputs.model_outputs[0].model_id
    with tracking_uri_kept():
        mlflow.set_tracking_uri(tracking.uri)

        def refuse(*a, **k):
            raise AssertionError("something was unpickled")

        for mod, names in ((pickle, ("load", "loads", "Unpickler")), (torch, ("load",))):
            for n in names:
                monkeypatch.setattr(mod, n, refuse)
        import cloudpickle
        monkeypatch.setattr(cloudpickle, "load", refuse)
        monkeypatch.setattr(cloudpickle, "loads", refuse)
        model = mlflow.pyfunc.load_model(f"models:/{model_id}")
        x = np.random.default_rng(0).normal(size=(2, 1, 32, 32)).astype(np.float32)
        got = model.predict(x)
        monkeypatch.undo()
    net, _ = load_net(weights)
    with torch.inference_mode():
        want = net(torch.from_numpy(x)).argmax(1).numpy()
    np.testing.assert_array_equal(got, want)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_prediction(tmp_path):
    """``mlflow models serve --env-manager local`` of a logged model labels a small array."""
    import json

    from tracking_helpers import Tracking

    tracking = Tracking(f"sqlite:///{tmp_path}/mlflow.db", "bone_seg")
    run_id, weights = _fit_like_run(tracking, tmp_path, 0.5, 4)
    model_id = tracking.client().get_run(run_id).outputs.model_outputs[0].model_id
    port = _free_port()
    # as the README runs it: the venv's bin first on PATH (mlflow execs uvicorn from there)
    env = {**_env(), "MLFLOW_TRACKING_URI": tracking.uri,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{model_id}",
                               "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        x = np.random.default_rng(1).normal(size=(1, 1, 32, 32)).astype(np.float32)
        body = json.dumps({"inputs": x.tolist()}).encode()
        deadline = time.monotonic() + 240
        answer = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
                break
            except OSError:
                time.sleep(1)
        assert answer is not None, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
    from bone_seg.weights.network import load_net

    net, _ = load_net(weights)
    with torch.inference_mode():
        want = net(torch.from_numpy(x)).argmax(1).numpy()
    np.testing.assert_array_equal(np.asarray(answer["predictions"]), want)
