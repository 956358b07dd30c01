"""Export the weights of the best validation epoch as a safe weights file (a true snapshot).

At the end of every validation (not the sanity check) the monitored metric (``val/miou``) is
compared with the best so far; when it improves, the network's weights *of that moment* are
written to ``<dirpath>/<filename>`` (safetensors + JSON metadata, :mod:`bone_seg.weights`), by
global rank 0 only, atomically. So the file always holds exactly the weights that scored the best
validation mIoU — not a later epoch's, and never a half-written file.

The metadata joins three sources: the network (``SegmentationModule.net_meta()``), the data
(``ScanDataModule.weights_meta()``: patch/tile sizes, normalisation, statistics policy, clip
range, the scans of each split) and the resolved run configuration (set by the fit workflow with
:meth:`set_run_config`). The callback's own state (best score and epoch) is saved in Lightning
checkpoints, so a resumed fit keeps comparing against the true best.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.safetensors_file import save_weights

log = logging.getLogger("bone_seg.fit")


class BestWeightsExport(pl.Callback):
    """Write the best epoch's weights to ``dirpath/filename``.

    Args:
        dirpath: folder of the weights file (default: the trainer's ``default_root_dir``).
        filename: name of the weights file.
        monitor: the validation metric that chooses the epoch.
        mode: ``max`` or ``min``.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "best.safetensors",
        monitor: str = "val/miou",
        mode: str = "max",
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"BestWeightsExport: mode must be 'max' or 'min', got {mode!r}")
        self.dirpath = dirpath
        self.filename = filename
        self.monitor = monitor
        self.mode = mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.run_config: dict[str, Any] = {}
        self.path: Path | None = None

    def set_run_config(self, config: dict[str, Any]) -> None:
        """The resolved configuration of the fit, stored in the weights' metadata."""
        self.run_config = config

    def _improved(self, score: float) -> bool:
        if not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Fix the destination path."""
        self.path = Path(self.dirpath or trainer.default_root_dir) / self.filename

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Snapshot the weights when the monitored metric improved."""
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if not self._improved(score):
            return
        self.best_score, self.best_epoch = score, int(trainer.current_epoch)
        if trainer.is_global_zero:
            meta = self.build_meta(trainer, pl_module)
            save_weights(self.path, pl_module.export_state_dict(), meta)
            log.info("saved best weights (epoch %d, %s %.4f) to %s", self.best_epoch + 1,
                     self.monitor, score, self.path)

    def build_meta(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> WeightsMeta:
        """The metadata of the weights as they are now."""
        data = trainer.datamodule.weights_meta() if trainer.datamodule is not None else {}
        return WeightsMeta.for_fit(pl_module.net_meta(), data, self.run_config, self.best_epoch,
                                   self.best_score, self.monitor)

    def state_dict(self) -> dict[str, Any]:
        """Best score and epoch, saved in checkpoints."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the best score and epoch of a resumed fit."""
        self.best_score = state_dict.get("best_score")
        self.best_epoch = state_dict.get("best_epoch")
