"""``bone-phantom`` (conf/phantom.yaml): synthetic phantoms written as a user's scans would
be, ``<out>/<id>/image/`` and ``mask/`` TIFF slices (the generator is :mod:`bone_seg.phantom`).

``phantom.json`` (preset, seed, shape, dtype, voxel size, class names, voxel counts per class and
per structure) is written last: a scan folder without it is incomplete and is generated again.
A scan whose ``phantom.json`` matches the requested parameters is kept as it is (sets are
generated on demand and cached).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bone_seg.atomic import write_json_atomic
from bone_seg.classes import DEFAULT_CLASS_NAMES
from bone_seg.errors import BoneSegError
from bone_seg.io.tiff_writer import TiffSliceWriter
from bone_seg.phantom import generate_slabs, get_preset

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> list[str]:
    """Generate one scan (``preset=``) or the set ``phantom_set``."""
    if cfg.preset:
        shape = OmegaConf.to_container(cfg.shape) if cfg.shape is not None else None
        scan_id = cfg.id or f"{cfg.preset}_{cfg.seed}"
        folder = write_phantom(cfg.out, scan_id, cfg.preset, cfg.seed, shape,
                               OmegaConf.to_container(cfg.params, resolve=True), cfg.overwrite,
                               cfg.slab_depth, progress=True)
        log.info("phantom %s written to %s", scan_id, folder)
        return [scan_id]
    scans = OmegaConf.to_container(cfg.phantom_set.scans, resolve=True)
    ids = make_phantom_set(cfg.out, scans, workers=cfg.workers, overwrite=cfg.overwrite)
    log.info("%d phantom scans in %s: %s", len(ids), cfg.out, ", ".join(ids))
    return ids


def _request(preset, seed: int) -> dict:
    return {"preset": preset.name, "seed": int(seed), "shape": list(preset.shape),
            "dtype": preset.dtype, "params": json.loads(json.dumps(dataclasses.asdict(preset)))}


def is_complete(folder: Path, request: dict) -> bool:
    """Whether ``folder`` holds a finished phantom made with exactly ``request``."""
    meta = folder / "phantom.json"
    if not meta.exists():
        return False
    try:
        done = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return False
    return all(done.get(k) == v for k, v in request.items())


def write_phantom(out_dir: str | Path, scan_id: str, preset_name: str, seed: int, shape=None,
                  overrides: dict | None = None, overwrite: bool = False,
                  slab_depth: int = 16, progress: bool = False) -> Path:
    """Generate one phantom into ``<out_dir>/<scan_id>/``; returns the folder.

    Memory holds one slab (plus the blur's halo) whatever the size.
    """
    if int(seed) < 0:
        raise BoneSegError(f"seed={seed}: must be a non-negative integer")
    preset = get_preset(preset_name, shape, **(overrides or {}))
    folder = Path(out_dir) / scan_id
    request = _request(preset, seed)
    if not overwrite and is_complete(folder, request):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    depth = preset.shape[0]
    totals: dict[str, int] = {}
    classes = [0, 0, 0]
    bar = tqdm(total=depth, desc=scan_id, unit="slice", disable=None if progress else True)
    with TiffSliceWriter(folder / "image", depth, voxel_size=preset.voxel_size) as img_w, \
            TiffSliceWriter(folder / "mask", depth, voxel_size=preset.voxel_size) as mask_w:
        for _, image, mask, counts in generate_slabs(preset, seed, slab_depth):
            img_w.write(image)
            mask_w.write(mask)
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + int(v)
            for c in range(3):
                classes[c] += int((mask == c).sum())
            bar.update(len(image))
    bar.close()
    totals["packed_bones"] = preset.n_bones
    write_json_atomic(folder / "phantom.json", {
        **request, "id": scan_id, "voxel_size": preset.voxel_size,
        "class_names": list(DEFAULT_CLASS_NAMES), "class_counts": classes,
        "structure_counts": totals})
    return folder


def _one(args) -> str:
    out_dir, item, overwrite = args
    write_phantom(out_dir, item["id"], item["preset"], item["seed"], item.get("shape"),
                  item.get("params"), overwrite)
    return item["id"]


def make_phantom_set(out_dir: str | Path, scans: list[dict], workers: int = 1,
                     overwrite: bool = False) -> list[str]:
    """Generate the scans of a set (each ``{id, preset, seed, shape?, params?}``), in parallel
    processes; scans already complete with the same parameters are kept."""
    ids = [s["id"] for s in scans]
    if len(set(ids)) != len(ids):
        raise BoneSegError(f"phantom set: duplicate scan ids in {ids}")
    jobs = [(str(out_dir), dict(s), overwrite) for s in scans]
    bar = tqdm(total=len(jobs), desc="phantoms", unit="scan", disable=None)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for _ in pool.map(_one, jobs):
                bar.update()
    else:
        for job in jobs:
            _one(job)
            bar.update()
    bar.close()
    return ids
