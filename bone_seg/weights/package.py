"""Reading a BioImage Model Zoo package that ``bone-export format=bioimageio`` wrote.

The package (a zip: ``rdf.yaml``, ONNX and TorchScript weights, test tensors, README, cover) also
carries the bone_seg weights file it was made from, as the attachment
:data:`WEIGHTS_ATTACHMENT` (safetensors: tensors and metadata, no code). ``bone-predict
weights=<package.zip>`` reads that attachment — nothing of the package is unpickled or run: the
TorchScript file is never opened here, and the ONNX model is only exported again from the
attachment by ``engine=onnxruntime``. A package from elsewhere (no such attachment) is refused
with a message.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import torch

from bone_seg.errors import BoneSegError
from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.safetensors_file import load_weights

WEIGHTS_ATTACHMENT = "bone_seg_weights.safetensors"
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip holding a bioimage.io description (``rdf.yaml``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n in names or n.endswith("/" + n) for n in RDF_NAMES)


def load_package_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """The state dict and metadata of the bone_seg weights inside a package.

    Raises:
        BoneSegError: the zip is unreadable or was not written by ``bone-export``.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            if WEIGHTS_ATTACHMENT not in z.namelist():
                raise BoneSegError(
                    f"weights={path} is a BioImage Model Zoo package without bone_seg's weights "
                    f"({WEIGHTS_ATTACHMENT}); bone-predict runs packages written by bone-export "
                    "format=bioimageio; run others with bioimageio.core or deepImageJ")
            with tempfile.TemporaryDirectory(prefix="bone_seg_package_") as tmp:
                inner = Path(z.extract(WEIGHTS_ATTACHMENT, tmp))
                try:
                    return load_weights(inner)
                except BoneSegError as err:
                    raise BoneSegError(f"weights={path} ({WEIGHTS_ATTACHMENT} inside): "
                                       f"{err}") from None
    except (zipfile.BadZipFile, OSError) as err:
        raise BoneSegError(f"weights={path} is not a readable zip package (truncated?): "
                           f"{err}") from None
