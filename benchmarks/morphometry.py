"""Morphometry: local-thickness throughput against porespy, and peak memory of ``bone-morpho`` for
a scan and one 4 × deeper.

Targets (issue 14): peak RSS of the 4 × deeper scan ≤ 1.1 × the scan's (memory bounded by a slab
and its halo); throughput reported as Mvoxel/s against porespy's ``local_thickness`` on the same
volume, in the same run.

What is measured:

* the volume: a phantom's mask (``bone_seg.phantom``, preset ``--preset``, ``--depth × --size²``),
  and a 4 × deeper one made by stacking it with its mirror image (same structure, same largest
  sphere), both as Zarr arrays as a store holds them;
* throughput, in this process on the in-memory mask: our exact local thickness of the bone phase
  (both passes: certified distance maximum, then ridge + sphere painting) against
  ``porespy.filters.local_thickness`` (its default 25 binned radii; numba compiled beforehand on a
  small volume so that its JIT is not counted), and our whole analysis (every measure, both
  phases);
* memory: ``/usr/bin/time -v bone-morpho labels=<zarr> slab_depth=8`` ("Maximum resident set size")
  on both volumes, and a process that only imports for the baseline.

Run: ``.venv/bin/python benchmarks/morphometry.py [--depth 64] [--size 256] [--preset mouse]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_result import emit
from predict_memory import timed  # peak RSS under /usr/bin/time -v (benchmarks/ is on sys.path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BIN = Path(sys.executable).parent


def phantom_mask(root: Path, preset: str, depth: int, size: int) -> tuple[np.ndarray, float]:
    """The mask of a phantom and its voxel size (µm)."""
    from bone_seg.io.volume import open_volume
    from bone_seg.phantom.presets import get_preset
    from bone_seg.workflows.phantom import write_phantom

    folder = write_phantom(root / "phantoms", "scan", preset, 1, [depth, size, size])
    mask = open_volume(folder / "mask")
    return mask.read(0, mask.shape[0]), float(get_preset(preset, [depth, size, size]).voxel_size)


def save_zarr(path: Path, labels: np.ndarray, voxel_size: float) -> Path:
    """``labels`` as a store-like Zarr array recording its voxel size."""
    import zarr

    arr = zarr.create_array(str(path), shape=labels.shape, dtype="uint8",
                            chunks=(1, labels.shape[1], labels.shape[2]),
                            shards=(8, labels.shape[1], labels.shape[2]))
    arr[:] = labels
    arr.attrs["voxel_size"] = voxel_size
    return path


def our_thickness(mask: np.ndarray) -> np.ndarray:
    """Both passes of our local thickness of one phase, on the whole array (one slab)."""
    from bone_seg.morphometry.balls import BallTable
    from bone_seg.morphometry.distance import certified_max_sq
    from bone_seg.morphometry.thickness import Painter, slab_thickness_sq

    depth = mask.shape[0]
    best, _ = certified_max_sq(lambda lo, hi: mask[lo:hi], depth, (0, depth), 0, (1, 1, 1))
    painter = Painter(BallTable(best, (1.0, 1.0, 1.0)), mask.shape[1:])
    return 2 * np.sqrt(slab_thickness_sq(mask, (0, depth), (0, depth), depth, painter))


def _seconds(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def throughput(labels: np.ndarray, voxel_size: float) -> None:
    """Mvoxel/s of our local thickness against porespy's, per phase, and of our whole analysis."""
    import porespy as ps

    from bone_seg.morphometry import Options, analyze

    mvox = labels.size / 1e6
    ps.filters.local_thickness(np.pad(np.ones((6, 6, 6), bool), 2))  # compile numba first
    for name, label in (("bone", 1), ("pores", 2)):
        mask = labels == label
        ours, t_ours = _seconds(our_thickness, mask)
        top = int(np.ceil(ours.max() / 2))
        print(f"{name} ({mask.mean():.1%} of {labels.shape}): ours (exact) {t_ours:.2f} s = "
              f"{mvox / t_ours:.2f} Mvoxel/s, mean thickness {ours[mask].mean():.3f} voxels")
        for label_ps, sizes in (("25 binned radii, its default", 25),
                                (f"every integer radius 1..{top}", np.arange(1, top + 1))):
            radius, t_ps = _seconds(ps.filters.local_thickness, mask, sizes=sizes)
            print(f"  porespy ({label_ps}): {t_ps:.2f} s = {mvox / t_ps:.2f} Mvoxel/s, mean "
                  f"{2 * radius[mask].mean():.3f} voxels -> ours / porespy speed "
                  f"{t_ps / t_ours:.2f}x")
            if isinstance(sizes, int):  # the default 25 binned radii
                emit(f"local thickness of {name}, {labels.shape} (speed vs porespy)",
                     f"{mvox / t_ours:.2f} Mvoxel/s (exact)",
                     f"porespy {mvox / t_ps:.2f} Mvoxel/s (25 binned radii)", t_ps / t_ours,
                     None, f"porespy mean {2 * radius[mask].mean():.2f} vs exact "
                     f"{ours[mask].mean():.2f} voxels")
    for depth in (None, 8):
        _, t_all = _seconds(analyze, labels, (voxel_size,) * 3,
                            Options(slab_depth=depth, progress=False))
        what = "default slabs (64 MiB)" if depth is None else f"{depth}-slice slabs"
        print(f"whole analysis (every measure, both phases, {what}): {t_all:.2f} s = "
              f"{mvox / t_all:.2f} Mvoxel/s")


def memory(root: Path, labels: np.ndarray, voxel_size: float) -> None:
    """Peak RSS of ``bone-morpho`` on the scan and on the 4 × deeper scan."""
    deep = np.concatenate([labels, labels[::-1], labels, labels[::-1]])
    scans = {"scan": save_zarr(root / "scan.zarr", labels, voxel_size),
             "deep": save_zarr(root / "deep.zarr", deep, voxel_size)}
    base, _ = timed([sys.executable, "-c", "import bone_seg.cli.morpho"])
    print(f"baseline (imports only): {base:.0f} MiB")
    peaks = {}
    for name, path in scans.items():
        rss, seconds = timed([str(BIN / "bone-morpho"), f"labels={path}", "slab_depth=8",
                              f"paths.root={root}", f"out={root / name}"])
        peaks[name] = rss
        shape = "x".join(map(str, labels.shape if name == "scan" else deep.shape))
        mvox = np.prod(labels.shape if name == "scan" else deep.shape) / 1e6
        print(f"{name:5s} {shape}: peak RSS {rss:.0f} MiB (+{rss - base:.0f} over the baseline), "
              f"{seconds:.1f} s ({mvox / seconds:.2f} Mvoxel/s, start-up included)")
    ratio = peaks["deep"] / peaks["scan"]
    above = (peaks["deep"] - base) / max(peaks["scan"] - base, 1)
    emit("bone-morpho slab_depth=8 peak RSS: 4x the slices", f"{peaks['deep']:.0f} MiB",
         f"{peaks['scan']:.0f} MiB", ratio, "<= 1.1")
    print(f"peak RSS deep / scan (4x the slices): {ratio:.3f}x (target <= 1.1x); above the "
          f"baseline: {above:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--preset", default="mouse")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="morphometry_") as tmp:
        root = Path(tmp)
        labels, voxel_size = phantom_mask(root, args.preset, args.depth, args.size)
        throughput(labels, voxel_size)
        memory(root, labels, voxel_size)


if __name__ == "__main__":
    main()
