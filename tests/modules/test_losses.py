"""Losses: every registered loss on 2D and 3D targets; Jaccard checked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bone_seg.errors import BoneSegError
from bone_seg.modules.losses import build_loss, build_loss_from_config, loss_names


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU per class over the whole batch, averaged over classes (computed here)."""
    p = logits.double().softmax(1)
    t = F.one_hot(target, logits.shape[1]).movedim(-1, 1).double()
    dims = [0] + list(range(2, logits.ndim))
    inter = (p * t).sum(dims)
    union = p.sum(dims) + t.sum(dims) - inter
    return (1 - inter / union).mean()


@pytest.mark.parametrize("name", loss_names())
@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 3, 4, 8, 8)], ids=["2d", "3d"])
def test_every_loss_gives_a_finite_scalar_and_a_gradient(name: str, shape: tuple) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(*shape, generator=g, requires_grad=True)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    loss = build_loss(name)(logits, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_jaccard_by_hand() -> None:
    # 2 classes, 4 pixels; P(class 1) = .25, .5, .5, .75; target 0, 0, 1, 1
    p1 = torch.tensor([0.25, 0.5, 0.5, 0.75])
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)]).reshape(1, 2, 2, 2)
    target = torch.tensor([0, 0, 1, 1]).reshape(1, 2, 2)
    # class 0: I = .75 + .5 = 1.25, sum p = 2, sum t = 2 -> IoU = 1.25 / 2.75 = 5/11; class 1 same
    loss = build_loss("jaccard")(logits, target)
    assert loss.item() == pytest.approx(1 - 5 / 11, abs=1e-6)


@pytest.mark.parametrize("shape", [(3, 4, 10, 12), (2, 3, 5, 6, 7)], ids=["2d", "3d"])
def test_jaccard_is_one_minus_soft_iou(shape: tuple) -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(*shape, generator=g) * 3
    target = torch.arange(shape[0] * math.prod(shape[2:])).reshape(shape[0], *shape[2:]) % shape[1]
    ours = build_loss("jaccard")(logits, target)
    assert ours.item() == pytest.approx(soft_iou_loss(logits, target).item(), abs=1e-5)


def test_dice_and_ce_match_their_definitions() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    p = logits.softmax(1)
    t = F.one_hot(target, 3).movedim(-1, 1).float()
    inter = (p * t).sum((0, 2, 3))
    dice = 2 * inter / (p.sum((0, 2, 3)) + t.sum((0, 2, 3)))
    assert build_loss("dice")(logits, target).item() == pytest.approx(1 - dice.mean().item(),
                                                                      abs=1e-5)
    assert build_loss("ce")(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target).item(), abs=1e-6)


def test_options_reach_the_loss() -> None:
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    # Tversky with alpha = beta = 1/2 is Dice, with 1/1 is Jaccard
    assert build_loss("tversky", alpha=0.5, beta=0.5)(logits, target).item() == pytest.approx(
        build_loss("dice")(logits, target).item(), abs=1e-6)
    assert build_loss("tversky", alpha=1.0, beta=1.0)(logits, target).item() == pytest.approx(
        build_loss("jaccard")(logits, target).item(), abs=1e-6)
    # Focal Tversky is Tversky raised to gamma
    tversky = build_loss("tversky")(logits, target).item()
    focal_tversky = build_loss("focal_tversky", gamma=0.75)
    assert focal_tversky.options == {"alpha": 0.3, "beta": 0.7, "gamma": 0.75}
    assert focal_tversky(logits, target).item() == pytest.approx(tversky ** 0.75, abs=1e-6)
    # a stronger focal gamma down-weights easy pixels: smaller loss
    assert build_loss("focal", gamma=4.0)(logits, target) < build_loss("focal", gamma=0.0)(
        logits, target)
    # class weights reach cross-entropy
    weights = [1.0, 2.0, 3.0]
    assert build_loss("ce", class_weights=weights)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, weight=torch.tensor(weights)).item(), abs=1e-6)


def test_config_form_and_null_options() -> None:
    loss = build_loss_from_config({"name": "Focal-Tversky", "alpha": None, "gamma": 0.5})
    assert loss.name == "focal_tversky" and loss.options["gamma"] == 0.5
    assert build_loss_from_config(None).name == "jaccard"


def test_half_logits_give_a_float32_loss() -> None:
    logits = torch.randn(2, 3, 8, 8).half()
    target = torch.randint(0, 3, (2, 8, 8))
    assert build_loss("jaccard")(logits, target).dtype == torch.float32


def test_unknown_names_and_options() -> None:
    with pytest.raises(BoneSegError, match="model.loss.name='bce' .*valid: " + ", ".join(
            loss_names())):
        build_loss("bce")
    with pytest.raises(BoneSegError, match=r"option\(s\) \['alpah'\] .* valid: alpha, gamma"):
        build_loss("focal", alpah=0.25)
    with pytest.raises(BoneSegError, match=r"option\(s\) \['gamma'\] that loss 'jaccard'"):
        build_loss("jaccard", gamma=2.0)
