"""ScanDataModule: split logged, attributes for the fit app, every bad key refused by name."""

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
from dm_helpers import make_dm
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bone_seg.datamodules.datamodule import ScanDataModule
from bone_seg.errors import BoneSegError
from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
from bone_seg.weights.meta import WeightsMeta

CONF = Path(__file__).resolve().parents[2] / "conf" / "data" / "default.yaml"


def _dm(store, **kw):
    return make_dm(store, setup=False, **kw)


def test_setup_logs_the_split_and_exposes_what_the_fit_needs(small_store, caplog):
    store, _ = small_store
    dm = _dm(store, num_folds=3, test_fold=3, train_fraction=0.5, mode="2.5d", slices=5)
    with caplog.at_level(logging.INFO, logger="bone_seg.fit"):
        dm.setup("fit")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("split")]
    assert len(lines) == 3
    assert dm.splits["test"] == dm.test_scan_ids == ["s02"]
    assert sorted(dm.splits["train"] + dm.splits["val"]) == ["s00", "s01"]
    for name, line in zip(("train", "val", "test"), lines, strict=True):
        assert name in line and all(s in line for s in dm.splits[name])
    assert dm.in_channels == 5 and dm.mode == "2.5d"
    assert dm.num_classes == 3 and dm.class_names == ["background", "bone", "pores"]
    assert dm.normalization == "zscore" and dm.stats_policy == "positive"
    assert dm.clip_range == (-5.0, 5.0)
    assert _dm(store, normalization="minmax").clip_range == (0.0, 1.0)
    assert _dm(store).in_channels == 1
    dm.setup("fit")  # idempotent
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 5, 16, 16) and batch["mask"].shape == (4, 16, 16)


def test_3d_batches(small_store):
    store, _ = small_store
    dm = _dm(store, mode="3d", patch_depth=2, tile_depth=4)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 1, 2, 16, 16) and batch["mask"].shape == (4, 2, 16, 16)


def test_val_patches_per_tile(small_store):
    store, _ = small_store
    dm = _dm(store, patches_per_tile=3, val_patches_per_tile=1)
    dm.setup()
    assert len(dm.val_set) == len(dm.val_set.tiles) and len(dm.train_set) == 3 * len(
        dm.train_set.tiles)
    same = _dm(store, patches_per_tile=3)
    same.setup()
    assert len(same.val_set) == 3 * len(same.val_set.tiles)


def test_weights_meta_fits_the_weights_file(small_store):
    store, _ = small_store
    dm = _dm(store, mode="3d", patch_depth=2, tile_depth=4)
    dm.setup()
    net = {"arch": "unet", "encoder": "resnet18", "mode": "3d", "in_channels": 1, "slices": 1,
           "num_classes": 3, "class_names": dm.class_names, "net_kwargs": {}}
    meta = WeightsMeta(**net, **dm.weights_meta())
    assert meta.patch_depth == 2 and meta.tile_depth == 4 and meta.splits == dm.splits
    assert set(dm.weights_meta()) <= {f.name for f in dataclasses.fields(WeightsMeta)}


def test_the_config_file_instantiates(small_store):
    store, _ = small_store
    cfg = OmegaConf.load(CONF)
    cfg.store, cfg.seed = str(store.path), 4
    cfg.patch_size, cfg.num_workers = 32, 0
    dm = instantiate(cfg, _convert_="all")
    assert isinstance(dm, ScanDataModule)
    dm.setup()
    assert len(dm.augmentation) == 3 and dm.train_fraction == 0.8


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"mode": "2.5D"}, r"data\.mode='2\.5D': choose one of 2d, 2\.5d, 3d"),
        ({"mode": "2.5d", "slices": 4}, r"data\.slices=4: 2\.5D needs an odd number"),
        ({"normalization": "z"}, r"data\.normalization='z': choose one of zscore, minmax"),
        ({"stats_policy": "pos"}, r"data\.stats_policy='pos': choose one of positive, all"),
        ({"patch_size": 0}, r"data\.patch_size=0"),
        ({"batch_size": 2.5}, r"data\.batch_size=2\.5"),
        ({"num_workers": -1}, r"data\.num_workers=-1"),
        ({"max_overlap": 1.5}, r"data\.max_overlap=1\.5"),
        ({"mode": "3d", "patch_depth": 8, "tile_depth": 4}, r"data\.patch_depth=8 exceeds"),
        ({"clip_range": [1, -1]}, r"data\.clip_range=\[1, -1\]"),
        ({"augment": "yes"}, r"data\.augment='yes'"),
        ({"augmentation": [{"op": "geometric", "p": {"hflip": 0.5}}]},
         r"data\.augmentation\[0\]\.p=.*must sum to 1"),
    ],
)
def test_bad_keys_fail_at_construction(small_store, kw, pattern):
    store, _ = small_store
    with pytest.raises(BoneSegError, match=pattern):
        _dm(store, **kw)


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"patch_size": 41}, r"scan s0\d is 40 × 48 px, smaller than data\.patch_size=41"),
        ({"mode": "3d", "tile_depth": 7, "patch_depth": 2}, r"fewer than data\.tile_depth=7"),
        ({"num_folds": 4}, r"data\.num_folds=4: needs an integer from 2 to .* \(3\)"),
        ({"num_folds": 3, "test_fold": 4}, r"data\.test_fold=4: choose a fold from 1 to 3"),
        ({"test_fold": 1}, r"data\.test_fold=1 needs data\.num_folds"),
        ({"num_folds": 2, "test_fold": 1}, r"pool holds 1 scan.*none is left to train on"),
        ({"train_fraction": 1.0}, r"data\.train_fraction=1\.0"),
    ],
)
def test_bad_keys_fail_at_setup(small_store, kw, pattern):
    store, _ = small_store
    with pytest.raises(BoneSegError, match=pattern):
        _dm(store, **kw).setup()


def test_overlap_warning_when_tiles_are_too_small(small_store, caplog):
    store, _ = small_store
    with caplog.at_level(logging.WARNING, logger="bone_seg.fit"):
        _dm(store, patch_size=40, patches_per_tile=3, max_retries=3).setup()
    assert any("data.max_overlap" in r.getMessage() for r in caplog.records)


def test_scan_without_mask_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    sources = []
    for sid in ("a", "b", "c"):
        np.save(tmp_path / f"{sid}.npy", rng.integers(1, 99, (2, 16, 16)).astype(np.uint8))
        np.save(tmp_path / f"{sid}_m.npy", rng.integers(0, 3, (2, 16, 16)).astype(np.uint8))
        mask = None if sid == "b" else str(tmp_path / f"{sid}_m.npy")
        sources.append(ScanSource(sid, str(tmp_path / f"{sid}.npy"), mask))
    store = import_scans(tmp_path / "st", sources, ImportOptions())
    with pytest.raises(BoneSegError, match=r"scan b of .* has no mask"):
        _dm(store, train_fraction=0.5).setup()
