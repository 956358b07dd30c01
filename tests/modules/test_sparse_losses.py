"""Sparse labels: every loss leaves unlabelled voxels (255) out exactly, in 2D and 3D.

Exactly means bitwise: whatever the logits at unlabelled voxels (large values, ±inf, NaN), the
loss and its gradient at labelled voxels do not change by one bit and the gradient at unlabelled
voxels is 0. A fully labelled batch gives bitwise the plain library loss; a batch without labels a
loss of 0 with a zero gradient.
"""

from __future__ import annotations

import math

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from bone_seg.classes import UNLABELLED
from bone_seg.errors import BoneSegError
from bone_seg.modules.losses import build_loss, loss_names

SHAPES = {"2d": (3, 3, 12, 10), "3d": (2, 3, 4, 6, 5)}


def plain_losses() -> dict[str, torch.nn.Module]:
    """The libraries' losses with the registry's defaults, built here independently."""
    mc = "multiclass"
    return {
        "jaccard": smp.losses.JaccardLoss(mc),
        "dice": smp.losses.DiceLoss(mc),
        "focal": smp.losses.FocalLoss(mc, gamma=2.0),
        "tversky": smp.losses.TverskyLoss(mc, alpha=0.3, beta=0.7),
        "focal_tversky": smp.losses.TverskyLoss(mc, alpha=0.3, beta=0.7, gamma=0.75),
        "lovasz": smp.losses.LovaszLoss(mc),
        "ce": torch.nn.CrossEntropyLoss(),
    }


def batch(shape: tuple, seed: int, unlabelled: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and a target with about ``unlabelled`` of its voxels 255."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g) * 2
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    target[torch.rand(target.shape, generator=g) < unlabelled] = UNLABELLED
    return logits, target


def value_and_grad(loss, logits: torch.Tensor, target: torch.Tensor):
    x = logits.clone().requires_grad_(True)
    value = loss(x, target)
    value.backward()
    return value.detach(), x.grad


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and (
        a.detach().numpy().tobytes() == b.detach().numpy().tobytes())


def disturbed(logits: torch.Tensor, target: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """``logits`` changed arbitrarily at the unlabelled voxels only."""
    g = torch.Generator().manual_seed(seed)
    noise = {
        "large": torch.randn(logits.shape, generator=g) * 1e30,
        "inf": torch.where(torch.rand(logits.shape, generator=g) < 0.5, math.inf, -math.inf),
        "nan": torch.full(logits.shape, math.nan),
    }[kind]
    return torch.where((target == UNLABELLED).unsqueeze(1), noise, logits)


@pytest.mark.parametrize("kind", ["large", "inf", "nan"])
@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("name", loss_names())
def test_unlabelled_logits_change_nothing(name: str, mode: str, kind: str) -> None:
    logits, target = batch(SHAPES[mode], seed=1)
    loss = build_loss(name)
    value, grad = value_and_grad(loss, logits, target)
    assert torch.isfinite(value) and value > 0
    unlabelled = (target == UNLABELLED).unsqueeze(1).expand_as(grad)
    assert grad[~unlabelled].abs().sum() > 0  # the labelled voxels do get a gradient
    assert (grad[unlabelled] == 0).all()
    for seed in (2, 3):
        value2, grad2 = value_and_grad(loss, disturbed(logits, target, kind, seed), target)
        assert same_bits(value2, value)
        assert same_bits(grad2, grad)  # labelled: the same bits; unlabelled: exactly 0 again


@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("name", loss_names())
def test_value_is_the_loss_of_the_labelled_voxels(name: str, mode: str) -> None:
    """With finite logits the libraries' own ignore_index agrees up to rounding (same meaning)."""
    logits, target = batch(SHAPES[mode], seed=4)
    ours = build_loss(name)(logits, target)
    theirs = plain_losses()[name]
    theirs.ignore_index = UNLABELLED  # the attribute each of these losses reads
    assert ours.item() == pytest.approx(theirs(logits, target).item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("name", loss_names())
def test_fully_labelled_is_bitwise_the_plain_loss(name: str, mode: str) -> None:
    logits, target = batch(SHAPES[mode], seed=5, unlabelled=0.0)
    value, grad = value_and_grad(build_loss(name), logits, target)
    plain_value, plain_grad = value_and_grad(plain_losses()[name], logits, target)
    assert same_bits(value, plain_value) and same_bits(grad, plain_grad)


@pytest.mark.parametrize("kind", ["large", "nan"])
@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("name", loss_names())
def test_no_labelled_voxel_gives_zero_and_no_gradient(name: str, mode: str, kind: str) -> None:
    logits, target = batch(SHAPES[mode], seed=6, unlabelled=1.0)
    value, grad = value_and_grad(build_loss(name), disturbed(logits, target, kind, 7), target)
    assert value.ndim == 0 and value.item() == 0.0
    assert grad is not None and (grad == 0).all()


@pytest.mark.parametrize("name", ["jaccard", "dice", "focal", "tversky", "ce"])
def test_class_weights_with_sparse_labels(name: str) -> None:
    logits, target = batch(SHAPES["2d"], seed=8)
    weights = [0.5, 1.0, 3.0]
    loss = build_loss(name, class_weights=weights)
    value, grad = value_and_grad(loss, logits, target)
    value2, grad2 = value_and_grad(loss, disturbed(logits, target, "nan", 9), target)
    assert same_bits(value, value2) and same_bits(grad, grad2)
    assert value.item() != pytest.approx(build_loss(name)(logits, target).item())  # weights act
    if name == "ce":
        expected = F.cross_entropy(logits, target, weight=torch.tensor(weights),
                                   ignore_index=UNLABELLED)
        assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_lovasz_per_image_averages_the_labelled_images() -> None:
    logits, target = batch(SHAPES["2d"], seed=10)
    target[1] = UNLABELLED  # the middle image has no label at all
    loss = build_loss("lovasz", per_image=True)
    value, grad = value_and_grad(loss, disturbed(logits, target, "inf", 11), target)
    keep = [0, 2]
    alone = [build_loss("lovasz")(logits[[i]], target[[i]]) for i in keep]
    assert value.item() == pytest.approx(torch.stack(alone).mean().item(), rel=1e-6)
    assert (grad[1] == 0).all() and grad[keep].abs().sum() > 0


def test_ignore_index_option_leaves_a_class_out_like_unlabelled() -> None:
    logits, target = batch(SHAPES["3d"], seed=12)
    marked = torch.where(target == 2, UNLABELLED, target)
    for name in ("jaccard", "ce", "lovasz"):
        assert same_bits(build_loss(name, ignore_index=2)(logits, target),
                         build_loss(name)(logits, marked))
    with pytest.raises(BoneSegError, match=r"model.loss.ignore_index='x' must be a whole number"):
        build_loss("dice", ignore_index="x")


def test_half_logits_with_unlabelled_voxels() -> None:
    logits, target = batch(SHAPES["2d"], seed=13)
    value = build_loss("jaccard")(logits.half(), target)
    assert value.dtype == torch.float32
    assert same_bits(value, build_loss("jaccard")(disturbed(logits, target, "nan", 1).half(),
                                                  target))
