"""A prediction split across jobs against one job: wall time and bitwise equality.

The same ``bone-predict`` of one scan (a random-initialised 2.5D U-Net/ResNet-18, a smooth random
scan) as one job with every core, then as ``bone-predict -m part=0,..,n-1 parts=n
hydra/launcher=local_parallel`` (n processes, cores / n threads each) into one output; prints both
wall times (each command as a user runs it: start-up included), their ratio, and whether every
array of the two outputs (labels, confidence, every pyramid level) is bitwise equal. On one
machine the split buys little (the cores are shared either way); it is for several machines
(``hydra/launcher=slurm``), where each part is one node's job.

    .venv/bin/python benchmarks/predict_parts.py [--parts 2] [--shape 48 384 384]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent / "bone-predict"


def _arrays(out: Path) -> dict[str, np.ndarray]:
    import zarr

    group = zarr.open_group(str(out), mode="r")
    found = {}
    for name in ("labels/segmentation", "confidence"):
        for level in group[name].array_keys():
            found[f"{name}/{level}"] = group[f"{name}/{level}"][:]
    return found


def _timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return time.perf_counter() - t


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "inference"))
    from inference_helpers import save_model, scan

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=[48, 384, 384])
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="bench_parts_"))
    root.mkdir(parents=True, exist_ok=True)
    weights = save_model(root / "w.safetensors", "2.5d", patch=128)
    np.save(root / "scan.npy", scan(tuple(args.shape)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    common = [f"weights={weights}", f"scan={root / 'scan.npy'}", "confidence=true",
              f"paths.root={root}", "overwrite=true"]
    one = _timed([str(BIN), *common, f"out={root / 'one.zarr'}"], env)
    parts = ",".join(map(str, range(args.parts)))
    split = _timed([str(BIN), "-m", *common, f"out={root / 'split.zarr'}", f"part={parts}",
                    f"parts={args.parts}", "hydra/launcher=local_parallel",
                    f"hydra.launcher.n_jobs={args.parts}"], env)
    a, b = _arrays(root / "one.zarr"), _arrays(root / "split.zarr")
    same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    cores = len(os.sched_getaffinity(0))
    print(f"scan {'x'.join(map(str, args.shape))}, {cores} cores")
    print(f"one job:           {one:.1f} s")
    print(f"{args.parts} parts (parallel): {split:.1f} s")
    print(f"ratio split / one job: {split / one:.2f}x; every array bitwise equal: "
          f"{'yes' if same else 'NO'} ({len(a)} arrays)")


if __name__ == "__main__":
    main()
