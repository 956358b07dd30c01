"""What a fully labelled store gives, recorded from the code before sparse labels.

``record(root)`` imports a tiny fully labelled store (seeded random arrays) and returns, for 2D,
2.5D and 3D data modules: the tile index, every tile's patch corners (training epochs 0 and 1,
validation) and a SHA-256 of every batch (training epochs 0 and 1 with the default augmentation,
validation), plus the store's digest and its arrays' hashes. It uses only what existed before
sparse labels (every new key at its default), so the same function runs on both code versions.

``fully_labelled_record.json`` beside this file was written by the code before sparse-label
support (commit 9b3220c) with::

    PYTHONPATH=<checkout of 9b3220c> python tests/datamodules/fully_labelled_record.py \\
        tests/datamodules/fully_labelled_record.json

and ``test_sparse_sampling.py`` checks that today's code gives exactly the same.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

SHAPES = [(6, 40, 48), (6, 40, 48), (9, 40, 48)]
MODES = {
    "2d": {},
    "2.5d": {"slices": 3},
    "3d": {"tile_depth": 4, "patch_depth": 2},
}


def _sha(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:24]


def build_store(root: Path):
    """The fully labelled store: three scans, masks of classes 0..2 only."""
    from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
    from bone_seg.io.store import ChunkLayout

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    sources = []
    for i, shape in enumerate(SHAPES):
        sid = f"s{i:02d}"
        np.save(root / f"{sid}.npy", rng.integers(1, 4000, shape).astype(np.uint16))
        np.save(root / f"{sid}_m.npy", rng.integers(0, 3, shape).astype(np.uint8))
        sources.append(ScanSource(sid, str(root / f"{sid}.npy"), str(root / f"{sid}_m.npy")))
    opts = ImportOptions(layout=ChunkLayout(chunk_yx=8, shard_depth=2, shard_yx=16))
    return import_scans(root / "store", sources, opts)


def data_module(store, mode: str):
    """A set-up data module of ``mode`` over ``store`` (every sparse-label key at its default)."""
    from bone_seg.datamodules.datamodule import ScanDataModule

    dm = ScanDataModule(str(store.path), patch_size=16, patches_per_tile=3, batch_size=4,
                        num_workers=0, seed=3, mode=mode, max_overlap=0.2, **MODES[mode])
    dm.setup("fit")
    return dm


def _batches(loader, epoch: int) -> list[str]:
    loader.sampler.set_epoch(epoch)
    return [_sha(b["image"].numpy(), b["mask"].numpy()) for b in loader]


def record(root: Path) -> dict:
    """The record of the store built under ``root`` (see the module's docstring)."""
    store = build_store(root)
    out: dict = {"digest": store.digest(), "arrays": {}}
    for sid in store.scan_ids:
        scan = store.open_scan(sid)
        out["arrays"][sid] = _sha(scan.image[:], scan.mask[:])
    for mode in MODES:
        dm = data_module(store, mode)
        train, val = dm.train_set, dm.val_set
        out[mode] = {
            "tiles": [train.tiles.scan.tolist(), train.tiles.z0.tolist(),
                      train.tiles.local.tolist()],
            "plans": {str(e): [train.tile_plan(e, t)[0].tolist() for t in range(len(train.tiles))]
                      for e in (0, 1)},
            "val_plans": [val.tile_plan(0, t)[0].tolist() for t in range(len(val.tiles))],
            "train_batches": {str(e): _batches(dm.train_dataloader(0, 1), e) for e in (0, 1)},
            "val_batches": _batches(dm.val_dataloader(0, 1), 0),
        }
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        Path(sys.argv[1]).write_text(json.dumps(record(Path(tmp)), indent=1) + "\n")
