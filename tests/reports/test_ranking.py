"""The weighted ranking (paper 2.5.3) and its sensitivity sweep (Table 7), checked by hand."""

import csv
import math
import random
import re

import pytest

from bone_seg.errors import BoneSegError
from bone_seg.reports.ranking import ConfigResult, paper_weights, rank_configs
from bone_seg.reports.report_files import write_rank_report
from bone_seg.reports.sensitivity import sensitivity, sensitivity_markdown

KEYS = ("miou", "batch_size", "gpu_util", "flops", "params", "vram", "fit_time")
HIGHER = {"miou", "batch_size", "gpu_util"}


def cfg(name, miou, batch, gpu, flops, params, vram, time):
    return {"name": name, "miou": miou, "batch_size": batch, "gpu_util": gpu, "flops": flops,
            "params": params, "vram": vram, "fit_time": time}


THREE = [
    cfg("A", 0.90, 64, 80, 10, 5, 8, 100),
    cfg("B", 0.95, 32, 60, 30, 20, 16, 300),
    cfg("C", 0.80, 32, 40, 20, 10, 12, 200),
]


def independent_scores(configs, weights, keys=KEYS):
    """The paper's formula written out again, plainly (constant metric -> 1.0)."""
    scores = {}
    for c in configs:
        total = 0.0
        for k in keys:
            values = [x[k] for x in configs]
            lo, hi = min(values), max(values)
            n = 1.0 if hi == lo else (c[k] - lo) / (hi - lo)
            if k not in HIGHER and hi != lo:
                n = 1.0 - n
            total += weights[k] * n
        scores[c["name"]] = total
    return scores


def test_three_configurations_by_hand():
    # Normalised by hand (min-max over A, B, C; FLOPs, params, VRAM, time: lower is better):
    #        mIoU  batch  GPU  FLOPs  params  VRAM  time
    #   A    2/3   1      1    1      1       1     1
    #   B    1     0      1/2  0      0       0     0
    #   C    0     0      0    1/2    2/3     1/2   1/2
    by_hand = {
        "A": 0.85 * 2 / 3 + 0.025 * 6,
        "B": 0.85 * 1 + 0.025 * 0.5,
        "C": 0.025 * (0.5 + 2 / 3 + 0.5 + 0.5),
    }
    ranking = rank_configs(THREE)
    assert [r.name for r in ranking.rows] == ["B", "A", "C"]
    assert [r.rank for r in ranking.rows] == [1, 2, 3]
    for r in ranking.rows:
        assert r.score == pytest.approx(by_hand[r.name], abs=1e-12)
    assert ranking.rows[2].normalised["params"] == pytest.approx(2 / 3)
    assert ranking.rows[1].normalised["miou"] == pytest.approx(2 / 3)
    assert not ranking.dropped and not ranking.constant


def test_random_configurations_match_the_independent_formula():
    rng = random.Random(5)
    configs = [cfg(f"m{i}", rng.uniform(0.8, 1), rng.choice([16, 32, 64]), rng.uniform(10, 99),
                   rng.uniform(1e9, 1e11), rng.uniform(1e6, 1e8), rng.uniform(2, 24),
                   rng.uniform(60, 6000)) for i in range(12)]
    weights = {"miou": 0.7, "batch_size": 0.1, "gpu_util": 0.05, "flops": 0.05, "params": 0.04,
               "vram": 0.03, "fit_time": 0.03}
    expected = independent_scores(configs, weights)
    ranking = rank_configs(configs, weights)
    assert {r.name: r.score for r in ranking.rows} == pytest.approx(expected, abs=1e-12)
    assert [r.name for r in ranking.rows] == sorted(expected, key=lambda n: -expected[n])
    assert [r.rank for r in ranking.rows] == list(range(1, 13))


def test_ties_share_a_rank_and_are_ordered_by_name():
    same = dict(THREE[0])
    configs = [{**same, "name": "zeta"}, THREE[1], {**same, "name": "alpha"}, THREE[2]]
    ranking = rank_configs(configs)
    # A's twins tie with each other; B is still first
    assert [(r.rank, r.name) for r in ranking.rows] == [
        (1, "B"), (2, "alpha"), (2, "zeta"), (4, "C")]
    assert ranking.rows[1].score == ranking.rows[2].score


