"""The ``debug`` config group of bone-fit (conf/debug/): each option composes into Trainer
settings Lightning accepts, and ``debug=fdr`` runs a whole fit on one batch."""

from __future__ import annotations

import mlflow
import pytest
from fit_helpers import run_dirs, run_fit
from hydra.utils import instantiate
from lightning.pytorch.profilers import SimpleProfiler

from bone_seg.cli.compose import compose_config
from bone_seg.weights.safetensors_file import load_weights

OPTIONS = ("fdr", "limit", "overfit", "profiler")


def _trainer(option: str, tmp_path):
    cfg = compose_config("fit", [f"debug={option}", "experiment=quick",
                                 f"paths.root={tmp_path}", "trainer.accelerator=cpu"])
    return cfg, instantiate(cfg.trainer, logger=False, enable_progress_bar=False)


@pytest.mark.parametrize("option", OPTIONS)
def test_every_debug_option_composes_into_a_trainer(option, tmp_path):
    cfg, trainer = _trainer(option, tmp_path)
    assert cfg.sweep == "debug"  # never mixed into a real sweep's reports
    assert cfg.data.num_workers == 0
    if option == "fdr":
        assert trainer.fast_dev_run == 1 and trainer.max_epochs == 1
    elif option == "limit":
        assert trainer.limit_train_batches == cfg.trainer.limit_train_batches >= 1
        assert trainer.limit_val_batches == cfg.trainer.limit_val_batches >= 1
        assert trainer.max_epochs == cfg.trainer.max_epochs
    elif option == "overfit":
        assert trainer.overfit_batches == cfg.trainer.overfit_batches >= 1
        assert trainer.limit_val_batches == trainer.overfit_batches  # validated on the same batch
    else:
        assert isinstance(trainer.profiler, SimpleProfiler) and trainer.max_epochs == 1


def test_without_debug_the_trainer_is_untouched(tmp_path):
    plain = compose_config("fit", ["experiment=quick", f"paths.root={tmp_path}"])
    assert "fast_dev_run" not in plain.trainer and "profiler" not in plain.trainer
    assert plain.sweep != "debug"


@pytest.mark.slow
def test_fast_dev_run_fits_one_batch_and_finishes_the_run(tmp_path, tiny_store):
    run_fit(tmp_path, tiny_store, "data.num_folds=3", "data.test_fold=1", "debug=fdr",
            "threads=1")
    (run,) = run_dirs(tmp_path)
    log = (run / "fit.log").read_text()
    assert "fast_dev_run" in log and "Epoch 1/1" in log and "Epoch 2" not in log
    state, meta = load_weights(run / "best.safetensors")
    assert state and meta.arch == "unet"
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (r,) = client.search_runs([client.get_experiment_by_name("bone_seg").experiment_id])
    assert r.info.status == "FINISHED" and r.data.tags["bone_seg.sweep"] == "debug"
    assert "test/miou" in r.data.metrics  # the test fold was scored with the one-batch weights
