"""Imports side by side keep every scan; a killed import leaves nothing the next one keeps."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bone_seg.atomic import remove_stale_temporaries, temporary_name
from bone_seg.io.importer import ImportOptions, ScanSource, import_scans

BIN = Path(sys.executable).parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def _scan(path: Path, depth: int = 16, size: int = 64) -> Path:
    rng = np.random.default_rng(len(path.name))
    np.save(path, rng.integers(1, 1000, (depth, size, size), dtype=np.uint16))
    return path


def _import(store: Path, image: Path, scan_id: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "bone-import"), f"store_path={store}", f"image={image}", f"id={scan_id}",
         f"paths.root={store.parent / 'root'}", "workers=1", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_imports_into_one_store_keep_every_scan(tmp_path, attempt):
    ids = ["a", "b", "c"]
    images = {i: _scan(tmp_path / f"{i}.npy") for i in ids}
    store = tmp_path / "store"
    procs = [_import(store, images[i], i) for i in ids]  # started together, as real processes
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    manifest = json.loads((store / "manifest.json").read_text())
    assert sorted(manifest["scans"]) == ids
    assert sorted(p.name for p in (store / "scans").iterdir()) == ids


def test_a_killed_import_is_cleaned_up_by_the_next(tmp_path):
    store = tmp_path / "store"
    big = _scan(tmp_path / "big.npy", depth=256, size=256)
    proc = _import(store, big, "big", "store.shard_depth=1")
    deadline = time.time() + 120
    partial = []
    while time.time() < deadline and proc.poll() is None and not partial:
        partial = list((store / "scans").glob(".big.tmp-*")) if (store / "scans").is_dir() else []
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial, "the import finished before it could be killed"
    assert partial[0].exists()  # what the killed import left
    small = _scan(tmp_path / "small.npy")
    proc = _import(store, small, "small")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert sorted(p.name for p in (store / "scans").iterdir()) == ["small"]
    assert json.loads((store / "manifest.json").read_text())["scans"] == ["small"]


def test_only_temporaries_of_dead_writers_of_this_host_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = temporary_name(tmp_path / "live")  # this process: alive
    mine.mkdir()
    stale = tmp_path / f".gone.tmp-{mine.name.split('.tmp-')[1].rsplit('-', 1)[0]}-{dead.pid}"
    stale.mkdir()
    legacy = tmp_path / f".old.tmp-{dead.pid}"  # named before the host was part of the name
    legacy.write_text("x")
    elsewhere = tmp_path / f".far.tmp-otherhost-{dead.pid}"
    elsewhere.mkdir()
    final = tmp_path / "scan"
    final.mkdir()
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, legacy])
    assert mine.exists() and elsewhere.exists() and final.exists()


def test_importing_beside_another_import_in_this_process(tmp_path):
    """The lock is re-entrant across store objects: a second import in one process works."""
    store = tmp_path / "store"
    for scan_id in ("x", "y"):
        src = ScanSource(scan_id, str(_scan(tmp_path / f"{scan_id}.npy", depth=2, size=16)))
        import_scans(store, [src], ImportOptions())
    assert json.loads((store / "manifest.json").read_text())["scans"] == ["x", "y"]
