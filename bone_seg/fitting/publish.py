"""``publish_to=<file>``: a successful fit copies its best weights there (the pretrained cache).

The copy is byte for byte (so the tensors' digest still checks) and atomic: written under a
temporary name and renamed, so a reader never finds half a model and an interrupted publish
leaves the previous model in place. The weights' own metadata says which recipe made them (its
``config``: ``experiment_name``, data, model and trainer settings of the fit); a small JSON beside
the file (``<stem>.json``) adds where they came from (run directory, MLflow run, scores, time).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from bone_seg.atomic import atomic_path, write_json_atomic
from bone_seg.errors import BoneSegError
from bone_seg.weights.cache import SUFFIX
from bone_seg.weights.safetensors_file import load_weights

log = logging.getLogger("bone_seg.fit")


def check_target(value: Any) -> Path | None:
    """``publish_to`` as a path (``~`` expanded), or None when not set.

    Raises:
        BoneSegError: the path does not end in ``.safetensors`` or names a folder.
    """
    if value is None or str(value).strip() == "":
        return None
    path = Path(os.fspath(str(value))).expanduser()
    if path.suffix != SUFFIX:
        raise BoneSegError(f"publish_to={value}: give the file to write, ending in {SUFFIX} "
                           "(e.g. ${paths.pretrained}/pretrained.safetensors)")
    if path.is_dir():
        raise BoneSegError(f"publish_to={value} is a folder; give the file to write, e.g. "
                           f"{path / ('pretrained' + SUFFIX)}")
    return path


def publish_weights(source: str | os.PathLike, target: Path, summary: dict[str, Any]) -> Path:
    """Copy the weights file ``source`` to ``target`` atomically, with ``<stem>.json`` beside it.

    Args:
        source: the fit's best weights.
        target: where to publish them (checked by :func:`check_target`).
        summary: the fit's summary (run id, output folder, scores) for the provenance file.

    Returns:
        ``target``.

    Raises:
        BoneSegError: ``source`` is not a readable bone_seg weights file.
    """
    _, meta = load_weights(source)  # never publish a file that would not load
    with atomic_path(target, fsync=True) as tmp:
        shutil.copyfile(source, tmp)
    keys = ("run_id", "output_dir", "best_epoch", "best_val_miou", "test_miou", "test_mdice")
    write_json_atomic(target.with_suffix(".json"), {
        "weights": target.name,
        "source": str(source),
        "experiment": meta.config.get("experiment_name"),
        "arch": meta.arch, "encoder": meta.encoder, "mode": meta.mode,
        "patch_size": meta.patch_size, "class_names": meta.class_names,
        **{k: summary.get(k) for k in keys},
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    log.info("published the best weights (experiment %s) to %s", meta.config.get(
        "experiment_name"), target)
    return target
