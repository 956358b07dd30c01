"""The paper's sweeps compose: every job's config resolves and every model builds (no training)."""

from __future__ import annotations

import itertools

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from bone_seg.cli.app import CONF_DIR, compose_config
from bone_seg.networks.sizes import validate_patch_size
from bone_seg.weights.network import create_net


def sweep_jobs(sweep: str, extra: tuple[str, ...] = ()) -> list[list[str]]:
    """The override lists Hydra's basic sweeper makes of ``sweeps/<sweep>.yaml``."""
    cfg = compose_config("fit", [f"sweeps={sweep}", *extra])
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) if "hydra" in cfg else None
    if params is None:  # compose() leaves hydra out: read the sweep file's params directly
        params = OmegaConf.load(CONF_DIR / "sweeps" / f"{sweep}.yaml").hydra.sweeper.params
    parser = OverridesParser.create()
    axes = []
    for key, values in params.items():
        override = parser.parse_override(f"{key}={values}")
        axes.append([f"{key}={v}" for v in override.sweep_string_iterator()])
    return [list(job) for job in itertools.product(*axes)]


def resolve_job(sweep: str, job: list[str], extra: tuple[str, ...] = ()):
    cfg = compose_config("fit", [f"sweeps={sweep}", *extra, *job])
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_cv_is_five_folds_by_three_seeds():
    jobs = sweep_jobs("cv")
    assert len(jobs) == 15
    seen = set()
    for job in jobs:
        cfg = resolve_job("cv", job)
        assert cfg["data"]["num_folds"] == 5 and cfg["sweep"] == "cv"
        assert cfg["experiment_name"] == "bp2d03"
        seen.add((cfg["data"]["test_fold"], cfg["seed"]))
    assert seen == {(f, s) for f in range(1, 6) for s in (42, 1701, 1864)}


def test_cv_shrinks_for_a_cpu_from_the_command_line():
    extra = ("experiment=quick", "trainer.max_epochs=1")
    cfg = resolve_job("cv", sweep_jobs("cv", extra)[0], extra)
    assert cfg["experiment_name"] == "quick" and cfg["data"]["patch_size"] == 96
    assert cfg["trainer"]["max_epochs"] == 1 and cfg["data"]["num_folds"] == 5


@pytest.mark.slow
def test_grid_is_thirty_buildable_models_with_the_paper_exceptions():
    jobs = sweep_jobs("grid")
    assert len(jobs) == 30
    combos = set()
    for job in jobs:
        cfg = resolve_job("grid", job)
        net, data = cfg["model"]["net"], cfg["data"]
        combos.add((net["arch"], net["encoder"], data["patch_size"]))
        validate_patch_size(net["arch"], net["encoder"], data["patch_size"], "2d")
        create_net(net["arch"], net["encoder"], mode="2d", in_channels=1, num_classes=3,
                   weights=None)
        lr = cfg["model"]["optimizer"]["lr"]
        assert lr == (1e-4 if (net["encoder"] == "mit_b1" and data["patch_size"] == 512) else 1e-3)
        assert data["batch_size"] in (32, 64)
        assert cfg["data"]["test_fold"] == 1 and cfg["seed"] == 42
    assert len(combos) == 30
    archs = {a for a, _, _ in combos}
    assert archs == {"unet", "unetplusplus", "deeplabv3plus", "segformer"}
    assert ("unetplusplus", "mit_b1", 256) not in combos


def test_grid_shrinks_with_grid_scale():
    extra = ("experiment=quick", "grid_scale=0.25")
    sizes = {resolve_job("grid", job, extra)["data"]["patch_size"]
             for job in sweep_jobs("grid", extra)}
    assert sizes == {64, 128}


def test_dims_is_three_modes_on_the_same_folds_and_seeds_at_equal_labelled_voxels():
    jobs = sweep_jobs("dims")
    assert len(jobs) == 45
    pairs: dict[str, set] = {}
    per_step: dict[str, int] = {}
    for job in jobs:
        values = dict(o.split("=", 1) for o in job)
        mode = values["data.mode"]
        pairs.setdefault(mode, set()).add((int(values["data.test_fold"]), int(values["seed"])))
        if len(pairs[mode]) > 1:
            continue  # the folds and seeds change nothing else: one job per mode is resolved
        cfg = resolve_job("dims", job)
        data = cfg["data"]
        assert cfg["sweep"] == "dims" and data["num_folds"] == 5 and data["mode"] == mode
        depth = data["patch_depth"] if mode == "3d" else None
        per_step[mode] = data["batch_size"] * (depth or 1) * data["patch_size"] ** 2
        assert cfg["trainer"]["limit_train_batches"] == cfg["dims_steps"]
        if mode == "3d":
            assert data["tile_depth"] == depth  # a slab is one patch deep
        validate_patch_size("unet", "resnet18", data["patch_size"], mode, depth,
                            in_channels=data["slices"] if mode == "2.5d" else 1)
    assert set(pairs) == {"2d", "2.5d", "3d"}
    assert pairs["2d"] == pairs["2.5d"] == pairs["3d"] == {
        (f, s) for f in range(1, 6) for s in (42, 1701, 1864)}
    assert len(set(per_step.values())) == 1, per_step  # the same labelled voxels per step


def test_dims_sizes_follow_its_keys():
    extra = ("dims_patch=64", "dims_batch_3d=3", "dims_steps=3")
    cfgs = {cfg["data"]["mode"]: cfg for cfg in
            (resolve_job("dims", job, extra) for job in sweep_jobs("dims", extra)[::15])}
    assert cfgs["2d"]["data"]["batch_size"] == 96 and cfgs["3d"]["data"]["batch_size"] == 3
    assert {c["data"]["patch_size"] for c in cfgs.values()} == {64}
