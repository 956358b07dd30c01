"""The network side of prediction: the weighted mean probabilities of a step's windows over every
member of an ensemble and every TTA pass.

A step (``batch_size`` windows, a multiple of ``micro_batch``) is cut into micro-batches of the
global window order, as before (see :mod:`bone_seg.inference.predictor` on repeatability). For each
member in turn (its weights copied into its architecture's network when needed,
:mod:`bone_seg.inference.ensemble`), each micro-batch and each TTA pass in the order given, the
logits are turned back (:func:`bone_seg.inference.tta.restore`) and their softmax probabilities
(float32, always computed in the same memory format) summed per window in that fixed order —
member, then pass — which does not depend on how many windows a step holds; the sum is divided by
the number of passes (members × transforms) and weighted by the importance map. One member without
TTA is one pass: its probabilities are used as they are, bit for bit what a single model gives.
With ``mutual_information`` the window's mutual information (nats: the entropy of the mean minus
the mean of the passes' entropies, >= 0) follows as one more channel, weighted and blended like the
probabilities (:mod:`bone_seg.inference.uncertainty`).

``engine="onnxruntime"``: each member's network runs as an ONNX Runtime session instead
(:mod:`bone_seg.inference.onnx_engine`), exported when the member's turn first comes, with its
weights loaded (and batch norms folded) exactly as for the torch engine; the rest is unchanged.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from bone_seg.errors import BoneSegError
from bone_seg.inference.calibration import scale_logits, temperature_of
from bone_seg.inference.ensemble import Ensemble
from bone_seg.inference.fold import conv_bn_pairs, fold_batch_norms, refold
from bone_seg.inference.onnx_engine import OnnxNet, check_engine, ort_threads
from bone_seg.inference.tta import Transform, augment, restore


class WindowModel:
    """An ensemble's networks on one device, run over a step's windows.

    Args:
        ensemble: the members and their networks (this device's copies).
        tta: the transforms of every pass (``(identity,)``: no TTA).
        weight: the importance map of a window (numpy float32).
        device, amp, memory_format, compile: see :class:`~bone_seg.inference.predictor.Predictor`.
        mutual_information: also return the windows' mutual information as one more channel.
        fold_bn: fold batch norms into convolutions (:mod:`bone_seg.inference.fold`). One
            member: its network is folded once. An ensemble: each architecture keeps its network
            (the members' weights are copied into it) and a folded copy, refolded when the member
            changes.
        engine: ``torch`` or ``onnxruntime`` (CPU only; one session per member, exported on
            the member's first step with ``threads`` intra-op threads, default: torch's).
        calibrated: divide each member's logits by the temperature its metadata carries
            (:mod:`bone_seg.inference.calibration`; uncalibrated members: T = 1, untouched).
        mean_temperature: instead, one temperature for the mean of the passes
            (``softmax(log p̄ / T)``, fitted by ``bone-calibrate weights=[a,b,...]``); the
            members' own are then not applied, and the mutual information compares the
            softened mean with the unsoftened passes.
    """

    def __init__(self, ensemble: Ensemble, tta: tuple[Transform, ...], weight: np.ndarray,
                 device: torch.device, amp: bool, memory_format, compile: bool,
                 mutual_information: bool = False, fold_bn: bool = False,
                 engine: str = "torch", threads: int | None = None, calibrated: bool = True,
                 mean_temperature: float | None = None):
        self.engine = check_engine(engine, device)
        if self.engine == "onnxruntime" and compile:
            raise BoneSegError("compile=true compiles the torch network; with "
                               "engine=onnxruntime leave compile=false")
        self.threads = int(threads or ort_threads())
        self._sessions: dict[int, OnnxNet] = {}
        meta = ensemble.meta
        self.members, self.tta, self.mode = ensemble.members, tuple(tta), meta.mode
        self.num_classes, self.in_channels = int(meta.num_classes), int(meta.in_channels)
        self.device, self.amp, self.memory_format = device, amp, memory_format
        self.nets = {k: n.eval().to(device, memory_format=memory_format)
                     for k, n in ensemble.nets.items()}
        self.fold_bn, self._pairs = bool(fold_bn), {}
        folded = dict(self.nets)
        if self.fold_bn:  # a copy: the caller's network stays as it was given
            for k, n in self.nets.items():
                self._pairs[k] = conv_bn_pairs(n)
                folded[k] = fold_batch_norms(copy.deepcopy(n))
            if len(self.members) == 1:  # never reloaded: the folded copy is the network
                self.nets = folded
        self._run = {k: torch.compile(n) if compile else n for k, n in folded.items()}
        self._folded = folded
        self._loaded = {}
        for i, m in enumerate(self.members):  # each network holds its first member's weights
            self._loaded.setdefault(m.arch, i)
        self.passes = len(self.members) * len(self.tta)
        #: each member's temperature (None: uncalibrated or ``calibrated=False``)
        self.mean_temperature = mean_temperature
        self.temperatures = [temperature_of(m.meta) if calibrated and mean_temperature is None
                             else None for m in self.members]
        self.mutual_information = bool(mutual_information)
        self.channels = self.num_classes + int(self.mutual_information)
        self._weight = torch.from_numpy(weight).to(device)

    @property
    def net(self) -> torch.nn.Module:
        """The first member's network (one model: the network)."""
        return self.nets[self.members[0].arch]

    def _activate(self, i: int, shape: tuple[int, ...]):
        """The network of member ``i``, holding member ``i``'s weights (onnxruntime: its
        session, for inputs of ``shape``)."""
        if i in self._sessions:
            return self._sessions[i]
        arch = self.members[i].arch
        if self._loaded[arch] != i:
            self.members[i].load_into(self.nets[arch])
            if self.fold_bn:
                refold(self.nets[arch], self._folded[arch], self._pairs[arch])
            self._loaded[arch] = i
        if self.engine == "onnxruntime":
            self._sessions[i] = OnnxNet(self._folded[arch], torch.zeros(shape), self.threads)
            return self._sessions[i]
        return self._run[arch]

    @torch.inference_mode()
    def step(self, inputs: np.ndarray, micro: int) -> np.ndarray:
        """Weighted mean probabilities ``(n, channels, ...)`` of the windows ``inputs`` (``n``
        a multiple of ``micro``)."""
        xs = [torch.from_numpy(inputs[j:j + micro]).to(self.device).contiguous(
            memory_format=self.memory_format) for j in range(0, len(inputs), micro)]
        sums: list[torch.Tensor | None] = [None] * len(xs)
        ents: list[torch.Tensor | None] = [None] * len(xs)
        for i in range(len(self.members)):
            net = self._activate(i, tuple(xs[0].shape))
            for c, x in enumerate(xs):
                for t in self.tta:
                    p = self._probs(restore(self._logits(net, augment(x, t, self.mode)), t,
                                            self.mode), self.temperatures[i])
                    sums[c] = p if sums[c] is None else sums[c] + p
                    if self.mutual_information:
                        e = torch.special.entr(p).sum(dim=1, keepdim=True)
                        ents[c] = e if ents[c] is None else ents[c] + e
        out = []
        for c in range(len(xs)):
            mean = sums[c] if self.passes == 1 else sums[c] / self.passes
            if self.mean_temperature is not None:
                mean = torch.softmax(torch.log(mean.clamp_min(1e-30)) / self.mean_temperature,
                                     dim=1)
            parts = [mean * self._weight]
            if self.mutual_information:
                h = torch.special.entr(mean).sum(dim=1, keepdim=True)
                parts.append((h - ents[c] / self.passes).clamp_min(0) * self._weight)
            out.append((parts[0] if len(parts) == 1 else torch.cat(parts, 1)).cpu().numpy())
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _probs(self, logits: torch.Tensor, temperature=None) -> torch.Tensor:
        """Softmax probabilities (float32) of logits already turned back (divided by the
        member's ``temperature``), in one memory format for every pass (an untransformed
        pass's)."""
        logits = scale_logits(logits.float(), temperature)
        return torch.softmax(logits.contiguous(memory_format=self.memory_format), dim=1)

    def _logits(self, net, x: torch.Tensor) -> torch.Tensor:
        """The network's output of one micro-batch."""
        x = x.contiguous(memory_format=self.memory_format)
        try:
            with torch.autocast(self.device.type, enabled=self.amp):
                logits = net(x)
        except RuntimeError as err:
            if "channels" not in str(err) and "size" not in str(err):
                raise
            raise BoneSegError(
                f"the network does not accept the {self.mode} input {tuple(x.shape)} "
                f"({self.in_channels} channel(s) as the weights' metadata says): {err}; the "
                "weights' mode/in_channels/slices do not match the network"
            ) from None
        if logits.shape[1] != self.num_classes or logits.shape[2:] != x.shape[2:]:
            raise BoneSegError(
                f"the network returned shape {tuple(logits.shape)} for input {tuple(x.shape)}; "
                f"expected {self.num_classes} classes at the input's size (is chunk_size a "
                "multiple of 32, and chunk_depth of 16 or 32 in 3D?)"
            )
        return logits
