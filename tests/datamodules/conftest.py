"""Tiny dataset stores built from random arrays in tmp_path."""

import numpy as np
import pytest

from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
from bone_seg.io.store import ChunkLayout

# small chunks and shards so that patches cross chunk and shard borders
OPTS = ImportOptions(layout=ChunkLayout(chunk_yx=8, shard_depth=2, shard_yx=16))


def build_store(path, shapes, seed=0, dtype=np.uint16):
    """A store at ``path`` with one random scan (and mask) per shape, ids s00, s01, ..."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources, arrays = [], {}
    for i, shape in enumerate(shapes):
        sid = f"s{i:02d}"
        image = rng.integers(1, 4000, shape).astype(dtype)
        mask = rng.integers(0, 3, shape).astype(np.uint8)
        np.save(path / f"{sid}.npy", image)
        np.save(path / f"{sid}_m.npy", mask)
        sources.append(ScanSource(sid, str(path / f"{sid}.npy"), str(path / f"{sid}_m.npy")))
        arrays[sid] = (image, mask)
    store = import_scans(path / "store", sources, OPTS)
    return store, arrays


@pytest.fixture
def small_store(tmp_path):
    """Three scans of 6 slices of 40 × 48 px (different depths in the last)."""
    return build_store(tmp_path, [(6, 40, 48), (6, 40, 48), (9, 40, 48)])
