"""Import scans (and masks) into the dataset store, streaming slab by slab.

A worker process imports one scan: it reads a slab (one shard deep) from the source, validates it,
accumulates statistics and class counts, and writes it into a Zarr group under a temporary name.
Only when every slab is in and the attributes are written is the group renamed to its final name;
on any error the temporary group is deleted. Several scans run in parallel processes.

Sparse labels: the mask value ``ImportOptions.unlabelled`` (``bone-import unlabelled=``, default
255) marks unlabelled voxels; they are stored as :data:`bone_seg.classes.UNLABELLED` and the scan
records how many there are and how many voxels of each slice are labelled. A mask without any
labelled voxel is refused (nothing could be trained or validated on it).
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bone_seg.atomic import atomic_path, remove_stale_temporaries
from bone_seg.classes import DEFAULT_CLASS_NAMES, UNLABELLED
from bone_seg.errors import BoneSegError
from bone_seg.io.ngff import write_image_metadata
from bone_seg.io.stats import StatsAccumulator
from bone_seg.io.store import ChunkLayout, DatasetStore
from bone_seg.io.validate import (
    check_image_slab,
    check_pair,
    check_unlabelled,
    convert_mask_slab,
    mask_lookup,
)
from bone_seg.io.volume import open_volume

log = logging.getLogger(__name__)


@dataclass
class ScanSource:
    """Where one scan (and its optional mask) comes from."""

    scan_id: str
    image: str
    mask: str | None = None
    voxel_size: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class ImportOptions:
    """Options that apply to every scan of an import.

    ``unlabelled`` is the mask value (after ``mask_remap``) that marks unlabelled voxels, or
    ``None`` when every voxel must hold a class.
    """

    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    mask_remap: dict | None = None
    unlabelled: int | None = UNLABELLED
    min_patch_size: int = 0
    min_depth: int = 1
    layout: ChunkLayout = field(default_factory=ChunkLayout)
    progress_position: int = 0


def check_sources(sources: list[ScanSource], options: ImportOptions) -> None:
    """Cheap checks of every source before any work: ids, paths, headers, shapes."""
    check_unlabelled(options.unlabelled, len(options.class_names))
    seen: dict[str, str] = {}
    for src in sources:
        if not src.scan_id or "/" in src.scan_id or src.scan_id.startswith("."):
            raise BoneSegError(
                f"scan id {src.scan_id!r} ({src.image}) is not usable as a name; use letters, "
                "digits, '_' or '-'"
            )
        if src.scan_id in seen:
            raise BoneSegError(
                f"duplicate scan id {src.scan_id!r}: used for {seen[src.scan_id]} and {src.image}; "
                "give each scan a unique id"
            )
        seen[src.scan_id] = src.image
        image = open_volume(src.image)
        mask = open_volume(src.mask) if src.mask else None
        check_pair(image, mask, options.min_patch_size, options.min_depth)
        if image.dtype.kind not in "uif":
            raise BoneSegError(f"{image.path}: scan dtype {image.dtype} is not a grey-value type")


def import_scan(store_path: str | Path, src: ScanSource, options: ImportOptions) -> dict:
    """Import one scan into the store; return its attributes. The manifest is not touched."""
    import zarr

    image = open_volume(src.image)
    mask = open_volume(src.mask) if src.mask else None
    check_pair(image, mask, options.min_patch_size, options.min_depth)
    check_unlabelled(options.unlabelled, len(options.class_names))
    with atomic_path(Path(store_path) / "scans" / src.scan_id) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        arrays = _create_arrays(group, image.shape, image.dtype, mask is not None,
                                options.layout)
        stats, counts, per_slice = _copy_slabs(src.scan_id, image, mask, arrays, options)
        if mask is not None:
            _check_labelled(src.scan_id, mask.path, counts, options)
        attrs = _scan_attrs(src, image, mask, options, stats, counts, per_slice)
        group.attrs.update(attrs)
        # the scan reads as an OME-Zarr image (one level: the ``image`` array, its voxel size)
        write_image_metadata(group, [(1, 1, 1)], src.voxel_size, src.scan_id, paths=["image"])
    return attrs


def _create_arrays(group, shape, dtype, with_mask: bool, layout: ChunkLayout) -> dict:
    """The scan's ``image`` (and ``mask``) arrays, chunked and sharded as ``layout`` says."""
    arrays = {}
    for name, arr_dtype in (("image", dtype), ("mask", np.uint8)):
        if name == "mask" and not with_mask:
            continue
        chunks, shards = layout.for_array(shape, np.dtype(arr_dtype).itemsize)
        arrays[name] = group.create_array(
            name, shape=shape, dtype=arr_dtype, chunks=chunks, shards=shards,
            compressors=layout.compressors(), fill_value=0, dimension_names=("z", "y", "x"))
    return arrays


