"""Choose the store's chunk layout by measurement.

Writes one test volume (real micro-CT texture: the shared trabecular stack tiled to a 1024² field,
scaled to 16 bit with noise so tiles do not repeat byte for byte) in several Zarr layouts and
measures, in the same run:

* random 2D patch reads (the 2D/2.5D training sampler) at 64 and 256 px, and 5-slice 2.5D stacks,
* 3D patch reads (32 × 128²) for 3D training,
* whole slabs of 16 slices (prediction and import),
* write throughput (import) and size on disk.

Ratios are printed against the baseline layout ``chunks 16×256² (no shards)``, the layout a user
would pick by default for a 3D volume.
Run: ``.venv/bin/python benchmarks/chunking.py [--depth 64]``.
Files live in the page cache during the run, so this measures decoding and indexing, not the disk.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from bench_result import emit
from zarr.codecs import BloscCodec, ZstdCodec

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "trabecular_3155_D_4"

LAYOUTS = {
    # name: (chunks, shards, compressor)
    "chunks 16×256² (baseline)": ((16, 256, 256), None, "zstd"),
    "chunks 64³": ((64, 64, 64), None, "zstd"),
    "chunks 1×256²": ((1, 256, 256), None, "zstd"),
    "shards 16×1024², chunks 1×128²": ((1, 128, 128), (16, 1024, 1024), "zstd"),
    "shards 16×1024², chunks 1×256² (ours)": ((1, 256, 256), (16, 1024, 1024), "zstd"),
    "shards 16×1024², chunks 1×512²": ((1, 512, 512), (16, 1024, 1024), "zstd"),
    "shards 16×1024², chunks 1×256², lz4": ((1, 256, 256), (16, 1024, 1024), "lz4"),
    "shards 16×1024², chunks 1×256², raw": ((1, 256, 256), (16, 1024, 1024), "none"),
}


def _compressors(name):
    if name == "zstd":
        return [ZstdCodec(level=1)]
    if name == "lz4":
        return [BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle")]
    return None


def test_volume(depth: int, size: int = 1024) -> np.ndarray:
    """Real texture tiled to ``depth × size × size`` uint16, with noise."""
    from bone_seg.io.volume import open_volume

    rng = np.random.default_rng(0)
    if (REAL / "image").is_dir():
        real = open_volume(REAL / "image").read(0, 200).astype(np.float32)
    else:  # smooth random texture as a stand-in
        from scipy.ndimage import gaussian_filter

        real = gaussian_filter(rng.random((200, 200, 200), np.float32), 3) * 255
    reps = (int(np.ceil(depth / 200)), int(np.ceil(size / 200)), int(np.ceil(size / 200)))
    vol = np.tile(real, reps)[:depth, :size, :size] * 200
    vol += rng.normal(0, 60, vol.shape).astype(np.float32)
    return vol.clip(0, 65535).astype(np.uint16)


def _timeit(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def measure(arr, rng, depth, size) -> dict:
    def patch(p, k=1):
        def read():
            z = rng.integers(0, depth - k + 1)
            y, x = rng.integers(0, size - p + 1, 2)
            return arr[z : z + k, y : y + p, x : x + p]

        return read

    def patch3d():
        z = rng.integers(0, depth - 32 + 1)
        y, x = rng.integers(0, size - 128 + 1, 2)
        return arr[z : z + 32, y : y + 128, x : x + 128]

    def slab():
        z = rng.integers(0, depth // 16) * 16
        return arr[z : z + 16]

    return {
        "2D 64px /s": 1 / _timeit(patch(64), 200),
        "2D 256px /s": 1 / _timeit(patch(256), 100),
        "2.5D 5×256px /s": 1 / _timeit(patch(256, 5), 60),
        "3D 32×128² /s": 1 / _timeit(patch3d, 20),
        "slab 16×1024² MB/s": 16 * size * size * 2 / 2**20 / _timeit(slab, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--two", action="store_true", help="only the baseline and ours")
    args = parser.parse_args()
    layouts = {k: v for k, v in LAYOUTS.items()
               if not args.two or "baseline" in k or "(ours)" in k}
    depth, size = args.depth, 1024
    vol = test_volume(depth, size)
    tmp = Path(tempfile.mkdtemp(prefix="bone_seg_chunking_"))
    results = {}
    try:
        for name, (chunks, shards, comp) in layouts.items():
            path = tmp / f"{len(results)}.zarr"
            t = time.perf_counter()
            arr = zarr.create_array(str(path), shape=vol.shape, dtype=vol.dtype, chunks=chunks,
                                    shards=shards, compressors=_compressors(comp))
            for z in range(0, depth, 16):
                arr[z : z + 16] = vol[z : z + 16]
            write = vol.nbytes / 2**20 / (time.perf_counter() - t)
            size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
            files = sum(1 for f in path.rglob("*") if f.is_file())
            r = measure(zarr.open_array(str(path), mode="r"), np.random.default_rng(1), depth,
                        size)
            r.update({"write MB/s": write, "MB on disk": size_mb, "files": files})
            results[name] = r
            shutil.rmtree(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = results["chunks 16×256² (baseline)"]
    cols = list(base)
    print(f"volume {depth}×{size}×{size} uint16 ({vol.nbytes / 2**20:.0f} MB); "
          "values, then (ratio to baseline)")
    print("| layout | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, r in results.items():
        cells = [f"{r[c]:.0f} ({r[c] / base[c]:.2f}×)" if base[c] else f"{r[c]:.0f}" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    ours = results["shards 16×1024², chunks 1×256² (ours)"]
    for col in ("2D 256px /s", "3D 32×128² /s", "MB on disk"):
        emit(f"Zarr store layout (shards 16×1024² of 1×256² chunks): {col}", f"{ours[col]:.0f}",
             f"chunks 16×256² {base[col]:.0f}", ours[col] / base[col])


if __name__ == "__main__":
    main()
