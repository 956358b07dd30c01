"""The segmentation LightningModule: an smp network, a loss, IoU/Dice metrics, optimiser, schedule.

Built from plain config values so that Hydra can instantiate it
(``conf/model/default.yaml``)::

    module = SegmentationModule(
        net={"arch": "unet", "encoder": "resnet18", "weights": None},
        loss={"name": "jaccard"},
        optimizer={"name": "adam", "lr": 1e-3},
        scheduler={"name": "cosine"},
        mode="2d", in_channels=1, num_classes=3,
        class_names=["background", "bone", "pores"],
    )

Batches are dicts ``{"image": float32 (B, C, H, W) | (B, 1, D, H, W), "mask": int64 (B, H, W) |
(B, D, H, W)}``.

Logged once per epoch (Lightning's logger names):

- ``train/loss``, ``val/loss``: mean loss over the epoch's batches, each weighted by its count of
  images holding a labelled voxel (the batch size when fully labelled);
- ``train/miou``, ``val/miou``, ``train/dice``, ``val/dice``: mean IoU / Dice over the classes, from
  torchmetrics' ``MulticlassJaccardIndex`` / ``MulticlassF1Score`` with ``average='macro'`` on the
  epoch's pooled confusion counts (synchronised across DDP processes). A class absent from both
  prediction and reference over the whole epoch is left out of the means (torchmetrics' macro
  rule; BONe's ``.mean()`` of the class-wise values would count it as 0);
- ``train/iou_<class>``, ``val/iou_<class>``, ``train/dice_<class>``, ``val/dice_<class>``:
  class-wise values (0 for an absent class, torchmetrics' convention);
- ``val/miou_best``: the best ``val/miou`` so far (sanity-check epochs excluded);
- ``lr``: the learning rate of the epoch.

Sparse labels: mask voxels holding :data:`bone_seg.classes.UNLABELLED` (255) are left out of the
loss (:mod:`bone_seg.modules.labelled`) and of the metrics exactly. The metrics get
``ignore_index=255``: torchmetrics 1.9 then drops those voxels (``target != ignore_index``) before
counting the confusion matrix in integers (``_multiclass_confusion_matrix_format``, and the
``multidim_average='global'``, ``top_k=1`` branch of ``_multiclass_stat_scores_update`` used by
the F1 score), and 255 lies outside the classes so no class is zeroed in the reduction: whatever
the prediction at an unlabelled voxel, the counts — and the metrics — are bitwise the same, and a
fully labelled batch counts as without ``ignore_index``. Checked by
``tests/modules/test_sparse_metrics.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

from bone_seg.classes import UNLABELLED, default_class_names
from bone_seg.errors import BoneSegError
from bone_seg.modules.losses import DEFAULT_LOSS, build_loss_from_config
from bone_seg.modules.optim import build_optimizer, build_scheduler
from bone_seg.networks import registry
from bone_seg.networks.config import NetConfig, read_net_config
from bone_seg.tracking import records
from bone_seg.weights.network import net_from_config

DEFAULT_NET = {"arch": "unet", "encoder": "resnet18", "weights": None}
STAGES = ("train", "val")


def plain(value: Any) -> Any:
    """A plain-Python copy of config values (OmegaConf containers become dicts and lists)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class SegmentationModule(pl.LightningModule):
    """Semantic segmentation of micro-CT patches (2D, 2.5D or 3D).

    Args:
        net: ``arch``, ``encoder``, ``weights`` (null | imagenet | a weights file),
            ``freeze_encoder``, ``adapt_heads``, plus any extra smp keyword argument; or
            ``_target_`` (a network class path), its arguments and ``size_multiple``
            (:mod:`bone_seg.networks.config`).
        loss: ``name`` (:func:`bone_seg.modules.losses.loss_names`) and its options, or
            ``_target_`` (a loss class path) and its arguments.
        optimizer: ``name`` (:data:`bone_seg.modules.optim.OPTIMIZERS`) and its options, or
            ``_target_`` (a ``torch.optim.Optimizer`` class path) and its arguments.
        scheduler: ``name`` (:data:`bone_seg.modules.optim.SCHEDULERS`) and its options, or
            ``_target_`` (a ``torch.optim.lr_scheduler`` class path) and its arguments.
        mode: ``2d``, ``2.5d`` or ``3d``.
        in_channels: input channels (1; k slices in 2.5D).
        num_classes: number of classes.
        class_names: one name per class (default: background, bone, pores for 3 classes).
        channels_last: train in channels-last memory format (network and batches; 3D:
            channels-last-3d): the forward pass is ~1.2 × faster on the CPU (oneDNN); the whole
            step per mode is measured by ``benchmarks/train_step.py``. The weights files are the
            same either way.
        compile: run the training/validation forward through ``torch.compile`` (the first steps
            compile; the exported weights are the plain network's).
    """

    def __init__(
        self,
        net: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        mode: str = "2d",
        in_channels: int = 1,
        num_classes: int = 3,
        class_names: Sequence[str] | None = None,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # plain values first: save_hyperparameters reads these locals
        net = {**DEFAULT_NET, **plain(net or {})}
        loss = plain(loss or {"name": DEFAULT_LOSS})
        optimizer = plain(optimizer or {"name": "adam", "lr": 1e-3})
        scheduler = plain(scheduler or {"name": "cosine"})
        mode = registry.check_mode(mode)
        class_names = (plain(list(class_names)) if class_names is not None
                       else default_class_names(int(num_classes)))
        if len(class_names) != num_classes or len(set(class_names)) != len(class_names):
            raise BoneSegError(f"class_names={class_names} must give {num_classes} distinct "
                               "names, one per class")
        # in checkpoints and the weights' metadata; the run's parameters are the config's own
        self.save_hyperparameters(logger=False)
        self.class_names = [str(c) for c in class_names]
        self.memory_format = ((torch.channels_last_3d if mode == "3d" else torch.channels_last)
                              if channels_last else torch.contiguous_format)
        self._sums: dict[str, torch.Tensor] = {}
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    # ------------------------------------------------------------------ set-up
    def net_config(self) -> NetConfig:
        """``hparams.net`` read (:func:`bone_seg.networks.config.read_net_config`)."""
        return read_net_config(self.hparams.net)

    def net_kwargs(self) -> dict[str, Any]:
        """The extra keyword arguments of ``net`` (smp's, or the ``_target_`` class's)."""
        return dict(self.net_config().kwargs)

    def configure_models(self) -> None:
        """Build ``self.net`` from ``hparams.net`` (smp names or a ``_target_`` class)."""
        self.net = net_from_config(
            self.net_config(),
            mode=self.hparams.mode,
            in_channels=self.hparams.in_channels,
            num_classes=self.hparams.num_classes,
        ).to(memory_format=self.memory_format)
        # not a submodule: the checkpoint and the weights hold the plain network's keys only
        self.__dict__["_forward"] = torch.compile(self.net) if self.hparams.compile else self.net

    def configure_losses(self) -> None:
        """Build ``self.criterion`` from ``hparams.loss``."""
        self.criterion = build_loss_from_config(self.hparams.loss)

    def configure_metrics(self) -> None:
        """Per-stage IoU/Dice (class-wise and macro mean) and the best validation mIoU."""
        n = self.hparams.num_classes
        # unlabelled voxels are dropped before counting (exact: see the module docstring)
        metrics = MetricCollection({
            "iou": MulticlassJaccardIndex(n, average=None, ignore_index=UNLABELLED),
            "miou": MulticlassJaccardIndex(n, average="macro", ignore_index=UNLABELLED),
            "dice_c": MulticlassF1Score(n, average=None, ignore_index=UNLABELLED),
            "dice": MulticlassF1Score(n, average="macro", ignore_index=UNLABELLED),
        })
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.val_miou_best = MaxMetric()
        self.val_miou_best.persistent(True)  # survives a resumed fit

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, *spatial)`` of images ``(B, C, *spatial)``."""
        return self.net(x)

    @torch.inference_mode()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in eval mode without gradients (switches the module to eval)."""
        self.eval()
        return self.net(x)

    # ------------------------------------------------------------------ steps
    def _check_batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
        try:
            image, mask = batch["image"], batch["mask"]
        except (KeyError, TypeError):
            raise BoneSegError("a batch must be a dict with 'image' and 'mask' tensors") from None
        ndim = 5 if self.hparams.mode == "3d" else 4
        if image.ndim != ndim or image.shape[1] != self.hparams.in_channels:
            raise BoneSegError(
                f"batch image has shape {tuple(image.shape)}; {self.hparams.mode} mode with "
                f"in_channels={self.hparams.in_channels} needs (B, {self.hparams.in_channels}, "
                f"{'D, H, W' if ndim == 5 else 'H, W'})")
        if tuple(mask.shape) != (image.shape[0], *image.shape[2:]):
            raise BoneSegError(f"batch mask has shape {tuple(mask.shape)}; it must be "
                               f"{(image.shape[0], *image.shape[2:])} to match the image")
        return image.contiguous(memory_format=self.memory_format), mask.long()

    def model_step(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                      torch.Tensor,
                                                                      torch.Tensor]:
        """Forward and loss of one batch: ``(loss, predicted classes, target)``."""
        image, mask = self._check_batch(batch)
        logits = self._forward(image)
        loss = self.criterion(logits, mask)
        return loss, logits.argmax(dim=1), mask

    def _accumulate(self, stage: str, loss: torch.Tensor, target: torch.Tensor,
                    lr: float = 0.0) -> None:
        """Add a batch's loss and learning rate, weighted, to the stage's epoch sums.

        The loss is weighted by the batch's count of images holding a labelled voxel (sparse
        labels: a batch without labels, whose loss is 0, weighs nothing; fully labelled: the batch
        size), the learning rate by the batch size. The epoch means are logged once, at the
        epoch's end (:meth:`_log_means`): the same batch-size weighted means as
        ``self.log(..., on_epoch=True)`` of every step gave, without Lightning's per-call
        bookkeeping (~7 ms a call on the 2-core CPU, profiled:
        ``benchmarks/lightning_overhead.py``)."""
        size = target.shape[0]
        labelled = (target != UNLABELLED).flatten(1).any(1).sum().to(torch.float32)
        sums = self._sums.get(stage)
        batch = torch.stack([loss.detach().float() * labelled,
                             loss.new_tensor(lr * size, dtype=torch.float32),
                             loss.new_tensor(size, dtype=torch.float32),
                             labelled])
        self._sums[stage] = batch if sums is None else sums + batch

    def _log_means(self, stage: str) -> None:
        sums = self._sums.pop(stage, None)
        if sums is None:
            return
        # no labelled image in the whole epoch: the loss sum is 0 too, logged as 0 (not 0/0)
        self.log(f"{stage}/loss", sums[0] / sums[3].clamp_min(1), prog_bar=True, sync_dist=True)
        if stage == "train":
            self.log("lr", sums[1] / sums[2], sync_dist=True)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss; updates the training metrics."""
        loss, preds, target = self.model_step(batch)
        self.train_metrics.update(preds, target)
        self._accumulate("train", loss, target, self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        """Validation loss and metrics of one batch."""
        loss, preds, target = self.model_step(batch)
        self.val_metrics.update(preds, target)
        self._accumulate("val", loss, target)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Logits of a batch (a dict with ``image`` or an image tensor)."""
        image = batch["image"] if isinstance(batch, Mapping) else batch
        return self.net(image)

    # ------------------------------------------------------------------ epoch ends
    def _log_metrics(self, stage: str, metrics: MetricCollection) -> torch.Tensor:
        values = metrics.compute()  # torchmetrics synchronises the counts across processes
        miou = values[f"{stage}/miou"]
        logged = {f"{stage}/miou": miou, f"{stage}/dice": values[f"{stage}/dice"]}
        for c, name in enumerate(self.class_names):
            logged[f"{stage}/iou_{name}"] = values[f"{stage}/iou"][c]
            logged[f"{stage}/dice_{name}"] = values[f"{stage}/dice_c"][c]
        self.log_dict(logged, sync_dist=True)
        metrics.reset()
        return miou

    def on_train_start(self) -> None:
        """Forget what the sanity check accumulated in the validation metrics."""
        self.val_metrics.reset()

    def on_train_epoch_start(self) -> None:
        """Start the epoch's training loss sums afresh."""
        self._sums.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        """Start the validation loss sums afresh."""
        self._sums.pop("val", None)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training loss, learning rate and IoU/Dice."""
        self._log_means("train")
        self._log_metrics("train", self.train_metrics)

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's validation IoU/Dice and the best validation mIoU."""
        self._log_means("val")
        miou = self._log_metrics("val", self.val_metrics)
        if self.trainer.sanity_checking:
            return
        self.val_miou_best(miou)
        self.log(records.VAL_BEST, self.val_miou_best.compute(), sync_dist=True)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        """The optimiser over trainable parameters and the per-epoch (default) schedule."""
        optimizer = build_optimizer(self.parameters(), self.hparams.optimizer)
        trainer = self._trainer
        max_epochs = trainer.max_epochs if trainer is not None else None
        total = None
        if trainer is not None and str(self.hparams.scheduler.get("interval")) == "step":
            total = int(trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, self.hparams.scheduler, max_epochs=max_epochs,
                                    total_steps=total)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def train(self, mode: bool = True) -> SegmentationModule:
        """Like :meth:`nn.Module.train`; a frozen encoder keeps its normalisation layers in eval."""
        super().train(mode)
        net = getattr(self, "net", None)
        if mode and self.hparams.net.get("freeze_encoder") and hasattr(net, "encoder"):
            for m in net.encoder.modules():
                if isinstance(m, nn.modules.batchnorm._NormBase):
                    m.eval()
        return self

    # ------------------------------------------------------------------ export helpers
    def net_meta(self) -> dict[str, Any]:
        """The network fields of :class:`bone_seg.weights.meta.WeightsMeta`.

        Returns:
            ``arch``, ``encoder`` (smp's spelling), ``mode``, ``in_channels``, ``slices``,
            ``num_classes``, ``class_names`` and ``net_kwargs``; a ``_target_`` network also
            ``net_target`` (its class path; ``arch``/``encoder`` from
            :meth:`~bone_seg.networks.config.NetConfig.names`).
        """
        mode = self.hparams.mode
        in_channels = int(self.hparams.in_channels)
        cfg = self.net_config()
        arch, encoder = cfg.names()
        if cfg.target is None:
            arch, encoder = registry.resolve_arch(arch, mode), registry.resolve_encoder(encoder,
                                                                                         mode)
        return {
            **({} if cfg.target is None else {"net_target": cfg.target}),
            "arch": arch,
            "encoder": encoder,
            "mode": mode,
            "in_channels": in_channels,
            "slices": in_channels if mode == "2.5d" else 1,
            "num_classes": int(self.hparams.num_classes),
            "class_names": list(self.class_names),
            "net_kwargs": plain(self.net_kwargs()),
        }

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights (keys without the ``net.`` prefix), detached copies on CPU."""
        return {k: v.detach().to("cpu").clone() for k, v in self.net.state_dict().items()}
