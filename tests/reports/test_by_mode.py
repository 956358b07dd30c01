"""bone-report by=mode: runs grouped by their mode tag, only on the same folds and seeds."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest

from bone_seg.errors import BoneSegError
from bone_seg.reports.by_mode import (
    check_by,
    mode_results,
    split_by_mode,
    write_cv_by_mode,
    write_rank_by_mode,
)
from bone_seg.tracking.runs import SweepRuns


class FakeClient:
    """No artifacts: the per-scan scores are read from the run's metrics."""

    def list_artifacts(self, run_id):
        return []


def fake_run(mode: str, fold: int, seed: int, mious: tuple[float, ...], fit_time: float = 10.0):
    metrics = {"complexity/flops_batch": 1e9, "complexity/params": 1e6,
               "resources/fit_time_s": fit_time}
    for i, v in enumerate(mious):
        metrics[f"test/s{fold}{i}/miou"] = v
        metrics[f"test/s{fold}{i}/mdice"] = 2 * v / (1 + v)
    tags = {"mode": mode, "fold": str(fold), "seed": str(seed), "arch": "unet",
            "encoder": "resnet18", "patch_size": "96", "bone_seg.sweep": "dims"}
    return SimpleNamespace(info=SimpleNamespace(run_id=f"{mode}-{fold}-{seed}",
                                                status="FINISHED"),
                           data=SimpleNamespace(tags=tags, metrics=metrics,
                                                params={"data.batch_size": "32"}))


def sweep_of(runs) -> SweepRuns:
    return SweepRuns(FakeClient(), "sqlite:///x.db", "0", "bone_seg", "sweep 'dims'", runs)


def complete_sweep():
    """Three modes x folds 1-2 x seeds 42, 7; 3D scores 0.1 lower, 2.5D 0.05 higher."""
    shift = {"2d": 0.0, "2.5d": 0.05, "3d": -0.1}
    return sweep_of([fake_run(m, f, s, (0.8 + shift[m] + 0.01 * f, 0.7 + shift[m]),
                              fit_time=30.0 if m == "3d" else 10.0)
                     for m in ("3d", "2d", "2.5d") for f in (1, 2) for s in (42, 7)])


def test_runs_are_grouped_in_mode_order():
    groups = split_by_mode(complete_sweep())
    assert list(groups) == ["2d", "2.5d", "3d"]
    assert all(len(g.runs) == 4 for g in groups.values())
    assert groups["3d"].selection == "sweep 'dims', mode 3d"


def test_modes_on_different_folds_or_seeds_are_refused_naming_the_gap():
    runs = complete_sweep().runs
    incomplete = sweep_of([r for r in runs if r.info.run_id != "3d-2-7"])
    with pytest.raises(BoneSegError, match=r"do not hold the same folds and seeds.*missing "
                                           r"runs: 3d: fold 2, seed 7"):
        split_by_mode(incomplete)


def test_a_run_without_mode_is_named():
    run = fake_run("2d", 1, 42, (0.9,))
    del run.data.tags["mode"]
    with pytest.raises(BoneSegError, match=r"run 2d-1-42: missing tag 'mode'"):
        split_by_mode(sweep_of([run]))


def test_by_takes_null_or_mode():
    assert check_by(None) is None and check_by("mode") == "mode"
    with pytest.raises(BoneSegError, match=r"by='arch': use null .* or one of mode"):
        check_by("arch")


def test_the_modes_table_holds_each_modes_grand_mean(tmp_path):
    report = write_cv_by_mode(complete_sweep(), tmp_path, "Cross-validation: sweep 'dims'")
    rows = list(csv.DictReader((tmp_path / "modes.csv").open()))
    assert [r["mode"] for r in rows] == ["2d", "2.5d", "3d"]
    for row in rows:
        scans = [r for r in csv.DictReader((tmp_path / row["mode"] / "cv_scans.csv").open())]
        cells: dict = {}
        for s in scans:
            cells.setdefault((s["fold"], s["seed"]), []).append(float(s["miou"]))
        grand = math.fsum(math.fsum(v) / len(v) for v in cells.values()) / len(cells)
        assert float(row["miou_mean"]) == pytest.approx(grand, abs=1e-12)
        assert int(row["runs"]) == 4 and int(row["scan_values"]) == 4
    assert report.params["report.best"] == "2.5d"
    assert report.metrics["cv/3d/miou_mean"] == pytest.approx(float(rows[2]["miou_mean"]))
    assert report.markdown.startswith("# Cross-validation: sweep 'dims': by mode")
    assert "## Cross-validation: sweep 'dims', mode 3d" in report.markdown
    assert report.files[0] == tmp_path / "modes.md"


def test_the_ranking_pools_each_mode_over_its_folds_and_seeds(tmp_path):
    results = {r.name.split(" | ")[0]: r for r in mode_results(complete_sweep())}
    assert set(results) == {"2d", "2.5d", "3d"}
    assert results["3d"].fit_time == 30.0 and results["2d"].batch_size == 32
    # the mean over the runs of each run's mean over its test scans
    assert results["2d"].miou == pytest.approx((0.81 + 0.7 + 0.82 + 0.7) / 4)
    report = write_rank_by_mode(complete_sweep(), tmp_path, "Weighted ranking")
    ranked = list(csv.DictReader((tmp_path / "ranking.csv").open()))
    assert len(ranked) == 3 and ranked[0]["name"].startswith("2.5d | ")
    assert report.params["report.by"] == "mode"
