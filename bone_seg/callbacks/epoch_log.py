"""A human-readable block per epoch in the run's log, as BONe's DLFit log file.

Example block (logger ``bone_seg.fit``)::

    Epoch 3/25  lr 8.536e-04  time 41.2 s  ** new best val/miou: 0.9312 **
      train  loss 0.0712  mIoU 0.9121
      val    loss 0.0654  mIoU 0.9312  mDice 0.9641
      val IoU    background 0.9950  bone 0.9421  pores 0.8565
      val Dice   background 0.9975  bone 0.9702  pores 0.9227
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl

from bone_seg.callbacks.resources import measurement_overhead_s


def _value(metrics: Mapping[str, Any], key: str) -> float | None:
    """``metrics[key]`` (or Lightning's ``key_epoch`` variant) as a float, ``None`` if absent."""
    for name in (key, f"{key}_epoch"):
        if name in metrics:
            try:
                return float(metrics[name])
            except (TypeError, ValueError):
                return None
    return None


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


class EpochLog(pl.Callback):
    """Write one block per epoch to the log: epoch, lr, losses, mIoU/mDice, class IoU, time, best.

    Values are read from ``trainer.callback_metrics``: ``train/loss``, ``train/miou``,
    ``val/loss``, ``val/miou``, ``val/dice``, ``val/iou_<class>``, ``val/dice_<class>`` and
    ``lr`` (Lightning's ``<key>_epoch`` variants are accepted); missing values read ``n/a``. The
    learning rate falls back to the first optimizer's rate at the start of the epoch (the rate the
    epoch was trained with). Validation values are shown only for epochs that ran a validation
    (never stale values of an earlier one).

    The block of an epoch is written when the next epoch starts (or training ends), so that values
    the LightningModule logs in its own ``on_train_epoch_end`` (which runs after callbacks' hooks)
    are included. Only global rank 0 writes. The epoch time excludes what other callbacks report
    as measurement overhead (``fit_overhead_s``, e.g. FLOP counting on the first batch).

    Args:
        monitor: Metric deciding the best epoch (BONe: validation mIoU).
        mode: ``"max"`` or ``"min"``.
        class_names: Order of the per-class values (default: the order they were logged in).
        logger_name: Python logger to write to.

    Attributes:
        history: One dict per finished epoch: ``epoch`` (0-based), ``max_epochs``, ``lr``,
            ``time_s``, ``validated``, ``is_best``, ``score`` (the monitored value), ``metrics``
            (the values shown).
    """

    def __init__(
        self,
        monitor: str = "val/miou",
        mode: str = "max",
        class_names: Sequence[str] | None = None,
        logger_name: str = "bone_seg.fit",
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"EpochLog: mode must be 'max' or 'min', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.class_names = list(class_names) if class_names is not None else None
        self._log_to = logging.getLogger(logger_name)
        self.history: list[dict[str, Any]] = []
        self._best: float | None = None
        self._pending: dict[str, Any] | None = None
        self._epoch: dict[str, Any] | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reset the history and the best value for a new fit."""
        self.history, self._best, self._pending, self._epoch = [], None, None, None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the previous epoch's block; note this epoch's start time and learning rate."""
        self._flush(trainer)
        lr = None
        if trainer.optimizers and trainer.optimizers[0].param_groups:
            lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        self._epoch = {
            "epoch": trainer.current_epoch,
            "start": time.perf_counter(),
            "overhead": measurement_overhead_s(trainer, exclude=self),
            "lr": lr,
            "validated": False,
        }

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remember that this epoch ran a validation (sanity checks excluded)."""
        if not trainer.sanity_checking and self._epoch is not None:
            self._epoch["validated"] = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the epoch (time); the block is written at the next epoch start or train end."""
        if self._epoch is not None:
            overhead = measurement_overhead_s(trainer, exclude=self) - self._epoch["overhead"]
            self._epoch["time_s"] = time.perf_counter() - self._epoch["start"] - overhead
            self._pending, self._epoch = self._epoch, None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the last epoch's block."""
        self._flush(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Write the block of a finished epoch still pending when the fit fails."""
        self._flush(trainer)

    # ------------------------------------------------------------------ the block

    def _per_class(self, metrics: Mapping[str, Any], prefix: str) -> dict[str, float | None]:
        found = [k[len(prefix) :] for k in metrics if k.startswith(prefix)]
        found = [k[: -len("_epoch")] if k.endswith("_epoch") else k for k in found]
        found = [k for k in dict.fromkeys(found) if not k.endswith("_step")]
        if self.class_names is not None:
            names = [c for c in self.class_names if c in found]
            names += [c for c in found if c not in names]
        else:
            names = found
        return {c: _value(metrics, prefix + c) for c in names}

    def _flush(self, trainer: pl.Trainer) -> None:
        record, self._pending = self._pending, None
        if record is None:
            return
        metrics = trainer.callback_metrics
        lr = _value(metrics, "lr")
        shown: dict[str, Any] = {
            "train/loss": _value(metrics, "train/loss"),
            "train/miou": _value(metrics, "train/miou"),
        }
        validated = record["validated"]
        if validated:
            shown.update(
                {
                    "val/loss": _value(metrics, "val/loss"),
                    "val/miou": _value(metrics, "val/miou"),
                    "val/dice": _value(metrics, "val/dice"),
                }
            )
            for prefix in ("val/iou_", "val/dice_"):
                shown.update({prefix + c: v for c, v in self._per_class(metrics, prefix).items()})
        is_best = False
        score = None
        if validated or not self.monitor.startswith("val/"):
            score = _value(metrics, self.monitor)
        if score is not None and not math.isnan(score):
            better = self._best is None or (
                score > self._best if self.mode == "max" else score < self._best
            )
            if better:
                self._best, is_best = score, True
        entry = {
            "epoch": record["epoch"],
            "max_epochs": trainer.max_epochs,
            "lr": lr if lr is not None else record["lr"],
            "time_s": record.get("time_s"),
            "validated": validated,
            "is_best": is_best,
            "score": score,
            "metrics": shown,
        }
        self.history.append(entry)
        if trainer.is_global_zero:
            self._log_to.info("%s", self.format_block(entry))

    def format_block(self, entry: dict[str, Any]) -> str:
        """The text block of one :attr:`history` entry.

        Args:
            entry: A :attr:`history` entry.

        Returns:
            Several lines, without a trailing newline.
        """
        total = entry["max_epochs"]
        total_text = str(total) if total is not None and total > 0 else "?"
        head = f"Epoch {entry['epoch'] + 1}/{total_text}  lr {_fmt(entry['lr'], '.3e')}"
        head += f"  time {_fmt(entry['time_s'], '.1f')} s"
        if entry["is_best"]:
            head += f"  ** new best {self.monitor}: {_fmt(entry['score'])} **"
        m = entry["metrics"]
        lines = [
            head,
            f"  train  loss {_fmt(m['train/loss'])}  mIoU {_fmt(m['train/miou'])}",
        ]
        if not entry["validated"]:
            lines.append("  val    (not run this epoch)")
            return "\n".join(lines)
        lines.append(
            f"  val    loss {_fmt(m['val/loss'])}  mIoU {_fmt(m['val/miou'])}"
            f"  mDice {_fmt(m['val/dice'])}"
        )
        for prefix, label in (("val/iou_", "val IoU "), ("val/dice_", "val Dice")):
            per_class = {k[len(prefix) :]: v for k, v in m.items() if k.startswith(prefix)}
            if per_class:
                lines.append(
                    f"  {label}   " + "  ".join(f"{c} {_fmt(v)}" for c, v in per_class.items())
                )
        return "\n".join(lines)
