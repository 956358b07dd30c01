"""The sliding-window predictor: pure PyTorch (no Lightning), streamed along Z, exactly repeatable.

Plan
----
Windows of ``chunk_depth`` (3D; one slice in 2D/2.5D) × ``chunk_size`` × ``chunk_size``, starts
spread evenly on every axis (:class:`~bone_seg.inference.windows.WindowPlan`), visited in one fixed
global order (Z-start by Z-start, then row by row). When the first window of Z-start ``k`` comes up,
every slice before ``z_starts[k]`` is final (no later window reaches it): its probabilities are
divided by the summed weights and handed out. So only the slices of the open windows are held,
whatever the scan's depth, and a streamed run equals a whole-volume run bit for bit. The input of a
window is read and normalised when needed (2.5D: its ``k // 2`` neighbours, edge-replicated as in
fitting, :func:`bone_seg.io.context.context_indices`; a volume smaller than a window is padded
with zeros after normalisation, i.e. the scan's mean in z-score).

A range ``[z0, z1)`` can be predicted on its own (a resumed run, one device's share): it starts at
the first Z-start whose windows reach ``z0`` and stops after the last one starting before ``z1``.
Windows crossing the range's borders are computed by both neighbours, and every voxel still
receives the same windows in the same order, so the result is the whole-volume result.

Probabilities (softmax, float32) are weighted by the importance map, summed in float32 in the
fixed window order and divided by the summed weights; the label is the arg-max, set to
background (0) where the maximum probability (the *confidence*) is below ``threshold``. An
ensemble's members and TTA passes are averaged per window before the weighting
(:mod:`bone_seg.inference.forward`), so memory stays that of one model's windows; the uncertainty
maps (:mod:`bone_seg.inference.uncertainty`) come from the blended probabilities.

Exact repeatability (measured)
------------------------------
On the CPU (torch 2.x, oneDNN), a window's logits from a batch of 1 differ in the last bits from the
same window in a batch of 2 or more (up to 1.5e-5 for a U-Net/ResNet-18; tested U-Net, UNet++,
DeepLabV3+, 3D U-Net); batches of 2, 3, 4, 5, 7, 8 and 16 agreed with each other and a window's
result did not depend on its companions or position. That a batch's shape selects the kernel
is true on GPUs too (cuDNN), so nothing is assumed about which shapes agree: the network always
runs on **micro-batches** of exactly ``micro_batch`` windows, micro-batch ``j`` holding the
windows ``j*m .. j*m+m-1`` of the global order (the very last one zero-padded; a range computes
its first and last micro-batch whole and drops the windows outside it). ``batch_size`` is
the number of windows prepared per step (a multiple of ``micro_batch``), so it never changes
which windows share a forward pass. Labels are bitwise identical for every ``batch_size``, on
reruns, after a resume and for any split of the slabs between devices; ``micro_batch``, the device
type, the memory format and mixed precision are part of what the result depends on (and of an
output's fingerprint). Blending sums in float32 in the fixed window order, never in an order that
depends on batching (float64 buffers were not needed for repeatability).

Speed
-----
The network runs in channels-last memory format by default (``channels_last``): measured 1.2 ×
faster for a U-Net/ResNet-18 on the 2-core CPU (oneDNN), 2D and 3D. Everything else (reading,
normalising, gathering windows, blending, arg-max) costs 3-4 % on top of the forward passes
(profiled). ``benchmarks/predict_vs_monai.py`` compares with MONAI's ``sliding_window_inference``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from bone_seg.errors import BoneSegError
from bone_seg.inference.calibration import check_temperature
from bone_seg.inference.ensemble import Ensemble
from bone_seg.inference.forward import WindowModel
from bone_seg.inference.settings import PredictSettings
from bone_seg.inference.tta import parse_tta
from bone_seg.inference.uncertainty import check_maps, maps_of
from bone_seg.inference.windows import WindowPlan, importance_map
from bone_seg.io.context import check_slices, context_indices

#: a Predictor's settings when none are given: PredictSettings' own, with 8 windows per step
#: and the batch norms left as they are (bone-predict's config folds them: conf/predict.yaml)
DEFAULT_SETTINGS = PredictSettings(batch_size=8, fold_bn=False)

Reader = Callable[[int, int], np.ndarray]


class Piece(NamedTuple):
    """Finished slices ``z .. z+n-1`` of a stream (see :meth:`Predictor.stream`)."""

    z: int
    labels: np.ndarray
    confidence: np.ndarray
    reassigned: np.ndarray
    maps: dict[str, np.ndarray]


class _InputCache:
    """Normalised input slices ``[c0, c1)`` of a volume, read ahead and dropped behind."""

    def __init__(self, read: Reader, depth: int, ahead: int):
        self.read, self.depth, self.ahead = read, depth, max(1, ahead)
        self.buf: np.ndarray | None = None
        self.c0 = self.c1 = 0

    def get(self, lo: int, hi: int) -> tuple[np.ndarray, int]:
        """Slices ``[lo, hi)`` as ``(buffer, offset)``: slice ``z`` is ``buffer[z - offset]``."""
        if self.buf is None or lo < self.c0 or lo >= self.c1:
            self.buf, self.c0, self.c1 = None, lo, lo
        elif lo > self.c0:
            self.buf, self.c0 = self.buf[lo - self.c0:], lo
        if hi > self.c1:
            end = min(self.depth, max(hi, self.c1 + self.ahead))
            new = np.asarray(self.read(self.c1, end), dtype=np.float32)
            self.buf = new if self.buf is None else np.concatenate([self.buf, new])
            self.c1 = end
        return self.buf, self.c0


class _Blend:
    """The weighted probability sums of the open windows' slices ``[base, base + held)``."""

    def __init__(self, predictor: Predictor, shape: tuple[int, int, int], base: int, z0: int,
                 z1: int):
        self.p, self.shape = predictor, shape
        _, ymax, xmax = shape
        self.acc = np.zeros((predictor.model.channels, 0, ymax, xmax), np.float32)
        self.wsum = np.zeros((0, ymax, xmax), np.float32)
        self.base, self.emitted, self.z1 = base, z0, z1

    def add(self, probs: np.ndarray, z: int, y: int, x: int) -> None:
        """Add one window's weighted probabilities (and weights) at ``(z, y, x)``."""
        p, (zmax, ymax, xmax) = self.p, self.shape
        dz, hy, hx = min(p.depth, zmax - z), min(p.size, ymax - y), min(p.size, xmax - x)
        grow = z + dz - (self.base + self.acc.shape[1])
        if grow > 0:
            self.acc = np.concatenate(
                [self.acc, np.zeros((p.model.channels, grow, ymax, xmax), np.float32)], axis=1)
            self.wsum = np.concatenate([self.wsum, np.zeros((grow, ymax, xmax), np.float32)])
        zs = slice(z - self.base, z - self.base + dz)
        prob = probs if p.mode == "3d" else probs[:, None]
        w = p.weight if p.mode == "3d" else p.weight[None]
        self.acc[:, zs, y:y + hy, x:x + hx] += prob[:, :dz, :hy, :hx]
        self.wsum[zs, y:y + hy, x:x + hx] += w[:dz, :hy, :hx]

    def finish(self, upto: int):
        """Hand out the final slices before ``upto`` (within ``[z0, z1)``) and drop them."""
        upto = min(upto, self.z1)
        if upto <= self.base:
            return None
        n, piece = upto - self.base, None
        if upto > self.emitted:
            lo = self.emitted - self.base
            piece = Piece(self.emitted, *self.p._finish(self.acc[:, lo:n], self.wsum[lo:n]))
            self.emitted = upto
        self.acc, self.wsum, self.base = self.acc[:, n:], self.wsum[n:], upto
        return piece


