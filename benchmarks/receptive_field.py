"""What the receptive field does on BONe's hard case: the background between packed bones.

The paper's Figure 2: with small patches a model "may … mislabel the background between
closely-packed bones as medullary pores". This script fits the same 2D model on the ``packed``
preset (four dry bones 3 px apart: the background between them is as narrow as a cavity and has the
cavity's intensity, see docs/task.md) with patches of 64, 128 and 192 px, and scores each on
held-out scans of the same preset: per-class IoU, and the fraction of the between-bones background
(the phantom's ``between_bones`` structure) predicted as pores. The baseline is the smallest patch,
fitted in the same run.

Every fit sees the same number of pixels per batch and the same number of steps (more patches per
tile and larger batches for smaller patches), so the patch size is the only thing that changes.

    .venv/bin/python benchmarks/receptive_field.py [--root /tmp/bench_rf] [--epochs 12]
        [--sizes 64 128 192] [--arch unet]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
TRAIN_SCANS, TEST_SCANS = 6, 2
# patches per tile and batch per patch size: ~147k pixels a batch, 30 steps an epoch (6 scans)
PLAN = {64: (9, 36), 96: (4, 16), 128: (2, 8), 160: (1, 6), 192: (1, 4)}


def _fit(root: Path, store: Path, size: int, epochs: int, arch: str) -> Path:
    per_tile, batch = PLAN[size]
    cmd = [str(BIN / "bone-fit"), "experiment=quick", f"paths.root={root}",
           f"data.store={store}", "data.mode=2d", f"data.patch_size={size}",
           f"data.patches_per_tile={per_tile}", f"data.batch_size={batch}",
           f"model/net={arch}", f"trainer.max_epochs={epochs}",
           f"data.num_folds={(TRAIN_SCANS + TEST_SCANS) // TEST_SCANS}",
           f"data.test_fold={(TRAIN_SCANS + TEST_SCANS) // TEST_SCANS}",
           "test.keep_predictions=true", f"sweep=receptive_field_{arch}",
           "callbacks.complexity=null"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    runs = sorted((root / "runs" / "fit").glob("*/*/test_scores.json"),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1].parent


def _between_bones_as_pores(run: Path, phantoms: Path) -> tuple[float, float]:
    """Fraction of the test scans' between-bones background predicted as pores, and as
    anything but background."""
    import zarr

    from bone_seg.phantom import get_preset, structure_codes
    from bone_seg.phantom.anatomy import CODE

    as_pores = not_background = total = 0
    for record in json.loads((run / "test_scores.json").read_text()):
        meta = json.loads((phantoms / record["scan"] / "phantom.json").read_text())
        fields = {k: v for k, v in meta["params"].items() if k not in ("name", "shape")}
        preset = get_preset(meta["preset"], meta["shape"], **fields)
        codes = structure_codes(preset, meta["seed"])
        labels = np.asarray(zarr.open_array(run / "test_predictions" / f"{record['scan']}.zarr"
                                            / "labels", mode="r")[:])
        between = codes == CODE["between_bones"]
        total += int(between.sum())
        as_pores += int((labels[between] == 2).sum())
        not_background += int((labels[between] != 0).sum())
    return as_pores / total, not_background / total


def main() -> None:
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.phantom import make_phantom_set

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/bench_rf")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 192],
                        choices=sorted(PLAN))
    parser.add_argument("--arch", default="unet", help="a conf/model/net config")
    args = parser.parse_args()
    root = Path(args.root)
    phantoms = root / "phantoms"
    scans = [{"id": f"p{i:02d}", "preset": "packed", "seed": 100 + i}
             for i in range(TRAIN_SCANS + TEST_SCANS)]
    make_phantom_set(phantoms, scans, workers=2)
    store = root / "store"
    if not (store / "manifest.json").exists():
        import_scans(store, discover_scans(phantoms), ImportOptions(), workers=2)
    rows = []
    for size in args.sizes:
        t0 = time.perf_counter()
        run = _fit(root, store, size, args.epochs, args.arch)
        records = json.loads((run / "test_scores.json").read_text())
        iou = {c: float(np.mean([r["iou"][c] for r in records]))
               for c in ("background", "bone", "pores")}
        pores, wrong = _between_bones_as_pores(run, phantoms)
        rows.append((size, float(np.mean([r["miou"] for r in records])), iou, pores, wrong,
                     time.perf_counter() - t0))
        print(f"patch {size}: done in {rows[-1][-1]:.0f} s ({run})", flush=True)
    base = rows[0]
    print(f"\n{args.arch}, 2D, {args.epochs} epochs, {TRAIN_SCANS - 1} train / 1 val / "
          f"{TEST_SCANS} test scans of the packed preset\n")
    print("| patch px | mIoU | IoU background | IoU bone | IoU pores | between-bones background "
          "→ pores | → not background | fit + test s | mIoU vs smallest |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, miou, iou, pores, wrong, seconds in rows:
        print(f"| {size} | {miou:.4f} | {iou['background']:.4f} | {iou['bone']:.4f} | "
              f"{iou['pores']:.4f} | {100 * pores:.2f} % | {100 * wrong:.2f} % | {seconds:.0f} | "
              f"{miou - base[1]:+.4f} |")


if __name__ == "__main__":
    main()
