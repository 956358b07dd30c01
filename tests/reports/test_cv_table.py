"""The cross-validation table: the paper's Table 6 arithmetic, checked independently."""

import csv
import math
import random
import statistics

import pytest

from bone_seg.errors import BoneSegError
from bone_seg.reports.cv_table import ALL, ScanScore, cv_table
from bone_seg.reports.report_files import write_cv_report

# Table 6 of the paper: (fold, seed) -> (mIoU mean, SD, mDice mean, SD), 4 test scans per cell.
PAPER_CELLS = {
    (1, 42): (0.9731, 0.0099, 0.9864, 0.0051), (1, 1701): (0.9738, 0.0106, 0.9867, 0.0054),
    (1, 1864): (0.9723, 0.0099, 0.9860, 0.0051),
    (2, 42): (0.8463, 0.2501, 0.8992, 0.1724), (2, 1701): (0.8533, 0.2287, 0.9066, 0.1538),
    (2, 1864): (0.8523, 0.2309, 0.9057, 0.1557),
    (3, 42): (0.9420, 0.0376, 0.9699, 0.0201), (3, 1701): (0.9301, 0.0497, 0.9633, 0.0270),
    (3, 1864): (0.9456, 0.0298, 0.9719, 0.0158),
    (4, 42): (0.8883, 0.1438, 0.9358, 0.0875), (4, 1701): (0.8913, 0.1488, 0.9372, 0.0907),
    (4, 1864): (0.8508, 0.1740, 0.9115, 0.1121),
    (5, 42): (0.9542, 0.0395, 0.9763, 0.0211), (5, 1701): (0.9264, 0.0939, 0.9599, 0.0533),
    (5, 1864): (0.8995, 0.1492, 0.9418, 0.0902),
}
# Its margins: "Mean ± SD across seeds" per fold, "Mean ± SD across folds" per seed, and the grand.
PAPER_FOLD_MARGINS = {
    1: (0.9731, 0.0092, 0.9863, 0.0047), 2: (0.8506, 0.2142, 0.9038, 0.1455),
    3: (0.9393, 0.0367, 0.9683, 0.0198), 4: (0.8768, 0.1425, 0.9282, 0.0889),
    5: (0.9267, 0.0972, 0.9593, 0.0577),
}
PAPER_SEED_MARGINS = {
    42: (0.9208, 0.0522, 0.9535, 0.0358), 1701: (0.9150, 0.0452, 0.9507, 0.0303),
    1864: (0.9041, 0.0546, 0.9434, 0.0356),
}
PAPER_GRAND = (0.9133, 0.0476, 0.9492, 0.0318)


def four_values(mean, sd):
    """Four values with exactly this mean and sample SD: three at mean + sd/2, one at mean − 1.5 sd.

    (Deviations d, d, d, −3d: Σ = 0, Σ² = 12 d², sample variance 12 d² / 3 = 4 d², so d = sd/2.)
    One low scan and three good ones is also the shape of the paper's weak folds.
    """
    return [mean + sd / 2] * 3 + [mean - 1.5 * sd]


def paper_records():
    recs = []
    for (fold, seed), (m_iou, s_iou, m_dice, s_dice) in PAPER_CELLS.items():
        for i, (iou, dice) in enumerate(
            zip(four_values(m_iou, s_iou), four_values(m_dice, s_dice), strict=True)
        ):
            recs.append({"fold": fold, "seed": seed, "scan": f"f{fold}_scan{i}", "miou": iou,
                         "mdice": dice})
    return recs


def fmt(x):
    return f"{x:.4f}"


