"""What post-processing costs: time against labelling the whole volume in memory, and peak memory
of a 4 × deeper volume (memory bounded by slabs, not by the scan).

A label volume (``depth × size × size`` uint8, classes 0/1/2 from smoothed noise: thousands of
components, many crossing slab borders) is written as a Zarr array chunked one slab deep. Each
measurement runs in its own process (peak RSS from ``getrusage``): ``stream`` runs both passes of
:mod:`bone_seg.postprocess.stream` slab by slab (``--slab-depth``), reading from and writing to
Zarr; ``whole`` (the naive baseline) reads the whole volume and runs the same rules as one slab.
Both give the same labels (checked). Printed: seconds and peak RSS of each, for the shallow and
the 4 × deeper volume, and the ratios: stream / whole time, deep / shallow peak RSS.

Run: ``.venv/bin/python benchmarks/postprocess_cost.py [--depth 32] [--size 512] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RULES = {"min_bone_size": 64, "min_pore_size": 8, "min_pore_enclosure": 0.5}

CHILD = r"""
import json, resource, sys, time
import numpy as np, zarr
from bone_seg.postprocess.settings import PostprocessSettings
from bone_seg.postprocess.stream import apply_decisions, find_decisions
src, dst, how, slab, rules = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
s = PostprocessSettings(**json.loads(rules))
a = zarr.open_array(src, mode="r")
t = time.perf_counter()
if how == "whole":
    v = a[:]
    d = find_decisions(lambda z0, z1: v[z0:z1], v.shape, len(v), s, 3)
    out = apply_decisions(v, 0, d, s)
    zarr.open_array(dst, mode="w", shape=a.shape, chunks=a.chunks, dtype="uint8")[:] = out
else:
    d = find_decisions(lambda z0, z1: a[z0:z1], a.shape, slab, s, 3)
    b = zarr.open_array(dst, mode="w", shape=a.shape, chunks=a.chunks, dtype="uint8")
    for i, z in enumerate(range(0, a.shape[0], slab)):
        b[z:z + slab] = apply_decisions(a[z:z + slab], i, d, s)
seconds = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_mb": rss}))
"""


def _volume(path: Path, depth: int, size: int, slab: int) -> Path:
    import zarr
    from scipy import ndimage

    rng = np.random.default_rng(0)
    arr = zarr.open_array(str(path), mode="w", shape=(depth, size, size), chunks=(slab, size, size),
                          dtype="uint8")
    for z in range(0, depth, slab):  # smoothed noise, slab by slab (with some overlap)
        noise = ndimage.gaussian_filter(rng.random((slab + 4, size, size)), 1.5)[2:-2]
        arr[z:z + slab] = np.digitize(noise, [0.49, 0.51]).astype(np.uint8)
    return path


def _run(src: Path, dst: Path, how: str, slab: int, threads: int) -> dict:
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), how, str(slab),
                           json.dumps(RULES)], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import zarr

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slab-depth", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vols = {name: _volume(root / f"{name}.zarr", d, args.size, args.slab_depth)
                for name, d in (("shallow", args.depth), ("deep", 4 * args.depth))}
        res: dict = {}
        for _ in range(args.repeats):  # interleaved: stream, whole, stream, whole, ...
            for name, src in vols.items():
                for how in ("stream", "whole"):
                    r = _run(src, root / f"{name}_{how}.zarr", how, args.slab_depth, args.threads)
                    res.setdefault((name, how), []).append(r)
        for name in vols:
            same = np.array_equal(zarr.open_array(str(root / f"{name}_stream.zarr"))[:],
                                  zarr.open_array(str(root / f"{name}_whole.zarr"))[:])
            assert same, f"{name}: streamed and whole-volume results differ"
    med = {k: {m: float(np.median([r[m] for r in v])) for m in ("seconds", "rss_mb")}
           for k, v in res.items()}
    print(f"rules {RULES}; {args.size}² px slices, slab {args.slab_depth}, "
          f"{args.threads} thread(s); medians of {args.repeats}; results identical")
    print("| volume | variant | seconds | peak RSS MB |")
    print("|---|---|---:|---:|")
    for (name, how), m in med.items():
        depth = args.depth * (4 if name == "deep" else 1)
        print(f"| {name} ({depth} slices) | {how} | {m['seconds']:.2f} | {m['rss_mb']:.0f} |")
    for how in ("stream", "whole"):
        ratio = med[("deep", how)]["rss_mb"] / med[("shallow", how)]["rss_mb"]
        print(f"{how}: deep / shallow peak RSS {ratio:.3f}×")
    print(f"stream / whole time (deep): "
          f"{med[('deep', 'stream')]['seconds'] / med[('deep', 'whole')]['seconds']:.3f}×")


if __name__ == "__main__":
    main()
