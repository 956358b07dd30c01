"""A lab's own network and loss, given to bone-fit by class path (``_target_``): the example of
docs/development.md, "Adding a loss or a network". Importable as ``seam_targets`` with ``tests/``
on the path (pytest puts it there; the command-line tests add it to ``PYTHONPATH``)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """Two convolutions and a 1x1 head: logits ``(B, out_channels, H, W)``, any size.

    Args:
        in_channels: input channels (bone_seg passes the data's).
        out_channels: classes (bone_seg passes the data's).
        width: channels of the hidden layer.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ScaledCrossEntropy(nn.Module):
    """Cross-entropy times ``scale`` (a loss with an argument of its own).

    Args:
        scale: the factor.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.cross_entropy(logits, target)
