"""How many labelled slices does a lab need? The labelling-budget curve of issue 21.

On scans of a kind the starting model never saw (``--preset``, default ``packed``: closely packed
bones, the paper's hard case, which no model of the default set trained on), fine-tunes a model on
``--train`` scans of which only ``k`` slices per scan are labelled (the rest unlabelled, 255), and
scores it on ``--test`` held-out scans of the same kind with full masks:

* ``k`` in ``--budgets`` (``0`` = the starting model alone, ``full`` = complete masks);
* starting from ``--pretrained`` weights or from random weights (``--inits``);
* the ``k`` slices chosen by the starting model's uncertainty (``bone-predict suggest=k``) or
  evenly spaced (``--selections suggested even``).

Every fit is ``bone-fit experiment=finetune`` on a store of its own (the sparse training scans +
the fully labelled test scans as the test fold; of the two training scans one trains and one
validates, as in any scan-level split), one thread per process, ``--jobs`` at a time. Prints the
table of test-fold mIoU per budget and the ratio of ``k`` suggested slices (pretrained start) to
the full-mask model, the issue's target (5 slices per scan ≥ 0.95 of full masks).

    .venv/bin/python benchmarks/labelling_budget.py \\
        --pretrained ~/.cache/bone_seg/pretrained/pretrained.safetensors \\
        [--root /tmp/bench_budget] [--budgets 0 1 3 5 10 full] [--jobs 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from bench_result import emit

BIN = Path(sys.executable).parent
UNLABELLED = 255


def _run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f"error: {' '.join(cmd[:2])} failed (exit {proc.returncode}); see {log}")


FORMATION = {"supersample": 3, "psf": 0.8, "blur": 0.0}  # the default set's image formation


def _phantoms(root: Path, preset: str, n_train: int, n_test: int, shape) -> tuple[list, list]:
    from bone_seg.workflows.phantom import make_phantom_set

    train = [{"id": f"a{i + 1}_{preset}", "preset": preset, "seed": 700 + i, "shape": shape,
              "params": dict(FORMATION)} for i in range(n_train)]
    test = [{"id": f"b{i + 1}_{preset}", "preset": preset, "seed": 800 + i, "shape": shape,
             "params": dict(FORMATION)} for i in range(n_test)]
    make_phantom_set(root / "phantoms", train + test, workers=1)
    return [s["id"] for s in train], [s["id"] for s in test]


def _volume(path: Path) -> np.ndarray:
    from bone_seg.io.volume import open_volume

    vol = open_volume(str(path))
    return vol.read(0, vol.shape[0])


def _even(depth: int, k: int) -> list[int]:
    """``k`` slices at the centres of ``k`` equal stretches of the scan."""
    return sorted({int((i + 0.5) * depth / k) for i in range(k)})


def _suggested(root: Path, weights: str, scan: str, k: int) -> list[int]:
    """The starting model's ``k`` suggestions for a training scan (bone-predict suggest=k)."""
    out = root / "suggest" / f"{scan}_k{k}.zarr"
    if not (out / "suggestions.json").exists():
        _run([str(BIN / "bone-predict"), f"weights={weights}",
              f"scan={root / 'phantoms' / scan / 'image'}", f"out={out}", f"suggest={k}",
              "overwrite=true", "threads=1", f"paths.root={root / 'out'}"],
             root / "logs" / f"suggest_{scan}_k{k}.log")
    rows = json.loads((out / "suggestions.json").read_text())["suggestions"]
    return sorted(int(r["z"]) for r in rows)


def _store(root: Path, name: str, train: list[str], test: list[str],
           slices: dict[str, list[int]] | None) -> Path:
    """A store of the sparse training scans (``slices`` labelled per scan; ``None``: full
    masks) and the fully labelled test scans."""
    from bone_seg.io.importer import ImportOptions, ScanSource, import_scans

    store = root / "stores" / name
    if (store / "manifest.json").exists():
        return store
    sources = []
    for scan in train:
        src = root / "phantoms" / scan
        mask = src / "mask"
        if slices is not None:
            full = _volume(mask)
            sparse = np.full_like(full, UNLABELLED)
            sparse[slices[scan]] = full[slices[scan]]
            mask = root / "masks" / f"{name}_{scan}.npy"
            mask.parent.mkdir(parents=True, exist_ok=True)
            np.save(mask, sparse)
        sources.append(ScanSource(scan, str(src / "image"), str(mask), _voxel(src)))
    sources += [ScanSource(s, str(root / "phantoms" / s / "image"),
                           str(root / "phantoms" / s / "mask"), _voxel(root / "phantoms" / s))
                for s in test]
    import_scans(store, sources, ImportOptions(), workers=1)
    return store


def _voxel(folder: Path) -> float:
    return float(json.loads((folder / "phantom.json").read_text())["voxel_size"])


