"""What ensembles and test-time augmentation cost ``bone-predict``: time and peak memory.

Target (issue "predictions you can trust"): the peak RSS of an ensemble of 5 stays ≤ 1.2 × a
single model's (memory bounded by a slab: one network per architecture, the members' weights
copied into it in turn, :mod:`bone_seg.inference.ensemble`). The time of an ensemble of ``n``
(and of ``k`` TTA passes) is expected near ``n`` (``k``) times the single model's: every window
goes through the network once per member and pass.

Measured in the same run, as ``predict_memory.py`` does: ``/usr/bin/time -v bone-predict ...``
(maximum resident set size, wall time) and the report's ``predict_time_s``, for random-initialised
U-Net/ResNet-18 members (2D, window 128 px, five seeds) on a folder of TIFF slices
(``depth × size × size`` uint16), ``slab_depth=8``, ``batch_size=--batch`` (32: what ``auto``
gives a CPU with a few GB free; the members' weights are copied in once per step), ``threads=1``,
``confidence=true``: the single model, the ensemble of 5, the single model with ``tta=flips``
(4 passes), and the ensemble of 5 with ``tta=flips`` and both uncertainty maps (20 passes) only
with ``--full``. Each runs ``--repeats`` times, alternately; the best of each is compared.

Run: ``.venv/bin/python benchmarks/ensemble_cost.py [--depth 8] [--size 256] [--repeats 1]
[--batch 32] [--full]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from bone_seg.inference.record import PredictionReport

sys.path.insert(0, str(Path(__file__).parent))
from bench_result import emit  # noqa: E402
from predict_memory import BIN, timed  # noqa: E402  (the same measuring method)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
THREADS = os.environ.get("BONE_BENCH_THREADS", "1")  # run_all.py --threads; alone: 1


def _scan(root: Path, depth: int, size: int) -> Path:
    import tifffile

    rng = np.random.default_rng(0)
    folder = root / "scan"
    folder.mkdir()
    for z in range(depth):
        plane = rng.normal(1000, 200, (size, size)).clip(0, 65535)
        tifffile.imwrite(folder / f"s_{z:04d}.tif", plane.astype(np.uint16))
    return folder


def _members(root: Path, n: int) -> list[Path]:
    import torch

    from bone_seg.weights.meta import WeightsMeta
    from bone_seg.weights.network import create_net
    from bone_seg.weights.safetensors_file import save_weights

    meta = WeightsMeta(arch="unet", encoder="resnet18", mode="2d", in_channels=1, num_classes=3,
                       class_names=["background", "bone", "pores"], patch_size=128)
    paths = []
    for seed in range(n):
        torch.manual_seed(seed)
        net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3)
        paths.append(save_weights(root / f"m{seed}.safetensors", net.state_dict(), meta))
    return paths


def _emit(best: dict, args) -> None:
    base, scan = best["single"], f"{args.depth} x {args.size}^2 scan"
    e5 = best["ensemble5"]
    emit(f"bone-predict ensemble of 5, peak RSS ({scan})", f"{e5['rss']:.0f} MiB",
         f"single model {base['rss']:.0f} MiB", e5["rss"] / base["rss"], "<= 1.2")
    emit(f"bone-predict ensemble of 5, prediction time ({scan})", f"{e5['predict']:.1f} s",
         f"single model {base['predict']:.1f} s", e5["predict"] / base["predict"], "<= 5.5",
         "5 passes: ideal 5.0")
    tta = best["single+tta"]
    emit(f"bone-predict tta=flips, prediction time ({scan})", f"{tta['predict']:.1f} s",
         f"single model {base['predict']:.1f} s", tta["predict"] / base["predict"], "<= 4.4",
         "4 passes: ideal 4.0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--full", action="store_true", help="also the ensemble of 5 with TTA")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ensemble_cost_") as tmp:
        root = Path(tmp)
        members, scan = _members(root, 5), _scan(root, args.depth, args.size)
        five = "[" + ",".join(str(m) for m in members) + "]"
        cases = {"single": [f"weights={members[0]}"], "ensemble5": [f"weights={five}"],
                 "single+tta": [f"weights={members[0]}", "tta=flips"]}
        if args.full:
            cases["ensemble5+tta"] = [f"weights={five}", "tta=flips",
                                      "uncertainty=[entropy,mutual_information]"]
        common = [f"scan={scan}", f"paths.root={root}", "slab_depth=8", f"batch_size={args.batch}",
                  "confidence=true", f"threads={THREADS}", "overwrite=true"]
        runs: dict[str, list[dict]] = {name: [] for name in cases}
        for rep in range(args.repeats):
            for name, extra in cases.items():
                out = root / f"{name}_{rep}.zarr"  # a new output each time: no resume
                rss, wall = timed([str(BIN / "bone-predict"), *common, *extra, f"out={out}"])
                report = PredictionReport.read(out / "report.json")
                print(f"{name:14s} peak RSS {rss:.0f} MiB, wall {wall:.1f} s, predict "
                      f"{report.predict_time_s:.1f} s")
                runs[name].append({"rss": rss, "wall": wall, "predict": report.predict_time_s})
                shutil.rmtree(out)
        best = {n: {k: min(r[k] for r in rs) for k in ("rss", "wall", "predict")}
                for n, rs in runs.items()}
        base = best["single"]
        for name in cases:
            if name != "single":
                b = best[name]
                print(f"{name:14s} / single: peak RSS {b['rss'] / base['rss']:.3f}x, predict "
                      f"time {b['predict'] / base['predict']:.2f}x, wall "
                      f"{b['wall'] / base['wall']:.2f}x")
        print(f"target: ensemble of 5 peak RSS <= 1.2x single: "
              f"{best['ensemble5']['rss'] / base['rss']:.3f}x")
        _emit(best, args)


if __name__ == "__main__":
    main()
