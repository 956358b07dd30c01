"""The LightningModule: plain-config construction, Hydra config, a real tiny fit and its logs."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import segmentation_models_pytorch as smp
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from model_helpers import CLASS_NAMES, random_batch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from bone_seg.errors import BoneSegError
from bone_seg.modules.segmentation import SegmentationModule
from bone_seg.weights.meta import WeightsMeta

CONF = Path(__file__).resolve().parents[2] / "conf"
EPOCHS = 3


class Patches(Dataset):
    """Random patches whose mask follows the intensity (learnable), as dict samples."""

    def __init__(self, n: int, shape: tuple[int, ...], seed: int) -> None:
        batch = random_batch((n, *shape), seed=seed)
        self.image, self.mask = batch["image"], batch["mask"]

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.image[i], "mask": self.mask[i]}


def epoch_values(csv: Path) -> dict[int, dict[str, float]]:
    """Per epoch, every metric the CSV logger wrote (rows of one epoch merged)."""
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    out: dict[int, dict[str, float]] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=True))
        epoch = int(row.pop("epoch"))
        out.setdefault(epoch, {}).update({k: float(v) for k, v in row.items() if v != ""})
    return out


def compose_model(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(overrides=["+model=default", *overrides]).model


def test_default_config_is_the_papers_baseline() -> None:
    cfg = compose_model()
    module = instantiate(cfg, mode="2d", in_channels=1, num_classes=3, class_names=CLASS_NAMES)
    assert isinstance(module, SegmentationModule)
    assert type(module.hparams.net) is dict and type(module.hparams.optimizer["betas"]) is list
    assert isinstance(module.net, smp.Unet)
    assert type(module.net.encoder).__name__ == "ResNetEncoder"
    assert module.net.encoder.conv1.in_channels == 1
    assert module.hparams.net["weights"] is None
    assert isinstance(module.criterion.loss, smp.losses.JaccardLoss)
    trainer = pl.Trainer(max_epochs=25, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    module.trainer = trainer
    made = module.configure_optimizers()
    opt, sched = made["optimizer"], made["lr_scheduler"]
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 1e-3
    assert type(sched["scheduler"]) is torch.optim.lr_scheduler.CosineAnnealingLR
    assert sched["scheduler"].eta_min == 1e-6 and sched["interval"] == "epoch"


def test_sweep_overrides_and_presets() -> None:
    cfg = compose_model("model.net.arch=unetplusplus", "model.net.encoder=efficientnet-b3")
    module = instantiate(cfg, mode="2.5d", in_channels=3, num_classes=3)
    assert isinstance(module.net, smp.UnetPlusPlus)
    assert type(module.net.encoder).__name__ == "EfficientNetEncoder"
    assert module.net_meta()["slices"] == 3
    for preset, cls in [("segformer", smp.Segformer), ("deeplabv3plus", smp.DeepLabV3Plus)]:
        module = instantiate(compose_model(f"model/net={preset}"), num_classes=3)
        assert isinstance(module.net, cls)
    module = instantiate(compose_model("model.loss.name=focal_tversky", "model.loss.gamma=0.5",
                                       "model.optimizer.name=sgd"), num_classes=3)
    assert module.criterion.options["gamma"] == 0.5
    assert module.hparams.optimizer["name"] == "sgd"


def test_omegaconf_values_become_plain() -> None:
    net = OmegaConf.create({"arch": "unet", "encoder": "resnet18", "weights": None})
    module = SegmentationModule(net=net, loss=OmegaConf.create({"name": "dice"}), num_classes=3,
                                class_names=OmegaConf.create(CLASS_NAMES))
    assert type(module.hparams.net) is dict and module.class_names == CLASS_NAMES


def test_bad_class_names_and_batches() -> None:
    with pytest.raises(BoneSegError, match="must give 3 distinct names"):
        SegmentationModule(num_classes=3, class_names=["a", "b"])
    module = SegmentationModule(num_classes=3, scheduler={"name": "none"})
    with pytest.raises(BoneSegError, match=r"batch image has shape \(2, 3, 64, 64\)"):
        module.model_step(random_batch((2, 3, 64, 64)))
    bad = random_batch((2, 1, 64, 64))
    bad["mask"] = bad["mask"][:, :32]
    with pytest.raises(BoneSegError, match=r"batch mask has shape \(2, 32, 64\)"):
        module.model_step(bad)
    with pytest.raises(BoneSegError, match="'image' and 'mask'"):
        module.model_step((bad["image"], bad["mask"]))


def test_inference_helpers_and_meta() -> None:
    module = SegmentationModule(num_classes=3, class_names=CLASS_NAMES)
    module.train()
    x = torch.randn(2, 1, 64, 64)
    logits = module.predict_logits(x)
    assert not module.training and logits.shape == (2, 3, 64, 64) and not logits.requires_grad
    assert torch.equal(module.predict_step({"image": x}, 0), module(x))
    meta = WeightsMeta(**module.net_meta(), patch_size=64)
    assert (meta.arch, meta.encoder, meta.class_names) == ("unet", "resnet18", CLASS_NAMES)


def iou_dice(preds: torch.Tensor, target: torch.Tensor, n: int) -> tuple[list, list]:
    """Class-wise IoU and Dice from pooled counts, computed here independently."""
    iou, dice = [], []
    for c in range(n):
        p, t = preds == c, target == c
        tp, fp, fn = (p & t).sum().item(), (p & ~t).sum().item(), (~p & t).sum().item()
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else 0.0)
        dice.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return iou, dice


def test_a_real_fit_logs_what_the_records_need(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = SegmentationModule(net={"arch": "unet", "encoder": "resnet18"}, num_classes=3,
                                class_names=CLASS_NAMES)
    train = DataLoader(Patches(8, (1, 64, 64), seed=1), batch_size=4)
    val = DataLoader(Patches(6, (1, 64, 64), seed=2), batch_size=3)
    logger = CSVLogger(tmp_path, name="csv", version=0)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", logger=logger,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1,
                         default_root_dir=tmp_path, num_sanity_val_steps=1)
    trainer.fit(module, train, val)
    logged = trainer.logged_metrics
    epochs = epoch_values(Path(logger.log_dir) / "metrics.csv")
    assert sorted(epochs) == list(range(EPOCHS))
    expected = {"train/loss", "train/miou", "train/dice", "val/loss", "val/miou", "val/dice",
                "val/miou_best", "lr"}
    expected |= {f"{s}/{m}_{c}" for s in ("train", "val") for m in ("iou", "dice")
                 for c in CLASS_NAMES}
    assert expected <= set(logged)
    # the schedule: one cosine from 1e-3 reaching 1e-6 in the last epoch
    assert epochs[0]["lr"] == pytest.approx(1e-3)
    assert epochs[EPOCHS - 1]["lr"] == pytest.approx(1e-6)
    assert all(epochs[e]["lr"] > epochs[e + 1]["lr"] for e in range(EPOCHS - 1))
    # best = the running maximum over the epochs (the sanity check does not count)
    vals = [epochs[e]["val/miou"] for e in range(EPOCHS)]
    assert [epochs[e]["val/miou_best"] for e in range(EPOCHS)] == pytest.approx(
        [max(vals[: i + 1]) for i in range(EPOCHS)])
    # the last validation epoch scored the final weights: recompute it independently
    module.eval()
    with torch.no_grad():
        preds = torch.cat([module(b["image"]).argmax(1) for b in val])
    target = torch.cat([b["mask"] for b in val])
    iou, dice = iou_dice(preds, target, 3)
    for c, name in enumerate(CLASS_NAMES):
        assert float(logged[f"val/iou_{name}"]) == pytest.approx(iou[c], abs=1e-6)
        assert float(logged[f"val/dice_{name}"]) == pytest.approx(dice[c], abs=1e-6)
    present = [c for c in range(3) if (preds == c).any() or (target == c).any()]
    assert float(logged["val/miou"]) == pytest.approx(sum(iou[c] for c in present)
                                                      / len(present), abs=1e-6)
    assert float(logged["val/dice"]) == pytest.approx(sum(dice[c] for c in present)
                                                      / len(present), abs=1e-6)
    # the loss logged for validation is the batch-size weighted mean of the batch losses
    with torch.no_grad():
        losses = [(module.criterion(module(b["image"]), b["mask"]).item(), len(b["image"]))
                  for b in val]
    mean = sum(v * n for v, n in losses) / sum(n for _, n in losses)
    assert float(logged["val/loss"]) == pytest.approx(mean, abs=1e-5)


def test_3d_module_fits(tmp_path: Path) -> None:
    module = SegmentationModule(net={"arch": "unet", "encoder": "resnet18"}, mode="3d",
                                num_classes=3, scheduler={"name": "cosine_restarts", "T_0": 1})
    loader = DataLoader(Patches(2, (1, 32, 32, 32), seed=3), batch_size=2)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0)
    trainer.fit(module, loader, loader)
    assert {"val/miou", "val/iou_pores", "train/loss"} <= set(trainer.logged_metrics)


def test_checkpoint_restores_weights_and_best(tmp_path: Path) -> None:
    module = SegmentationModule(num_classes=3, class_names=CLASS_NAMES)
    loader = DataLoader(Patches(4, (1, 64, 64), seed=4), batch_size=4)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0)
    trainer.fit(module, loader, loader)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    restored = SegmentationModule.load_from_checkpoint(tmp_path / "last.ckpt")
    assert restored.hparams.net == module.hparams.net
    for key, value in module.net.state_dict().items():
        assert torch.equal(restored.net.state_dict()[key], value), key
    # the best validation mIoU is part of the checkpoint (a resumed fit keeps it)
    assert restored.val_miou_best.max_value == module.val_miou_best.compute()
    assert torch.isfinite(restored.val_miou_best.max_value)