def test_reproduces_the_papers_margins_from_its_cells():
    """Table 6's margins follow from its cells with sample SDs (ddof=1) everywhere.

    The fold margins pool the 12 scan values of a fold; their mean and SD depend only on the cells'
    means, SDs and n, so scans rebuilt to have exactly the published cell values give exactly the
    published margins. All five fold SDs, all seed margins and the grand mean/SD match to the
    printed 4 decimals. Three fold *means* differ in the last digit because the paper averaged its
    unrounded scan values while we start from the rounded cell means: fold 3 mIoU 0.9392 (paper
    0.9393), fold 1 mDice 0.9864 (0.9863), fold 3 mDice 0.9684 (0.9683).
    """
    table = cv_table(paper_records())
    for (fold, seed), (m_iou, s_iou, m_dice, s_dice) in PAPER_CELLS.items():
        c = table.cell(fold, seed)
        assert (fmt(c.miou_mean), fmt(c.miou_sd), fmt(c.mdice_mean), fmt(c.mdice_sd)) == (
            fmt(m_iou), fmt(s_iou), fmt(m_dice), fmt(s_dice))
    for fold, (m_iou, s_iou, m_dice, s_dice) in PAPER_FOLD_MARGINS.items():
        c = table.cell(fold, ALL)
        assert c.n == 12
        assert (fmt(c.miou_sd), fmt(c.mdice_sd)) == (fmt(s_iou), fmt(s_dice))
        assert abs(c.miou_mean - m_iou) <= 1.5e-4 and abs(c.mdice_mean - m_dice) <= 1.5e-4
    for seed, (m_iou, s_iou, m_dice, s_dice) in PAPER_SEED_MARGINS.items():
        c = table.cell(ALL, seed)
        assert c.n == 5
        assert (fmt(c.miou_mean), fmt(c.miou_sd), fmt(c.mdice_mean), fmt(c.mdice_sd)) == (
            fmt(m_iou), fmt(s_iou), fmt(m_dice), fmt(s_dice))
    g = table.grand
    assert g.n == 15
    assert (fmt(g.miou_mean), fmt(g.miou_sd), fmt(g.mdice_mean), fmt(g.mdice_sd)) == tuple(
        fmt(v) for v in PAPER_GRAND)
    md = table.markdown()
    assert "0.9208 ± 0.0522 [0.9535 ± 0.0358]" in md
    assert "0.9133 ± 0.0476 [0.9492 ± 0.0318]" in md
    assert "0.9731 ± 0.0092 [0.9864 ± 0.0047]" in md


def test_population_sd_would_not_reproduce_the_paper():
    """The check above discriminates: ddof=0 misses every published fold SD."""
    recs = paper_records()
    for fold, (_, s_iou, _, _) in PAPER_FOLD_MARGINS.items():
        values = [r["miou"] for r in recs if r["fold"] == fold]
        assert fmt(statistics.stdev(values)) == fmt(s_iou)
        assert fmt(statistics.pstdev(values)) != fmt(s_iou)
    fold_means_42 = [statistics.mean(four_values(*PAPER_CELLS[(f, 42)][:2])) for f in range(1, 6)]
    # the brief's example: mean ± sample SD of the five fold means of seed 42
    assert (fmt(statistics.mean(fold_means_42)), fmt(statistics.stdev(fold_means_42))) == (
        "0.9208", "0.0522")


def random_records(rng, folds=(1, 2, 3), seeds=(42, 1701), n_scans=(2, 3, 4, 5)):
    recs = []
    for f in folds:
        for s in seeds:
            for i in range(rng.choice(n_scans)):
                iou = [rng.uniform(0.3, 1.0) for _ in range(3)]
                dice = [2 * v / (1 + v) for v in iou]
                recs.append({"fold": f, "seed": s, "scan": f"scan{f}_{i}",
                             "miou": statistics.mean(iou), "mdice": statistics.mean(dice)})
    rng.shuffle(recs)
    return recs


def test_every_cell_and_margin_matches_an_independent_computation():
    rng = random.Random(7)
    recs = random_records(rng)
    table = cv_table(recs)
    assert table.folds == (1, 2, 3) and table.seeds == (42, 1701)
    approx = lambda x: pytest.approx(x, rel=1e-12, abs=1e-15)  # noqa: E731
    for key in ("miou", "mdice"):
        cell_means = {}
        for f in (1, 2, 3):
            for s in (42, 1701):
                vals = [r[key] for r in recs if r["fold"] == f and r["seed"] == s]
                c = table.cell(f, s)
                assert c.n == len(vals)
                assert getattr(c, f"{key}_mean") == approx(statistics.mean(vals))
                assert getattr(c, f"{key}_sd") == approx(statistics.stdev(vals))
                cell_means[(f, s)] = statistics.mean(vals)
            pooled = [r[key] for r in recs if r["fold"] == f]
            c = table.cell(f, ALL)
            assert c.n == len(pooled)
            assert getattr(c, f"{key}_mean") == approx(statistics.mean(pooled))
            assert getattr(c, f"{key}_sd") == approx(statistics.stdev(pooled))
        for s in (42, 1701):
            means = [cell_means[(f, s)] for f in (1, 2, 3)]
            c = table.cell(ALL, s)
            assert c.n == 3
            assert getattr(c, f"{key}_mean") == approx(statistics.mean(means))
            assert getattr(c, f"{key}_sd") == approx(statistics.stdev(means))
        every = list(cell_means.values())
        assert getattr(table.grand, f"{key}_mean") == approx(statistics.mean(every))
        assert getattr(table.grand, f"{key}_sd") == approx(statistics.stdev(every))