def _fit(root: Path, name: str, store: Path, weights: str | None, epochs: int,
         extra: list[str]) -> float:
    run = root / "runs" / name
    scores = run / "test_scores.json"
    if not scores.exists():
        _run([str(BIN / "bone-fit"), "experiment=finetune", f"data.store={store}",
              "data.num_folds=2", "data.test_fold=2", "data.train_fraction=0.5",
              f"model.net.weights={weights or 'null'}", f"trainer.max_epochs={epochs}",
              "threads=1", "data.num_workers=0", f"paths.root={root / 'out'}",
              f"hydra.run.dir={run}", "sweep=labelling_budget", *extra],
             root / "logs" / f"fit_{name}.log")
    return float(np.mean([s["miou"] for s in json.loads(scores.read_text())]))


def _pretrained_alone(root: Path, weights: str, store: Path, test: list[str]) -> float:
    from bone_seg.inference import PredictSettings, predict_scan
    from bone_seg.metrics import confusion_matrix, scores_from_confusion

    values = []
    for scan in test:
        out = root / "pred" / f"{scan}.zarr"
        predict_scan(weights, scan, out, store_path=store,
                     settings=PredictSettings(overwrite=True, progress=False, summary=False))
        cm = confusion_matrix(store / "scans" / scan / "mask", out / "labels", 3, progress=False)
        values.append(scores_from_confusion(cm, ["background", "bone", "pores"])["mean_iou"])
    return float(np.mean(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pretrained", required=True)
    ap.add_argument("--root", default="/tmp/bench_budget")
    ap.add_argument("--preset", default="packed")
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 256, 256])
    ap.add_argument("--train", type=int, default=2)
    ap.add_argument("--test", type=int, default=2)
    ap.add_argument("--budgets", nargs="+", default=["0", "1", "3", "5", "10", "full"])
    ap.add_argument("--inits", nargs="+", default=["pretrained", "random"])
    ap.add_argument("--selections", nargs="+", default=["suggested", "even"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fit", nargs="*", default=[], help="more bone-fit overrides")
    ap.add_argument("--random-fit", nargs="*", default=["model.optimizer.lr=0.001"],
                    help="bone-fit overrides of the fits from random weights (default: the "
                    "learning rate of training from scratch)")
    ap.add_argument("--full-fit", nargs="*", default=["data.patches_per_tile=2"],
                    help="bone-fit overrides of the fits on full masks (default: 2 patches "
                    "per slice: 64 a 32-slice scan, about as many as 8 on 8 labelled slices)")
    ap.add_argument("--tag", default="", help="prefix of the fits' names (recipes side by side)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    root = Path(args.root)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    weights = str(Path(args.pretrained).expanduser().resolve())
    train, test = _phantoms(root, args.preset, args.train, args.test, args.shape)
    full_store = _store(root, "full", train, test, None)
    depth = args.shape[0]

    plans: dict[tuple, tuple] = {}  # (budget, init, selection) -> (store, start weights)
    for budget in args.budgets:
        if budget == "0":
            continue
        for init in args.inits:
            start = weights if init == "pretrained" else None
            if budget == "full":
                plans[("full", init, "-")] = (full_store, start)
                continue
            k = int(budget)
            for sel in args.selections:
                slices = {s: (_suggested(root, weights, s, k) if sel == "suggested"
                              else _even(depth, k)) for s in train}
                name = f"k{k}_{sel}"
                plans[(budget, init, sel)] = (_store(root, name, train, test, slices), start)
                print(f"{name}: {slices}", flush=True)
    results: dict[tuple, float] = {}
    if "0" in args.budgets:
        results[("0", "pretrained", "-")] = _pretrained_alone(root, weights, full_store, test)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {key: pool.submit(_fit, root, args.tag + "_".join(key).replace("-", "all"),
                                    store, start, args.epochs,
                                    args.fit + (args.random_fit if start is None else [])
                                    + (args.full_fit if key[0] == "full" else []))
                   for key, (store, start) in plans.items()}
        for key, fut in futures.items():
            results[key] = fut.result()
            print(f"{key}: test mIoU {results[key]:.4f}", flush=True)
    print("\n| slices per scan | start | slices chosen | test mIoU | / full masks (same start) |")
    print("|---|---|---|---:|---:|")
    for (budget, init, sel), miou in results.items():
        full = results.get(("full", init, "-"))
        ratio = f"{miou / full:.3f}" if full else ""
        print(f"| {budget} | {init} | {sel} | {miou:.4f} | {ratio} |")
    full = results.get(("full", "pretrained", "-"))
    for sel in args.selections:
        five = results.get(("5", "pretrained", sel))
        if full and five:
            emit(f"fine-tuned on 5 {sel} slices/scan of 2 `{args.preset}` scans vs full masks, "
                 "test mIoU", f"{five:.4f}", f"full {full:.4f}", five / full,
                 ">= 0.95" if sel == "suggested" else None)
    json.dump({"|".join(k): v for k, v in results.items()},
              open(root / f"{args.tag}results.json", "w"), indent=1)


if __name__ == "__main__":
    main()
