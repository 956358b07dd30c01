"""The weights a prediction runs: one file, an in-process network, or an ensemble of files.

``bone-predict weights=[a.safetensors,b.safetensors,...]``: the members' softmax probabilities are
averaged window by window (:class:`~bone_seg.inference.forward.WindowModel`), member after member
in the order given (the order is part of the output's fingerprint: float sums depend on it).

Members must agree on what the prediction needs of them (:data:`MUST_MATCH`: classes, mode, slices
and channels, normalisation): the first disagreement is refused naming both files. They may
differ in architecture, encoder and patch size (the windows are the first member's).

Memory: one network per distinct architecture, not one per member. A member's weights are copied
into its architecture's network when its turn comes (once per step of ``batch_size`` windows),
read again from its file tensor by tensor (safetensors, from the page cache: tens of milliseconds
for a U-Net/ResNet-18 against seconds of forward passes per step), so an ensemble of five CV fold
models holds the memory of one network, not five. (Keeping every member's network instead would
add one network's memory per member: 57 MB each for a U-Net/ResNet-18, which alone breaks
"≤ 1.2 × a single model's peak RSS" for small scans.) The file's digest was checked when it was
first loaded; a file whose size or modification time changes during the prediction is refused
rather than read again.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from bone_seg.errors import BoneSegError

MUST_MATCH = ("mode", "slices", "in_channels", "num_classes", "class_names", "normalization",
              "stats_policy", "clip_range")
IN_PROCESS = "<in-process network>"


@dataclasses.dataclass
class Member:
    """One member: how messages name it, its metadata and digest, the network it runs on."""

    name: str
    meta: Any
    digest: str
    arch: str
    path: Path | None = None
    stamp: tuple[int, int] | None = None
    tensors: dict[str, torch.Tensor] | None = None  # in-process members of an ensemble

    def load_into(self, net: torch.nn.Module) -> None:
        """Copy this member's weights into ``net``, its architecture's network."""
        from bone_seg.networks.factory import load_state_into
        from bone_seg.weights.detect import load_any_weights, weights_format

        if self.path is None:
            load_state_into(net, self.tensors, source=self.name)
            return
        if _stamp(self.path) != self.stamp:
            raise BoneSegError(f"weights file {self.path} changed while predicting; predict "
                               "again with the files unchanged")
        if weights_format(self.path) == "safetensors":
            _copy_safetensors(self.path, net)
        else:
            load_state_into(net, load_any_weights(self.path)[0], source=self.name)


def _copy_safetensors(path: Path, net: torch.nn.Module) -> None:
    """Copy a safetensors file into ``net`` tensor by tensor: memory holds one tensor of the
    file at a time, not a second state dict (keys and shapes were checked when the file was
    first loaded into a network of this architecture; checked again, cheaply)."""
    from safetensors import safe_open

    own = net.state_dict()  # shares the parameters' memory
    with safe_open(str(path), framework="pt", device="cpu") as f, torch.no_grad():
        if set(f.keys()) != set(own):
            raise BoneSegError(f"weights file {path} does not hold the tensors of the network "
                               "it was loaded into before; was it replaced?")
        for key, target in own.items():
            tensor = f.get_tensor(key)
            if tensor.shape != target.shape:
                raise BoneSegError(f"weights file {path}: {key} has shape {tuple(tensor.shape)}, "
                                   f"the network {tuple(target.shape)}; was it replaced?")
            target.copy_(tensor)


@dataclasses.dataclass
class Ensemble:
    """The members and one network per distinct architecture (holding its first member's
    weights when built)."""

    members: list[Member]
    nets: dict[str, torch.nn.Module]

    @property
    def meta(self):
        """The first member's metadata (the others agree on :data:`MUST_MATCH`)."""
        return self.members[0].meta

    @property
    def digest(self) -> str | list[str]:
        """The weights part of a fingerprint: one digest, or the members' in order."""
        digests = [m.digest for m in self.members]
        return digests[0] if len(digests) == 1 else digests

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def copy(self) -> Ensemble:
        """The same members with copies of the networks (one ensemble per device)."""
        return Ensemble(self.members, {k: copy.deepcopy(n) for k, n in self.nets.items()})

    @classmethod
    def of(cls, net: torch.nn.Module, meta) -> Ensemble:
        """One in-process network, for a :class:`~bone_seg.inference.predictor.Predictor` (no
        digest: nothing is fingerprinted)."""
        return cls([Member(IN_PROCESS, meta, "", _arch(meta))], {_arch(meta): net})


