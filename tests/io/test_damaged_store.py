"""A store with a damaged chunk file on disk (truncated, or one byte flipped): every command that
reads it ends in one ``error:`` line naming the scan, the array, the chunk and the re-import, exit
status 2; ``bone-import verify=true`` finds the damage, and passes a sound store."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bone_seg.cli.app import compose_config
from bone_seg.errors import BoneSegError
from bone_seg.io.damage import DamagedChunkError
from bone_seg.io.importer import ImportOptions, import_scans
from bone_seg.io.sources import ScanSource
from bone_seg.io.store import DatasetStore
from bone_seg.io.verify import check_verified, verify_store

BIN = Path(sys.executable).parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
SHAPE = (20, 64, 64)  # two shards along Z (16 + 4 slices)


@pytest.fixture(scope="module")
def sound_store(tmp_path_factory) -> Path:
    """Two small scans with masks (structure enough for a fit to run)."""
    root = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(0)
    sources = []
    for sid in ("a", "b"):
        mask = rng.integers(0, 3, SHAPE).astype(np.uint8)
        image = (mask.astype(np.uint16) * 300 + rng.integers(1, 200, SHAPE)).astype(np.uint16)
        np.save(root / f"{sid}.npy", image)
        np.save(root / f"{sid}_mask.npy", mask)
        sources.append(ScanSource(sid, str(root / f"{sid}.npy"), str(root / f"{sid}_mask.npy"),
                                  voxel_size=5.0))
    import_scans(root / "store", sources, ImportOptions(min_patch_size=32), workers=1)
    return root / "store"


def damage(path: Path, how: str) -> None:
    """Truncate ``path`` to half its size, or flip one bit of one byte in its middle."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture
def damaged(sound_store, tmp_path, request) -> Path:
    """A copy of the store whose scan ``b``'s image shard 0 (slices 0-15) is damaged as
    ``request.param`` says (default: truncated)."""
    store = tmp_path / "store"
    shutil.copytree(sound_store, store)
    shard = store / "scans" / "b" / "image" / "c" / "0" / "0" / "0"
    assert shard.is_file()
    damage(shard, getattr(request, "param", "truncate"))
    return store


NAMED = (r"scan 'b', array image .*chunk \(\d+, 0, 0\).*c/0/0/0.*"
         r"bone-import .* id=b .*overwrite=true")


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("damaged", ["truncate", "flip"], indirect=True)
def test_a_read_names_the_damaged_chunk(damaged):
    scan = DatasetStore(damaged).open_scan("b")
    with pytest.raises(DamagedChunkError, match=NAMED):
        np.asarray(scan.image[0:16, 0:32, 0:32])
    np.asarray(scan.image[16:20])  # the other shard and the mask read as before
    np.asarray(scan.mask[:])


@pytest.mark.parametrize("damaged", ["truncate", "flip"], indirect=True)
def test_verify_names_the_damaged_scan(damaged):
    result = verify_store(damaged, workers=1)
    assert [(d.scan, d.array) for d in result.damage] == [("b", "image")]
    assert result.damage[0].file.endswith("scans/b/image/c/0/0/0")
    with pytest.raises(BoneSegError, match=r"1 damaged place\(s\) in 1 scan\(s\): scan 'b', array "
                       r"image: chunk .*c/0/0/0.*bone-import .* id=b .*overwrite=true"):
        check_verified(damaged, result)


def test_verify_on_the_command_line(damaged, sound_store):
    bad = subprocess.run([str(BIN / "bone-import"), "verify=true", f"store_path={damaged}",
                          "workers=2", "threads=1", f"hydra.run.dir={damaged.parent / 'run'}"],
                         capture_output=True, text=True, env=ENV, timeout=300)
    line = _one_error_line(bad)
    assert "scan 'b', array image: chunk" in line and "id=b" in line and "'a'" not in line
    before = sorted(p.relative_to(sound_store) for p in sound_store.rglob("*"))
    good = subprocess.run([str(BIN / "bone-import"), "verify=true", f"store_path={sound_store}",
                           "workers=1", "threads=1", f"hydra.run.dir={damaged.parent / 'run2'}"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert good.returncode == 0, good.stderr[-3000:]
    assert "2 scan(s), 4 array(s)" in good.stderr + good.stdout
    assert "no damaged chunk" in good.stderr + good.stdout
    assert sorted(p.relative_to(sound_store) for p in sound_store.rglob("*")) == before


def test_fit_in_loader_workers(damaged, tmp_path):
    """The damaged chunk is read in a DataLoader worker process: one line all the same."""
    proc = subprocess.run(
        [str(BIN / "bone-fit"), f"paths.root={tmp_path / 'root'}", f"data.store={damaged}",
         "experiment=quick", "data.patch_size=32", "data.batch_size=4",
         "data.patches_per_tile=1", "data.num_workers=1", "trainer.max_epochs=1",
         "callbacks.complexity=null", "threads=1"],
        capture_output=True, text=True, env=ENV, timeout=600)
    line = _one_error_line(proc)
    assert "Caught" not in line and "Original Traceback" not in line
    assert re.search(NAMED, line), line


def test_fit_verifies_first(damaged, tmp_path):
    """``data.verify=true``: the damage is found before any training (in-process workflow)."""
    from bone_seg.workflows import fit

    cfg = compose_config("fit", [f"paths.root={tmp_path / 'root'}", f"data.store={damaged}",
                                 "experiment=quick", "data.patch_size=32", "data.num_workers=1",
                                 "data.verify=true", "callbacks.complexity=null",
                                 f"paths.output_dir={tmp_path / 'out'}"])
    with pytest.raises(BoneSegError, match=r"scan\(s\): scan 'b', array image: chunk \(0, 0, 0\)"
                       r".*bone-import .* id=b .*overwrite=true"):
        fit.run(cfg)
    assert not list((tmp_path / "root").rglob("*.ckpt"))


def test_iou_export_morpho(damaged, tmp_path):
    """The commands reading a store scan's arrays by path or by id (in-process workflows; the
    command-line wrapper is the one the fit and predict tests run)."""
    from bone_seg.workflows import export, iou, morpho

    mask = damaged / "scans" / "b" / "mask"
    shard = mask / "c" / "1" / "0" / "0"
    damage(shard, "truncate")
    named = r"scan 'b', array mask .*chunk \(1[6-9], 0, 0\).*c/1/0/0.*id=b .*overwrite=true"
    with pytest.raises(DamagedChunkError, match=named):
        iou.run(compose_config("iou", [f"reference={mask}", f"prediction={mask}",
                                       f"out={tmp_path / 'iou'}", "device=cpu"]))
    with pytest.raises(DamagedChunkError, match=named):
        morpho.run(compose_config("morpho", [f"labels={mask}", f"out={tmp_path / 'm'}",
                                             "thickness=false"]))
    with pytest.raises(DamagedChunkError, match=NAMED):
        export.run(compose_config("export", [f"store_path={damaged}", "scan=b",
                                             f"out={tmp_path / 'b_image'}"]))


def test_damaged_metadata(damaged):
    """A truncated zarr.json: opening the scan names it and the fix; verify reports it."""
    damage(damaged / "scans" / "a" / "mask" / "zarr.json", "truncate")
    with pytest.raises(DamagedChunkError, match=r"scan 'a' .*metadata .*cannot be read.*"
                                                r"bone-import .* id=a .*overwrite=true"):
        DatasetStore(damaged).open_scan("a")
    result = verify_store(damaged, workers=1)
    assert result.damaged_scans == ["a", "b"]
    assert result.damage[0].chunk is None and result.damage[0].file.endswith("a/zarr.json")
