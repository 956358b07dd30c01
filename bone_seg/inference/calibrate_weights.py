"""Calibrate a weights file after its fit, without training: the temperature, its ECE figures and
the per-scan check's profile, written into the weights' metadata.

Used by ``bone-fit`` (``calibrate.enabled``, on the best weights before the test fold is
evaluated) and by ``bone-calibrate`` (any weights file with its store)::

    result = calibrate_weights("best.safetensors", "data/store", "best.safetensors",
                               CalibrateSettings())

Steps: (1) logits of a fixed random sample of the validation scans' labelled voxels
(:func:`collect_logits`), (2) the temperature minimising their NLL
(one per model; per class fitted too and reported, used only with ``per_class``), (3) the ECE,
top-label and per class, before and after, on the same kind of sample of the test scans (the
validation scans when there are none), (4) the profile of the check
(:mod:`bone_seg.inference.quality`): the training scans' intensity percentiles, and each
validation scan predicted (calibrated; its first ``profile_slices`` slices) for its confidence,
intensity and morphology figures. Memory: the sample, one scan's slab and one stretch of
``profile_slices`` labels.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bone_seg.classes import UNLABELLED
from bone_seg.errors import BoneSegError
from bone_seg.inference.calibration import (
    LogitSample,
    check_temperature,
    fit_temperature,
    nll,
)
from bone_seg.inference.ensemble import load_ensemble
from bone_seg.inference.predictor import Predictor
from bone_seg.inference.quality import build_profile, morphology, sample_intensity
from bone_seg.inference.report import HIST_BINS
from bone_seg.io.normalize import Normalizer
from bone_seg.io.store import DatasetStore
from bone_seg.metrics.calibration import ReliabilityBins, check_bins

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CalibrateSettings:
    """``calibrate:`` of ``conf/fit.yaml`` / ``conf/calibrate.yaml`` (documented there)."""

    windows: int = 24
    voxels: int = 2048
    bins: int = 15
    per_class: bool = False
    temperature: float | None = None
    profile_slices: int = 32
    confidence_threshold: float = 0.9
    stride: int = 4
    island_fraction: float = 0.01
    morphology_step: int = 2
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_bins(self.bins, "calibrate.bins")
        for key in ("windows", "voxels", "profile_slices", "stride", "morphology_step"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BoneSegError(f"calibrate.{key}={v!r}: an integer >= 1")
        if self.temperature is not None:
            check_temperature(self.temperature, "calibrate.temperature")
        c = self.confidence_threshold
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 1:
            raise BoneSegError(f"calibrate.confidence_threshold={c!r}: a number in (0, 1]")

    @classmethod
    def from_mapping(cls, node) -> CalibrateSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: node[k] for k in node if k in names})


def collect_logits(predictor, scans: Iterable[tuple[str, object, object, object]],
                   windows: int = 24, voxels: int = 2048, seed: int = 0) -> LogitSample:
    """Logits of a random sample of labelled voxels of ``scans``, window by window.

    Args:
        predictor: a :class:`~bone_seg.inference.predictor.Predictor` of one model (its windows,
            input layout and network; its batch norms as the prediction runs them).
        scans: ``(name, image volume with .read/.shape, mask array, normalizer)`` per scan.
        windows: windows drawn per scan (all when fewer).
        voxels: labelled voxels drawn per window (all when fewer).
        seed: of the draws (the sample is the same on every run).

    Returns the sample (memory: ``scans × windows × voxels × C`` float32 at most).
    """
    from bone_seg.inference.predictor import _InputCache

    if windows < 1 or voxels < 1:
        raise BoneSegError(f"calibration windows={windows} / voxels={voxels}: integers >= 1")
    model = predictor.model
    if len(model.members) != 1 or len(model.tta) != 1:
        raise BoneSegError("a temperature is fitted for one model without TTA; calibrate each "
                           "weights file on its own")
    rng = np.random.default_rng(seed)
    out_x, out_y, names, counts = [], [], [], []
    net = model._activate(0, (predictor.micro,))
    for name, volume, mask, norm in scans:
        plan = predictor.plan(volume.shape)
        pick = np.sort(rng.choice(len(plan), size=min(windows, len(plan)), replace=False))
        cache = _InputCache(lambda a, b, v=volume, n=norm: n(v.read(a, b)), volume.shape[0], 1)
        n_before = sum(len(y) for y in out_y)
        for j0 in tqdm(range(0, len(pick), predictor.micro), desc=f"logits {name}",
                       unit="batch", disable=None, leave=False):
            idx = [int(i) for i in pick[j0:j0 + predictor.micro]]
            inputs = np.concatenate([predictor._gather(plan, cache, range(i, i + 1))
                                     for i in idx])
            pad = predictor.micro - len(idx)  # fixed micro-batch shape, as in prediction
            if pad:
                inputs = np.concatenate([inputs, np.zeros((pad, *inputs.shape[1:]),
                                                          inputs.dtype)])
            x = torch.from_numpy(inputs).to(model.device).contiguous(
                memory_format=model.memory_format)
            with torch.inference_mode():
                logits = model._logits(net, x).float().cpu().numpy()
            for n, i in enumerate(idx):
                lx, ly = _window_voxels(predictor, plan, mask, logits[n], i, voxels, rng)
                out_x.append(lx)
                out_y.append(ly)
        names.append(name)
        counts.append(sum(len(y) for y in out_y) - n_before)
    c = predictor.num_classes
    x = np.concatenate(out_x) if out_x else np.zeros((0, c), np.float32)
    y = np.concatenate(out_y) if out_y else np.zeros(0, np.int64)
    return LogitSample(x.astype(np.float32), y.astype(np.int64), names, counts)


def _window_voxels(predictor, plan, mask, logits: np.ndarray, i: int, voxels: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(n, C)`` and labels of up to ``voxels`` labelled voxels of window ``i``."""
    _, z, y, x = plan.window(i)
    zmax, ymax, xmax = plan.shape
    hy, hx = min(predictor.size, ymax - y), min(predictor.size, xmax - x)
    if predictor.mode == "3d":
        dz = min(predictor.depth, zmax - z)
        lab = np.asarray(mask[z:z + dz, y:y + hy, x:x + hx])
        lg = logits[:, :dz, :hy, :hx]
    else:
        lab = np.asarray(mask[z:z + 1, y:y + hy, x:x + hx])
        lg = logits[:, None, :hy, :hx]
    flat = lab.ravel()
    where = np.flatnonzero(flat != UNLABELLED)
    if len(where) > voxels:
        where = np.sort(rng.choice(where, size=voxels, replace=False))
    return lg.reshape(lg.shape[0], -1)[:, where].T, flat[where].astype(np.int64)


