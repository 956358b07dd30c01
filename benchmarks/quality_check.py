"""Does the per-scan check rank scans by their true error? And what does it cost?

Accuracy (default): a calibrated model (``--weights``, carrying the check's profile: made by
``bone-calibrate``, or by ``benchmarks/calibration.py``) predicts scans it never saw, made unlike
its training data on purpose: the demo store's held-out test scans (``--scans``) and phantoms of a
preset left out of training (``--preset``, default ``packed``), each as it is and shifted (added
noise, contrast loss, 8-bit quantisation, intensity steps along Z, combinations; see
:data:`SHIFTS`), ``--depth`` slices of each. Prints per scan the check's score and figures, the
mean confidence and the mIoU against the phantom's mask, and the Spearman rank correlation of
the score (and of each figure, and of ``1 − mean confidence``) with the mIoU; the target is
``<= -0.6`` (a higher score, a worse scan).

``--timing``: one scan predicted with the check and without it, ``--rounds`` times alternately in
one process; the ratio of the median wall times (target ``<= 1.05``). Without ``--weights`` and
``--store`` (the suite's entry): a ``--preset`` phantom and a random network carrying a profile.

    .venv/bin/python benchmarks/quality_check.py --weights cal.safetensors --store <store>
    .venv/bin/python benchmarks/quality_check.py --weights cal.safetensors --store <store> --timing
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from bench_result import emit

SHIFTS = {  # name: (noise SD in units of the image's SD, contrast kept, 8-bit, step)
    "clean": (0.0, 1.0, False, 0.0),
    "noise0.3": (0.3, 1.0, False, 0.0),
    "noise0.6": (0.6, 1.0, False, 0.0),
    "noise1.0": (1.0, 1.0, False, 0.0),
    "contrast0.5": (0.0, 0.5, False, 0.0),
    "contrast0.3+noise0.2": (0.2, 0.3, False, 0.0),
    "8bit": (0.0, 1.0, True, 0.0),
    "8bit+contrast0.4": (0.0, 0.4, True, 0.0),
    "step0.5": (0.0, 1.0, False, 0.5),
    "step1.0+noise0.3": (0.3, 1.0, False, 1.0),
}


def shifted(image: np.ndarray, name: str, seed: int) -> np.ndarray:
    """``image`` (float) with shift ``name`` applied (float32)."""
    noise, contrast, eight, step = SHIFTS[name]
    x = image.astype(np.float64)
    mean, sd = x.mean(), x.std()
    x = mean + contrast * (x - mean)
    if step:
        x[len(x) // 2:] += step * sd
    if noise:
        x = x + np.random.default_rng(seed).normal(0.0, noise * sd, x.shape)
    if eight:
        lo, hi = np.percentile(x, [0.1, 99.9])
        x = np.round(np.clip((x - lo) / (hi - lo), 0, 1) * 255) * (hi - lo) / 255 + lo
    return x.astype(np.float32)


def miou(pred: np.ndarray, ref: np.ndarray, classes: int = 3) -> float:
    cm = np.bincount(ref.ravel().astype(np.int64) * classes + pred.ravel(),
                     minlength=classes * classes).reshape(classes, classes)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0]))


def base_scans(args) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out store scans and phantoms of the left-out preset (first ``depth`` slices)."""
    from bone_seg.io.store import DatasetStore
    from bone_seg.phantom.generate import generate
    from bone_seg.phantom.presets import get_preset

    out = {}
    store = DatasetStore(args.store) if args.store else None
    for sid in args.scans if store else ():
        s = store.open_scan(sid)
        out[sid] = (np.asarray(s.image[:args.depth]), np.asarray(s.mask[:args.depth]))
    for k, seed in enumerate(args.preset_seeds):
        p = get_preset(args.preset, shape=(args.depth, 160, 160), supersample=3, psf=0.8,
                       blur=0.0)
        image, mask, _ = generate(p, seed)
        out[f"{args.preset}{k + 1}"] = (image, mask)
    return out


def predict(weights: str, image: np.ndarray, out: Path, check: bool):
    from bone_seg.inference import PredictSettings, predict_scan

    path = out.with_suffix(".npy")
    np.save(path, image)
    s = PredictSettings(device="cpu", batch_size=8, overwrite=True, summary=False,
                        progress=False, pyramid=0, check={"enabled": check})
    t = time.perf_counter()
    report = predict_scan(weights, str(path), out, settings=s)
    return report, time.perf_counter() - t


