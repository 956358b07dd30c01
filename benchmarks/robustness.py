"""Does noise/blur/gamma augmentation help on imaging the model has not seen?

Fits ``experiment=quick`` on the built-in default set (test fold 1 held out) twice per seed: with
the paper's augmentation (geometric + brightness + contrast: the baseline) and with the robustness
ops appended (noise, blur, gamma; ``bone_seg/datamodules/augment.py``). Both models then segment
held-out scans of presets and imaging they never saw (the ``packed`` preset, an 8-bit noisy blurred
variant of it, a dry noisy mouse, a low-contrast contracted mouse), and the default set's own test
fold. Prints per-scan mIoU and pores IoU for both, and the mean difference.

    .venv/bin/python benchmarks/robustness.py [--root /tmp/bench_robust] [--seeds 42 1701]
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
ROBUST = ("{op: noise, p: 0.3, range: [0.0, 0.3]}", "{op: blur, p: 0.2, range: [0.5, 1.5]}",
          "{op: gamma, p: 0.3, range: [0.7, 1.5]}")
PAPER = ("{op: geometric, p: {hflip: 0.166, vflip: 0.166, rot90: 0.5, none: 0.168}}",
         "{op: brightness, p: 0.4, range: [-0.15, 0.15]}",
         "{op: contrast, p: 0.4, range: [0.75, 1.25]}")
UNSEEN = [
    {"id": "u1_packed", "preset": "packed", "seed": 300},
    {"id": "u2_packed_8bit_noisy", "preset": "packed", "seed": 301,
     "params": {"dtype": "uint8", "noise": 0.07, "blur": 1.3}},
    {"id": "u3_mouse_dry_noisy", "preset": "mouse", "seed": 302, "shape": [32, 160, 160],
     "params": {"specimen": "dry", "noise": 0.06}},
    {"id": "u4_mouse_lowcontrast", "preset": "mouse", "seed": 303, "shape": [32, 160, 160],
     "params": {"specimen": "contracted", "bone": 0.45, "marrow": 0.3, "cupping": 0.25}},
]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stderr[-3000:]}")


def _finished(root: Path, sweep: str, seed: int) -> Path | None:
    """The best weights of a finished fit of this sweep and seed (a rerun reuses it)."""
    from omegaconf import OmegaConf

    for config in sorted((root / "runs" / "fit").glob("*/*/config.yaml")):
        cfg = OmegaConf.load(config)
        if (cfg.get("sweep") == sweep and cfg.get("seed") == seed
                and (config.parent / "test_scores.json").exists()):
            return config.parent / "best.safetensors"
    return None


def _fit(root: Path, seed: int, robust: bool) -> Path:
    sweep = f"robustness_{'robust' if robust else 'paper'}"
    done = _finished(root, sweep, seed)
    if done is not None:
        return done
    steps = ", ".join(PAPER + (ROBUST if robust else ()))
    _run(["bone-fit", "experiment=quick", f"paths.root={root}", "data.num_folds=5",
          "data.test_fold=1", f"seed={seed}", f"data.augmentation=[{steps}]", f"sweep={sweep}",
          "callbacks.complexity=null"])
    return _finished(root, sweep, seed)


def _score(weights: Path, store: Path, scan: str, out: Path) -> dict:
    from bone_seg.inference import predict_scan
    from bone_seg.inference.settings import PredictSettings
    from bone_seg.metrics import confusion_matrix, scores_from_confusion

    pred = out / f"{scan}.zarr"
    predict_scan(weights, scan, pred, store_path=store,
                 settings=PredictSettings(overwrite=True, progress=False))
    cm = confusion_matrix(store / "scans" / scan / "mask", pred / "labels", 3, progress=False)
    scores = scores_from_confusion(cm, ["background", "bone", "pores"])
    return {"miou": scores["mean_iou"],
            "pores": next(c["iou"] for c in scores["classes"] if c["name"] == "pores")}


def main() -> None:
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/bench_robust")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    args = parser.parse_args()
    root = Path(args.root)
    _run(["bone-phantom", f"paths.root={root}"])
    if not (root / "data" / "store" / "manifest.json").exists():
        _run(["bone-import", f"paths.root={root}", f"scan_dir={root / 'data' / 'phantoms'}"])
    unseen = root / "unseen"
    make_phantom_set(unseen / "phantoms", UNSEEN, workers=2)
    if not (unseen / "store" / "manifest.json").exists():
        import_scans(unseen / "store", discover_scans(unseen / "phantoms"), ImportOptions())
    test_fold = json.loads((root / "data" / "store" / "manifest.json").read_text())["scans"][:2]
    targets = [(root / "data" / "store", s) for s in test_fold] + \
        [(unseen / "store", s["id"]) for s in UNSEEN]
    results: dict[tuple[int, bool], dict[str, dict]] = {}
    for seed in args.seeds:
        for robust in (False, True):
            t0 = time.perf_counter()
            weights = _fit(root, seed, robust)
            results[seed, robust] = {scan: _score(weights, store, scan, root / "predictions")
                                     for store, scan in targets}
            print(f"seed {seed}, {'robust' if robust else 'paper'} augmentation: "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    print("\n| scan | seed | mIoU paper aug | mIoU + noise/blur/gamma | pores IoU paper | "
          "pores IoU + robust |")
    print("|---|---:|---:|---:|---:|---:|")
    diffs: dict[str, list[float]] = {"default test fold": [], "unseen": []}
    for seed in args.seeds:
        for _, scan in targets:
            a, b = results[seed, False][scan], results[seed, True][scan]
            print(f"| {scan} | {seed} | {a['miou']:.4f} | {b['miou']:.4f} | {a['pores']:.4f} | "
                  f"{b['pores']:.4f} |")
            diffs["default test fold" if scan in test_fold else "unseen"].append(
                b["miou"] - a["miou"])
    for group, values in diffs.items():
        print(f"mean mIoU change with the robustness ops, {group}: {np.mean(values):+.4f} "
              f"(min {min(values):+.4f}, max {max(values):+.4f}, {len(values)} scan x seed)")


if __name__ == "__main__":
    main()
