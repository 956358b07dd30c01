"""Optimisers and schedules built from config dicts."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, CosineAnnealingWarmRestarts

from bone_seg.errors import BoneSegError
from bone_seg.modules.optim import build_optimizer, build_scheduler


def params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(3, 2).parameters())


def lrs_per_epoch(cfg: dict, epochs: int, lr: float = 1e-3) -> list[float]:
    """The learning rate each epoch trains with, stepping the schedule once per epoch."""
    opt = build_optimizer(params(), {"name": "adam", "lr": lr})
    sched = build_scheduler(opt, cfg, max_epochs=epochs)["scheduler"]
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(
    ("cfg", "cls", "expected"),
    [
        ({"name": "adam", "lr": 1e-3, "betas": [0.8, 0.9], "momentum": 0.9},
         torch.optim.Adam, {"lr": 1e-3, "betas": (0.8, 0.9), "weight_decay": 0}),
        ({"name": "AdamW", "lr": 2e-4, "weight_decay": 0.05},
         torch.optim.AdamW, {"lr": 2e-4, "weight_decay": 0.05}),
        ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
          "betas": [0.9, 0.999]},
         torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
    ],
)
def test_optimizers(cfg: dict, cls: type, expected: dict) -> None:
    opt = build_optimizer(params(), cfg)
    assert type(opt) is cls
    for key, value in expected.items():
        assert opt.param_groups[0][key] == value, key


def test_optimizer_errors() -> None:
    with pytest.raises(BoneSegError, match="model.optimizer.name='rmsprop' .*adam, adamw, sgd"):
        build_optimizer(params(), {"name": "rmsprop"})
    with pytest.raises(BoneSegError, match=r"unknown key\(s\) \['learning_rate'\]"):
        build_optimizer(params(), {"name": "adam", "learning_rate": 1e-3})
    with pytest.raises(BoneSegError, match="Nesterov"):
        build_optimizer(params(), {"name": "sgd", "lr": 0.1, "nesterov": True, "momentum": 0})
    frozen = params()
    for p in frozen:
        p.requires_grad_(False)
    with pytest.raises(BoneSegError, match="no trainable parameters"):
        build_optimizer(frozen, {"name": "adam"})


def test_cosine_reaches_eta_min_at_the_last_epoch() -> None:
    epochs = 6
    lrs = lrs_per_epoch({"name": "cosine", "eta_min": 1e-6}, epochs)
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-6, rel=1e-6)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))  # one cycle, no restart
    # halfway, a cosine is at the mean of its ends
    half = lrs_per_epoch({"name": "cosine", "eta_min": 0.0}, 5)[2]
    assert half == pytest.approx(0.5e-3)
    opt = build_optimizer(params(), {"lr": 1e-3})
    made = build_scheduler(opt, {"name": "cosine"}, max_epochs=25)
    assert isinstance(made["scheduler"], CosineAnnealingLR)
    assert made["interval"] == "epoch" and made["scheduler"].eta_min == 1e-6
    assert made["scheduler"].T_max == 24


def test_cosine_per_step() -> None:
    opt = build_optimizer(params(), {"lr": 1e-3})
    made = build_scheduler(opt, {"name": "cosine", "interval": "step"}, max_epochs=3,
                           total_steps=30)
    assert made["interval"] == "step" and made["scheduler"].T_max == 29


def test_warm_restarts_restart() -> None:
    lrs = lrs_per_epoch({"name": "cosine_restarts", "T_0": 3, "T_mult": 1, "eta_min": 0.0}, 9)
    assert lrs[0] == lrs[3] == lrs[6] == pytest.approx(1e-3)  # back to the start every 3 epochs
    assert lrs[1] < lrs[0] and lrs[2] < lrs[1] and lrs[4] < lrs[3]
    assert lrs[1] == pytest.approx(1e-3 * (1 + math.cos(math.pi / 3)) / 2)
    grow = lrs_per_epoch({"name": "cosine_restarts", "T_0": 2, "T_mult": 2, "eta_min": 0.0}, 8)
    restarts = [i for i, lr in enumerate(grow) if lr == pytest.approx(1e-3)]
    assert restarts == [0, 2, 6]  # cycles of 2, 4, 8 epochs
    opt = build_optimizer(params(), {"lr": 1e-3})
    made = build_scheduler(opt, {"name": "cosine_restarts"}, max_epochs=5)
    assert isinstance(made["scheduler"], CosineAnnealingWarmRestarts)


def test_none_and_errors() -> None:
    opt = build_optimizer(params(), {"lr": 1e-3})
    assert build_scheduler(opt, {"name": "none"}, max_epochs=3) is None
    with pytest.raises(BoneSegError, match="model.scheduler.name='linear'"):
        build_scheduler(opt, {"name": "linear"}, max_epochs=3)
    with pytest.raises(BoneSegError, match=r"unknown key\(s\) \['t_max'\]"):
        build_scheduler(opt, {"name": "cosine", "t_max": 3}, max_epochs=3)
    with pytest.raises(BoneSegError, match="interval='batch'"):
        build_scheduler(opt, {"name": "cosine", "interval": "batch"}, max_epochs=3)
    with pytest.raises(BoneSegError, match="set trainer.max_epochs or model.scheduler.T_max"):
        build_scheduler(opt, {"name": "cosine"}, max_epochs=None)
    assert build_scheduler(opt, {"name": "cosine", "T_max": 7}, max_epochs=None)[
        "scheduler"].T_max == 7
