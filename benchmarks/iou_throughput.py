"""Throughput and memory of the streamed confusion matrix (``bone-iou``) against torchmetrics.

Targets (issue "metrics"): ≥ 1 GB/s of input (both volumes' bytes per second, uint8 masks) on the
2-core CPU, ≥ 20 × torchmetrics ``MulticlassJaccardIndex`` on the same volumes, peak memory bounded
by the slab (the same for a volume 4 × larger).

What is measured, all in the same run, on synthetic bone-like masks (rings of cortex around a
medullary cavity, cortical pores; the prediction differs from the reference along the boundaries,
~1 % of the voxels) of ``depth × size × size`` uint8 voxels, 3 classes:

1. the counting kernels tried, on one core (ns per voxel pair, one 256 Ki block in cache);
2. volumes in memory (NumPy): ``confusion_matrix`` (2 threads, and 1) vs torchmetrics fed the same
   way — slab by slab with the same slab depth, ``update(pred, target)`` per slab — both with its
   default ``validate_args=True`` and with ``validate_args=False`` (its fastest; the ratio we
   claim is against that one). Feeding a whole volume at once is what torchmetrics users do in
   memory: measured on the small volume with ``--whole`` (it needs ~20 bytes per voxel);
3. volumes on disk: a ``.npy`` file and Zarr arrays in several layouts, the first being the store's
   (chunks 1×256², shards 16×1024², zstd 1, as ``bone-import`` writes masks); torchmetrics reads
   the same slabs through the same reader (the fast Zarr pipeline of ``bone_seg.metrics``) so that
   the ratio compares the counting and the overlapped pipeline, not the Zarr settings; ours with
   zarr's default pipeline is shown too;
4. peak RSS of ``confusion_matrix`` run in a fresh process on the small and the 4× larger volume
   (store layout and ``.npy``), above the RSS after imports.

Run: ``.venv/bin/python benchmarks/iou_throughput.py [--depth 64] [--size 1024] [--whole]``.
Files live in the page cache during the run (re-read from memory, not from the disk).

Measured on the 2-core AMD EPYC development machine (shared with other jobs: ±20 % from run to
run), best of 5, ``--depth 64 --size 1024 --whole`` (small 2 × 64 MiB, large 2 × 256 MiB), with
zarrs 0.2.3 installed (see ``bone_seg.io.fast_zarr.fast_zarr_reads``):

1. kernels, ns per voxel pair on one core: np.bincount on int64 codes 1.74, np.bincount on uint8
   codes 1.33, torch.bincount on uint8 codes 0.45, count_nonzero passes 0.36 (chosen for ≤ 3
   classes), our kernel with its label range checks 0.42;
2. in memory: ours 6.86 GB/s with 2 threads (4.46 with 1) vs torchmetrics per slab 0.22 GB/s
   (validate_args=False; 0.06 with its default) → **31.9 ×** (114 × against its default);
   torchmetrics on the whole small volume at once: 0.07 GB/s (ours 6.27) → 94 ×;
3. on disk: ``.npy`` ours 4.58 GB/s vs 0.19 → 23.6 ×; Zarr store layout ours 2.79 GB/s vs
   torchmetrics 0.20 through the same reader → 14.3 × (0.10 through zarr's default pipeline →
   28 ×); shards 16×512²: 2.74 GB/s, 13.2 × (26 ×); chunks 16×256² without shards: 3.15 GB/s,
   15.9 × (21 ×); store layout uncompressed: 3.40 GB/s, 16.2 × (25 ×). From Zarr, decoding the
   chunks (zstd, in Rust) takes about as much CPU as counting, and both share the 2 cores: with
   the same reader on both sides the ratio is bounded by the shared decoding time;
4. peak RSS above the RSS after imports: store layout +137 MiB for the small volume and +137 MiB
   for the 4× larger one (anonymous +129 / +131 MiB: two slab pairs of 32 MiB per volume, the one
   counted and the one read ahead); ``.npy`` anonymous +130 / +130 MiB, total +260 / +644 MiB
   because ``bone_seg.io.volume.NpyVolume`` memory-maps the file, whose pages the kernel counts in
   RSS until it reclaims them (page cache, not the process's memory).

See the figures printed by a run for this machine's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_result import emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NUM_CLASSES = 3


# --------------------------------------------------------------------------- data
def _slice_masks(size: int, phase: int, jitter: float) -> np.ndarray:
    """One bone-like slice: background 0, cortex 1, medullary cavity and cortical pores 2."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size * 1024
    cy, cx = 512 + 40 * np.sin(phase / 5), 512 + 30 * np.cos(phase / 7)
    ang, rad = np.arctan2(yy - cy, xx - cx), np.hypot(yy - cy, xx - cx)
    outer = 380 + 20 * np.sin(3 * ang + phase / 3) + jitter * np.sin(7 * ang + phase)
    inner = 250 + 15 * np.cos(2 * ang - phase / 4) + jitter * np.cos(5 * ang + phase)
    m = np.zeros((size, size), np.uint8)
    m[rad < outer] = 1
    m[rad < inner] = 2
    pore_r = 300 + 40 * np.sin(11 * ang + phase / 2)
    m[(np.abs(rad - pore_r - jitter) < 3) & (np.sin(23 * ang) > 0.5)] = 2
    return m