def accuracy(args) -> None:
    import zarr
    from scipy.stats import spearmanr

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for base, (image, mask) in base_scans(args).items():
        for k, name in enumerate(args.shifts):
            img = shifted(image, name, seed=k + 1)
            out = root / f"{base}_{name}.zarr"
            report, _ = predict(args.weights, img, out, check=True)
            labels = np.asarray(zarr.open_group(str(out), mode="r")["labels/segmentation/0"])
            c = report.check
            row = {"scan": f"{base}/{name}", "miou": miou(labels, mask),
                   "score": c["score"], "verdict": c["verdict"],
                   "confidence": report.confidence["mean"], **c["figures"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (root / "quality_rows.json").write_text(json.dumps(rows, indent=1))
    m = [r["miou"] for r in rows]
    rho = spearmanr([r["score"] for r in rows], m).statistic
    conf = spearmanr([1 - r["confidence"] for r in rows], m).statistic
    print(f"\n{len(rows)} scans; Spearman(score, mIoU) = {rho:.3f}; "
          f"Spearman(1 - mean confidence, mIoU) = {conf:.3f}")
    for f in ("intensity_distance", "uncertainty_ratio", "low_confidence", "pores_outside",
              "bone_islands"):
        vals = [r[f] if r[f] is not None else 0.0 for r in rows]
        print(f"  Spearman({f}, mIoU) = {spearmanr(vals, m).statistic:.3f}")
    flagged = [r for r in rows if r["verdict"] == "check"]
    bad = np.mean([r["miou"] for r in flagged]) if flagged else float("nan")
    good = np.mean([r["miou"] for r in rows if r["verdict"] == "ok"])
    print(f"flagged {len(flagged)} of {len(rows)}: mean mIoU {bad:.3f} vs {good:.3f} not flagged")
    emit(f"Spearman(check score, mIoU) over {len(rows)} shifted unseen scans",
         f"{rho:.3f}", f"1 - mean confidence: {conf:.3f}", rho, "<= -0.6",
         f"scans {', '.join(args.scans)} + {args.preset}; shifts {', '.join(args.shifts)}")


def synthetic_weights(root: Path, image: np.ndarray, mask: np.ndarray) -> str:
    """A random-initialised 2.5D U-Net/ResNet-18 (96 px) carrying a calibration and a check
    profile made from ``image`` itself: what the check costs does not depend on the weights."""
    from bone_seg.inference.quality import build_profile, morphology, sample_intensity
    from bone_seg.weights.meta import WeightsMeta
    from bone_seg.weights.network import create_net
    from bone_seg.weights.safetensors_file import save_weights

    m, sd = float(image[image > 0].mean()), float(image[image > 0].std())

    def read(a, b):
        return np.clip((image[a:b].astype(np.float32) - m) / sd, -5, 5)

    q = sample_intensity(read, len(image), -5, 5, 4).quantiles()
    morph = morphology(lambda a, b: mask[a:b], len(mask), 16, 3, 0.01, 2)
    figs = {"self": {"mean_confidence": 0.98, "histogram": [0] * 18 + [10, 990],
                     "quantiles": q.tolist(), **morph}}
    meta = WeightsMeta(arch="unet", encoder="resnet18", mode="2.5d", in_channels=3,
                       num_classes=3, class_names=["background", "bone", "pores"],
                       patch_size=96, slices=3, clip_range=(-5.0, 5.0),
                       calibration={"temperature": [1.5]},
                       quality_profile=build_profile([(read, len(image))], figs, -5, 5, 4, [],
                                                     0.9))
    net = create_net("unet", "resnet18", mode="2.5d", in_channels=3, num_classes=3)
    return str(save_weights(root / "synthetic.safetensors", net.state_dict(), meta))


def timing(args) -> None:
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    image, mask = next(iter(base_scans(args).values()))
    if args.weights is None:
        args.weights = synthetic_weights(root, image, mask)
    times = {True: [], False: []}
    predict(args.weights, image, root / "warm.zarr", check=True)  # warm-up: imports, caches
    for r in range(args.rounds):
        for check in ((True, False) if r % 2 else (False, True)):
            _, t = predict(args.weights, image, root / f"t_{check}.zarr", check)
            times[check].append(t)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"with the check {on:.2f} s, without {off:.2f} s (median of {args.rounds})")
    own = check_seconds(args.weights, image, root / "t_True.zarr", args.rounds)
    print(f"the check alone {own:.3f} s (median of {args.rounds}): {100 * own / off:.1f} % of "
          "the prediction without it")
    emit(f"bone-predict time with the per-scan check, {image.shape} scan", f"{on:.2f} s",
         f"without {off:.2f} s", on / off, "<= 1.05",
         f"median of {args.rounds}, alternated; the check alone: {own:.3f} s")
    emit("the check alone (intensity sample, morphology, score) / prediction without it",
         f"{own:.3f} s", f"{off:.2f} s", (off + own) / off, "<= 1.05",
         "timed apart from the prediction: steadier than the difference of two predictions")


def check_seconds(weights: str, image: np.ndarray, out: Path, rounds: int) -> float:
    """The median time of the check alone on a finished prediction (as bone-predict runs it)."""
    import zarr

    from bone_seg.inference.quality import CheckSettings, check_scan
    from bone_seg.inference.record import PredictionReport
    from bone_seg.weights.safetensors_file import load_weights

    _, meta = load_weights(weights)
    report = PredictionReport.read(out / "report.json")
    labels = zarr.open_group(str(out), mode="r")["labels/segmentation/0"]
    m, sd = float(image[image > 0].mean()), float(image[image > 0].std())

    def read(a, b):
        return np.clip((image[a:b].astype(np.float32) - m) / sd, -5, 5)

    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        check_scan(meta.quality_profile, CheckSettings(), name="x",
                   mean_confidence=report.confidence["mean"],
                   histogram=report.confidence["histogram"], read_image=read,
                   read_labels=lambda a, b: labels[a:b], shape=image.shape, slab_depth=16,
                   class_names=list(meta.class_names))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="calibrated weights with a profile (--timing without: "
                    "a random network with a profile of the scan itself)")
    ap.add_argument("--store", help="the store holding --scans (without: phantoms only)")
    ap.add_argument("--scans", nargs="+", default=["s01_mouse", "s02_otter"])
    ap.add_argument("--preset", default="packed", help="a preset left out of training")
    ap.add_argument("--preset-seeds", nargs="*", type=int, default=[901])
    ap.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=list(SHIFTS))
    ap.add_argument("--depth", type=int, default=16, help="slices of each scan")
    ap.add_argument("--root", default="/tmp/bench_quality")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if not args.timing and not (args.weights and args.store):
        raise SystemExit("error: the accuracy run needs --weights and --store")
    (timing if args.timing else accuracy)(args)


if __name__ == "__main__":
    main()