def test_tie_at_third_place_lists_every_tied_configuration():
    configs = [dict(c) for c in THREE] + [{**THREE[2], "name": "C2"}]
    ranking = rank_configs(configs)
    assert [(r.rank, r.name) for r in ranking.top(3)] == [(1, "B"), (2, "A"), (3, "C"),
                                                          (3, "C2")]


def test_single_configuration_scores_one():
    ranking = rank_configs([THREE[0]])
    assert len(ranking.rows) == 1
    r = ranking.rows[0]
    assert r.rank == 1 and r.score == pytest.approx(1.0)
    assert all(v == 1.0 for v in r.normalised.values())
    assert set(ranking.constant) == set(KEYS)
    sens = sensitivity([THREE[0]])
    assert [s.top[0].score for s in sens] == pytest.approx([1.0] * 7)


def test_constant_metric_normalises_to_one_and_keeps_the_ranking():
    configs = [{**c, "batch_size": 64} for c in THREE]
    ranking = rank_configs(configs)
    assert ranking.constant == ("batch_size",)
    assert all(r.normalised["batch_size"] == 1.0 for r in ranking.rows)
    # the constant term adds the same 0.025 to every score: the order is the one of the other terms
    without = independent_scores(configs, paper_weights(), [k for k in KEYS if k != "batch_size"])
    for r in ranking.rows:
        assert r.score == pytest.approx(without[r.name] + 0.025, abs=1e-12)
    assert [r.name for r in ranking.rows] == sorted(without, key=lambda n: -without[n])
    assert "Equal for every configuration" in ranking.markdown() and "batch size" in \
        ranking.notes()[-2]


def test_unmeasured_gpu_metrics_are_dropped_and_reweighted():
    configs = [dict(c) for c in THREE]
    configs[1]["gpu_util"] = None  # a CPU run among GPU runs
    configs[0]["vram"] = float("nan")  # NaN is "not measured", never zero
    configs[1]["vram"] = None
    ranking = rank_configs(configs)
    assert set(ranking.dropped) == {"gpu_util", "vram"}
    assert ranking.dropped["vram"] == ("A", "B")
    kept = ("batch_size", "flops", "params", "fit_time")
    # the 0.15 of efficiency weight is now shared by the four measured metrics
    assert ranking.weights["miou"] == 0.85
    for k in kept:
        assert ranking.weights[k] == pytest.approx(0.15 / 4)
    assert ranking.weights["gpu_util"] == 0 and ranking.weights["vram"] == 0
    assert math.fsum(ranking.weights.values()) == pytest.approx(1.0)
    expected = independent_scores(configs, {"miou": 0.85, **{k: 0.0375 for k in kept}},
                                  ("miou",) + kept)
    assert {r.name: r.score for r in ranking.rows} == pytest.approx(expected, abs=1e-12)
    assert all("gpu_util" not in r.normalised for r in ranking.rows)
    md = ranking.markdown()
    assert "GPU utilisation (%) not measured for 1 of 3 configurations (B" in md
    assert "VRAM (GB) not measured for 2 of 3 configurations" in md
    assert re.search(r"\|\s+–\s+\|", md)  # the missing values show as a dash, not 0


def test_unequal_weights_are_rescaled_in_proportion():
    configs = [{**c, "vram": None} for c in THREE]
    weights = {"miou": 0.8, "batch_size": 0.1, "gpu_util": 0.0, "flops": 0.0, "params": 0.0,
               "vram": 0.05, "fit_time": 0.05}
    ranking = rank_configs(configs, weights)
    assert ranking.weights["batch_size"] == pytest.approx(0.2 * 2 / 3)
    assert ranking.weights["fit_time"] == pytest.approx(0.2 / 3)


def test_missing_policy_error_and_missing_miou():
    configs = [dict(c) for c in THREE]
    configs[2]["gpu_util"] = None
    with pytest.raises(BoneSegError, match=r"GPU utilisation \(%\) \('gpu_util'\) is missing "
                                           r"for C"):
        rank_configs(configs, missing="error")
    with pytest.raises(BoneSegError, match="missing=.skip. is not a policy; use one of drop"):
        rank_configs(configs, missing="skip")
    configs[2]["miou"] = None
    with pytest.raises(BoneSegError, match=r"mIoU \('miou'\) is missing for C"):
        rank_configs(configs)


