"""The pretrained starting model: ``weights=pretrained`` resolved to a file in the local cache.

bone_seg's own pretrained weights cannot be downloaded and do not belong in git; ``make
pretrained`` builds them (phantoms → store → ``bone-fit experiment=pretrain``) and the fit
publishes its best weights into the cache folder (``paths.pretrained``, by default
``${BONE_SEG_CACHE:-~/.cache/bone_seg}/pretrained``). Commands then accept an alias instead of a
path:

- ``pretrained``: ``<cache folder>/pretrained.safetensors``, the default model;
- ``pretrained:<name>``: ``<cache folder>/<name>.safetensors``, another published model.

The folder is passed in by the caller (the workflows read ``paths.pretrained`` from the config),
so this module needs neither Hydra nor an environment variable. A missing file raises one
:class:`~bone_seg.errors.BoneSegError` naming the path and the command that builds it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bone_seg.errors import BoneSegError

ALIAS = "pretrained"
DEFAULT_NAME = "pretrained"
SUFFIX = ".safetensors"
BUILD_COMMAND = "make pretrained"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def alias_name(weights: Any) -> str | None:
    """The model name ``weights`` asks for (``pretrained`` → the default name,
    ``pretrained:<name>`` → ``<name>``), or None when it is not the alias.

    Raises:
        BoneSegError: ``pretrained:`` followed by no name or by a name that is not a plain file
            stem (letters, digits, ``.``, ``_``, ``-``).
    """
    if not isinstance(weights, str):
        return None
    text = weights.strip()
    if text == ALIAS:
        return DEFAULT_NAME
    if not text.startswith(f"{ALIAS}:"):
        return None
    name = text[len(ALIAS) + 1:]
    if name.endswith(SUFFIX):
        name = name[:-len(SUFFIX)]
    if not _NAME.match(name) or name in (".", ".."):
        raise BoneSegError(f"weights={weights!r}: write pretrained (the default model) or "
                           "pretrained:<name> with a plain name (letters, digits, . _ -), the "
                           f"file <cache>/<name>{SUFFIX}")
    return name


def pretrained_file(name: str, cache_dir: str | os.PathLike) -> Path:
    """The file of pretrained model ``name`` in ``cache_dir`` (``~`` expanded)."""
    return Path(cache_dir).expanduser() / f"{name}{SUFFIX}"


def build_command(name: str) -> str:
    """The command that builds (and publishes) pretrained model ``name``."""
    return BUILD_COMMAND if name == DEFAULT_NAME else f"{BUILD_COMMAND} PRETRAINED_NAME={name}"


def resolve_weights(weights: Any, cache_dir: str | os.PathLike | None,
                    key: str = "model.net.weights") -> Any:
    """``weights`` with the alias replaced by its file; any other value unchanged.

    Args:
        weights: a weights value as a command takes it (None, a pretrained encoder name such as
            ``imagenet``, a file path, ``pretrained`` or ``pretrained:<name>``).
        cache_dir: the folder holding published models (``paths.pretrained``).
        key: the config key, for messages.

    Returns:
        The path (as a string) of the published model, or ``weights`` itself.

    Raises:
        BoneSegError: the alias is used but no cache folder is configured, or its file is
            missing (the message names the path and the command that builds it).
    """
    name = alias_name(weights)
    if name is None:
        return weights
    if cache_dir is None or str(cache_dir).strip() == "":
        raise BoneSegError(f"{key}={weights}: no cache folder is configured; set "
                           "paths.pretrained=<folder> (or BONE_SEG_CACHE=<folder>)")
    path = pretrained_file(name, cache_dir)
    if not path.is_file():
        raise BoneSegError(f"{key}={weights}: no pretrained model at {path}; build it with "
                           f"`{build_command(name)}` (or point paths.pretrained / BONE_SEG_CACHE "
                           "at the folder that holds it)")
    return str(path)