def test_fold_margin_pools_scans_not_cell_means():
    """Unequal scan counts: the fold margin weights scans, not cells (as the paper pools them)."""
    recs = [{"fold": 1, "seed": 1, "scan": "a", "miou": 0.9, "mdice": 0.95}]
    recs += [{"fold": 1, "seed": 2, "scan": s, "miou": 0.5, "mdice": 0.6} for s in "abc"]
    c = cv_table(recs).cell(1, ALL)
    assert c.miou_mean == pytest.approx(statistics.mean([0.9, 0.5, 0.5, 0.5]))
    assert c.miou_mean != pytest.approx(statistics.mean([0.9, 0.5]))


def test_single_values_have_undefined_sd_shown_as_dash(tmp_path):
    table = cv_table([{"fold": 1, "seed": 42, "scan": "only", "miou": 0.8, "mdice": 0.9}])
    for c in table.cells:
        assert c.n == 1 and c.miou_mean == 0.8 and c.mdice_mean == 0.9
        assert math.isnan(c.miou_sd) and math.isnan(c.mdice_sd)
    assert "0.8000 ± – [0.9000 ± –]" in table.markdown()
    report = write_cv_report([{"fold": 1, "seed": 42, "scan": "only", "miou": 0.8,
                               "mdice": 0.9}], tmp_path)
    rows = list(csv.DictReader(open(report.files[1])))
    assert rows and all(r["miou_sd"] == "" and r["mdice_sd"] == "" for r in rows)


def test_missing_cell_shows_dash_and_is_left_out_of_margins():
    rng = random.Random(3)
    recs = [r for r in random_records(rng) if not (r["fold"] == 2 and r["seed"] == 1701)]
    table = cv_table(recs)
    assert table.cell(2, 1701) is None
    assert table.grand.n == 5 and table.cell(ALL, 1701).n == 2
    row2 = next(line for line in table.markdown().splitlines() if line.startswith("| 2 "))
    assert row2.split("|")[3].strip() == "–"


def test_labels_from_tags_and_numeric_order():
    recs = [
        {"fold": "10", "seed": "42", "scan": "a", "miou": 0.5, "mdice": 0.6},
        {"fold": 2, "seed": 42, "scan": "b", "miou": 0.7, "mdice": 0.8},
        {"fold": "2", "seed": 42.0, "scan": "c", "miou": 0.9, "mdice": 0.95},
    ]
    table = cv_table(recs)
    assert table.folds == (2, 10) and table.seeds == (42,)
    assert table.cell(2, 42).n == 2


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"fold": 1, "seed": 1, "scan": "a", "miou": 0.5}, r"record 0: missing 'mdice'"),
        ({"fold": 1, "seed": 1, "scan": "a", "miou": 1.5, "mdice": 0.5},
         r"record 0: 'miou' is 1.5, not a score in \[0, 1\]"),
        ({"fold": 1, "seed": 1, "scan": "a", "miou": "x", "mdice": 0.5},
         r"'miou' is 'x', not a number"),
    ],
)
def test_bad_records_are_refused(record, match):
    with pytest.raises(BoneSegError, match=match):
        cv_table([record])


def test_duplicate_scan_and_empty_input_are_refused():
    rec = ScanScore(1, 42, "a", 0.5, 0.6)
    with pytest.raises(BoneSegError, match=r"scan 'a' appears twice for fold 1, seed 42"):
        cv_table([rec, rec])
    with pytest.raises(BoneSegError, match="no per-scan scores"):
        cv_table([])


def test_report_files_hold_the_table(tmp_path):
    recs = random_records(random.Random(11))
    report = write_cv_report(recs, tmp_path / "rep")
    names = sorted(p.name for p in report.files)
    assert names == ["cv_scans.csv", "cv_scores.png", "cv_table.csv", "cv_table.md"]
    table = cv_table(recs)
    rows = list(csv.DictReader(open(tmp_path / "rep" / "cv_table.csv")))
    assert len(rows) == len(table.cells)
    for row in rows:
        fold = ALL if row["fold"] == ALL else int(row["fold"])
        seed = ALL if row["seed"] == ALL else int(row["seed"])
        c = table.cell(fold, seed)
        assert int(row["n"]) == c.n
        for k in ("miou_mean", "miou_sd", "mdice_mean", "mdice_sd"):
            assert float(row[k]) == getattr(c, k)  # repr precision: exact round trip
    assert (tmp_path / "rep" / "cv_table.md").read_text() == report.markdown
    assert (tmp_path / "rep" / "cv_scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "rep").glob(".*tmp*"))
