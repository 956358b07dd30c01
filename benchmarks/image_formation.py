"""Does a phantom whose image formation is closer to a reconstructed micro-CT give a model whose
bone edge is right on CT-like scans?

Four image formations of the same phantoms (bone_seg/phantom/imaging.py):

* ``old``: the original phantoms (point-sampled geometry, gaussian ``blur`` 0.7 on the voxel grid,
  additive noise);
* ``pv``: + partial volume (geometry on a ``--supersample``-times finer grid in Y/X, averaged
  down; labels by the >= 50 % rule), the blur unchanged;
* ``psf``: partial volume with the scanner's point spread function on the fine grid (sigma
  ``--psf`` voxels) instead of the voxel-grid blur;
* ``ct``: ``psf`` + the acquisition model (projections, photon noise, filtered back-projection),
  no additive noise.

1. **Edge** (no training): for each formation, the mean intensity profile across the outer cortical
   edge of a single dry bone against the true (fine-grid) signed distance to the edge, and where its
   50 % point between the background and bone levels lies (negative: outside the true edge, so a
   threshold or a model that learned one makes bone thicker), with the same for the labels.
2. **Models**: a small training set per formation, a short ``bone-fit`` on each (one thread), every
   model scored on held-out phantoms made **with the CT acquisition** (other seeds, several
   presets): predicted/true bone volume, bone IoU and mIoU per preset.

    .venv/bin/python benchmarks/image_formation.py [--root /tmp/bench_image_formation]
        [--train-scans 5] [--epochs 6] [--edge-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_result import emit  # noqa: E402

BIN = Path(sys.executable).parent
PRESETS = ("mouse", "river_otter", "leopard", "sea_otter", "capybara")
NAMES = ("background", "bone", "pores")


def variants(args) -> dict[str, dict]:
    """Preset fields of each image formation."""
    s, psf = args.supersample, args.psf
    ct = {"acquisition": "ct", "ct_angles": args.ct_angles, "ct_photons": args.ct_photons,
          "noise": 0.0}
    return {"old": {},
            "pv": {"supersample": s, "supersample_z": args.supersample_z},
            "psf": {"supersample": s, "supersample_z": args.supersample_z, "psf": psf,
                    "blur": 0.0},
            "ct": {"supersample": s, "supersample_z": args.supersample_z, "psf": psf,
                   "blur": 0.0, **ct}}


# ----------------------------------------------------------------------------- edge measure
def signed_distance(preset, seed: int, z: int, grid: int = 7) -> np.ndarray:
    """Signed distance (voxels, > 0 inside bone) of each voxel centre to the true bone edge, from
    the geometry on a ``grid``-times finer grid (odd: a sub-voxel sits on each voxel centre)."""
    from scipy.ndimage import distance_transform_edt

    from bone_seg.phantom import CLASS_OF, Anatomy

    bone = CLASS_OF[Anatomy(preset, seed, grid=grid).slice_codes(z)] == 1
    inside = (distance_transform_edt(bone) - 0.5) / grid
    outside = (distance_transform_edt(~bone) - 0.5) / grid
    d = np.where(bone, inside, -outside)
    c = grid // 2
    return d[c::grid, c::grid]


def crossing(centres: np.ndarray, profile: np.ndarray, level: float) -> float:
    """Where ``profile`` crosses ``level`` nearest to 0 (linear between bin centres)."""
    best = np.nan
    for i in range(len(profile) - 1):
        a, b = profile[i] - level, profile[i + 1] - level
        if np.isfinite(a) and np.isfinite(b) and a * b <= 0 and a != b:
            x = centres[i] + (centres[i + 1] - centres[i]) * a / (a - b)
            if not np.isfinite(best) or abs(x) < abs(best):
                best = x
    return float(best)


def edge_measure(args) -> dict[str, dict]:
    """Profile and 50 % points of each formation on one dry single-bone phantom."""
    from scipy.ndimage import binary_dilation

    from bone_seg.phantom import generate, get_preset, structure_codes
    from bone_seg.phantom.anatomy import CLASS_OF

    shape = (args.edge_slices, args.edge_size, args.edge_size)
    base = get_preset("river_otter", shape, dtype="float32")
    seed = 7
    zs = range(1, shape[0] - 1)
    d = np.stack([signed_distance(base, seed, z) for z in zs])
    codes = structure_codes(base, seed)[1:-1]
    # the outer cortical edge only: away from pores, the cavity, canals, a drill hole
    away = ~binary_dilation(CLASS_OF[codes] == 2, iterations=4)
    bins = np.arange(-4.0, 4.01, 0.25)
    centres = (bins[:-1] + bins[1:]) / 2
    which = np.digitize(d, bins) - 1
    use = away & (which >= 0) & (which < len(centres))
    out = {}
    for name, fields in variants(args).items():
        t0 = time.perf_counter()
        image, mask, _ = generate(get_preset("river_otter", shape, dtype="float32", **fields),
                                  seed)
        seconds = time.perf_counter() - t0
        image, mask = image[1:-1], mask[1:-1]
        prof = np.array([image[use & (which == i)].mean() if np.any(use & (which == i))
                         else np.nan for i in range(len(centres))])
        frac = np.array([(mask[use & (which == i)] == 1).mean() if np.any(use & (which == i))
                         else np.nan for i in range(len(centres))])
        bg = float(image[away & (d > -4) & (d < -3)].mean())
        bone = float(image[away & (d > 3) & (d < 4)].mean())
        lo, hi = bg + 0.1 * (bone - bg), bg + 0.9 * (bone - bg)
        # the intensity step between the voxels just outside and just inside the true edge, as a
        # fraction of the contrast: point sampling makes the label readable from it
        mid = len(centres) // 2
        jump = (prof[mid] - prof[mid - 1]) / (bone - bg)
        noise = float(image[away & (d > 3) & (d < 4)].std())
        out[name] = {"profile": prof, "label_fraction": frac, "background": bg, "bone": bone,
                     "edge50": crossing(centres, prof, (bg + bone) / 2),
                     "label_edge": crossing(centres, frac, 0.5),
                     "width10_90": crossing(centres, prof, hi) - crossing(centres, prof, lo),
                     "undershoot": float(np.nanmin(prof[centres < 0]) - bg),
                     "overshoot": float(np.nanmax(prof[centres > 0]) - bone),
                     "jump": float(jump), "noise": noise,
                     "seconds": seconds, "voxels": int(np.prod(shape))}
    print(f"\nEdge: river_otter {list(shape)} seed {seed}, outer cortical edge; d = signed "
          "distance to the true edge (voxels, > 0 in bone); 50 % point < 0: outside the true edge")
    print("| formation | 50 % point | label edge | 10-90 % width | step at the edge | "
          "undershoot | overshoot | background | bone | bone SD | s/Mvoxel |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in out.items():
        print(f"| {name} | {r['edge50']:+.3f} | {r['label_edge']:+.3f} | {r['width10_90']:.2f} | "
              f"{r['jump']:.3f} | {r['undershoot']:+.3f} | {r['overshoot']:+.3f} | "
              f"{r['background']:.3f} | {r['bone']:.3f} | {r['noise']:.3f} | "
              f"{r['seconds'] / r['voxels'] * 1e6:.1f} |")
    show = range(len(centres))
    print("\nMean intensity profile (rows: d in voxels):")
    print("| d | " + " | ".join(out) + " |")
    print("|---:|" + "---:|" * len(out))
    for i in show:
        print(f"| {centres[i]:+.3f} | " + " | ".join(f"{r['profile'][i]:.3f}"
                                                    for r in out.values()) + " |")
    for name, r in out.items():
        emit(f"image formation: 50 % point of the cortical edge, {name} (voxels from the true "
             "edge)", f"{r['edge50']:+.3f}", f"label edge {r['label_edge']:+.3f}", None,
             note=f"10-90 % width {r['width10_90']:.2f} voxels")
    return out


# ----------------------------------------------------------------------------- models
def _run(cmd: list[str]) -> None:
    proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stderr[-3000:]}")


def make_store(root: Path, scans: list[dict]) -> tuple[Path, float]:
    """Generate ``scans`` and import them into ``root/store``; returns it and the generation
    time."""
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    t0 = time.perf_counter()
    make_phantom_set(root / "phantoms", scans, workers=1)
    seconds = time.perf_counter() - t0
    store = root / "store"
    if not (store / "manifest.json").exists():
        import_scans(store, discover_scans(root / "phantoms"), ImportOptions())
    return store, seconds


def fit(root: Path, store: Path, args) -> Path:
    """A short fit on ``store``; returns its best weights (a rerun reuses them)."""
    found = sorted((root / "runs").glob("fit/*/*/best.safetensors"))
    if found:
        return found[-1]
    _run(["bone-fit", f"paths.root={root}", f"data.store={store}", "experiment=quick",
          f"data.patch_size={args.patch}", f"data.batch_size={args.batch}",
          f"data.patches_per_tile={args.patches_per_tile}", "data.num_workers=0",
          f"trainer.max_epochs={args.epochs}", "callbacks.complexity=null",
          f"seed={args.seed}", f"threads={args.threads}"])
    found = sorted((root / "runs").glob("fit/*/*/best.safetensors"))
    if not found:
        raise SystemExit(f"no weights under {root / 'runs'}")
    return found[-1]


def score(weights: Path, store: Path, scan: str, out: Path) -> dict:
    """Predicted/true bone volume, bone IoU and mIoU of one held-out scan."""
    from bone_seg.inference import predict_scan
    from bone_seg.inference.settings import PredictSettings
    from bone_seg.metrics import confusion_matrix, scores_from_confusion

    pred = out / f"{scan}.zarr"
    predict_scan(weights, scan, pred, store_path=store,
                 settings=PredictSettings(overwrite=True, progress=False, summary=False,
                                          pyramid=0))
    cm = confusion_matrix(store / "scans" / scan / "mask", pred / "labels", 3, progress=False)
    scores = scores_from_confusion(cm, list(NAMES))
    return {"miou": scores["mean_iou"], "bone_iou": scores["classes"][1]["iou"],
            "bone_ratio": float(cm[:, 1].sum() / max(1, cm[1].sum()))}


def models(args) -> None:
    """Train one model per formation and score each on CT-simulated held-out phantoms."""
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.root)
    forms = variants(args)
    train_shape = [args.train_slices, args.train_size, args.train_size]
    test_shape = [args.test_slices, args.test_size, args.test_size]
    held = [{"id": f"h{i:02d}_{p}", "preset": p, "seed": 1000 + i, "shape": test_shape,
             "params": forms["ct"]} for i, p in enumerate(args.test_presets)]
    t0 = time.perf_counter()
    test_store, test_gen = make_store(root / "heldout", held)
    print(f"held-out CT phantoms: {len(held)} scans {test_shape}, generated in {test_gen:.1f} s",
          flush=True)
    results: dict[str, dict] = {}
    for name, fields in forms.items():
        kinds = [PRESETS[i % len(PRESETS)] for i in range(args.train_scans)]
        train = [{"id": f"t{i:02d}_{kind}", "preset": kind, "seed": 100 + i,
                  "shape": train_shape, "params": fields} for i, kind in enumerate(kinds)]
        t1 = time.perf_counter()
        store, gen = make_store(root / name, train)
        t2 = time.perf_counter()
        weights = fit(root / name, store, args)
        t3 = time.perf_counter()
        results[name] = {s["id"]: score(weights, test_store, s["id"], root / name / "pred")
                         for s in held}
        print(f"{name}: generation {gen:.1f} s ({gen / len(train):.2f} s/scan), import "
              f"{t2 - t1 - gen:.1f} s, fit {t3 - t2:.0f} s, scoring "
              f"{time.perf_counter() - t3:.0f} s", flush=True)
    print(f"\nModels scored on CT-simulated held-out phantoms ({time.perf_counter() - t0:.0f} s "
          "in all); bone volume = predicted / true")
    print("| held-out scan | " + " | ".join(f"{n} bone vol | {n} bone IoU | {n} mIoU"
                                           for n in forms) + " |")
    print("|---|" + "---:|---:|---:|" * len(forms))
    for s in held:
        row = [f"{results[n][s['id']]['bone_ratio']:.3f} | {results[n][s['id']]['bone_iou']:.3f}"
               f" | {results[n][s['id']]['miou']:.3f}" for n in forms]
        print(f"| {s['id']} | " + " | ".join(row) + " |")
    means = {n: {k: float(np.mean([r[k] for r in results[n].values()]))
                 for k in ("bone_ratio", "bone_iou", "miou")} for n in forms}
    print("| **mean** | " + " | ".join(f"{m['bone_ratio']:.3f} | {m['bone_iou']:.3f} | "
                                       f"{m['miou']:.3f}" for m in means.values()) + " |")
    for n in forms:
        emit(f"image formation: model trained on {n} phantoms, mIoU on CT-simulated held-out",
             f"{means[n]['miou']:.4f}", f"old {means['old']['miou']:.4f}",
             means[n]["miou"] / means["old"]["miou"],
             note=f"bone volume predicted/true {means[n]['bone_ratio']:.3f}, bone IoU "
                  f"{means[n]['bone_iou']:.3f}")
    (root / "results.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/bench_image_formation")
    parser.add_argument("--supersample", type=int, default=3)
    parser.add_argument("--supersample-z", type=int, default=1)
    parser.add_argument("--psf", type=float, default=0.8, help="PSF sigma, voxels")
    parser.add_argument("--ct-angles", type=int, default=180)
    parser.add_argument("--ct-photons", type=float, default=20000.0)
    parser.add_argument("--edge-slices", type=int, default=8)
    parser.add_argument("--edge-size", type=int, default=160)
    parser.add_argument("--edge-only", action="store_true", help="skip the models")
    parser.add_argument("--train-scans", type=int, default=5)
    parser.add_argument("--train-slices", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=128)
    parser.add_argument("--test-presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--test-slices", type=int, default=8)
    parser.add_argument("--test-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patches-per-tile", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    edge_measure(args)
    if not args.edge_only:
        models(args)


if __name__ == "__main__":
    main()
