"""Do ensembles and test-time augmentation segment held-out scans better, and at what cost?

Given the best weights of a cross-validation (``--members``: e.g. the five fold models of
``bone-fit -m sweep=demo_cv ...``, ``<sweep dir>/*/best.safetensors``), segments scans none of the
members has seen — new phantoms of the default set's presets (other seeds) and of a preset the
models were not trained on (``packed``, the paper's hard case) — with

* every member alone (the single model; mean, min and max over the members),
* the ensemble of all members,
* the first member with ``tta`` (default ``flips``),
* the ensemble with ``tta``,
* each of these once more with post-processing (``--post``: the rules of ``postprocess:`` in
  ``conf/predict.yaml``; applied to the same prediction, so only the post-processing runs again),

and prints mIoU and per-class IoU (exact, streamed: :func:`bone_seg.metrics.confusion_matrix`)
per scan and on average, with each variant's prediction time against the single model's. The
scans are generated into ``--root`` (a rerun reuses them).

    .venv/bin/python benchmarks/ensemble_accuracy.py --members <sweep dir>/*/best.safetensors \\
        [--root /tmp/bench_ensemble] [--tta flips] [--threads 1] \\
        [--post min_bone_size=64,min_pore_enclosure=0.5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HELD_OUT = [  # small, so that 20 passes over them fit a 2-core CPU
    {"id": "h1_mouse", "preset": "mouse", "seed": 400, "shape": [24, 160, 160]},
    {"id": "h2_otter", "preset": "river_otter", "seed": 401, "shape": [24, 160, 160]},
    {"id": "u1_packed", "preset": "packed", "seed": 300, "shape": [12, 256, 256]},
]
CLASSES = ["background", "bone", "pores"]


def _score(weights, store: Path, scan: str, out: Path, tta, post=None,
           base_s: float | None = None) -> dict:
    """Predict and score one scan; with ``post`` the prediction at ``out`` is reused and only
    post-processed (its time added to ``base_s``, the prediction's)."""
    from bone_seg.inference import PredictSettings, predict_scan
    from bone_seg.metrics import confusion_matrix, scores_from_confusion

    report = predict_scan(weights, scan, out, store_path=store,
                          settings=PredictSettings(overwrite=True, progress=False, tta=tta,
                                                   summary=False, postprocess=post))
    cm = confusion_matrix(store / "scans" / scan / "mask", out, 3, progress=False)
    scores = scores_from_confusion(cm, CLASSES)
    seconds = (report.predict_time_s if post is None
               else base_s + report.postprocess["time_s"])
    return {"miou": scores["mean_iou"], "seconds": seconds,
            **{c["name"]: c["iou"] for c in scores["classes"]}}


def _rules(text: str) -> dict:
    """``a=1,b=0.5`` as the ``postprocess`` mapping."""
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {k: (float(v) if "." in v else int(v)) for k, v in pairs}


def _row(name: str, results: list[dict], base_s: float) -> str:
    cells = [f"{np.mean([r[k] for r in results]):.4f}" for k in ("miou", *CLASSES)]
    ratio = np.mean([r["seconds"] for r in results]) / base_s
    return f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f} |"


def main() -> None:
    import torch

    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", nargs="+", required=True)
    ap.add_argument("--root", default="/tmp/bench_ensemble")
    ap.add_argument("--tta", default="flips")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--post", default="min_bone_size=64,min_pore_enclosure=0.5",
                    help="post-processing rules, key=value,...; empty: none")
    args = ap.parse_args()
    post = _rules(args.post)
    torch.set_num_threads(args.threads)
    root, members = Path(args.root), [str(Path(m).resolve()) for m in args.members]
    make_phantom_set(root / "phantoms", HELD_OUT, workers=1)
    store = root / "store"
    if not (store / "manifest.json").exists():
        import_scans(store, discover_scans(root / "phantoms"), ImportOptions())
    variants = {**{f"member {i + 1}": (m, None) for i, m in enumerate(members)},
                "ensemble": (members, None), f"member 1 + tta={args.tta}": (members[0], args.tta),
                f"ensemble + tta={args.tta}": (members, args.tta)}
    results: dict[str, dict[str, dict]] = {}
    for name, (weights, tta) in list(variants.items()):
        t0 = time.perf_counter()
        results[name], after = {}, {}
        for s in HELD_OUT:
            out = root / "pred.zarr"
            results[name][s["id"]] = r = _score(weights, store, s["id"], out, tta)
            if post:
                after[s["id"]] = _score(weights, store, s["id"], out, tta, post, r["seconds"])
        if post:
            results[f"{name} + post"] = after
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    if post:
        print(f"post-processing: {post}")
        variants = {n: None for n in results}
    singles = [n for n in variants if n.startswith("member ") and "tta" not in n]
    base_s = np.mean([r["seconds"] for n in singles for r in results[n].values()])
    print("\n| scan | variant | mIoU | IoU background | IoU bone | IoU pores | time / single |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s in HELD_OUT:  # times against the single models on the same scan
        scan_s = np.mean([results[n][s["id"]]["seconds"] for n in singles])
        for name in variants:
            print(_row(f"{s['id']} | {name}", [results[name][s["id"]]], scan_s))
    print("\n| variant (mean over the scans) | mIoU | IoU background | IoU bone | IoU pores | "
          "time / single |")
    print("|---|---:|---:|---:|---:|---:|")
    print(_row("single model (mean over members)",
               [r for n in singles for r in results[n].values()], base_s))
    for name in variants:
        if name not in singles:
            print(_row(name, list(results[name].values()), base_s))


if __name__ == "__main__":
    main()
