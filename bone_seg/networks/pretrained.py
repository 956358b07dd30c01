"""Pretrained encoder weights (ImageNet, ...) — from the local cache only, never the network.

smp and timm download pretrained weights on first use; our machines are often offline and a
download attempt hangs on retries. So before a network with pretrained weights is built, the file
smp/timm would load is looked up in the local caches, exactly where they would look:

- smp 2D encoders: the Hugging Face hub cache (``HF_HUB_CACHE``, default
  ``~/.cache/huggingface/hub``), repository ``smp-hub/<encoder>.<weights>`` at the revision smp
  pins, files ``config.json`` and ``model.safetensors``;
- smp-3d encoders: the torch hub cache (``$TORCH_HOME/hub/checkpoints``, default
  ``~/.cache/torch/hub/checkpoints``), the file named by smp-3d's URL;
- ``tu-`` (timm) encoders: the Hugging Face cache of the model's ``hf_hub_id``
  (``model.safetensors`` or ``pytorch_model.bin``), else timm's URL in the torch hub cache.

A missing file raises :class:`~bone_seg.errors.BoneSegError` saying where to put it and that
``model.net.weights=null`` trains from random weights. A present file is then loaded with the hub
forced offline (smp/HF) or handed to timm as a local file, so nothing is fetched either way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bone_seg.errors import BoneSegError
from bone_seg.networks import registry

HF_FILES = ("config.json", "model.safetensors")  # what smp 0.6 fetches for an encoder
TIMM_HF_FILES = ("model.safetensors", "pytorch_model.bin")
TIMM_WEIGHTS_NAME = "imagenet"  # for tu- encoders: timm's default pretrained tag of the model
RANDOM_NAMES = ("", "none", "null", "random", "scratch")


@dataclass(frozen=True)
class Pretrained:
    """How to build an encoder with cached pretrained weights.

    Attributes:
        encoder_weights: the value to pass as smp's ``encoder_weights``.
        files: the cached files that will be read.
        extra_kwargs: keyword arguments to add to the smp model (timm's local-file override).
        hf_offline: build with the Hugging Face hub forced offline.
    """

    encoder_weights: Any
    files: tuple[Path, ...]
    extra_kwargs: dict[str, Any] = field(default_factory=dict)
    hf_offline: bool = True


def is_random(weights: Any) -> bool:
    """True when ``weights`` asks for random initialisation (None, ``null``, ``random``)."""
    return weights is None or (isinstance(weights, str) and weights.strip().lower()
                               in RANDOM_NAMES)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder in use (``HF_HUB_CACHE``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def torch_hub_checkpoints() -> Path:
    """The torch hub checkpoint folder (``$TORCH_HOME/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def pretrained_names(encoder: str, mode: str) -> tuple[str, ...]:
    """Names of the pretrained weights smp knows for ``encoder`` (``imagenet``, ``ssl``, ...)."""
    if encoder.startswith(registry.TIMM_PREFIX):
        return (TIMM_WEIGHTS_NAME,)
    settings = registry.encoder_settings(encoder, mode).get("pretrained_settings") or {}
    return tuple(settings)


def _hf_cached(repo_id: str, filename: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hf_cache_dir()),
                                   revision=revision)
    return Path(found) if isinstance(found, str) else None


def _missing(encoder: str, weights: str, wanted: list[str], how: str) -> BoneSegError:
    return BoneSegError(
        f"model.net.weights={weights!r}: the pretrained weights of encoder {encoder!r} are not in "
        f"the local cache (bone_seg never downloads at run time). Expected: "
        f"{' or '.join(wanted)}. {how} Or set model.net.weights=null to start from random "
        "weights."
    )


def _smp_2d(encoder: str, weights: str) -> Pretrained:
    settings = registry.encoder_settings(encoder, "2d")["pretrained_settings"][weights]
    repo, revision = settings["repo_id"], settings.get("revision")
    files = [_hf_cached(repo, name, revision) for name in HF_FILES]
    if all(files):
        return Pretrained(weights, tuple(files))  # type: ignore[arg-type]
    folder = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
    where = [str(folder / "snapshots" / str(revision) / name) for name in HF_FILES]
    how = (f"On a machine with internet, run `python -c \"import segmentation_models_pytorch as "
           f"smp; smp.create_model('unet', '{encoder}', encoder_weights='{weights}')\"` and copy "
           f"its {folder.name} folder (from ~/.cache/huggingface/hub) into {hf_cache_dir()}.")
    raise _missing(encoder, weights, [" and ".join(where)], how)


def _url_file(url: str) -> Path:
    return torch_hub_checkpoints() / os.path.basename(urlparse(url).path)


def _smp_3d(encoder: str, weights: str) -> Pretrained:
    settings = registry.encoder_settings(encoder, "3d")["pretrained_settings"][weights]
    path = _url_file(settings["url"])
    if path.is_file():
        return Pretrained(weights, (path,), hf_offline=False)
    how = f"Download {settings['url']} on a machine with internet and copy it there."
    raise _missing(encoder, weights, [str(path)], how)


def _timm(encoder: str, weights: str, mode: str) -> Pretrained:
    model = encoder[len(registry.TIMM_PREFIX):]
    if mode == "3d":
        from timm_3d.models._registry import get_pretrained_cfg
    else:
        from timm.models._registry import get_pretrained_cfg
    cfg = get_pretrained_cfg(model)
    if cfg is None:
        raise BoneSegError(f"model.net.weights={weights!r}: timm has no pretrained weights for "
                           f"{model!r}; set model.net.weights=null")
    wanted: list[str] = []
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        repo, _, revision = hub_id.partition("@")
        for name in TIMM_HF_FILES:
            found = _hf_cached(repo, name, revision or None)
            if found is not None:
                return _timm_file(found)
        wanted.append(str(hf_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots"
                          / "<revision>" / TIMM_HF_FILES[0]))
    url = getattr(cfg, "url", None)
    if url:
        path = _url_file(url)
        if path.is_file():
            return _timm_file(path)
        wanted.append(str(path))
    how = (f"Fetch timm's pretrained {model} on a machine with internet (timm.create_model("
           f"'{model}', pretrained=True)) and copy the file there.")
    raise _missing(encoder, weights, wanted or ["<timm has no source>"], how)


def _timm_file(path: Path) -> Pretrained:
    # timm then reads the file itself ('file' source) and never asks the hub
    return Pretrained(True, (path,), {"pretrained_cfg_overlay": {"file": str(path)}},
                      hf_offline=True)


def resolve_pretrained(encoder: str, weights: str, mode: str) -> Pretrained:
    """Locate cached pretrained weights ``weights`` of ``encoder``, without any network access.

    Args:
        encoder: a resolved smp encoder name.
        weights: a pretrained weights name (``imagenet``, ``ssl``, ...).
        mode: ``2d``, ``2.5d`` or ``3d``.

    Raises:
        BoneSegError: the name is not a pretrained weight of the encoder, or its file is not in
            the local cache (the message says where to put it).
    """
    names = pretrained_names(encoder, mode)
    if weights not in names:
        hint = (f"for tu- encoders use weights={TIMM_WEIGHTS_NAME} and pick the tag in the name "
                "(tu-<model>.<tag>)" if encoder.startswith(registry.TIMM_PREFIX)
                else f"known: {', '.join(names) or 'none'}")
        raise BoneSegError(f"model.net.weights={weights!r} is not a pretrained weight of encoder "
                           f"{encoder!r} in {mode} mode, nor an existing file; {hint}")
    if encoder.startswith(registry.TIMM_PREFIX):
        return _timm(encoder, weights, mode)
    if mode == "3d":
        return _smp_3d(encoder, weights)
    return _smp_2d(encoder, weights)


@contextlib.contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """Force the Hugging Face hub offline (``HF_HUB_OFFLINE`` semantics) inside the block."""
    if not active:
        yield
        return
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old