def test_all_efficiency_metrics_missing():
    configs = [{**c, **{k: None for k in KEYS[1:]}} for c in THREE]
    with pytest.raises(BoneSegError, match="efficiency weight 0.15 cannot be kept"):
        rank_configs(configs)
    ranking = rank_configs(configs, paper_weights(1.0))
    assert [r.name for r in ranking.rows] == ["B", "A", "C"]


def test_bad_weights_and_names():
    with pytest.raises(BoneSegError, match="must sum to 1.*sum to 1.05"):
        rank_configs(THREE, {**paper_weights(), "miou": 0.9})
    with pytest.raises(BoneSegError, match="unknown ranking weight.*iou.*valid: miou, batch_size"):
        rank_configs(THREE, {"iou": 1.0})
    with pytest.raises(BoneSegError, match="appear more than once: A"):
        rank_configs([THREE[0], THREE[0]])
    with pytest.raises(BoneSegError, match="no configurations"):
        rank_configs([])


def test_name_built_from_arch_encoder_patch():
    rec = {k: v for k, v in THREE[0].items() if k != "name"}
    c = ConfigResult.from_mapping({**rec, "arch": "U-Net", "encoder": "ResNet-18",
                                   "patch_size": "256"})
    assert c.name == "U-Net | ResNet-18 | 256 px" and c.patch_size == 256
    md = rank_configs([c]).markdown()
    assert "U-Net \\| ResNet-18 \\| 256 px" in md  # one Markdown cell, pipes escaped


def test_sensitivity_top_three_per_weight():
    rng = random.Random(9)
    configs = [cfg(f"m{i:02d}", rng.uniform(0.85, 0.98), rng.choice([32, 64]),
                   rng.uniform(20, 95), rng.uniform(1e9, 1e11), rng.uniform(1e6, 1e8),
                   rng.uniform(2, 24), rng.uniform(60, 6000)) for i in range(10)]
    rows = sensitivity(configs)
    assert [r.miou_weight for r in rows] == [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7]
    for r in rows:
        w = r.miou_weight
        assert r.efficiency_weight == pytest.approx((1 - w) / 6)
        weights = {"miou": w, **{k: (1 - w) / 6 for k in KEYS[1:]}}
        expected = independent_scores(configs, weights)
        best3 = sorted(expected, key=lambda n: (-expected[n], n))[:3]
        assert [t.name for t in r.top] == best3
        assert [t.rank for t in r.top] == [1, 2, 3]
        assert [t.score for t in r.top] == pytest.approx([expected[n] for n in best3], abs=1e-12)
    # mIoU weight 1: the top is the best mIoU and scores exactly 1
    best = max(configs, key=lambda c: c["miou"])["name"]
    assert rows[0].top[0].name == best and rows[0].top[0].score == pytest.approx(1.0)
    md = sensitivity_markdown(rows)
    assert "|        1.00 |                            0 | 1. " in md
    assert "0.0083" in md and "0.0500" in md
    assert md.count(" (0.") + md.count(" (1.0000)") == 21


def test_rank_report_files(tmp_path):
    configs = [dict(c) for c in THREE]
    for c in configs:
        c["gpu_util"] = c["vram"] = None  # CPU runs
    report = write_rank_report(configs, tmp_path)
    assert sorted(p.name for p in report.files) == [
        "ranking.csv", "ranking.md", "ranking.png", "sensitivity.csv", "sensitivity.png"]
    ranking = rank_configs(configs)
    rows = list(csv.DictReader(open(tmp_path / "ranking.csv")))
    assert [r["name"] for r in rows] == [r.name for r in ranking.rows]
    for row, r in zip(rows, ranking.rows, strict=True):
        assert float(row["score"]) == r.score and int(row["rank"]) == r.rank
        assert row["gpu_util"] == "" and row["norm_vram"] == ""
        assert float(row["norm_miou"]) == r.normalised["miou"]
    sens = list(csv.DictReader(open(tmp_path / "sensitivity.csv")))
    assert len(sens) == 7 * 3
    assert "not measured for any of the 3 configurations" in report.markdown
    assert "## Sensitivity to the mIoU weight (top 3)" in report.markdown
    for name in ("ranking.png", "sensitivity.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
