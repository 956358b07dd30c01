"""sweeps=optuna for real on CPU (tiny phantoms, 1 epoch): 3 trials, then a second call resumes
the study from its SQLite storage with a 4th; every trial is a FINISHED MLflow fit run whose best
validation mIoU is the trial's value."""

from __future__ import annotations

import os
import subprocess

import mlflow
import optuna
import pytest
from fit_helpers import BIN, TINY

pytestmark = pytest.mark.slow


def _search(root, store, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [str(BIN / "bone-fit"), "-m", "sweeps=optuna", f"paths.root={root}",
           f"data.store={store}", *TINY, "trainer.max_epochs=1", "data.num_folds=3",
           "model.net.arch=unet", "model.net.encoder=resnet18", "test.enabled=false",
           "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
           "model.loss.name=choice(jaccard,dice)", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_three_trials_then_a_fourth_resumed_from_the_storage(tmp_path, tiny_store):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    first = _search(tmp_path, tiny_store, "hydra.sweeper.n_trials=3")
    assert "0 trial(s) so far, 3 more" in first.stdout + first.stderr
    assert len(optuna.load_study(study_name="optuna", storage=storage).trials) == 3
    second = _search(tmp_path, tiny_store, "hydra.sweeper.n_trials=1", "hydra/launcher=basic")
    assert "3 trial(s) so far, 1 more" in second.stdout + second.stderr

    study = optuna.load_study(study_name="optuna", storage=storage)
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert set(trials[0].params) == {"model.optimizer.lr", "model.loss.name"}
    assert len({t.params["model.optimizer.lr"] for t in trials}) == 4  # the 4th drew anew
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for t in trials:
        run = client.get_run(t.user_attrs["run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["bone_seg.sweep"] == "optuna"
        assert run.data.metrics["val/miou_best"] == pytest.approx(t.value, abs=1e-6)
        assert float(run.data.params["model.optimizer.lr"]) == pytest.approx(
            t.params["model.optimizer.lr"], rel=1e-9)
        assert run.data.params["model.loss.name"] == t.params["model.loss.name"]
        assert run.data.params["data.patch_size"] == "32"  # fixed on the command line
    parents = client.search_runs([client.get_experiment_by_name("bone_seg").experiment_id],
                                 "tags.`bone_seg.sweep_parent` != ''")
    assert len(parents) == 2  # one parent run per call, the trials nested under them
    assert {client.get_run(t.user_attrs["run_id"]).data.tags["mlflow.parentRunId"]
            for t in trials} == {p.info.run_id for p in parents}
    assert study.best_value == max(t.value for t in trials)