class Predictor:
    """Apply a segmentation network to a volume window by window.

    Args:
        net: the network (put in eval mode and moved to ``device``), or an
            :class:`~bone_seg.inference.ensemble.Ensemble` (this device's copy).
        meta: the weights' :class:`~bone_seg.weights.meta.WeightsMeta` (mode, slices, classes, patch
            size and depth; an ensemble's first member's).
        settings: the :class:`~bone_seg.inference.settings.PredictSettings` this predictor
            follows (default: :data:`DEFAULT_SETTINGS`). Of its fields, these shape the windows
            and the network's passes: ``chunk_size`` / ``chunk_depth`` (window size; ``None``:
            the model's patch size / depth), ``overlap`` (in [0, 1)), ``blending``
            (``gaussian`` | ``constant``), ``threshold`` (minimum probability of the arg-max
            class, else background), ``batch_size`` (windows prepared per step, rounded up to
            a multiple of ``micro_batch``; ``auto``: 1 until the caller sets :attr:`batch`),
            ``micro_batch`` (windows per forward pass, fixed: see the module's note on
            repeatability), ``amp`` (float16 autocast, CUDA only), ``compile``
            (``torch.compile``), ``channels_last`` (measured ~20 % faster on the CPU for a
            U-Net/ResNet-18, oneDNN; the last bits differ from the default format, so it is
            part of an output's fingerprint), ``tta`` (:mod:`bone_seg.inference.tta`),
            ``uncertainty`` (:data:`bone_seg.inference.uncertainty.MAPS`), ``fold_bn`` (fold
            the batch norms into the convolutions, :mod:`bone_seg.inference.fold`; part of the
            fingerprint) and ``engine`` (``torch`` | ``onnxruntime``,
            :mod:`bone_seg.inference.onnx_engine`).
        device: a torch device (``cpu``, ``cuda``, ``cuda:1`` ...).
        **changes: fields of ``settings`` to replace (``Predictor(net, meta, batch_size=4)``).
    """

    def __init__(self, net: torch.nn.Module, meta, settings: PredictSettings | None = None,
                 device: str | torch.device = "cpu", **changes: Any):
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(PredictSettings)})
        if unknown:
            raise BoneSegError(f"Predictor has no setting(s) {unknown}; the settings are the "
                               "fields of bone_seg.inference.settings.PredictSettings")
        s = settings or DEFAULT_SETTINGS
        s = dataclasses.replace(s, **changes) if changes else s
        self.settings = s
        chunk_size, chunk_depth, threshold, engine = (s.chunk_size, s.chunk_depth, s.threshold,
                                                      s.engine)
        micro_batch = s.micro_batch
        batch_size = 1 if s.batch_size == "auto" else s.batch_size
        self.meta = meta
        self.engine = engine
        self.mode = meta.mode
        self.num_classes = int(meta.num_classes)
        self.in_channels = int(meta.in_channels)
        self.slices = int(meta.slices) if self.mode == "2.5d" else 1
        self.h = check_slices(self.slices) if self.mode == "2.5d" else 0
        self.size = int(chunk_size or meta.patch_size)
        self.depth = int(chunk_depth or meta.patch_depth or 1) if self.mode == "3d" else 1
        if self.size < 1 or self.depth < 1:
            raise BoneSegError(f"chunk_size={chunk_size} / chunk_depth={chunk_depth} must be >= 1")
        if not 0 <= threshold <= 1:
            raise BoneSegError(f"threshold={threshold}: a probability from 0 to 1")
        self.overlap, self.threshold = float(s.overlap), float(threshold)
        self.micro = int(micro_batch)
        if self.micro < 1 or int(batch_size) < 1:
            raise BoneSegError(f"batch_size={batch_size} / micro_batch={micro_batch} must be >= 1")
        self.batch = -(-int(batch_size) // self.micro) * self.micro
        self.device = torch.device(device)
        self.amp = bool(s.amp) and self.device.type == "cuda"
        shape = (self.depth, self.size, self.size) if self.mode == "3d" else (self.size, self.size)
        self.weight = importance_map(shape, s.blending)
        self.blending = s.blending
        self.channels_last = bool(s.channels_last) and engine == "torch"  # ONNX: NCHW
        self.memory_format = (
            (torch.channels_last_3d if self.mode == "3d" else torch.channels_last)
            if self.channels_last else torch.contiguous_format)
        self.tta = parse_tta(s.tta, self.mode)
        self.maps = check_maps(s.uncertainty)
        ensemble = net if isinstance(net, Ensemble) else Ensemble.of(net, meta)
        self.model = WindowModel(ensemble, self.tta, self.weight, self.device, self.amp,
                                 self.memory_format, s.compile, "mutual_information" in self.maps,
                                 fold_bn=s.fold_bn, engine=engine, calibrated=s.calibrated,
                                 mean_temperature=None if s.ensemble_temperature is None else
                                 check_temperature(s.ensemble_temperature,
                                                   "ensemble_temperature")[0])
        self.fold_bn = bool(s.fold_bn)
        if "mutual_information" in self.maps and self.model.passes == 1:
            raise BoneSegError("uncertainty=[mutual_information] measures how the passes of an "
                               "ensemble or TTA disagree; with one model and no TTA it is 0: give "
                               "weights=[a,b,...] or tta=flips, or uncertainty=[entropy]")
        self.net = self.model.net

    # ------------------------------------------------------------------ geometry
    def plan(self, shape) -> WindowPlan:
        """The windows of a volume of ``shape``."""
        return WindowPlan.make(shape, self.depth, self.size, self.overlap)

    def _input_range(self, plan: WindowPlan, z: int) -> tuple[int, int]:
        """Slices the window(s) of Z-start ``z`` read."""
        zmax = plan.shape[0]
        if self.mode == "2.5d":
            return max(0, z - self.h), min(zmax, z + self.h + 1)
        return z, min(zmax, z + self.depth)

    def _gather(self, plan: WindowPlan, inputs: _InputCache, idx: range) -> np.ndarray:
        """The network inputs of windows ``idx`` (beyond the last window: zeros)."""
        s, d = self.size, self.depth
        shape = (len(idx), 1, d, s, s) if self.mode == "3d" else (len(idx), self.in_channels, s, s)
        out = np.zeros(shape, np.float32)
        valid = [i for i in idx if i < len(plan)]
        if not valid:
            return out
        lo = self._input_range(plan, plan.window(valid[0])[1])[0]
        hi = self._input_range(plan, plan.window(valid[-1])[1])[1]
        buf, off = inputs.get(lo, hi)
        zmax, ymax, xmax = plan.shape
        for n, i in enumerate(valid):
            _, z, y, x = plan.window(i)
            hy, hx = min(s, ymax - y), min(s, xmax - x)
            if self.mode == "3d":
                dz = min(d, zmax - z)
                out[n, 0, :dz, :hy, :hx] = buf[z - off:z - off + dz, y:y + hy, x:x + hx]
            elif self.mode == "2.5d":
                rows = context_indices(z, self.slices, zmax) - off
                out[n, :, :hy, :hx] = buf[rows, y:y + hy, x:x + hx]
            else:
                out[n, 0, :hy, :hx] = buf[z - off, y:y + hy, x:x + hx]
        return out

    # ------------------------------------------------------------------ streaming
    def stream(self, read: Reader, shape, z0: int = 0, z1: int | None = None,
               read_ahead: int = 16) -> Iterator[Piece]:
        """Yield :class:`Piece` ``(z, labels, confidence, reassigned, maps)``: finished pieces of
        ``[z0, z1)``.

        Args:
            read: ``(a, b) -> normalised float32 slices a..b-1`` of the volume.
            shape: the volume's ``(Z, Y, X)``.
            z0, z1: the slices to predict (default: all).
            read_ahead: slices read at a time.

        Yields:
            ``labels`` (uint8) and ``confidence`` (float32), each ``(n, Y, X)`` for slices
            ``z .. z+n-1``, in increasing ``z``, covering ``[z0, z1)`` exactly once, and
            ``reassigned`` (``(n,)`` int64): voxels per slice whose arg-max class was not
            background but whose confidence was below ``threshold`` (set to background), and
            ``maps``: the uncertainty maps asked for (float32, ``(n, Y, X)`` each).
        """
        zmax = int(shape[0])
        z1 = zmax if z1 is None else min(int(z1), zmax)
        if not 0 <= z0 < z1:
            return
        plan = self.plan(shape)
        k_first = plan.first_start_reaching(z0)
        i_first = k_first * plan.per_start
        i_end = plan.first_start_from(z1) * plan.per_start
        blend = _Blend(self, plan.shape, plan.z_starts[k_first], z0, z1)
        cur_k = k_first
        windows = self._window_probs(plan, _InputCache(read, zmax, read_ahead), i_first, i_end)
        for i, probs in windows:
            k, z, y, x = plan.window(i)
            if k != cur_k:  # every slice before this Z-start is final
                piece = blend.finish(z)
                if piece is not None:
                    yield piece
                cur_k = k
            blend.add(probs, z, y, x)
        piece = blend.finish(z1)
        if piece is not None:
            yield piece

    def _window_probs(self, plan: WindowPlan, inputs: _InputCache, i_first: int,
                      i_end: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(i, weighted probabilities)`` of windows ``i_first .. i_end-1`` in order, computed in
        fixed micro-batches of the global window order (see the module's note)."""
        start = i_first // self.micro * self.micro
        for b0 in range(start, i_end, self.batch):
            b1 = b0 + -(-(min(b0 + self.batch, i_end) - b0) // self.micro) * self.micro
            probs = self.model.step(self._gather(plan, inputs, range(b0, b1)), self.micro)
            for n, i in enumerate(range(b0, min(b1, i_end))):
                if i >= i_first:
                    yield i, probs[n]

    def _finish(self, acc: np.ndarray, wsum: np.ndarray):
        """Labels, confidence, per-slice count of voxels reassigned to background, the maps."""
        c = self.num_classes
        probs = (acc if len(acc) == c else acc[:c]) / wsum[None]
        labels = probs.argmax(axis=0).astype(np.uint8)
        conf = probs.max(axis=0).astype(np.float32)
        low = conf < self.threshold
        moved = np.count_nonzero(low & (labels != 0), axis=(1, 2))
        labels[low] = 0
        mutual = acc[c] / wsum if len(acc) > c else None
        return labels, conf, moved, maps_of(probs, mutual, self.maps)

    def predict_array(self, volume: np.ndarray, normalize: Callable | None = None,
                      with_maps: bool = False):
        """Predict a whole in-memory volume (or slab) at once.

        Args:
            volume: ``(Z, Y, X)`` (or ``(Y, X)``) array.
            normalize: applied to every read block (e.g. a
                :class:`~bone_seg.io.normalize.Normalizer`); ``None`` if already normalised.

        Returns:
            ``(labels uint8, confidence float32)`` of the volume's shape (3D), and with
            ``with_maps`` the uncertainty maps (a dict of float32 volumes) third.
        """
        arr = np.asarray(volume)
        if arr.ndim == 2:
            arr = arr[None]
        norm = normalize or (lambda a: np.asarray(a, np.float32))
        labels = np.zeros(arr.shape, np.uint8)
        conf = np.zeros(arr.shape, np.float32)
        maps = {name: np.zeros(arr.shape, np.float32) for name in self.maps}
        for z, lab, cf, _, piece_maps in self.stream(lambda a, b: norm(arr[a:b]), arr.shape):
            labels[z:z + len(lab)], conf[z:z + len(cf)] = lab, cf
            for name, m in piece_maps.items():
                maps[name][z:z + len(m)] = m
        return (labels, conf, maps) if with_maps else (labels, conf)

    def bytes_per_window(self) -> int:
        """A conservative estimate of the memory one window needs during a step (input, the
        network's activations — about 64 float32 feature maps of the window's size for
        U-Net-like encoders/decoders, measured order of magnitude — and the probabilities)."""
        voxels = self.size * self.size * self.depth
        sums = self.model.channels if self.model.passes > 1 else 0  # the step's running sums
        return int(voxels * 4 * (self.in_channels + 64 + 2 * self.num_classes + sums))