def _scans(store: DatasetStore, ids: list[str], meta) -> list[tuple]:
    out = []
    for sid in ids:
        s = store.open_scan(sid)
        if s.mask is None:
            raise BoneSegError(f"calibration: scan {sid} of {store.path} has no mask; the "
                               "validation and test scans need labels")
        norm = Normalizer.from_stats(s.stats(meta.stats_policy), meta.normalization,
                                     meta.clip_range, name=sid)
        out.append((sid, _Volume(s.image), s.mask, norm, s.attrs.get("voxel_size")))
    return out


class _Volume:
    """A store array with the ``read(z0, z1)`` and ``shape`` prediction uses."""

    def __init__(self, array):
        self.array, self.shape = array, tuple(array.shape)

    def read(self, z0: int, z1: int) -> np.ndarray:
        return np.asarray(self.array[z0:z1])


def reliability(sample, temperature, bins: int, class_names: list[str]) -> dict:
    """ECE and reliability curves of a logit sample at ``temperature``."""
    acc = ReliabilityBins(len(class_names), bins)
    acc.update(sample.probs(temperature), sample.labels)
    return acc.summary(class_names)


def calibrate_weights(weights: str | Path, store_path: str | Path, out: str | Path | None,
                      s: CalibrateSettings | None = None) -> dict[str, Any]:
    """Fit the temperature and the check's profile of ``weights`` on its store's scans (its
    metadata's splits) and write the weights with both to ``out`` (None: write nothing).

    Returns ``{"temperature", "temperature_per_class", "nll_before", "nll_after",
    "nll_per_class", "test": {"before", "after"}, "validation": {...}, "profile", "weights"}``.

    Raises:
        BoneSegError: no validation scans, scans without masks, bad settings.
    """
    import torch

    from bone_seg.weights.safetensors_file import load_weights, save_weights

    s = s or CalibrateSettings()
    ens = load_ensemble(str(weights))
    meta = ens.meta
    val_ids = list(meta.splits.get("val", []))
    if not val_ids:
        raise BoneSegError(f"weights {weights} record no validation scans (splits.val); a "
                           "temperature is fitted on them")
    store = DatasetStore(store_path)
    missing = [i for i in val_ids if i not in store.scan_ids]
    if missing:
        raise BoneSegError(f"calibration: the validation scans {missing} of {weights} are not in "
                           f"the store {store_path}; give the store the weights were fitted on "
                           "(store_path=...)")
    test_ids = [i for i in meta.splits.get("test", []) if i in store.scan_ids] or val_ids
    pred = Predictor(ens, meta, overlap=0.25, threshold=0.0, batch_size=4, micro_batch=4,
                     device=s.device, amp=False, fold_bn=False, calibrated=False)
    val = _scans(store, val_ids, meta)
    fit_sample = collect_logits(pred, [v[:4] for v in val], s.windows, s.voxels, s.seed)
    scalar = fit_temperature(fit_sample.logits, fit_sample.labels)
    per_class = fit_temperature(fit_sample.logits, fit_sample.labels, per_class=True)
    chosen = (check_temperature(s.temperature) if s.temperature is not None
              else per_class if s.per_class else scalar)
    test = _scans(store, test_ids, meta)
    test_sample = collect_logits(pred, [t[:4] for t in test], s.windows, s.voxels, s.seed + 1)
    names = list(meta.class_names)

    def test_nll(t) -> float:
        x = torch.from_numpy(test_sample.logits).double()
        y = torch.from_numpy(test_sample.labels)
        return float(nll(x, y, torch.tensor(t, dtype=torch.float64)))

    result = {
        "temperature": list(chosen), "temperature_scalar": list(scalar),
        "temperature_per_class": list(per_class),
        "sample": {"windows_per_scan": s.windows, "voxels_per_window": s.voxels,
                   "validation_voxels": int(len(fit_sample.labels)),
                   "test_voxels": int(len(test_sample.labels)),
                   "validation_scans": val_ids, "test_scans": test_ids},
        "test_nll": {"before": test_nll([1.0]), "scalar": test_nll(list(scalar)),
                     "per_class": test_nll(list(per_class))},
        "test": {"before": reliability(test_sample, None, s.bins, names),
                 "after": reliability(test_sample, chosen, s.bins, names)},
    }
    calibration = {"temperature": list(chosen), "nll_test_before": result["test_nll"]["before"],
                   "nll_test_after": test_nll(list(chosen)),
                   "ece_test_before": result["test"]["before"]["ece"],
                   "ece_test_after": result["test"]["after"]["ece"],
                   "validation_scans": val_ids, "validation_voxels": len(fit_sample.labels)}
    calibrated = dataclasses.replace(meta, calibration=calibration)
    result["profile"] = _profile(ens, calibrated, store, meta.splits.get("train", []), val, s)
    result["weights"] = None
    if out is not None:
        tensors, _ = load_weights(weights)
        final = dataclasses.replace(calibrated, quality_profile=result["profile"])
        result["weights"] = str(save_weights(out, tensors, final))
    log.info("temperature %s (validation NLL sample %d voxels); test ECE %.4f -> %.4f",
             ", ".join(f"{t:.3f}" for t in chosen), len(fit_sample.labels),
             result["test"]["before"]["ece"], result["test"]["after"]["ece"])
    return result


