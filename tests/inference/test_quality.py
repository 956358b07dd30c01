"""The per-scan check: figures, thresholds, score, verdict, log line, report listing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bone_seg.errors import BoneSegError
from bone_seg.inference.quality import (
    CheckSettings,
    build_profile,
    check_scan,
    log_line,
    low_confidence_share,
    morphology,
)


def _phantom_scan(seed: int = 0):
    """A tiny bone-like scan (rings of bone round pores) and its labels."""
    from bone_seg.phantom.generate import generate
    from bone_seg.phantom.presets import get_preset

    image, mask, _ = generate(get_preset("tiny"), seed)
    return image.astype(np.float32), mask


def _norm(image):
    m, s = float(image.mean()), float(image.std())
    return lambda a, b: np.clip((np.asarray(image[a:b], np.float32) - m) / s, -5, 5)


def _profile(image, mask, s: CheckSettings):
    read = _norm(image)
    from bone_seg.inference.quality import sample_intensity

    q = sample_intensity(read, len(image), -5, 5, s.stride).quantiles()
    hist = [0] * 18 + [10, 990]  # a confident validation scan
    morph = morphology(lambda a, b: mask[a:b], len(mask), 8, 3, s.island_fraction,
                       s.morphology_step)
    figs = {"val": {"mean_confidence": 0.98, "histogram": hist, "quantiles": q.tolist(),
                    **morph}}
    return build_profile([(read, len(image))], figs, -5, 5, s.stride, [5.0], 0.9)


def test_score_is_monotone_on_a_scan_made_noisier():
    image, mask = _phantom_scan()
    s = CheckSettings(stride=2)
    profile = _profile(image, mask, s)
    sd = image.std()
    scores, distances = [], []
    for k, noise in enumerate([0.0, 0.1, 0.3, 0.6, 1.0, 2.0]):
        noisy = image + np.random.default_rng(k).normal(0, noise * sd, image.shape)
        check = check_scan(profile, s, name="x", mean_confidence=0.98,
                           histogram=[0] * 18 + [10, 990], read_image=_norm(noisy),
                           read_labels=lambda a, b: mask[a:b], shape=image.shape, slab_depth=8,
                           class_names=["background", "bone", "pores"])
        scores.append(check["score"])
        distances.append(check["figures"]["intensity_distance"])
    # the score is the largest figure / threshold: it never falls as the noise grows (while
    # another figure leads it may stay level), and the intensity distance always rises
    assert all(b >= a for a, b in zip(scores, scores[1:], strict=False)), scores
    assert all(b > a for a, b in zip(distances, distances[1:], strict=False)), distances
    assert scores[-1] > scores[2] > scores[0]
    assert scores[0] < 1 <= scores[-1]  # the scan itself passes, the noisiest is flagged


def test_thresholds_come_from_validation_with_floors_or_the_config():
    profile = {"validation": {"per_scan": {"a": {"intensity_distance": 0.2,
                                                 "uncertainty_ratio": 1.1,
                                                 "low_confidence": 0.001,
                                                 "pores_outside": None,
                                                 "bone_islands": 0.0}}}}
    t = CheckSettings(margin=2.0).thresholds(profile)
    assert t["intensity_distance"] == pytest.approx(0.4)  # margin x validation
    assert t["uncertainty_ratio"] == pytest.approx(2.2)
    assert t["low_confidence"] == pytest.approx(0.01)  # the floor
    assert t["pores_outside"] == pytest.approx(0.05)
    assert CheckSettings(intensity_distance=0.7).thresholds(profile)["intensity_distance"] == 0.7


@pytest.mark.parametrize(("kw", "words"), [
    ({"margin": -1}, "check.margin=-1"), ({"confidence_threshold": 2}, "confidence_threshold=2"),
    ({"stride": 0}, "check.stride=0"), ({"intensity_distance": 0}, "intensity_distance=0"),
    ({"floors": {"nonsense": 1}}, "check.floors.nonsense"),
])
def test_bad_check_settings_are_refused(kw, words):
    with pytest.raises(BoneSegError, match=words.replace(".", r"\.")):
        CheckSettings(**kw)
    with pytest.raises(BoneSegError, match="unknown key"):
        CheckSettings.from_mapping({"enable": True})


def test_low_confidence_share_interpolates_within_a_bin():
    hist = [0] * 20
    hist[18] = 100  # every voxel in [0.90, 0.95)
    assert low_confidence_share(hist, 0.9) == 0.0
    assert low_confidence_share(hist, 0.925) == pytest.approx(0.5)
    assert low_confidence_share(hist, 0.95) == 1.0


def test_morphology_finds_pores_outside_bone_and_islands():
    lab = np.zeros((4, 40, 40), np.uint8)
    lab[:, 5:25, 5:25] = 1
    lab[:, 10:20, 10:20] = 2          # pores inside the bone
    lab[:, 30:34, 30:34] = 2          # pores in the open: outside any bone
    lab[:, 36, 2] = 1                 # a bone island
    m = morphology(lambda a, b: lab[a:b], 4, 2, 3, 0.01)
    assert m["pores_outside"] == pytest.approx(16 / (100 + 16))
    assert m["bone_islands"] == pytest.approx(4 / (int((lab == 1).sum())))


def test_log_line_says_what_is_unlike():
    check = {"verdict": "check", "score": 3.1,
             "figures": {"intensity_distance": 0.42, "uncertainty_ratio": 3.1},
             "ratios": {"intensity_distance": 1.4, "uncertainty_ratio": 3.1}}
    line = log_line("X", check)
    assert line == ("scan X: unlike the training data (3.1× the validation uncertainty, "
                    "intensity distance 0.42; score 3.10): check it")
    assert "not checked" in log_line("X", {"verdict": None, "reason": "no profile"})


def test_report_lists_a_batch_by_check_score(tmp_path):
    from bone_seg.reports.check_list import rows_from_predictions, write_check_report

    for name, score in (("a", 0.4), ("b", 2.5), ("c", 1.1)):
        (tmp_path / f"{name}.zarr").mkdir()
        (tmp_path / f"{name}.zarr" / "report.json").write_text(json.dumps(
            {"name": name, "check": {"score": score, "verdict": "check" if score >= 1 else "ok",
                                     "figures": {"intensity_distance": score / 10}}}))
    report = write_check_report(rows_from_predictions(tmp_path), tmp_path / "out", "t")
    order = [line.split("|")[2].strip() for line in report.markdown.splitlines()
             if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert order == ["b", "c", "a"] and "2 of 3 scan(s) to check" in report.markdown
    assert (tmp_path / "out" / "check_scans.csv").read_text().splitlines()[1].startswith("b,")
    with pytest.raises(BoneSegError, match="no scan with a per-scan check"):
        write_check_report([], tmp_path / "out", "t")
