"""The fit workflow behind ``bone-fit``: data → model → Lightning Trainer → weights → MLflow.

Steps: write the resolved config; seed (always) and switch deterministic algorithms on in
reproducibility mode; check that the data's patch size suits the network (where model and data
meet); set up the ScanDataModule (folds, split — logged); build the SegmentationModule with the
data's channels and classes; build callbacks, the MLflow logger and
the Trainer from the config; fit (or resume from ``ckpt_path``; checkpoints are loaded with
``weights_only=True``); on global rank 0 evaluate the held-out test fold with the best weights,
log everything to the run and end it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict

from bone_seg.atomic import write_json_atomic
from bone_seg.callbacks.atomic_checkpoint import AtomicCheckpointIO, read_checkpoint
from bone_seg.callbacks.weights_export import BestWeightsExport
from bone_seg.errors import BoneSegError
from bone_seg.fitting import publish, slurm_job
from bone_seg.io.store import DatasetStore
from bone_seg.tracking import fit_run, records
from bone_seg.tracking.models import log_model_metrics, log_weights_model

log = logging.getLogger("bone_seg.fit")


def set_reproducibility(seed: int, repro: bool) -> None:
    """Seed Python, NumPy and torch (and DataLoader workers); in ``repro`` mode also force
    deterministic algorithms (Lightning's ``deterministic`` flag does the rest)."""
    pl.seed_everything(seed, workers=True, verbose=False)
    if repro:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)


def run_tags(cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """The MLflow tags of the run (docs/development.md, "MLflow records of a fit")."""
    from bone_seg.networks.config import read_net_config

    arch, encoder = read_net_config(cfg.model.net).names()
    return {
        records.SWEEP_TAG: cfg.sweep,
        "fold": cfg.data.get("test_fold"),
        "seed": cfg.seed,
        "arch": arch,
        "encoder": encoder,
        "patch_size": cfg.data.patch_size,
        "mode": datamodule.mode,
        "experiment": cfg.experiment_name,
        "output_dir": cfg.paths.output_dir,
        **slurm_job.job_tags(),
    }


def resolve_start_weights(cfg: DictConfig) -> None:
    """``model.net.weights=pretrained[:<name>]``: the published model's file in
    ``paths.pretrained`` (:mod:`bone_seg.weights.cache`), written back into ``cfg`` so that the
    run's config, its MLflow params and the weights' metadata name the file itself."""
    from bone_seg.weights.cache import alias_name, resolve_weights

    weights = cfg.model.net.get("weights")
    if alias_name(weights) is None:
        return
    path = resolve_weights(weights, cfg.paths.get("pretrained"))
    log.info("model.net.weights=%s: %s", weights, path)
    with open_dict(cfg):
        cfg.model.net.weights = path


def check_patch_size(net: DictConfig, datamodule: Any) -> None:
    """Refuse a ``data.patch_size`` (and ``data.patch_depth`` in 3D) that the network
    ``model.net`` cannot take, naming the nearest valid sizes (:mod:`bone_seg.networks.sizes`)."""
    from bone_seg.networks.config import read_net_config
    from bone_seg.networks.sizes import validate_patch_size

    depth = datamodule.patch_depth if datamodule.mode == "3d" else None
    config = read_net_config(net)
    if config.target is not None:  # model.net.size_multiple decides
        config.check_size(datamodule.patch_size, depth)
        return
    strides = net.get("strides")
    extra = {"strides": [list(s) for s in strides]} if strides is not None else {}
    validate_patch_size(net.arch, net.encoder or "resnet18", datamodule.patch_size,
                        datamodule.mode, depth, in_channels=datamodule.in_channels,
                        what="data.patch_size", depth_what="data.patch_depth", **extra)


def build_callbacks(cfg: DictConfig, config: dict) -> list[pl.Callback]:
    """Instantiate ``cfg.callbacks`` (entries set to null are skipped)."""
    callbacks = []
    for node in cfg.callbacks.values():
        if node is None:
            continue
        callback = instantiate(node)
        if isinstance(callback, ProgressBar) and not sys.stderr.isatty():
            continue  # not a terminal (a log file, CI): the epoch blocks of the log suffice
        if isinstance(callback, BestWeightsExport):
            callback.set_run_config(config)
        callbacks.append(callback)
    if not any(isinstance(c, BestWeightsExport) for c in callbacks):
        raise BoneSegError("callbacks.best_weights is switched off; a fit must export its weights")
    return callbacks


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fit a model as ``cfg`` says; returns the run's summary (best score, paths, run id)."""
    t0 = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    resolve_start_weights(cfg)  # before any work: a missing pretrained model is one error line
    publish_to = publish.check_target(cfg.get("publish_to"))
    config = OmegaConf.to_container(cfg, resolve=True)
    is_rank0 = slurm_job.is_global_rank0()
    if is_rank0:
        out.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(config), out / "config.yaml")
    ckpt_path = slurm_job.requeue_checkpoint(cfg.ckpt_path, out)
    if ckpt_path is not None:
        read_checkpoint(ckpt_path)  # refused before any work, if it is not one of ours
    slurm_job.check_tasks(cfg.trainer.get("devices"), cfg.trainer.get("num_nodes", 1))
    set_reproducibility(int(cfg.seed), bool(cfg.repro))

    datamodule = instantiate(cfg.data, _convert_="all")
    check_patch_size(cfg.model.net, datamodule)
    if datamodule.verify and is_rank0:  # data.verify: a damaged store is refused before any work
        from bone_seg.io.verify import check_verified, verify_store

        log.info("%s", check_verified(datamodule.store_path, verify_store(
            datamodule.store_path, workers=max(1, datamodule.num_workers))))
    datamodule.setup("fit")
    if is_rank0:
        write_json_atomic(out / "splits.json", datamodule.splits)
    module = instantiate(cfg.model, mode=datamodule.mode, in_channels=datamodule.in_channels,
                         num_classes=datamodule.num_classes,
                         class_names=list(datamodule.class_names))
    callbacks = build_callbacks(cfg, config)
    tags = run_tags(cfg, datamodule)
    name = records.fit_run_name(tags["arch"], tags["encoder"], tags["patch_size"], tags["mode"],
                                tags["fold"], tags["seed"])
    logger = fit_run.build_logger(cfg.logger.tracking_uri, cfg.logger.experiment_name,
                                     run_name=name, tags=tags)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                          plugins=[AtomicCheckpointIO(), *slurm_job.slurm_plugins()],
                          enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks))
    fit_run.log_params(logger, config)
    fit_run.log_store_input(logger, DatasetStore(datamodule.store_path), datamodule.splits)
    try:
        with log_above_progress_bars():
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path,
                        weights_only=True)
            summary = _finish(cfg, trainer, datamodule, callbacks, logger, out, t0)
            if publish_to is not None and trainer.is_global_zero:
                summary["published"] = str(publish.publish_weights(
                    summary["weights"], publish_to, summary))
    except BaseException:
        log.debug("the fit failed", exc_info=True)  # the traceback, in the run's log only
        fit_run.end_failed(logger, run_files(out, callbacks))
        raise
    fit_run.end_run(logger, "FINISHED")
    return summary