def _profile(ens, meta, store: DatasetStore, train_ids: list[str], val: list[tuple],
             s: CalibrateSettings) -> dict:
    """The check's profile: training intensities, validation figures (calibrated)."""
    lo, hi = meta.clip_range or (-5.0, 5.0)
    from bone_seg.inference.ensemble import Ensemble

    ens = Ensemble([dataclasses.replace(ens.members[0], meta=meta)], ens.nets)
    pred = Predictor(ens, meta, overlap=0.25, threshold=0.0, batch_size=4, micro_batch=4,
                     device=s.device, amp=False, fold_bn=False, calibrated=True)
    train = [t for t in train_ids if t in store.scan_ids]
    reads, sizes = [], []
    for _sid, vol, _mask, norm, vs in _scans_any(store, train, meta):
        reads.append((lambda a, b, v=vol, n=norm: n(v.read(a, b)), vol.shape[0]))
        if vs is not None:
            sizes.append(float(np.mean(vs)))
    figs = {}
    for sid, vol, _mask, norm, _vs in val:
        depth = min(vol.shape[0], s.profile_slices)
        def read(a: int, b: int, v=vol, n=norm) -> np.ndarray:
            return n(v.read(a, b))

        labels = np.zeros((depth, *vol.shape[1:]), np.uint8)
        hist = np.zeros(HIST_BINS, np.int64)
        total = 0.0
        for z, lab, conf, _, _ in pred.stream(read, (depth, *vol.shape[1:])):
            labels[z:z + len(lab)] = lab
            bins = np.minimum((conf * HIST_BINS).astype(np.int64), HIST_BINS - 1)
            hist += np.bincount(bins.ravel(), minlength=HIST_BINS)
            total += float(conf.sum(dtype=np.float64))
        quant = sample_intensity(read, vol.shape[0], lo, hi, s.stride).quantiles()
        morph = morphology(lambda a, b, lab=labels: lab[a:b], depth, 16,
                           meta.num_classes, s.island_fraction, s.morphology_step)
        figs[sid] = {"mean_confidence": total / labels.size, "histogram": hist.tolist(),
                     "quantiles": quant.tolist(), **morph}
    profile = build_profile(reads, figs, lo, hi, s.stride, sizes, s.confidence_threshold)
    if not math.isfinite(profile["validation"]["mean_confidence"]):
        raise BoneSegError("calibration: the validation scans gave no voxels")
    return profile


