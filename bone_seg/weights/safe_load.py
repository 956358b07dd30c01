"""Read a PyTorch file (a BONe ``.pth``, a Lightning checkpoint) without running anything from it.

``torch.load(..., weights_only=True)`` refuses a pickle that would build objects or call functions
on loading. Its refusal explains how to load the file anyway, unsafely; we never pass that on: the
user learns what the file holds, that nothing of it ran, and what file to give instead. The file
is read through an open file object so that its content decides the format: torch 2.14 would hand
a file *named* ``.safetensors`` to safetensors, whatever it holds.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from bone_seg.errors import BoneSegError


def _refusal_detail(err: BaseException) -> str:
    """The line of torch's refusal that names what the file wanted (``GLOBAL posix.system``)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    lines = [line for line in lines if "weights_only" not in line]
    return next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                lines[0] if lines else type(err).__name__)


def load_plain(path: str | os.PathLike, what: str, instead: str) -> Any:
    """``torch.load`` of ``path`` with ``weights_only=True`` on the CPU, refusals explained.

    Args:
        path: the file.
        what: how messages name it (``weights file x.pth``, ``ckpt_path=x.ckpt``).
        instead: what to give instead, ending the message of a refused file.

    Raises:
        BoneSegError: the file would create objects or call functions on loading (refused, nothing
            ran), or it is not a readable PyTorch file.
    """
    path = Path(path)
    named = (f" (named {path.suffix}, but it is a pickle)"
             if path.suffix.lower() == ".safetensors" else "")
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            # a foreign pickle protocol: the refusal below says all the user needs
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BoneSegError(
            f"{what} is not a plain weights file{named}: a safe load refused it, as loading it "
            f"could create objects or call functions ({_refusal_detail(err)}). bone_seg ran "
            f"nothing from it; {instead}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise BoneSegError(f"{what} is not a readable PyTorch file{named} (truncated or "
                           f"corrupt?): {_refusal_detail(err)}") from None
