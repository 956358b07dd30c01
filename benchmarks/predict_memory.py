"""Peak resident memory of ``bone-predict`` for a scan and one 4 × deeper.

Target (issue "inference"): peak RSS for the 4 × deeper scan ≤ 1.1 × the shallower one's —
memory is bounded by the slab buffers, not by the scan.

What is measured, in the same run: ``/usr/bin/time -v bone-predict ...`` (its "Maximum resident
set size", the kernel's high-water mark of the process) for a random-initialised
U-Net/ResNet-18 (2D, window 128 px) predicting two scans stored as folders of TIFF slices
(``depth × size × size`` uint16, and ``4·depth``), with ``confidence=true`` (the float32
confidence is buffered and written too), ``slab_depth=8``, ``batch_size=8``. A third process
imports everything and loads the network without predicting, for the baseline.

Run: ``.venv/bin/python benchmarks/predict_memory.py [--depth 8] [--size 512]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_result import emit  # benchmarks/ is on sys.path

from bone_seg.inference.record import PredictionReport

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> tuple[float, float]:
    """``(peak RSS in MiB, seconds)`` of ``cmd`` run under ``/usr/bin/time -v``."""
    t = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return kib / 1024, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()

    import tifffile
    import torch

    from bone_seg.weights.meta import WeightsMeta
    from bone_seg.weights.network import create_net
    from bone_seg.weights.safetensors_file import save_weights

    with tempfile.TemporaryDirectory(prefix="predict_memory_") as tmp:
        root = Path(tmp)
        meta = WeightsMeta(arch="unet", encoder="resnet18", mode="2d", in_channels=1,
                           num_classes=3, class_names=["background", "bone", "pores"],
                           patch_size=128)
        torch.manual_seed(0)
        net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3)
        weights = save_weights(root / "w.safetensors", net.state_dict(), meta)
        rng = np.random.default_rng(0)
        scans = {}
        for name, depth in (("shallow", args.depth), ("deep", 4 * args.depth)):
            folder = root / name
            folder.mkdir()
            for z in range(depth):
                plane = rng.normal(1000, 200, (args.size, args.size)).clip(0, 65535)
                tifffile.imwrite(folder / f"s_{z:04d}.tif", plane.astype(np.uint16))
            scans[name] = folder
        common = [f"weights={weights}", f"paths.root={root}", "slab_depth=8", "batch_size=8",
                  "confidence=true"]
        baseline_code = ("from bone_seg.workflows.predict import run; "
                         "from bone_seg.weights.network "
                         f"import load_net; load_net({str(weights)!r})")
        base, _ = timed([sys.executable, "-c", baseline_code])
        print(f"baseline (imports + network loaded, no prediction): {base:.0f} MiB")
        peaks = {}
        for name, folder in scans.items():
            depth = len(list(folder.iterdir()))
            rss, seconds = timed([str(BIN / "bone-predict"), *common, f"scan={folder}",
                                  f"out={root / (name + '.zarr')}"])
            peaks[name] = rss
            report = PredictionReport.read(root / f"{name}.zarr" / "report.json")
            print(f"{name:8s} {depth:3d} x {args.size} x {args.size}: peak RSS {rss:.0f} MiB "
                  f"(+{rss - base:.0f} over the baseline), {seconds:.1f} s in all, predicting "
                  f"{report.predict_time_s:.1f} s ({report.voxels_per_s / 1e6:.2f} "
                  f"Mvoxel/s, batch {report.batch_size})")
        ratio = peaks["deep"] / peaks["shallow"]
        emit(f"bone-predict peak RSS: {4 * args.depth} vs {args.depth} slices of {args.size}^2",
             f"{peaks['deep']:.0f} MiB", f"{peaks['shallow']:.0f} MiB", ratio, "<= 1.1",
             f"{report.voxels_per_s / 1e6:.2f} Mvoxel/s")
        print(f"peak RSS deep / shallow (4x the slices): {ratio:.3f}x (target <= 1.1x); above "
              f"the baseline: {(peaks['deep'] - base) / max(peaks['shallow'] - base, 1):.2f}x")


if __name__ == "__main__":
    main()