def _copy_slabs(scan_id: str, image, mask, arrays: dict,
                options: ImportOptions) -> tuple[StatsAccumulator, np.ndarray, np.ndarray]:
    """Copy the scan slab by slab (one image shard deep): validate, count, write.

    Returns:
        ``(statistics, labelled voxels per class, labelled voxels per slice)``.
    """
    num_classes = len(options.class_names)
    lut = (mask_lookup(mask.dtype, num_classes, options.mask_remap, options.unlabelled)
           if mask is not None else None)
    stats = StatsAccumulator(image.dtype)
    counts = np.zeros(num_classes, np.int64)
    per_slice = np.zeros(image.shape[0], np.int64)
    depth = options.layout.for_array(image.shape, image.dtype.itemsize)[1][0]
    bar = tqdm(total=image.shape[0], desc=f"import {scan_id}", unit="slice",
               position=options.progress_position, leave=False, disable=None)
    for z0 in range(0, image.shape[0], depth):
        z1 = min(z0 + depth, image.shape[0])
        slab = image.read(z0, z1)
        check_image_slab(slab, image.path, z0)
        stats.update(slab)
        arrays["image"][z0:z1] = slab
        del slab
        if mask is not None:
            mslab, c, per_slice[z0:z1] = convert_mask_slab(
                mask.read(z0, z1), mask.path, z0, num_classes, lut, options.unlabelled)
            counts += c
            arrays["mask"][z0:z1] = mslab
        bar.update(z1 - z0)
    bar.close()
    return stats, counts, per_slice


def _check_labelled(scan_id: str, path: str, counts: np.ndarray, options: ImportOptions) -> None:
    """Refuse a mask without any labelled voxel: such a scan cannot be trained or validated on."""
    if counts.sum() > 0:
        return
    value = options.unlabelled
    raise BoneSegError(
        f"{path}: no labelled voxel — every voxel of the mask of scan {scan_id} is the unlabelled "
        f"value {value}, so it cannot be trained or validated on; label at least one slice "
        f"(classes 0..{len(options.class_names) - 1}, {value} elsewhere), or import the scan "
        f"without its mask to predict on it only. If {value} marks a class in this mask, remap "
        f"it: bone-import ... mask_remap='{{{value}: 1}}'"
    )


def _scan_attrs(src: ScanSource, image, mask, options: ImportOptions,
                stats: StatsAccumulator, counts: np.ndarray, per_slice: np.ndarray) -> dict:
    """The scan group's attributes (docs/development.md, "The dataset store").

    ``unlabelled_count`` and ``labelled_per_slice`` are written only for a mask with unlabelled
    voxels, so a fully labelled scan's attributes (and the store's digest) are as before.
    """
    sparse = {}
    if mask is not None:
        unlabelled = int(np.prod(image.shape, dtype=np.int64)) - int(per_slice.sum())
        if unlabelled:
            sparse = {"unlabelled_count": unlabelled,
                      "labelled_per_slice": [int(n) for n in per_slice]}
    return {
        "scan_id": src.scan_id,
        "shape": list(image.shape),
        "dtype": image.dtype.name,
        "voxel_size": src.voxel_size,
        "source": {
            "image": str(Path(src.image).resolve()),
            "mask": str(Path(src.mask).resolve()) if src.mask else None,
        },
        "class_names": list(options.class_names),
        "has_mask": mask is not None,
        "stats": stats.result(),
        "class_counts": [int(c) for c in counts] if mask is not None else None,
        **sparse,
        **({"extra": src.extra} if src.extra else {}),
    }