def run_files(out: Path, callbacks: list) -> list[Path]:
    """The files of a fit uploaded to its run: best weights, config, split and log."""
    best = next(c for c in callbacks if isinstance(c, BestWeightsExport))
    return [Path(best.path), out / "config.yaml", out / "splits.json", *out.glob("*.log")]


def write_curves(out: Path, callbacks: list, datamodule: Any) -> list[Path]:
    """``curves.png``: loss, mIoU and each class's validation IoU per epoch (the epoch log's)."""
    from bone_seg.callbacks.epoch_log import EpochLog
    from bone_seg.io.files import save_figure_atomic
    from bone_seg.reports.training_curves import curves_figure

    history = next((c.history for c in callbacks if isinstance(c, EpochLog)), None)
    if not history:
        return []
    return [save_figure_atomic(curves_figure(history, list(datamodule.class_names)),
                               out / "curves.png")]


@contextlib.contextmanager
def log_above_progress_bars() -> Iterator[None]:
    """Console log lines printed above the progress bars, never through them (tqdm's own
    redirection, keeping the console's level: bone_seg's DEBUG lines stay in the log file)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    root = logging.getLogger()
    levels = [h.level for h in root.handlers if type(h) is logging.StreamHandler]
    with logging_redirect_tqdm([root]):
        for handler in root.handlers:
            if type(handler).__name__ == "_TqdmLoggingHandler":
                handler.setLevel(max(levels, default=logging.INFO))
        yield


def _finish(cfg: DictConfig, trainer: pl.Trainer, datamodule: Any, callbacks: list,
            logger: fit_run.FitRunLogger, out: Path, t0: float) -> dict[str, Any]:
    """After fitting, on rank 0: test-fold evaluation, artifacts, the closing summary."""
    best = next(c for c in callbacks if isinstance(c, BestWeightsExport))
    summary = {
        "best_epoch": best.best_epoch,
        "best_val_miou": best.best_score,
        "weights": str(best.path),
        "output_dir": str(out),
        "run_id": logger.run_id if trainer.is_global_zero else None,
    }
    if not trainer.is_global_zero:
        return summary
    if best.best_score is None:
        raise BoneSegError("no validation epoch finished, so there are no best weights; "
                           "raise trainer.max_epochs or lower trainer.limit_val_batches")
    files = run_files(out, callbacks) + write_curves(out, callbacks, datamodule)
    if cfg.calibrate.enabled and datamodule.splits.get("val"):  # before the test predictions
        from bone_seg.fitting.calibration import calibrate_fit

        cal_metrics, cal_files = calibrate_fit(Path(best.path), datamodule.store_path,
                                               cfg.calibrate, out)
        fit_run.log_metrics(logger, cal_metrics)
        files += cal_files
    # the best weights as the run's MLflow model; the metrics below are linked to it
    model_id = log_weights_model(logger.experiment, logger.run_id, best.path)
    summary["model_id"] = model_id
    if cfg.test.enabled and datamodule.splits.get("test"):
        from bone_seg.fitting.test_fold import evaluate_test_scans

        metrics, reports = evaluate_test_scans(best.path, datamodule, cfg.test, out)
        log_model_metrics(logger.experiment, logger.run_id, model_id, metrics)
        summary["test_miou"] = metrics.get("test/miou")
        summary["test_mdice"] = metrics.get("test/mdice")
        files += reports
    summary["wall_time_s"] = time.perf_counter() - t0
    log_model_metrics(logger.experiment, logger.run_id, model_id,
                      {"time/workflow_wall_s": summary["wall_time_s"]})
    fit_run.log_artifacts(logger, files)
    # epochs counted from 1 as in the epoch log (Lightning and the weights' metadata count from 0)
    log.info("best validation mIoU %.4f at epoch %d; weights: %s", best.best_score,
             best.best_epoch + 1, best.path)
    if "test_miou" in summary:
        log.info("test fold mIoU %.4f, mDice %.4f", summary["test_miou"], summary["test_mdice"])
    log.info("run directory: %s; MLflow run %s", out, summary["run_id"])
    return summary
