"""What the OME-Zarr pyramid costs ``bone-predict``: time, and peak memory of a 4 × deeper scan.

Targets (issue "results that open right in napari and Fiji"): writing the pyramid adds ≤ 15 % to
a prediction's time, and the peak RSS of a 4 × deeper scan stays ≤ 1.1 × the shallower one's
(memory bounded by a slab, pyramid included).

Measured in the same run, as ``predict_memory.py`` does: ``/usr/bin/time -v bone-predict ...``
(maximum resident set size) for a random-initialised U-Net/ResNet-18 (2D, window 128 px) on
folders of TIFF slices (``depth × size × size`` uint16, and ``4·depth``), ``confidence=true``
(both the labels and the confidence get a pyramid), ``slab_depth=8``, ``batch_size=8``,
``threads=1``. The deep scan is predicted with ``pyramid=0`` (level 0 only: the baseline) and
with ``pyramid=3`` (three extra levels, more than ``auto`` gives a 512-px slice), alternately
``--repeats`` times; the time compared is the report's ``predict_time_s`` (prediction and
writing, where the pyramid is written) and the whole command's wall time.

Run: ``.venv/bin/python benchmarks/pyramid_cost.py [--depth 8] [--size 512] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import json
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


def _scans(root: Path, depth: int, size: int) -> dict[str, Path]:
    import tifffile

    rng = np.random.default_rng(0)
    scans = {}
    for name, d in (("shallow", depth), ("deep", 4 * depth)):
        folder = root / name
        folder.mkdir()
        for z in range(d):
            plane = rng.normal(1000, 200, (size, size)).clip(0, 65535)
            tifffile.imwrite(folder / f"s_{z:04d}.tif", plane.astype(np.uint16))
        scans[name] = folder
    return scans


def _weights(root: Path) -> Path:
    import torch

    from bone_seg.weights.meta import WeightsMeta
    from bone_seg.weights.network import create_net
    from bone_seg.weights.safetensors_file import save_weights

    meta = WeightsMeta(arch="unet", encoder="resnet18", mode="2d", in_channels=1, num_classes=3,
                       class_names=["background", "bone", "pores"], patch_size=128)
    torch.manual_seed(0)
    net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3)
    return save_weights(root / "w.safetensors", net.state_dict(), meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyramid_cost_") as tmp:
        root = Path(tmp)
        weights, scans = _weights(root), _scans(root, args.depth, args.size)
        common = [f"weights={weights}", f"paths.root={root}", "slab_depth=8", "batch_size=8",
                  "confidence=true", f"threads={THREADS}", "overwrite=true"]

        def predict(scan: str, pyramid: int, rep: int = 0) -> dict:
            out = root / f"{scan}_{pyramid}_{rep}.zarr"  # a new output each time: no resume
            rss, wall = timed([str(BIN / "bone-predict"), *common, f"scan={scans[scan]}",
                               f"out={out}", f"pyramid={pyramid}"])
            report = PredictionReport.read(out / "report.json")
            levels = len(json.loads((out / "zarr.json").read_text())["attributes"][
                "bone_seg_prediction"]["pyramid"])
            print(f"{scan:8s} pyramid={pyramid} ({levels} levels): peak RSS {rss:.0f} MiB, "
                  f"wall {wall:.1f} s, predict+write {report.predict_time_s:.1f} s")
            shutil.rmtree(out)
            return {"rss": rss, "wall": wall, "predict": report.predict_time_s}

        runs: dict[int, list[dict]] = {0: [], 3: []}
        for rep in range(args.repeats):
            for pyramid in (0, 3):
                runs[pyramid].append(predict("deep", pyramid, rep))
        shallow = predict("shallow", 3)
        best = {p: {k: min(r[k] for r in rs) for k in ("rss", "wall", "predict")}
                for p, rs in runs.items()}
        print(f"pyramid time (deep scan, best of {args.repeats}): predict+write "
              f"{best[3]['predict'] / best[0]['predict']:.3f}x, wall "
              f"{best[3]['wall'] / best[0]['wall']:.3f}x of level 0 only (target <= 1.15x)")
        print(f"peak RSS deep / shallow with the pyramid (4x the slices): "
              f"{best[3]['rss'] / shallow['rss']:.3f}x (target <= 1.1x); deep with / without "
              f"the pyramid {best[3]['rss'] / best[0]['rss']:.3f}x")
        scan = f"{4 * args.depth} x {args.size}^2 scan"
        emit(f"bone-predict pyramid=3, prediction + writing time ({scan})",
             f"{best[3]['predict']:.1f} s", f"pyramid=0 {best[0]['predict']:.1f} s",
             best[3]["predict"] / best[0]["predict"], "<= 1.15",
             f"wall {best[3]['wall'] / best[0]['wall']:.3f}x")
        emit("bone-predict pyramid=3, peak RSS: 4x the slices", f"{best[3]['rss']:.0f} MiB",
             f"{args.depth} slices {shallow['rss']:.0f} MiB", best[3]["rss"] / shallow["rss"],
             "<= 1.1")


if __name__ == "__main__":
    main()
