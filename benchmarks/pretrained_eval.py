"""How good is a starting model on scans it has not seen? Per preset: mIoU, bone IoU and the
predicted/true bone volume.

Generates held-out phantoms (seeds 900+, apart from every training set: the demo's 1-10, the
pretraining set's 101-115, the tests' tiny 1-6) of every animal preset and of ``packed`` (no
training set holds it), each in the default image formation (partial volume + PSF) and with the
CT acquisition (projections, photon noise, filtered back-projection: ``phantom_set=default_ct``'s
settings), and scores every ``--weights`` on them (exact, streamed: bone-iou's counting).

    .venv/bin/python benchmarks/pretrained_eval.py \\
        --weights pretrained=~/.cache/bone_seg/pretrained/pretrained.safetensors \\
        quick=<demo run>/best.safetensors [--root /tmp/bench_pretrained] [--shape 24 160 160]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_result import emit

PRESETS = ("mouse", "river_otter", "leopard", "sea_otter", "capybara", "packed")
FORMATION = {"supersample": 3, "psf": 0.8, "blur": 0.0}
CT = {**FORMATION, "acquisition": "ct", "ct_angles": 180, "ct_photons": 20000.0, "noise": 0.0}
CLASSES = ["background", "bone", "pores"]


def held_out(shape) -> list[dict]:
    scans = []
    for i, preset in enumerate(PRESETS):
        for name, params in (("pv", FORMATION), ("ct", CT)):
            scans.append({"id": f"h{i + 1}_{preset}_{name}", "preset": preset, "seed": 900 + i,
                          "shape": list(shape), "params": dict(params)})
    return scans


def score(weights: str, store: Path, scan: str, out: Path) -> dict:
    from bone_seg.inference import PredictSettings, predict_scan
    from bone_seg.metrics import confusion_matrix, scores_from_confusion

    predict_scan(weights, scan, out, store_path=store,
                 settings=PredictSettings(overwrite=True, progress=False, summary=False))
    cm = confusion_matrix(store / "scans" / scan / "mask", out / "labels", 3, progress=False)
    s = scores_from_confusion(cm, CLASSES)
    iou = {c["name"]: c["iou"] for c in s["classes"]}
    return {"miou": s["mean_iou"], "bone": iou["bone"],
            "volume": float(cm[:, 1].sum()) / float(cm[1, :].sum())}


def main() -> None:
    import torch

    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", nargs="+", required=True, help="name=path ...")
    ap.add_argument("--root", default="/tmp/bench_pretrained")
    ap.add_argument("--shape", type=int, nargs=3, default=[24, 160, 160])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.root)
    scans = held_out(args.shape)
    make_phantom_set(root / "phantoms", scans, workers=1)
    store = root / "store"
    if not (store / "manifest.json").exists():
        import_scans(store, discover_scans(root / "phantoms"), ImportOptions())
    models = dict(w.split("=", 1) for w in args.weights)
    results = {name: {s["id"]: score(str(Path(path).expanduser()), store, s["id"],
                                     root / "pred.zarr") for s in scans}
               for name, path in models.items()}
    print("\n| model | preset | formation | mIoU | bone IoU | bone volume predicted/true |")
    print("|---|---|---|---:|---:|---:|")
    for name, per_scan in results.items():
        for s in scans:
            r = per_scan[s["id"]]
            form = s["id"].rsplit("_", 1)[1]
            print(f"| {name} | {s['preset']} | {form} | {r['miou']:.4f} | {r['bone']:.4f} | "
                  f"{r['volume']:.3f} |")
    print("\n| model | formation | mean mIoU | mean bone IoU | mean bone volume predicted/true |")
    print("|---|---|---:|---:|---:|")
    for name, per_scan in results.items():
        for form in ("pv", "ct"):
            rows = [r for sid, r in per_scan.items() if sid.endswith("_" + form)]
            means = [np.mean([r[k] for r in rows]) for k in ("miou", "bone", "volume")]
            print(f"| {name} | {form} | {means[0]:.4f} | {means[1]:.4f} | {means[2]:.3f} |")
            emit(f"`{name}` on unseen phantoms ({form}), mean mIoU / bone volume pred/true",
                 f"{means[0]:.4f} / {means[2]:.3f}", "", None)


if __name__ == "__main__":
    main()
