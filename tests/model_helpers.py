"""Helpers shared by the model tests (a module of its own: conftest files are not importable)."""

from __future__ import annotations

import torch

CLASS_NAMES = ["background", "bone", "pores"]


def random_batch(shape: tuple[int, ...], num_classes: int = 3, seed: int = 0) -> dict:
    """``{"image", "mask"}`` for an image of ``shape`` = (B, C, *spatial); the mask depends on
    the first channel so that a network can learn it."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(*shape, generator=g)
    edges = torch.tensor([-0.4, 0.4])
    mask = torch.bucketize(image[:, 0].contiguous(), edges).clamp_max(num_classes - 1)
    return {"image": image, "mask": mask.long()}


def one_step(module, batch: dict) -> tuple[float, float]:
    """Forward, loss, backward and one optimiser step of a SegmentationModule, without a Trainer.

    Returns:
        (loss, largest absolute change of any parameter).
    """
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    before = [p.detach().clone() for p in module.parameters()]
    module.train()
    loss, preds, target = module.model_step(batch)
    optimizer.zero_grad()
    loss.backward()
    # (some encoders hold layers their features skip, e.g. EfficientNet's head: no gradient)
    grads = [p.grad for p in module.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert module.net.segmentation_head[0].weight.grad.abs().sum() > 0
    optimizer.step()
    assert preds.shape == target.shape
    change = max((p.detach() - b).abs().max().item()
                 for p, b in zip(module.parameters(), before, strict=True))
    return loss.item(), change