def load_ensemble(weights) -> Ensemble:
    """Load ``weights``: a file, an in-process ``(net, meta)``, or a list of either.

    Raises:
        BoneSegError: a missing or unreadable file, an empty or repeating list, or members that
            disagree on classes, mode, slices or normalisation (before any network is built
            for them).
    """
    items = _items(weights)
    members: list[Member] = []
    nets: dict[str, torch.nn.Module] = {}
    for item in items:
        member, state, net = _read(item, several=len(items) > 1)
        if members:
            check_match(members[0], member)
        if member.arch not in nets:
            nets[member.arch] = net if net is not None else _build(member, state)
        members.append(member)
    return Ensemble(members, nets)


def check_match(first: Member, other: Member) -> None:
    """Refuse ``other`` unless it agrees with ``first`` on :data:`MUST_MATCH`."""
    for field in MUST_MATCH:
        a, b = getattr(first.meta, field), getattr(other.meta, field)
        if a != b:
            raise BoneSegError(
                f"weights {other.name} and {first.name} cannot be ensembled: {field} is {b!r} in "
                f"the first, {a!r} in the second (members must share classes, mode, slices and "
                "normalisation); predict them separately")


def _items(weights) -> list:
    if isinstance(weights, tuple) and len(weights) == 2 and isinstance(weights[0],
                                                                       torch.nn.Module):
        return [weights]
    if isinstance(weights, (str, os.PathLike)):
        return [weights]
    items = list(weights)
    if not items:
        raise BoneSegError("weights=[]: give a weights file, or a list of them for an ensemble")
    paths = [str(Path(str(w)).resolve()) for w in items if isinstance(w, (str, os.PathLike))]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise BoneSegError(f"weights lists {twice[0]} twice; give each member once")
    return items


def _read(item, several: bool) -> tuple[Member, dict | None, torch.nn.Module | None]:
    """``(member, its tensors, None)`` of a file; ``(member, None, net)`` of an in-process one."""
    if isinstance(item, tuple):
        net, meta = item
        return _in_process(net, meta, keep=several), None, net
    path = Path(str(item))
    if not path.is_file():
        raise BoneSegError(f"weights={item}: no such file; give a .safetensors written by "
                           "bone-fit or a BONe .pth")
    from bone_seg.weights.detect import load_any_weights

    stamp = _stamp(path)
    state, meta = load_any_weights(path)
    return Member(str(item), meta, file_sha256(path), _arch(meta), path, stamp), state, None


def _build(member: Member, state: dict) -> torch.nn.Module:
    """The network a file's metadata describes, holding its weights."""
    from bone_seg.networks.factory import load_state_into
    from bone_seg.weights.network import net_for_meta

    meta = member.meta
    net = net_for_meta(meta)
    load_state_into(net, state, source=member.name, meta=meta)
    return net.eval()


def _in_process(net: torch.nn.Module, meta, keep: bool) -> Member:
    from bone_seg.weights.safetensors_file import tensors_digest

    state = net.state_dict()
    h = hashlib.sha256(tensors_digest(state).encode())
    h.update(meta.to_json().encode())
    tensors = {k: v.detach().to("cpu", copy=True) for k, v in state.items()} if keep else None
    return Member(IN_PROCESS, meta, "net:" + h.hexdigest(), _arch(meta), tensors=tensors)


def _arch(meta) -> str:
    """Members with equal keys run on one network (same state dict names and shapes)."""
    return json.dumps([meta.arch, meta.encoder, meta.mode, meta.in_channels, meta.num_classes,
                       meta.net_kwargs] + ([meta.net_target] if meta.net_target else []),
                      sort_keys=True)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