def _scans_any(store: DatasetStore, ids: list[str], meta) -> list[tuple]:
    """Scans with or without masks (the training intensities need none)."""
    out = []
    for sid in ids:
        sc = store.open_scan(sid)
        norm = Normalizer.from_stats(sc.stats(meta.stats_policy), meta.normalization,
                                     meta.clip_range, name=sid)
        out.append((sid, _Volume(sc.image), sc.mask, norm, sc.attrs.get("voxel_size")))
    return out


def calibrate_ensemble(weights: list[str | Path], store_path: str | Path,
                       s: CalibrateSettings | None = None) -> dict[str, Any]:
    """One temperature for the mean of an ensemble's members (``softmax(log p̄ / T)``, the
    ``ensemble_temperature`` of ``bone-predict``), fitted on the validation scans every member
    shares, with the ECE before/after on the test scans they share (else the validation scans).
    Writes nothing: the temperature belongs to the list, not to one file.

    Raises:
        BoneSegError: fewer than two members, no shared validation scan, or members whose
            windows differ (patch size, mode).
    """
    import torch


    s = s or CalibrateSettings()
    if len(weights) < 2:
        raise BoneSegError("an ensemble temperature needs two or more weights files")
    ensembles = [load_ensemble(str(w)) for w in weights]
    metas = [e.meta for e in ensembles]
    shared = [sid for sid in metas[0].splits.get("val", [])
              if all(sid in m.splits.get("val", []) for m in metas)]
    if not shared:
        raise BoneSegError(f"the members {[str(w) for w in weights]} share no validation scan; "
                           "an ensemble temperature is fitted on scans none of them trained on")
    if len({(m.mode, m.patch_size, m.patch_depth, m.slices) for m in metas}) > 1:
        raise BoneSegError("the members' windows differ (mode, patch size or slices): fit each "
                           "member's own temperature (bone-calibrate weights=<one file>)")
    tests = [sid for sid in metas[0].splits.get("test", [])
             if all(sid in m.splits.get("test", []) for m in metas)] or shared
    store = DatasetStore(store_path)

    def mean_log_probs(ids: list[str], seed: int) -> LogitSample:
        scans = [t[:4] for t in _scans(store, ids, metas[0])]
        probs, labels = [], None
        for e in ensembles:
            pred = Predictor(e, e.meta, overlap=0.25, threshold=0.0, batch_size=4,
                             micro_batch=4, device=s.device, amp=False, fold_bn=False,
                             calibrated=False)
            sample = collect_logits(pred, scans, s.windows, s.voxels, seed)
            if labels is not None and not np.array_equal(labels, sample.labels):
                raise BoneSegError("the members' samples differ; are the weights' windows "
                                   "the same?")
            labels = sample.labels
            probs.append(torch.softmax(torch.from_numpy(sample.logits), 1).numpy())
        mean = np.clip(np.mean(probs, axis=0), 1e-30, 1.0)
        return LogitSample(np.log(mean).astype(np.float32), labels, ids, [])

    fit = mean_log_probs(shared, s.seed)
    (t,) = fit_temperature(fit.logits, fit.labels)
    test = mean_log_probs(tests, s.seed + 1)
    names = list(metas[0].class_names)
    return {"ensemble_temperature": t, "members": [str(w) for w in weights],
            "sample": {"validation_scans": shared, "test_scans": tests,
                       "validation_voxels": int(len(fit.labels)),
                       "test_voxels": int(len(test.labels))},
            "temperature": [t],
            "test": {"before": reliability(test, None, s.bins, names),
                     "after": reliability(test, [t], s.bins, names)}}
