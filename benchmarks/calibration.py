"""Does temperature scaling calibrate the network? ECE before/after on held-out scans.

(1) One model (``--weights``, a fit with its validation and test scans in ``--store``):
``calibrate_weights`` fits the temperature on the validation scans' sampled labelled voxels and
measures the expected calibration error (15 equal-width bins, top label and per class) on the test
scans' sample before and after; one temperature per class is fitted too and compared (test NLL,
ECE). Targets: the top-label ECE at least halved and below 0.02. The calibrated weights (with the
check's profile) are written to ``--root``/calibrated.safetensors (``quality_check.py`` uses them).

(2) How many labels a temperature changes where windows overlap (threshold 0, and 0.5), on the
first ``--depth`` slices of the first test scan: the mean of softened overlapping windows can tip a
voxel whose windows disagree.

(3) Ensembles (``--members a b``: fits sharing validation scans): each member calibrated then
averaged, against one temperature fitted on the averaged probabilities (``softmax(log p̄ / T)``),
against none, on a phantom of a preset none of them saw (``--preset``, default ``packed``).

    .venv/bin/python benchmarks/calibration.py --weights <run>/best.safetensors --store <store> \\
        --members <cv run 0>/best.safetensors <cv run 1>/best.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_result import emit


def single(args) -> dict:
    from bone_seg.inference.calibrate_weights import CalibrateSettings, calibrate_weights

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    s = CalibrateSettings(windows=args.windows, voxels=args.voxels, profile_slices=args.depth)
    r = calibrate_weights(args.weights, args.store, root / "calibrated.safetensors", s)
    (root / "calibration.json").write_text(json.dumps(r, indent=1))
    b, a = r["test"]["before"], r["test"]["after"]
    t = r["temperature"][0]
    per_class = ", ".join(f"{v:.3f}" for v in r["temperature_per_class"])
    print(f"temperature {t:.3f} (per class {per_class})")
    print(f"test ECE {b['ece']:.4f} -> {a['ece']:.4f}; per class " + ", ".join(
        f"{c} {b['ece_per_class'][c]:.4f} -> {a['ece_per_class'][c]:.4f}"
        for c in b["ece_per_class"]))
    print(f"test NLL {r['test_nll']['before']:.4f} -> {r['test_nll']['scalar']:.4f} "
          f"(per-class T: {r['test_nll']['per_class']:.4f})")
    scans = ", ".join(r["sample"]["test_scans"])
    emit(f"top-label ECE after / before temperature scaling (T = {t:.3f}), test scans {scans}",
         f"{a['ece']:.4f}", f"{b['ece']:.4f}", a["ece"] / b["ece"], "<= 0.5",
         f"{r['sample']['test_voxels']} sampled labelled voxels, 15 bins; fitted on "
         f"{r['sample']['validation_voxels']} voxels of "
         f"{', '.join(r['sample']['validation_scans'])}")
    emit("top-label ECE after temperature scaling, against 0.02", f"{a['ece']:.4f}", "0.02",
         a["ece"] / 0.02, "<= 1.0")
    for c in b["ece_per_class"]:
        emit(f"ECE of class {c} (one-vs-rest) after / before", f"{a['ece_per_class'][c]:.4f}",
             f"{b['ece_per_class'][c]:.4f}", a["ece_per_class"][c] / b["ece_per_class"][c])
    per = _per_class_ece(args, r)
    emit("test NLL with one temperature per class / one temperature",
         f"{r['test_nll']['per_class']:.4f} (ECE {per:.4f})",
         f"{r['test_nll']['scalar']:.4f} (ECE {a['ece']:.4f})",
         r["test_nll"]["per_class"] / r["test_nll"]["scalar"], None,
         "per-class T changes arg-max labels; kept off by default (calibrate.per_class)")
    return r


def _per_class_ece(args, r) -> float:
    """The top-label ECE of the test sample at the per-class temperatures."""
    from bone_seg.inference.calibrate_weights import _scans, collect_logits, reliability
    from bone_seg.inference.ensemble import load_ensemble
    from bone_seg.inference.predictor import Predictor
    from bone_seg.io.store import DatasetStore

    ens = load_ensemble(args.weights)
    pred = Predictor(ens, ens.meta, threshold=0.0, batch_size=4, micro_batch=4, amp=False,
                     fold_bn=False, calibrated=False)
    test = _scans(DatasetStore(args.store), r["sample"]["test_scans"], ens.meta)
    sample = collect_logits(pred, [t[:4] for t in test], args.windows, args.voxels, 1)
    return reliability(sample, r["temperature_per_class"], 15, list(ens.meta.class_names))["ece"]


def labels_changed(args, r) -> None:
    """Share of labels a temperature changes where windows overlap (threshold 0 and 0.5)."""
    import dataclasses

    from bone_seg.inference.ensemble import load_ensemble
    from bone_seg.inference.predictor import Predictor
    from bone_seg.io.normalize import Normalizer
    from bone_seg.io.store import DatasetStore

    ens = load_ensemble(args.weights)
    meta = ens.meta
    sid = r["sample"]["test_scans"][0]
    sc = DatasetStore(args.store).open_scan(sid)
    norm = Normalizer.from_stats(sc.stats(meta.stats_policy), meta.normalization,
                                 meta.clip_range)
    vol = np.asarray(sc.image[:args.depth])
    for threshold in (0.0, 0.5):
        out = []
        for t in (None, r["temperature"]):
            m = dataclasses.replace(meta, calibration=None if t is None else {"temperature": t})
            member = dataclasses.replace(ens.members[0], meta=m)
            e = type(ens)([member], ens.nets)
            out.append(Predictor(e, m, threshold=threshold, batch_size=8, micro_batch=4,
                                 amp=False).predict_array(vol, norm)[0])
        changed = float(np.mean(out[0] != out[1]))
        print(f"threshold {threshold}: {100 * changed:.4f}% of labels changed by T "
              f"({sid}, {args.depth} slices, overlap 0.25)")
        emit(f"share of labels a temperature changes, threshold {threshold}, overlap 0.25",
             f"{100 * changed:.4f}%", "0%", None, None,
             f"{sid}, {args.depth} slices; overlapping windows' means can tip a voxel"
             if threshold == 0 else f"{sid}: voxels crossing the threshold")


def ensemble(args) -> None:
    """Calibrated members averaged, one temperature on the mean, or none."""
    import torch

    from bone_seg.inference.calibrate_weights import _scans, collect_logits
    from bone_seg.inference.calibration import fit_temperature
    from bone_seg.inference.ensemble import load_ensemble
    from bone_seg.inference.predictor import Predictor
    from bone_seg.io.normalize import Normalizer
    from bone_seg.io.store import DatasetStore
    from bone_seg.metrics.calibration import ReliabilityBins
    from bone_seg.phantom.generate import generate
    from bone_seg.phantom.presets import get_preset

    p = get_preset(args.preset, shape=(args.depth, 160, 160), supersample=3, psf=0.8, blur=0.0)
    image, mask, _ = generate(p, 901)
    st = {"mean": float(image[image > 0].mean()), "std": float(image[image > 0].std()),
          "min": float(image.min()), "max": float(image.max())}

    class _Vol:
        shape = image.shape

        @staticmethod
        def read(a, b):
            return image[a:b]

    val_logits, eval_logits, temps, labels = [], [], [], None
    for w in args.members:
        ens = load_ensemble(w)
        meta = ens.meta
        pred = Predictor(ens, meta, threshold=0.0, batch_size=4, micro_batch=4, amp=False,
                         fold_bn=False, calibrated=False)
        val = _scans(DatasetStore(args.store), meta.splits["val"], meta)
        vs = collect_logits(pred, [v[:4] for v in val], args.windows, args.voxels, 0)
        norm = Normalizer.from_stats(st, meta.normalization, meta.clip_range)
        es = collect_logits(pred, [("packed", _Vol, mask, norm)], args.windows, args.voxels, 2)
        assert labels is None or np.array_equal(labels, es.labels)  # the same voxels
        labels, val_y = es.labels, vs.labels
        val_logits.append(vs.logits)
        eval_logits.append(es.logits)
        temps.append(fit_temperature(vs.logits, vs.labels))

    def mean_probs(logits, ts):
        return np.mean([torch.softmax(torch.from_numpy(z) / (t[0] if t else 1.0), 1).numpy()
                        for z, t in zip(logits, ts, strict=True)], axis=0)

    t_mean = fit_temperature(np.log(np.clip(mean_probs(val_logits, [None] * len(temps)),
                                            1e-12, 1)), val_y)

    def ece(probs):
        acc = ReliabilityBins(probs.shape[1], 15)
        acc.update(probs, labels)
        return acc.ece()

    none = ece(mean_probs(eval_logits, [None] * len(temps)))
    members = ece(mean_probs(eval_logits, temps))
    pbar = mean_probs(eval_logits, [None] * len(temps))
    mean_t = ece(torch.softmax(torch.from_numpy(np.log(np.clip(pbar, 1e-12, 1))) / t_mean[0],
                               1).numpy())
    print(f"ensemble of {len(temps)} on {args.preset}: ECE uncalibrated {none:.4f}, members "
          f"calibrated ({', '.join(f'{t[0]:.3f}' for t in temps)}) {members:.4f}, one T on the "
          f"mean ({t_mean[0]:.3f}) {mean_t:.4f}")
    emit(f"ensemble of {len(temps)} CV fits, unseen `{args.preset}` phantom: ECE with each "
         "member calibrated / one temperature on the mean", f"{members:.4f}", f"{mean_t:.4f}",
         members / mean_t, None, f"uncalibrated mean {none:.4f}; member T "
         f"{', '.join(f'{t[0]:.3f}' for t in temps)}, mean T {t_mean[0]:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--members", nargs="*", default=[])
    ap.add_argument("--preset", default="packed")
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--voxels", type=int, default=2048)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--root", default="/tmp/bench_calibration")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    r = single(args)
    labels_changed(args, r)
    if len(args.members) > 1:
        ensemble(args)


if __name__ == "__main__":
    main()
