"""What the receptive field does on BONe's hard case: the background between packed bones.

The paper's Figure 2: with small patches a model "may … mislabel the background between
closely-packed bones as medullary pores". This script fits the same 2D model on the ``packed``
preset (four dry bones 3 px apart: the background between them is as narrow as a cavity and has the
cavity's intensity, see docs/task.md) with patches of 64, 128 and 192 px, and scores each on
held-out scans of the same preset: per-class IoU, and the fraction of the between-bones background
(the phantom's ``between_bones`` structure) predicted as pores. It also reports the
opposite error, the medullary cavity predicted as background (a window inside a dry cavity sees
only air: "the model may miss the full bone profile"). The baseline is the smallest patch, fitted
in the same run.

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


def _confusions(run: Path, phantoms: Path) -> dict[str, float]:
    """Over the test scans: the fractions of the between-bones background predicted as pores and
    as anything but background, and of the medullary cavity predicted as background."""
    import zarr

    from bone_seg.phantom import get_preset, structure_codes
    from bone_seg.phantom.anatomy import CODE

    counts = dict.fromkeys(("between", "between_pores", "between_wrong", "cavity",
                            "cavity_background", "fossa", "fossa_pores"), 0)
    for record in json.loads((run / "test_scores.json").read_text()):
        meta = json.loads((phantoms / record["scan"] / "phantom.json").read_text())
        fields = {k: v for k, v in meta["params"].items() if k not in ("name", "shape")}
        codes = structure_codes(get_preset(meta["preset"], meta["shape"], **fields), meta["seed"])
        labels = np.asarray(zarr.open_array(run / "test_predictions" / f"{record['scan']}.zarr"
                                            / "labels" / "segmentation" / "0", mode="r")[:])
        between = codes == CODE["between_bones"]
        cavity = np.isin(codes, [CODE["marrow"], CODE["cavity_air"]])
        counts["between"] += int(between.sum())
        counts["between_pores"] += int((labels[between] == 2).sum())
        counts["between_wrong"] += int((labels[between] != 0).sum())
        counts["cavity"] += int(cavity.sum())
        counts["cavity_background"] += int((labels[cavity] == 0).sum())
        fossa = codes == CODE["fossa"]
        counts["fossa"] += int(fossa.sum())
        counts["fossa_pores"] += int((labels[fossa] == 2).sum())
    return {"between_pores": counts["between_pores"] / counts["between"],
            "between_wrong": counts["between_wrong"] / counts["between"],
            "cavity_background": counts["cavity_background"] / counts["cavity"],
            "fossa_pores": counts["fossa_pores"] / max(1, counts["fossa"])}


def _picture(runs: list[tuple[int, Path]], store: Path, out: Path) -> None:
    """The middle slice of the first test scan: image, reference and each patch size's labels."""
    import matplotlib
    import zarr

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scan = json.loads((runs[0][1] / "test_scores.json").read_text())[-1]["scan"]
    group = zarr.open_group(store / "scans" / scan, mode="r")
    z = group["image"].shape[0] // 2
    panels = [("image", np.asarray(group["image"][z]), "gray"),
              ("reference", np.asarray(group["mask"][z]), "viridis")]
    for size, run in runs:
        labels = zarr.open_array(run / "test_predictions" / f"{scan}.zarr" / "labels"
                                 / "segmentation" / "0", mode="r")
        panels.append((f"{size}-px patches", np.asarray(labels[z]), "viridis"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    for ax, (title, data, cmap) in zip(axes, panels, strict=True):
        ax.imshow(data, cmap=cmap, **({} if cmap == "gray" else {"vmin": 0, "vmax": 2}))
        ax.set_title(f"{scan} z={z}: {title}" if title == "image" else title)
        ax.axis("off")
    fig.suptitle("0 background (purple), 1 bone (green), 2 pores (yellow)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> None:
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/bench_rf")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 192],
                        choices=sorted(PLAN))
    parser.add_argument("--arch", default="unet", help="a conf/model/net config")
    parser.add_argument("--runs", nargs="+", type=Path,
                        help="score these finished runs (one per size, in --sizes order) "
                             "instead of fitting")
    args = parser.parse_args()
    root = Path(args.root)
    phantoms = root / "phantoms"
    scans = [{"id": f"p{i:02d}", "preset": "packed", "seed": 100 + i}
             for i in range(TRAIN_SCANS + TEST_SCANS)]
    make_phantom_set(phantoms, scans, workers=2)
    store = root / "store"
    if not (store / "manifest.json").exists():
        import_scans(store, discover_scans(phantoms), ImportOptions(), workers=2)
    rows, runs = [], []
    for size in args.sizes:
        t0 = time.perf_counter()
        run = args.runs[len(rows)] if args.runs else _fit(root, store, size, args.epochs,
                                                          args.arch)
        runs.append(run)
        records = json.loads((run / "test_scores.json").read_text())
        iou = {c: float(np.mean([r["iou"][c] for r in records]))
               for c in ("background", "bone", "pores")}
        rows.append((size, float(np.mean([r["miou"] for r in records])), iou,
                     _confusions(run, phantoms), time.perf_counter() - t0))
        print(f"patch {size}: done in {rows[-1][-1]:.0f} s ({run})", flush=True)
    picture = root / "receptive_field.png"
    _picture(list(zip(args.sizes, runs, strict=True)), store, picture)
    base = rows[0]
    print(f"\n{args.arch}, 2D, {args.epochs} epochs, {TRAIN_SCANS - 1} train / 1 val / "
          f"{TEST_SCANS} test scans of the packed preset\n")
    print("| patch px | mIoU | IoU background | IoU bone | IoU pores | between-bones background "
          "→ pores | → not background | cavity → background | fossa → pores | fit + test s | "
          "mIoU vs smallest |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, miou, iou, wrong, seconds in rows:
        print(f"| {size} | {miou:.4f} | {iou['background']:.4f} | {iou['bone']:.4f} | "
              f"{iou['pores']:.4f} | {100 * wrong['between_pores']:.2f} % | "
              f"{100 * wrong['between_wrong']:.2f} % | {100 * wrong['cavity_background']:.2f} % | "
              f"{100 * wrong['fossa_pores']:.1f} % | "
              f"{seconds:.0f} | {miou - base[1]:+.4f} |")
    print(f"\nthe middle slice of a test scan, per patch size: {picture}")


if __name__ == "__main__":
    main()
