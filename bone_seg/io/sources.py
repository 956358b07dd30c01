"""Find the scans a user points at: a folder of scan folders, one scan, or an explicit list."""

from __future__ import annotations

import json
from pathlib import Path

from bone_seg.errors import BoneSegError
from bone_seg.io.importer import ScanSource
from bone_seg.io.volume import natural_key

_CANDIDATES = ("{name}", "{name}.tif", "{name}.tiff", "{name}.npy", "{name}.zarr")
_META_FILES = ("scan.json", "phantom.json")


def _find(folder: Path, name: str) -> Path | None:
    for pattern in _CANDIDATES:
        p = folder / pattern.format(name=name)
        if p.exists():
            return p
    return None


def discover_scans(
    scan_dir: str | Path, image_name: str = "image", mask_name: str = "mask"
) -> list[ScanSource]:
    """Scans in ``scan_dir``: every sub-folder ``<id>/`` holding ``image`` and optionally ``mask``.

    ``image``/``mask`` may be a folder of TIFF slices, a ``.tif``, a ``.npy`` or a ``.zarr`` array.
    A ``scan.json`` (or ``phantom.json``) beside them may give ``voxel_size``. Sub-folders are taken
    in natural sort order; that order becomes the store's order (and the folds').
    """
    root = Path(scan_dir)
    if not root.is_dir():
        raise BoneSegError(f"scan_dir={root}: no such folder; point it at a folder of scan folders")
    sources = []
    for sub in sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    ):
        image = _find(sub, image_name)
        if image is None:
            continue
        mask = _find(sub, mask_name)
        voxel = None
        for meta_name in _META_FILES:
            meta = sub / meta_name
            if meta.exists():
                voxel = json.loads(meta.read_text()).get("voxel_size")
                break
        sources.append(ScanSource(sub.name, str(image), str(mask) if mask else None, voxel))
    if not sources:
        raise BoneSegError(
            f"scan_dir={root}: no scans found; each scan needs a sub-folder <id>/ holding "
            f"'{image_name}' (a folder of TIFF slices, .tif, .npy or .zarr) and optionally "
            f"'{mask_name}'"
        )
    return sources


def sources_from_config(
    scans: list | None,
    image: str | None,
    mask: str | None,
    scan_id: str | None,
    scan_dir: str | None,
    voxel_size: float | None,
) -> list[ScanSource]:
    """Turn the import config (``scans=[...]``, ``image=``/``mask=``/``id=``, or ``scan_dir=``)
    into scan sources; exactly one of the three forms must be given."""
    given = [n for n, v in (("scans", scans), ("image", image), ("scan_dir", scan_dir)) if v]
    if len(given) != 1:
        raise BoneSegError(
            "say what to import with exactly one of: scan_dir=<folder of scan folders>, "
            "image=<scan> [mask=<mask>] [id=<name>], or scans='[{id: a, image: ..., mask: ...}]'"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if scans:
        out = []
        for i, s in enumerate(scans):
            if "image" not in s:
                raise BoneSegError(
                    f"scans[{i}]: missing key 'image' (keys: id, image, mask, voxel_size)"
                )
            sid = s.get("id") or _default_id(s["image"])
            out.append(
                ScanSource(sid, str(s["image"]), s.get("mask"), s.get("voxel_size", voxel_size))
            )
        return out
    if image:
        return [ScanSource(scan_id or _default_id(image), str(image), mask, voxel_size)]
    sources = discover_scans(scan_dir)
    if voxel_size is not None:
        for s in sources:
            s.voxel_size = s.voxel_size or voxel_size
    return sources


def _default_id(path: str) -> str:
    p = Path(path)
    name = p.stem if p.suffix else p.name
    if name in ("image", "images", "scan") and p.parent.name:
        name = p.parent.name
    return name
