"""The sliding-window predictor: pure PyTorch, streamed along Z, exactly repeatable.

Plan: windows of ``chunk_depth`` (3D; 1 slice in 2D/2.5D) × ``chunk_size`` × ``chunk_size`` with
starts spread evenly on every axis (:func:`window_starts`). Z-window starts are visited in
increasing order; after the windows of one start are added, every slice before the next start is
final (no later window reaches it) and is handed out. So only the open windows' slices are held,
whatever the scan's depth. The input of a window is read and normalised when it is needed
(2.5D adds its ``k // 2`` neighbouring slices, replicating the edge slices).

Probabilities (softmax) are weighted by the importance map, summed in float32 in a fixed window
order and divided by the summed weights; the label is the arg-max, set to background where the
maximum probability is below ``threshold``.

Exact repeatability. On the CPU, PyTorch's convolutions give results for one window that differ
in the last bits between a batch of 1 and a larger batch (measured: up to 1e-5 in the logits), so
the network always runs on *micro-batches* of a fixed ``micro_batch`` windows, filled in the fixed
global window order (the last one zero-padded). ``batch_size`` only groups micro-batches per step
(rounded up to a multiple of ``micro_batch``); each window is computed in the same micro-batch at
the same position whatever ``batch_size`` is, and added in the same order, so labels are bitwise
identical for every batch size, on reruns, and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from bone_seg.inference.windows import importance_map, window_starts
from bone_seg.io.context import check_slices


@dataclass
class WindowPlan:
    """The windows of a volume."""

    shape: tuple[int, int, int]
    depth: int       # window depth (1 in 2D/2.5D)
    size: int        # window height = width
    z_starts: list[int]
    y_starts: list[int]
    x_starts: list[int]

    @classmethod
    def make(cls, shape, depth: int, size: int, overlap: float) -> WindowPlan:
        """Windows covering ``shape`` with ``overlap`` (Z overlap only for depth > 1)."""
        z_starts = (list(range(shape[0])) if depth == 1
                    else window_starts(shape[0], depth, overlap))
        return cls(tuple(shape), depth, size, z_starts, window_starts(shape[1], size, overlap),
                   window_starts(shape[2], size, overlap))

    def final_before(self, k: int) -> int:
        """Slices final once the windows of Z-start ``k`` are added."""
        if k + 1 < len(self.z_starts):
            return self.z_starts[k + 1]
        return self.shape[0]

    def first_start_for(self, done: int) -> int:
        """Index of the first Z-start whose windows reach slice ``done`` (resume)."""
        for k, s in enumerate(self.z_starts):
            if s + self.depth > done:
                return k
        return len(self.z_starts)


class SlidingWindowPredictor:
    """Apply a network to a volume window by window.

    Args:
        net: the network (eval mode is set).
        mode: ``2d``, ``2.5d`` or ``3d``.
        slices: the 2.5D context (odd).
        num_classes: output classes.
        chunk_size, chunk_depth: window size (px) and depth (3D).
        overlap: shared fraction of neighbouring windows.
        blending: ``gaussian`` or ``constant``.
        threshold: minimum probability of the arg-max class (else background).
        batch_size: windows per step (rounded up to a multiple of ``micro_batch``).
        micro_batch: windows per forward pass (fixed: see the module's note).
        device: a torch device.
        amp: autocast to float16 on CUDA.
    """

    def __init__(self, net: torch.nn.Module, mode: str, slices: int, num_classes: int,
                 chunk_size: int, chunk_depth: int, overlap: float, blending: str,
                 threshold: float, batch_size: int, micro_batch: int = 4,
                 device: str | torch.device = "cpu", amp: bool = True):
        self.net = net.eval().to(device)
        self.mode, self.num_classes = mode, num_classes
        self.h = check_slices(slices) if mode == "2.5d" else 0
        self.size = chunk_size
        self.depth = chunk_depth if mode == "3d" else 1
        self.overlap, self.threshold = overlap, threshold
        self.micro = max(1, int(micro_batch))
        self.batch = max(self.micro, -(-int(batch_size) // self.micro) * self.micro)
        self.device = torch.device(device)
        self.amp = amp and self.device.type == "cuda"
        shape = (self.depth, chunk_size, chunk_size) if mode == "3d" else (chunk_size, chunk_size)
        self.weight = importance_map(shape, blending)

    def plan(self, shape) -> WindowPlan:
        """The windows of a volume of ``shape``."""
        return WindowPlan.make(shape, self.depth, self.size, self.overlap)

    @torch.inference_mode()
    def _forward(self, inputs: np.ndarray) -> np.ndarray:
        """Softmax probabilities of a micro-batch (padded to ``micro_batch`` windows)."""
        n = len(inputs)
        if n < self.micro:
            pad = np.zeros((self.micro - n, *inputs.shape[1:]), inputs.dtype)
            inputs = np.concatenate([inputs, pad])
        x = torch.from_numpy(inputs).to(self.device)
        with torch.autocast(self.device.type, enabled=self.amp):
            logits = self.net(x)
        return torch.softmax(logits.float(), dim=1)[:n].cpu().numpy()

    def _windows(self, plan: WindowPlan, k: int) -> list[tuple[int, int, int]]:
        z = plan.z_starts[k]
        return [(z, y, x) for y in plan.y_starts for x in plan.x_starts]

    def stream(self, read: Callable[[int, int], np.ndarray], shape, done: int = 0,
               on_batch: Callable[[int], None] | None = None
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(z0, labels, confidence)`` for consecutive finished slabs from slice ``done``.

        Args:
            read: ``(z0, z1) -> normalised float32 slices`` (any z range inside the volume).
            shape: the volume's shape.
            done: slices already finished (resume).
            on_batch: called with the number of windows after every step (progress).
        """
        plan = self.plan(shape)
        Z, Y, X = shape
        C, d, s = self.num_classes, self.depth, self.size
        py, px = max(Y, s), max(X, s)  # volumes smaller than a window are padded
        k0 = plan.first_start_for(done)
        base = plan.z_starts[k0] if k0 < len(plan.z_starts) else Z
        acc = np.zeros((C, 0, py, px), np.float32)
        wsum = np.zeros((0, py, px), np.float32)
        emitted = done
        for k in range(k0, len(plan.z_starts)):
            z = plan.z_starts[k]
            z_end = min(Z, z + d)
            grow = z + d - (base + acc.shape[1])
            if grow > 0:
                acc = np.concatenate([acc, np.zeros((C, grow, py, px), np.float32)], axis=1)
                wsum = np.concatenate([wsum, np.zeros((grow, py, px), np.float32)], axis=0)
            block = self._input_block(read, z, z_end, shape)
            windows = self._windows(plan, k)
            for b0 in range(0, len(windows), self.batch):
                group = windows[b0:b0 + self.batch]
                for m0 in range(0, len(group), self.micro):
                    micro = group[m0:m0 + self.micro]
                    probs = self._forward(np.stack([self._crop(block, w) for w in micro]))
                    for (wz, wy, wx), p in zip(micro, probs, strict=True):
                        zs = slice(wz - base, wz - base + d)
                        if self.mode != "3d":
                            p = p[:, None]
                        acc[:, zs, wy:wy + s, wx:wx + s] += p * self.weight
                        wsum[zs, wy:wy + s, wx:wx + s] += self.weight
                if on_batch:
                    on_batch(len(group))
            final = min(Z, plan.final_before(k))
            if final > emitted:
                n = final - base
                labels, conf = self._finish(acc[:, :n, :Y, :X], wsum[:n, :Y, :X])
                lo = emitted - base
                yield emitted, labels[lo:], conf[lo:]
                emitted = final
                acc, wsum = acc[:, n:], wsum[n:]
                base = final

    def _input_block(self, read, z0: int, z1: int, shape) -> np.ndarray:
        """Normalised input slices of the windows starting at ``z0``: (C_in or D, Y', X')."""
        Z, Y, X = shape
        if self.mode == "2.5d":
            zz = np.clip(np.arange(z0 - self.h, z0 + self.h + 1), 0, Z - 1)
            lo, hi = int(zz[0]), int(zz[-1]) + 1
            block = read(lo, hi)[zz - lo]
        else:
            block = read(z0, z1)
            if self.mode == "3d" and block.shape[0] < self.depth:
                block = np.concatenate([block, np.zeros((self.depth - block.shape[0], Y, X),
                                                        block.dtype)])
        if Y < self.size or X < self.size:
            block = np.pad(block, ((0, 0), (0, max(0, self.size - Y)),
                                   (0, max(0, self.size - X))))
        return block

    def _crop(self, block: np.ndarray, window: tuple[int, int, int]) -> np.ndarray:
        _, y, x = window
        patch = block[:, y:y + self.size, x:x + self.size]
        return patch[None] if self.mode == "3d" else patch

    def _finish(self, acc: np.ndarray, wsum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = acc / wsum[None]
        labels = probs.argmax(axis=0).astype(np.uint8)
        conf = probs.max(axis=0)
        labels[conf < self.threshold] = 0
        return labels, conf.astype(np.float32)
