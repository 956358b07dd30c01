"""Temperature scaling: fit one temperature per model on the validation scans, apply it everywhere
probabilities are made.

A network's softmax is over-confident; dividing its logits by a temperature ``T > 1`` softens it
without changing which class is largest (the arg-max labels are bitwise the same wherever no
``threshold`` applies). ``T`` minimises the negative log-likelihood (NLL) of the validation scans'
labelled voxels (Guo et al. 2017, "On calibration of modern neural networks").

Sample (memory bounded)
-----------------------
The logits are collected window by window with the prediction's own windows and inputs
(:class:`~bone_seg.inference.predictor.Predictor`: its plan, normalisation and 2D / 2.5D / 3D
input), on ``windows`` windows per scan drawn at random (seeded) and, in each, at most
``voxels`` of its labelled voxels (mask != 255) drawn at random: a fixed-size sample of
``scans × windows × voxels × C`` float32 values, whatever the scans' size (2 scans × 24 windows ×
2048 voxels × 3 classes: 1.2 MB). A fixed random subsample rather than NLL accumulated over a grid
of temperatures: one pass over the windows, then an exact optimiser on the sample (a log-spaced grid
to bracket the minimum, then L-BFGS on ``log T`` from the best grid point), and the same sample
gives the ECE before and after (:mod:`bone_seg.metrics.calibration`).

Per class
---------
``per_class=True`` fits one temperature per class (logit ``c`` divided by ``T_c``, "vector
scaling" without bias); it can change the arg-max, so it is used only where it measurably
lowers the NLL on held-out voxels (``benchmarks/calibration.py`` measures both).

Ensembles
---------
Each member carries its own temperature (fitted on its own validation scans) and each pass's
logits are divided by its member's before the softmax; the mean of calibrated members was
measured against one temperature on the mean (``benchmarks/calibration.py``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from bone_seg.errors import BoneSegError

GRID = np.exp(np.linspace(math.log(0.25), math.log(8.0), 41))  # the bracketing grid of T


def check_temperature(value, key: str = "temperature") -> tuple[float, ...]:
    """A temperature (a number or one per class) as a tuple of positive finite floats.

    Raises:
        BoneSegError: not positive, not finite, or empty.
    """
    values = (value,) if isinstance(value, (int, float, np.floating)) else tuple(value or ())
    ok = bool(values) and all(not isinstance(v, bool) and isinstance(v, (int, float, np.floating))
                              and math.isfinite(v) and v > 0 for v in values)
    if not ok:
        raise BoneSegError(f"{key}={value!r}: a positive number (1: uncalibrated), or one per "
                           "class")
    return tuple(float(v) for v in values)


def temperature_of(meta) -> tuple[float, ...] | None:
    """The temperature a weights' metadata carries (None: uncalibrated)."""
    cal = getattr(meta, "calibration", None) or {}
    t = cal.get("temperature")
    return None if t is None else check_temperature(t, "calibration.temperature")


def scale_logits(logits: torch.Tensor, temperature: Sequence[float] | None) -> torch.Tensor:
    """``logits / T`` along the class axis (1); ``None`` or ``T == 1``: the logits themselves."""
    if temperature is None or all(t == 1.0 for t in temperature):
        return logits
    if len(temperature) == 1:
        return logits / temperature[0]
    shape = [1, len(temperature)] + [1] * (logits.dim() - 2)
    return logits / torch.tensor(temperature, dtype=logits.dtype,
                                 device=logits.device).view(shape)


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    return torch.nn.functional.cross_entropy(logits / temperature, labels)


def fit_temperature(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                    per_class: bool = False) -> tuple[float, ...]:
    """The temperature (one, or one per class) minimising the NLL of ``labels`` ``(N,)`` under
    ``softmax(logits / T)`` (``logits`` ``(N, C)``).

    A log-spaced grid (0.25 to 8) brackets the scalar minimum, L-BFGS on ``log T`` refines it
    (float64; per class starting from the scalar optimum).

    Raises:
        BoneSegError: no voxels, or shapes that disagree.
    """
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise BoneSegError(f"temperature fit: logits of shape {tuple(x.shape)} and {len(y)} "
                           "labels; expected (N, C) and N with N > 0 (no labelled voxels in the "
                           "validation scans?)")
    with torch.no_grad():
        grid = [float(nll(x, y, torch.tensor(t, dtype=torch.float64))) for t in GRID]
    start = math.log(GRID[int(np.argmin(grid))])
    log_t = torch.full((x.shape[1] if per_class else 1,), start, dtype=torch.float64,
                       requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, tolerance_grad=1e-10,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nll(x, y, log_t.exp())
        loss.backward()
        return loss

    opt.step(closure)
    return tuple(float(v) for v in log_t.detach().exp())


@dataclasses.dataclass
class LogitSample:
    """Logits ``(N, C)`` of sampled labelled voxels, their labels ``(N,)`` and scan of origin."""

    logits: np.ndarray
    labels: np.ndarray
    scans: list[str]
    per_scan: list[int]

    def probs(self, temperature: Sequence[float] | None = None) -> np.ndarray:
        """Softmax probabilities ``(N, C)`` (float32) at ``temperature``."""
        t = torch.from_numpy(self.logits)
        return torch.softmax(scale_logits(t, temperature), dim=1).numpy()