def make_masks(depth: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction (boundaries moved by ~2 px), 16 distinct slices shifted along Z."""
    base_r = [_slice_masks(size, k, 0.0) for k in range(16)]
    base_p = [_slice_masks(size, k, 2.0) for k in range(16)]
    ref = np.empty((depth, size, size), np.uint8)
    pred = np.empty_like(ref)
    for z in range(depth):
        shift = z // 16
        ref[z] = np.roll(base_r[z % 16], shift, axis=1)
        pred[z] = np.roll(base_p[z % 16], shift, axis=1)
    return ref, pred


LAYOUTS = {
    # name: (chunks, shards, codec)
    "store: chunks 1×256², shards 16×1024², zstd": ((1, 256, 256), (16, 1024, 1024), "zstd"),
    "chunks 1×256², shards 16×512², zstd": ((1, 256, 256), (16, 512, 512), "zstd"),
    "chunks 16×256², no shards, zstd": ((16, 256, 256), None, "zstd"),
    "chunks 1×256², shards 16×1024², raw": ((1, 256, 256), (16, 1024, 1024), "none"),
}


def write_zarr(path: Path, data: np.ndarray, chunks, shards, codec: str) -> str:
    import zarr
    from zarr.codecs import ZstdCodec

    from bone_seg.io.fast_zarr import fast_zarr_reads

    with fast_zarr_reads():
        arr = zarr.create_array(
            str(path), shape=data.shape, dtype=data.dtype, fill_value=0,
            chunks=tuple(min(c, s) for c, s in zip(chunks, data.shape, strict=True)),
            shards=None if shards is None else tuple(
                min(c, s) for c, s in zip(shards, data.shape, strict=True)),
            compressors=[ZstdCodec(level=1)] if codec == "zstd" else None,
        )
        arr[:] = data
    return str(path)


# --------------------------------------------------------------------------- timing
def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def ours(ref, pred, workers=None, slab_depth=None):
    from bone_seg.metrics import confusion_matrix

    return confusion_matrix(ref, pred, NUM_CLASSES, slab_depth=slab_depth, device="cpu",
                            workers=workers, progress=False)


def torchmetrics_slabs(ref_vol, pred_vol, depth: int, validate: bool) -> np.ndarray:
    """torchmetrics fed slab by slab, as a user streaming a volume would."""
    import torch
    from torchmetrics.classification import MulticlassJaccardIndex

    metric = MulticlassJaccardIndex(num_classes=NUM_CLASSES, average=None, validate_args=validate)
    z = ref_vol.shape[0]
    for z0 in range(0, z, depth):
        z1 = min(z0 + depth, z)
        metric.update(torch.from_numpy(pred_vol.read(z0, z1)),
                      torch.from_numpy(ref_vol.read(z0, z1)))
    metric.compute()
    return metric.confmat.numpy()


def torchmetrics_whole(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    import torch
    from torchmetrics.classification import MulticlassJaccardIndex

    metric = MulticlassJaccardIndex(num_classes=NUM_CLASSES, average=None, validate_args=False)
    metric.update(torch.from_numpy(pred), torch.from_numpy(ref))
    metric.compute()
    return metric.confmat.numpy()


def kernels(ref: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """ns per voxel pair of each counting method over one cache-sized block, one core."""
    import torch

    from bone_seg.metrics.counting import BLOCK, count_pairs

    torch.set_num_threads(1)
    n = BLOCK
    r, p = ref.reshape(-1)[:n], pred.reshape(-1)[:n]
    c = np.uint8(NUM_CLASSES)
    codes = np.empty(n, np.uint8)
    eq = np.empty(n, bool)

    def bincount_int64():
        return np.bincount(r.astype(np.int64) * NUM_CLASSES + p, minlength=9)

    def bincount_uint8():
        np.multiply(r, c, out=codes)
        np.add(codes, p, out=codes)
        return np.bincount(codes, minlength=9)

    def torch_bincount_uint8():
        np.multiply(r, c, out=codes)
        np.add(codes, p, out=codes)
        return torch.bincount(torch.from_numpy(codes), minlength=9)

    def count_nonzero_passes():
        np.multiply(r, c, out=codes)
        np.add(codes, p, out=codes)
        out = [n - np.count_nonzero(codes)]
        for k in range(1, 8):
            np.equal(codes, np.uint8(k), out=eq)
            out.append(np.count_nonzero(eq))
        return out

    res = {}
    for name, fn in [
        ("np.bincount on int64 codes (torchmetrics' way)", bincount_int64),
        ("np.bincount on uint8 codes", bincount_uint8),
        ("torch.bincount on uint8 codes", torch_bincount_uint8),
        ("count_nonzero passes on uint8 codes", count_nonzero_passes),
        ("count_pairs (with range checks)", lambda: count_pairs(r, p, NUM_CLASSES)),
    ]:
        t, _ = best_of(lambda fn=fn: [fn() for _ in range(20)], 3)
        res[name] = t / 20 / n * 1e9
    torch.set_num_threads(os.cpu_count() or 1)
    return res


# --------------------------------------------------------------------------- memory (child)
def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def child_memory(ref_path: str, pred_path: str) -> None:
    """Run in a fresh process: RSS after imports, then peak RSS and peak anonymous RSS."""
    import torch  # noqa: F401
    import zarr  # noqa: F401

    import bone_seg.metrics  # noqa: F401  (imports first: their memory is not the slab's)

    base = _status_kb("VmRSS")
    peak_anon = [_status_kb("RssAnon")]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak_anon[0] = max(peak_anon[0], _status_kb("RssAnon"))
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    base_anon = peak_anon[0]
    ours(ref_path, pred_path)
    done.set()
    print(json.dumps({
        "rss_after_imports_mb": base / 1024,
        "peak_rss_above_mb": (_status_kb("VmHWM") - base) / 1024,
        "peak_anon_above_mb": (peak_anon[0] - base_anon) / 1024,
    }))


def measure_memory(ref_path: str, pred_path: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-memory", ref_path, pred_path],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=64, help="slices of the small volume")
    ap.add_argument("--size", type=int, default=1024, help="slice size (px)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--whole", action="store_true",
                    help="also time torchmetrics on the whole small volume at once (~20 B/voxel)")
    ap.add_argument("--child-memory", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memory:
        child_memory(*args.child_memory)
        return

    from bone_seg.io.volume import ArrayVolume
    from bone_seg.metrics import choose_slab_depth

    small_ref, small_pred = make_masks(args.depth, args.size)
    ref, pred = make_masks(4 * args.depth, args.size)
    gb = (ref.nbytes + pred.nbytes) / 1e9
    depth = choose_slab_depth(ArrayVolume(ref), ArrayVolume(pred))
    print(f"volumes: small {small_ref.shape}, large {ref.shape} uint8, {NUM_CLASSES} classes, "
          f"agreement {np.mean(ref == pred):.4f}; slab depth {depth}; cpus {os.cpu_count()}")

    print("\n1. counting kernels, one core, one 256 Ki block (ns per voxel pair, lower is better)")
    for name, ns in kernels(ref, pred).items():
        print(f"   {name:48s} {ns:6.2f} ns  ({2 / ns:5.2f} GB/s)")

    # warm-up: first calls pay imports and allocator growth, for both sides alike
    warm = ArrayVolume(small_ref[:2]), ArrayVolume(small_pred[:2])
    ours(*warm)
    torchmetrics_slabs(*warm, 1, False)
    torchmetrics_slabs(*warm, 1, True)

    print(f"\n2. in memory (NumPy), large volume ({gb:.2f} GB of input), best of {args.repeats}")
    t_ours, cm = best_of(lambda: ours(ref, pred), args.repeats)
    t_ours1, cm1 = best_of(lambda: ours(ref, pred, workers=1), args.repeats)
    rv, pv = ArrayVolume(ref), ArrayVolume(pred)
    t_tm, cm_tm = best_of(lambda: torchmetrics_slabs(rv, pv, depth, False), args.repeats)
    t_tmv, _ = best_of(lambda: torchmetrics_slabs(rv, pv, depth, True), 1)
    assert (cm == cm_tm).all() and (cm1 == cm).all(), "counts differ from torchmetrics"
    print(f"   ours, 2 threads                        {gb / t_ours:6.2f} GB/s")
    print(f"   ours, 1 thread                         {gb / t_ours1:6.2f} GB/s")
    print(f"   torchmetrics per slab, validate=False  {gb / t_tm:6.2f} GB/s")
    print(f"   torchmetrics per slab, default         {gb / t_tmv:6.2f} GB/s")
    emit(f"bone-iou in memory, {ref.shape} uint8 pair (vs torchmetrics)",
         f"{gb / t_ours:.2f} GB/s", f"torchmetrics per slab {gb / t_tm:.2f} GB/s", t_tm / t_ours,
         ">= 20")
    emit("bone-iou in memory throughput (vs 1 GB/s)", f"{gb / t_ours:.2f} GB/s", "1 GB/s",
         gb / t_ours, ">= 1")
    print(f"   RATIO ours / torchmetrics (fastest)    {t_tm / t_ours:6.1f} ×   "
          f"(vs its default: {t_tmv / t_ours:.1f} ×)   target ≥ 20 ×, ≥ 1 GB/s")
    if args.whole:
        sgb = (small_ref.nbytes + small_pred.nbytes) / 1e9
        t_small, _ = best_of(lambda: ours(small_ref, small_pred), args.repeats)
        t_whole, _ = best_of(lambda: torchmetrics_whole(small_ref, small_pred), 1)
        print(f"   small volume: ours {sgb / t_small:.2f} GB/s, torchmetrics whole volume at once "
              f"{sgb / t_whole:.2f} GB/s → {t_whole / t_small:.1f} ×")

    tmp = Path(tempfile.mkdtemp(prefix="iou_bench_", dir=os.environ.get("TMPDIR", "/tmp")))
    try:
        on_disk(tmp, small_ref, small_pred, ref, pred, cm, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _disk_mib(path: str) -> float:
    p = Path(path)
    files = p.rglob("*") if p.is_dir() else [p]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def on_disk(tmp: Path, small_ref, small_pred, ref, pred, cm, repeats: int) -> None:
    """Sections 3 (throughput from files) and 4 (peak memory, small vs 4× larger volume)."""
    import zarr

    from bone_seg.io.volume import ArrayVolume
    from bone_seg.metrics import choose_slab_depth, open_labels

    gb = (ref.nbytes + pred.nbytes) / 1e9
    print(f"\n3. on disk (page cache), large volume, best of {repeats}; torchmetrics reads the "
          "same slabs through the same reader, and (last column) through zarr's default pipeline")
    np.save(tmp / "ref.npy", ref)
    np.save(tmp / "pred.npy", pred)
    cases = {".npy (memory-mapped)": (str(tmp / "ref.npy"), str(tmp / "pred.npy"))}
    for i, (name, layout) in enumerate(LAYOUTS.items()):
        cases[f"Zarr {name}"] = (write_zarr(tmp / f"ref{i}.zarr", ref, *layout),
                                 write_zarr(tmp / f"pred{i}.zarr", pred, *layout))
    for name, (rp, pp) in cases.items():
        t_o, cm_o = best_of(lambda rp=rp, pp=pp: ours(rp, pp), repeats)
        r_vol, p_vol = open_labels(rp, "reference"), open_labels(pp, "prediction")
        d = choose_slab_depth(r_vol, p_vol)
        t_t, cm_t = best_of(lambda r=r_vol, p=p_vol, d=d: torchmetrics_slabs(r, p, d, False),
                            repeats)
        assert (cm_o == cm).all() and (cm_t == cm).all()
        line = (f"   {name:46s} {_disk_mib(rp):6.1f} MiB  ours {gb / t_o:5.2f} GB/s  "
                f"torchmetrics {gb / t_t:5.2f} GB/s → {t_t / t_o:5.1f} ×")
        if name.startswith("Zarr"):
            plain = (ArrayVolume(zarr.open_array(rp, mode="r"), rp),
                     ArrayVolume(zarr.open_array(pp, mode="r"), pp))
            t_plain, _ = best_of(lambda v=plain, d=d: torchmetrics_slabs(*v, d, False), 1)
            line += f" | {gb / t_plain:5.2f} GB/s → {t_plain / t_o:5.1f} ×"
        print(line)
        emit(f"bone-iou from {name} (vs torchmetrics, same reader)", f"{gb / t_o:.2f} GB/s",
             f"{gb / t_t:.2f} GB/s", t_t / t_o)

    print("\n4. peak memory of confusion_matrix in a fresh process, above the RSS after imports")
    store_layout = LAYOUTS[next(iter(LAYOUTS))]
    np.save(tmp / "small_ref.npy", small_ref)
    np.save(tmp / "small_pred.npy", small_pred)
    pairs = {
        "Zarr store layout": (
            (write_zarr(tmp / "small_ref.zarr", small_ref, *store_layout),
             write_zarr(tmp / "small_pred.zarr", small_pred, *store_layout)),
            cases[f"Zarr {next(iter(LAYOUTS))}"],
        ),
        ".npy": ((str(tmp / "small_ref.npy"), str(tmp / "small_pred.npy")),
                 cases[".npy (memory-mapped)"]),
    }
    for name, (small_paths, large_paths) in pairs.items():
        s, big = measure_memory(*small_paths), measure_memory(*large_paths)
        print(f"   {name:18s} small ({2 * small_ref.nbytes / 2**20:.0f} MiB of input): peak RSS "
              f"+{s['peak_rss_above_mb']:.0f} MiB, anonymous +{s['peak_anon_above_mb']:.0f} MiB"
              f" | 4× ({2 * ref.nbytes / 2**20:.0f} MiB): peak RSS "
              f"+{big['peak_rss_above_mb']:.0f} MiB, "
              f"anonymous +{big['peak_anon_above_mb']:.0f} MiB")
        emit(f"bone-iou peak anonymous memory, {name}: 4x the input",
             f"+{big['peak_anon_above_mb']:.0f} MiB", f"+{s['peak_anon_above_mb']:.0f} MiB",
             big["peak_anon_above_mb"] / max(s["peak_anon_above_mb"], 1), "<= 1.1")

if __name__ == "__main__":
    main()
