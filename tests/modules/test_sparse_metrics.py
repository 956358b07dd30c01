"""Sparse labels: the training/validation metrics and losses of the module leave 255 out exactly."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from model_helpers import CLASS_NAMES, random_batch
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

from bone_seg.classes import UNLABELLED
from bone_seg.modules.segmentation import SegmentationModule


def computed(metrics, preds: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    metrics.reset()
    metrics.update(preds, target)
    out = metrics.compute()
    metrics.reset()
    return out


def plain(preds: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """torchmetrics without any ignore index, on whatever voxels it is given."""
    made = {"iou": MulticlassJaccardIndex(3, average=None),
            "miou": MulticlassJaccardIndex(3, average="macro"),
            "dice_c": MulticlassF1Score(3, average=None),
            "dice": MulticlassF1Score(3, average="macro")}
    return {f"val/{k}": m(preds, target) for k, m in made.items()}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and (
        a.numpy().tobytes() == b.numpy().tobytes())


@pytest.fixture(scope="module")
def module() -> SegmentationModule:
    return SegmentationModule(num_classes=3, class_names=CLASS_NAMES, scheduler={"name": "none"})


@pytest.mark.parametrize("shape", [(4, 16, 12), (2, 5, 8, 7)], ids=["2d", "3d"])
def test_predictions_at_unlabelled_voxels_change_no_metric(module, shape: tuple) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, shape, generator=g)
    preds = torch.where(torch.rand(shape, generator=g) < 0.7, target,
                        torch.randint(0, 3, shape, generator=g))
    unlabelled = torch.rand(shape, generator=g) < 0.5
    target[unlabelled] = UNLABELLED
    values = computed(module.val_metrics, preds, target)
    for seed in (1, 2):
        g.manual_seed(seed)
        other = torch.where(unlabelled, torch.randint(0, 3, shape, generator=g), preds)
        again = computed(module.val_metrics, other, target)
        assert all(same_bits(again[k], v) for k, v in values.items())
    # ... and they are the metrics of the labelled voxels alone
    alone = plain(preds[~unlabelled], target[~unlabelled])
    assert values.keys() == alone.keys()
    assert all(same_bits(alone[k], v) for k, v in values.items())


def test_fully_labelled_metrics_are_unchanged(module) -> None:
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 3, (3, 20, 20), generator=g)
    preds = torch.randint(0, 3, (3, 20, 20), generator=g)
    values = computed(module.val_metrics, preds, target)
    expected = plain(preds, target)
    assert all(same_bits(expected[k], v) for k, v in values.items())


class SparsePatches(Dataset):
    """Learnable random patches; sample 0 has no label at all, the others unlabelled rows."""

    def __init__(self, n: int, seed: int) -> None:
        batch = random_batch((n, 1, 32, 32), seed=seed)
        self.image, self.mask = batch["image"], batch["mask"]
        self.mask[0] = UNLABELLED
        self.mask[1:, ::2] = UNLABELLED

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.image[i], "mask": self.mask[i]}


def test_fit_on_sparse_labels_logs_the_labelled_means(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = SegmentationModule(net={"arch": "unet", "encoder": "resnet18"}, num_classes=3,
                                class_names=CLASS_NAMES, scheduler={"name": "none"})
    data = SparsePatches(6, seed=1)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0)
    trainer.fit(module, DataLoader(data, batch_size=3), DataLoader(data, batch_size=3))
    logged = trainer.logged_metrics
    assert all(torch.isfinite(v) for v in logged.values())
    # the validation loss: batches weighted by their images holding a label (2 and 3, not 3 and 3)
    module.eval()
    with torch.no_grad():
        batches = [(data.image[i:i + 3], data.mask[i:i + 3]) for i in (0, 3)]
        losses = [module.criterion(module(x), y).item() for x, y in batches]
        preds = module(data.image).argmax(1)
    assert float(logged["val/loss"]) == pytest.approx((2 * losses[0] + 3 * losses[1]) / 5,
                                                      abs=1e-6)
    labelled = data.mask != UNLABELLED
    alone = plain(preds[labelled], data.mask[labelled])
    assert float(logged["val/miou"]) == pytest.approx(float(alone["val/miou"]), abs=1e-6)
