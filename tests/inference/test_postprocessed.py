"""Post-processing inside bone-predict: the network's labels kept, the rules' result listed first
(what readers take), repeatable, resumable, removed again when switched off."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from inference_helpers import save_model, scan

from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.output import is_complete
from bone_seg.io.volume import open_zarr_array
from bone_seg.postprocess.settings import PostprocessSettings
from bone_seg.postprocess.stream import apply_decisions, find_decisions

RULES = {"min_bone_size": 30, "min_pore_size": 10, "min_pore_enclosure": 0.4}
BIN = Path(sys.executable).parent / "bone-predict"


def settings(**kw) -> PredictSettings:
    return PredictSettings(slab_depth=4, batch_size=8, progress=False, pyramid=1, **kw)


def _read(out, name):
    return zarr.open_group(str(out), mode="r")[f"labels/{name}/0"][:]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("post")
    np.save(root / "scan.npy", scan((11, 48, 44)))
    return save_model(root / "m.safetensors", "2d"), str(root / "scan.npy")


def test_the_rules_apply_to_the_whole_scan_and_readers_take_the_result(model, tmp_path):
    weights, volume = model
    out = tmp_path / "p.zarr"
    report = predict_scan(weights, volume, out, settings=settings(postprocess=RULES))
    raw, post = _read(out, "segmentation"), _read(out, "postprocessed")
    s = PostprocessSettings(**RULES)
    d = find_decisions(lambda a, b: raw[a:b], raw.shape, len(raw), s, 3)  # one slab: no borders
    np.testing.assert_array_equal(post, apply_decisions(raw, 0, d, s))
    assert (post != raw).any()
    assert report.postprocess["voxels_changed"] == int((post != raw).sum())
    assert report.class_counts["bone"] == int((post == 1).sum())
    assert report.network_class_counts["bone"] == int((raw == 1).sum())
    np.testing.assert_array_equal(open_zarr_array(out)[:], post)       # what readers take
    level1 = zarr.open_group(str(out), mode="r")["labels/postprocessed/1"][:]
    np.testing.assert_array_equal(level1, post[::2, ::2, ::2])
    assert is_complete(out)
    again = tmp_path / "q.zarr"
    predict_scan(weights, volume, again, settings=settings(postprocess=RULES))
    np.testing.assert_array_equal(_read(again, "postprocessed"), post)  # bitwise repeatable


def test_a_stopped_post_processing_continues_and_can_be_switched_off(model, tmp_path):
    weights, volume = model
    out = tmp_path / "p.zarr"
    predict_scan(weights, volume, out, settings=settings(postprocess=RULES))
    whole = _read(out, "postprocessed")
    state_path = out / "postprocess.json"
    state = json.loads(state_path.read_text())
    del state["slabs"]["1"], state["slabs"]["2"]       # as if stopped before these slabs
    state["complete"] = False
    state_path.write_text(json.dumps(state))
    zarr.open_group(str(out), mode="r+")["labels/postprocessed/0"][4:12] = 0
    report = predict_scan(weights, volume, out, settings=settings(postprocess=RULES))
    np.testing.assert_array_equal(_read(out, "postprocessed"), whole)
    assert report.slabs_done_before == report.slabs    # the network was not run again
    stricter = {"min_bone_size": 10**6}      # no bone left
    report = predict_scan(weights, volume, out, settings=settings(postprocess=stricter))
    assert report.postprocess["settings"]["min_bone_size"] == 10**6
    assert (_read(out, "segmentation") == 1).any() and not (_read(out, "postprocessed") == 1).any()
    predict_scan(weights, volume, out, settings=settings())
    group = zarr.open_group(str(out), mode="r")
    assert "postprocessed" not in group["labels"] and not state_path.exists()
    np.testing.assert_array_equal(open_zarr_array(out)[:], _read(out, "segmentation"))


def test_a_bad_rule_is_one_error_line(model, tmp_path):
    weights, volume = model
    proc = subprocess.run([str(BIN), f"weights={weights}", f"scan={volume}",
                           f"out={tmp_path / 'x.zarr'}", "postprocess.min_pore_enclosure=2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: postprocess.min_pore_enclosure=2.0: a fraction in [0, 1]")
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.zarr").exists()
