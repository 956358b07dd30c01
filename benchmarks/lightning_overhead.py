"""What does our LightningModule + Trainer cost over a plain PyTorch loop? Wall time per epoch.

The same ``quick`` fit both ways, in this process, on the built-in phantom dataset: the same
ScanDataModule (same patches, batches, loader worker), the same SegmentationModule's network and
Jaccard loss, Adam and the per-epoch cosine schedule, the same number of training and
validation batches (``trainer.limit_train_batches`` / ``limit_val_batches``):

* **ours**: ``bone-fit``'s Trainer built as ``workflows/fit.py`` builds it, from the composed
  config — every callback of ``conf/callbacks/default.yaml`` (FLOPs, resource monitor, epoch
  log, best-weights export, the resumable checkpoint; the progress bar only on a terminal, as in
  bone-fit) and the MLflow logger (a SQLite store in ``--root``);
* **plain**: a loop written here: zero_grad, forward, loss, backward, step per batch; the
  validation batches' loss and confusion counts (torchmetrics' mIoU, which selects the best
  weights); the scheduler's step.

An epoch's time runs from one training epoch's start to the next's (everything between counts:
validation, checkpoints, logging, loader restarts); the first epoch (warm-up) is left out.
Rounds alternate ours, plain, ours, plain …; the medians over the epochs of every round count.

    .venv/bin/python benchmarks/lightning_overhead.py [--epochs 4] [--train-batches 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
from bench_data import phantom_store
from bench_result import emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


class EpochStarts(pl.Callback):
    """Records the start time of every training epoch (and the fit's end)."""

    starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        EpochStarts.starts.append(time.perf_counter())

    def on_fit_end(self, trainer, pl_module) -> None:
        EpochStarts.starts.append(time.perf_counter())


def compose(root: Path, store: Path, args) -> object:
    from bone_seg.cli.app import compose_config

    return compose_config("fit", [
        "experiment=quick", f"data.store={store}", f"paths.root={root}",
        f"trainer.max_epochs={args.epochs}", f"trainer.limit_train_batches={args.train_batches}",
        f"trainer.limit_val_batches={args.val_batches}", "hydra.job.name=bench"])


def ours(cfg) -> list[float]:
    """Per-epoch seconds of the fit through bone-fit's Trainer (callbacks, MLflow)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    from bone_seg.callbacks.atomic_checkpoint import AtomicCheckpointIO
    from bone_seg.tracking import fit_run
    from bone_seg.workflows import fit

    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(cfg.paths.root) / f"run_{time.time_ns()}")
    config = OmegaConf.to_container(cfg, resolve=True)
    fit.set_reproducibility(int(cfg.seed), False)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    module = instantiate(cfg.model, mode=dm.mode, in_channels=dm.in_channels,
                         num_classes=dm.num_classes, class_names=list(dm.class_names))
    callbacks = [*fit.build_callbacks(cfg, config), EpochStarts()]
    logger = fit_run.build_logger(cfg.logger.tracking_uri, "bench", run_name="bench",
                                     tags={"benchmark": "lightning_overhead"})
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                          plugins=[AtomicCheckpointIO()], enable_progress_bar=any(
                              isinstance(c, pl.callbacks.ProgressBar) for c in callbacks))
    EpochStarts.starts = []
    trainer.fit(module, datamodule=dm, weights_only=True)
    fit_run.end_run(logger, "FINISHED")
    s = EpochStarts.starts
    return [b - a for a, b in zip(s[1:], s[2:], strict=False)]


def plain(cfg) -> list[float]:
    """Per-epoch seconds of the same work in a plain PyTorch loop."""
    import torch
    from hydra.utils import instantiate
    from torchmetrics.classification import MulticlassJaccardIndex

    from bone_seg.modules.optim import build_optimizer, build_scheduler
    from bone_seg.workflows.fit import set_reproducibility

    set_reproducibility(int(cfg.seed), False)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    module = instantiate(cfg.model, mode=dm.mode, in_channels=dm.in_channels,
                         num_classes=dm.num_classes, class_names=list(dm.class_names))
    net, loss_fn = module.net, module.criterion
    opt = build_optimizer(net.parameters(), module.hparams.optimizer)
    sched = build_scheduler(opt, module.hparams.scheduler, max_epochs=cfg.trainer.max_epochs)
    miou = MulticlassJaccardIndex(dm.num_classes, average="macro")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    n_train, n_val = cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches
    starts = []
    for epoch in range(cfg.trainer.max_epochs):
        starts.append(time.perf_counter())
        train.sampler.set_epoch(epoch)
        net.train()
        for i, batch in enumerate(train):
            if i == n_train:
                break
            opt.zero_grad()
            loss_fn(net(batch["image"]), batch["mask"].long()).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            for i, batch in enumerate(val):
                if i == n_val:
                    break
                logits = net(batch["image"])
                loss_fn(logits, batch["mask"].long())
                miou.update(logits.argmax(1), batch["mask"].long())
        miou.compute()
        miou.reset()
        if sched is not None:
            sched["scheduler"].step()
    starts.append(time.perf_counter())
    return [b - a for a, b in zip(starts[1:], starts[2:], strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="/tmp/bone_seg_bench_fit")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-batches", type=int, default=40)
    ap.add_argument("--val-batches", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.epochs < 3:
        raise SystemExit("error: --epochs must be >= 3 (the first epoch is a warm-up)")
    root = Path(args.root)
    cfg = compose(root / "lightning_overhead", phantom_store(root), args)
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for r in range(args.rounds):
        for name, fn in (("ours", ours), ("plain", plain)):
            epochs = fn(cfg.copy())
            times[name] += epochs
            print(f"round {r + 1} {name:5s}: " + ", ".join(f"{t:.2f}" for t in epochs)
                  + " s per epoch", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median per epoch ({args.train_batches} training + {args.val_batches} validation "
          f"batches): ours {med['ours']:.2f} s, plain loop {med['plain']:.2f} s -> "
          f"{med['ours'] / med['plain']:.3f}x")
    emit("`quick` fit, wall time per epoch: Lightning (our module, Trainer, callbacks, MLflow)",
         f"{med['ours']:.2f} s", f"plain PyTorch loop {med['plain']:.2f} s",
         med["ours"] / med["plain"], "<= 1.05",
         f"{args.train_batches}+{args.val_batches} batches, median of {len(times['ours'])} "
         "epochs")


if __name__ == "__main__":
    main()