def _import_worker(args) -> dict:
    store_path, src, options = args
    return import_scan(store_path, src, options)


def import_scans(
    store_path: str | Path,
    sources: list[ScanSource],
    options: ImportOptions,
    workers: int = 1,
    overwrite: bool = False,
) -> DatasetStore:
    """Import several scans (in parallel processes) and list them in the manifest, in order.

    Scans that finish are kept even if another fails (each is complete on its own); the manifest
    lists only completed scans, so a failed import can simply be re-run, and what a killed import
    left half-written is removed by the next one. Imports into one store may run side by side
    (with different scan ids): the manifest keeps the scans of all of them.

    Raises:
        BoneSegError: on any bad input, before work where the headers tell, otherwise when met.
    """
    check_sources(sources, options)
    store = DatasetStore.create(store_path, options.class_names)
    for leftover in remove_stale_temporaries(store.path / "scans"):
        log.info("removed %s, left by an import that was killed", leftover)
    remove_stale_temporaries(store.path)  # a manifest being replaced when it was killed
    existing = [s.scan_id for s in sources if s.scan_id in store.scan_ids]
    if existing and not overwrite:
        raise BoneSegError(
            f"{store.path}: scan id(s) {', '.join(existing)} already in the store; choose other "
            "ids or pass overwrite=true to replace them"
        )
    done: list[str] = []
    errors: list[BaseException] = []
    jobs = [(str(store.path), s, _with_position(options, i)) for i, s in enumerate(sources)]
    if workers <= 1 or len(sources) == 1:
        for job in jobs:
            _report_labels(_import_worker(job), options)
            done.append(job[1].scan_id)
    else:
        # spawn: zarr runs an asyncio I/O thread, which a fork would copy in a broken state
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_import_worker, job) for job in jobs]
            for job, fut in zip(jobs, futures, strict=True):
                try:
                    _report_labels(fut.result(), options)
                    done.append(job[1].scan_id)
                except BaseException as err:  # keep finished scans, report the first error
                    errors.append(err)
    store.add_scans(done)
    if errors:
        raise errors[0]
    return store


def _report_labels(attrs: dict, options: ImportOptions) -> None:
    """Log how much of a partly labelled scan is labelled; warn when only class 0 is (a binary
    0/255 mask read as background + unlabelled voxels)."""
    if "unlabelled_count" not in attrs:
        return
    sid, counts = attrs["scan_id"], attrs["class_counts"]
    per_slice = attrs["labelled_per_slice"]
    labelled = sum(counts)
    log.info("scan %s: %.1f %% of the voxels labelled, on %d of %d slices", sid,
             100 * labelled / (labelled + attrs["unlabelled_count"]),
             sum(1 for n in per_slice if n), len(per_slice))
    if labelled == counts[0]:
        value = options.unlabelled
        log.warning(
            "scan %s: every labelled voxel is class 0 (%s) and %d voxels hold the unlabelled "
            "value %s; if this is a binary mask whose %s marks bone, re-import it with "
            "bone-import ... overwrite=true mask_remap='{%s: 1}'", sid, options.class_names[0],
            attrs["unlabelled_count"], value, value, value)


def _with_position(options: ImportOptions, i: int) -> ImportOptions:
    from dataclasses import replace

    return replace(options, progress_position=i)
