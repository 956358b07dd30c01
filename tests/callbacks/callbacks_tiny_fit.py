"""A tiny segmentation LightningModule and random data for the callback tests.

Kept in its own module (not a conftest) so that ranks spawned by a DDP test can import it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CLASS_NAMES = ("background", "bone", "pores")

# val/miou scripted for the shared fit: not monotonic, so not every epoch is a new best
VAL_MIOU = (0.40, 0.35, 0.55)


def _iou_dice(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tp = confusion.diag().double()
    fp = confusion.sum(0).double() - tp
    fn = confusion.sum(1).double() - tp
    iou = tp / (tp + fp + fn).clamp_min(1)
    dice = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    return iou, dice


class TinySeg(pl.LightningModule):
    """Logs the keys the real bone_seg LightningModule logs (train/loss, val/miou, lr, ...).

    Args:
        net: The network (``self.net``).
        val_miou: If given, ``val/miou`` of epoch ``e`` is ``val_miou[e]`` (to script best epochs)
            instead of the measured value.
        fail_at_epoch: Raise in ``training_step`` of this epoch (to test failure paths).
    """

    def __init__(
        self,
        net: nn.Module,
        val_miou: Sequence[float] | None = None,
        fail_at_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.val_miou = None if val_miou is None else list(val_miou)
        self.fail_at_epoch = fail_at_epoch
        self.num_classes = len(CLASS_NAMES)
        self._confusion: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        pred = logits.argmax(1)
        n = self.num_classes
        counts = torch.bincount((y * n + pred).flatten(), minlength=n * n).reshape(n, n)
        self._confusion[stage] = self._confusion.get(stage, 0) + counts.cpu()
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.fail_at_epoch is not None and self.current_epoch >= self.fail_at_epoch:
            raise RuntimeError("scripted failure")
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_train_epoch_end(self) -> None:
        iou, _ = _iou_dice(self._confusion.pop("train"))
        self.log("train/miou", iou.mean().item())

    def on_validation_epoch_end(self) -> None:
        iou, dice = _iou_dice(self._confusion.pop("val"))
        miou = iou.mean().item()
        if self.val_miou is not None and not self.trainer.sanity_checking:
            miou = self.val_miou[self.current_epoch]
        self.log("val/miou", miou)
        self.log("val/dice", dice.mean().item())
        for c, name in enumerate(CLASS_NAMES):
            self.log(f"val/iou_{name}", iou[c].item())
            self.log(f"val/dice_{name}", dice[c].item())

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=1e-3)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]


def loaders(
    image_shape: Sequence[int],
    n_items: int = 8,
    batch_size: int = 4,
    num_workers: int = 0,
) -> tuple[DataLoader, DataLoader]:
    """Random train/val loaders of ``(C, *spatial)`` images and ``(*spatial)`` masks."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_items, *image_shape, generator=g)
    y = torch.randint(0, len(CLASS_NAMES), (n_items, *image_shape[1:]), generator=g)
    ds = TensorDataset(x, y)
    extra = {"persistent_workers": True} if num_workers else {}
    train = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, **extra)
    return train, DataLoader(ds, batch_size=batch_size)


def trainer(root: str, callbacks: list, loggers: Any = False, **kwargs: Any) -> pl.Trainer:
    """A quiet CPU trainer."""
    options = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        default_root_dir=root,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, logger=loggers, **options)


class Records(logging.Handler):
    """Collects formatted messages of a logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def capture(name: str, level: int = logging.INFO) -> tuple[Records, Any]:
    """Attach a :class:`Records` handler to logger ``name``; returns it and an undo function."""
    logger = logging.getLogger(name)
    handler, old_level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

    return handler, undo


def conv_flops(net: nn.Module, spatial: Sequence[int]) -> int:
    """Hand count of multiply-adds of the convolutions of ``net`` ("same" padding, stride 1)."""
    total = 0
    voxels = 1
    for s in spatial:
        voxels *= s
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            kernel = 1
            for k in m.kernel_size:
                kernel *= k
            total += voxels * m.out_channels * (m.in_channels // m.groups) * kernel
    return total
