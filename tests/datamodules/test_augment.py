"""Augmentation pipeline: frequencies of the paper's defaults, exact ops, config errors."""

import numpy as np
import pytest

from bone_seg.datamodules.augment import (
    DEFAULT_PIPELINE,
    apply_geometric,
    apply_intensity,
    check_pipeline,
    draw_geometric,
    draw_intensity,
)
from bone_seg.datamodules.sampling import tile_rng
from bone_seg.errors import BoneSegError
from bone_seg.io.normalize import Normalizer

N = 20000


def _tolerance(p):  # 5 standard deviations of a frequency over N draws
    return 5 * np.sqrt(p * (1 - p) / N) + 1e-9


def test_geometric_frequencies_match_the_config():
    pipe = check_pipeline(DEFAULT_PIPELINE)
    ops = [draw_geometric(pipe, tile_rng(3, 0, 0, 0, t, 1)) for t in range(N)]
    names = [o[0] for o in ops]
    for name, p in DEFAULT_PIPELINE[0]["p"].items():
        assert abs(names.count(name) / N - p) < _tolerance(p), name
    turns = [k for name, k in ops if name == "rot90"]
    for k in (1, 2, 3):
        assert abs(turns.count(k) / len(turns) - 1 / 3) < 5 * np.sqrt(2 / 9 / len(turns))
    assert all(k == 0 for name, k in ops if name != "rot90")


def test_intensity_frequencies_and_ranges():
    pipe = check_pipeline(DEFAULT_PIPELINE)
    drawn = [draw_intensity(pipe, tile_rng(3, 0, 0, 0, t, 2, 0)) for t in range(N)]
    for op, p, (lo, hi) in (("brightness", 0.4, (-0.15, 0.15)), ("contrast", 0.4, (0.75, 1.25))):
        values = [v for ops in drawn for o, v, _ in ops if o == op]
        assert abs(len(values) / N - p) < _tolerance(p)
        assert lo <= min(values) and max(values) <= hi
        assert abs(np.mean(values) - (lo + hi) / 2) < 5 * (hi - lo) / np.sqrt(12 * len(values))
    both = sum(len(ops) == 2 for ops in drawn) / N
    assert abs(both - 0.16) < _tolerance(0.16)   # independent: 0.4 * 0.4


def test_intensity_ops_in_order_then_clipped():
    norm = Normalizer(0.0, 1.0, -1.0, 1.0)
    x = np.array([-0.9, 0.0, 0.5, 0.95], np.float32)
    out = apply_intensity([("brightness", 0.1, 0), ("contrast", 2.0, 0)], x.copy(), norm.clip)
    np.testing.assert_array_equal(out, np.clip((x + np.float32(0.1)) * np.float32(2), -1, 1))
    assert apply_intensity([], x.copy(), norm.clip).tolist() == x.tolist()


def test_geometric_ops_act_on_the_last_two_axes():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert (apply_geometric(a, ("hflip", 0)) == a[:, :, ::-1]).all()
    assert (apply_geometric(a, ("vflip", 0)) == a[:, ::-1, :]).all()
    b = np.arange(2 * 4 * 4).reshape(2, 4, 4)
    for k in (1, 2, 3):
        out = apply_geometric(b, ("rot90", k))
        assert out.flags.c_contiguous
        assert all((out[c] == np.rot90(b[c], k)).all() for c in range(2))
    assert (apply_geometric(a, ("none", 0)) == a).all()


def test_no_geometric_step_means_none():
    pipe = check_pipeline([{"op": "brightness", "p": 1.0, "range": [0.1, 0.1]}])
    assert draw_geometric(pipe, tile_rng(0, 0, 0, 0, 0)) == ("none", 0)
    assert check_pipeline(None) == [] and check_pipeline([]) == []


@pytest.mark.parametrize(
    ("pipeline", "pattern"),
    [
        ([{"op": "sharpen", "p": 0.5}], r"augmentation\[0\]\.op='sharpen': choose one of geom"),
        ([{"op": "noise", "p": 0.5, "range": [-0.1, 0.2]}], r"noise needs values >= 0"),
        ([{"op": "gamma", "p": 0.5, "range": [0.0, 1.5]}], r"gamma needs values >= 0\.001"),
        ([{"op": "blur", "p": 0.5}], r"\[0\]\.range=None: give \[low, high\]"),
        ([{"op": "geometric", "p": {"hflip": 0.5, "none": 0.4}}], r"must sum to 1 .*sum to 0\.9"),
        ([{"op": "geometric", "p": {"flip": 1.0}}], r"unknown op\(s\) flip"),
        ([{"op": "brightness", "p": 1.4, "range": [0, 1]}], r"\[0\]\.p=1\.4: give a probability"),
        ([{"op": "contrast", "p": 0.4, "range": [1.2, 0.8]}], r"\.range=\[1\.2, 0\.8\]"),
        ([{"op": "contrast", "prob": 0.4, "range": [0.8, 1.2]}], r"unknown key\(s\) prob"),
        ([DEFAULT_PIPELINE[0], DEFAULT_PIPELINE[0]], r"\[1\]: only one geometric step"),
        ({"op": "contrast"}, r"give a list of steps"),
    ],
)
def test_bad_pipelines_name_the_key(pipeline, pattern):
    with pytest.raises(BoneSegError, match=pattern):
        check_pipeline(pipeline)


def test_partial_geometric_choices_default_to_zero():
    pipe = check_pipeline([{"op": "geometric", "p": {"hflip": 1.0}}])
    assert {draw_geometric(pipe, tile_rng(0, 0, 0, 0, t))[0] for t in range(50)} == {"hflip"}


ROBUST = [{"op": "noise", "p": 1.0, "range": [0.2, 0.2]},
          {"op": "blur", "p": 1.0, "range": [1.5, 1.5]},
          {"op": "gamma", "p": 1.0, "range": [2.0, 2.0]}]


def test_noise_blur_gamma_do_what_they_say():
    norm = Normalizer(0.0, 1.0, -100.0, 100.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 64, 64)).astype(np.float32)
    noise, blur, gamma = (check_pipeline([step]) for step in ROBUST)
    ops = draw_intensity(noise, np.random.default_rng(1))
    out = apply_intensity(ops, x.copy(), norm.clip)
    assert abs(float(np.std(out - x)) - 0.2) < 0.01
    again = apply_intensity(draw_intensity(noise, np.random.default_rng(1)), x.copy(), norm.clip)
    np.testing.assert_array_equal(out, again)              # the noise is keyed by the patch
    out = apply_intensity(draw_intensity(blur, rng), x.copy(), norm.clip)
    assert out.std() < 0.5 * x.std() and abs(out.mean() - x.mean()) < 0.05
    # in-plane only: every channel is blurred on its own
    np.testing.assert_allclose(out[1], apply_intensity([("blur", 1.5, 0)], x[1:2].copy(),
                                                       norm.clip)[0], rtol=1e-5, atol=1e-6)
    out = apply_intensity(draw_intensity(gamma, rng), x.copy(), norm.clip)
    lo, hi = x.min(), x.max()
    assert np.isclose(out.min(), lo) and np.isclose(out.max(), hi)
    np.testing.assert_allclose(out, ((x - lo) / (hi - lo)) ** 2 * (hi - lo) + lo, rtol=1e-5,
                               atol=1e-5)


def test_the_random_stream_does_not_shift_with_the_outcome():
    """Each op makes the same draws whether it applies or not, so switching the noise on or off
    leaves every later op's values unchanged."""
    after = {"op": "brightness", "p": 1.0, "range": [-0.15, 0.15]}
    for t in range(20):
        on = draw_intensity(check_pipeline([ROBUST[0], after]), tile_rng(1, 0, 0, 0, t, 2))
        off = draw_intensity(check_pipeline([{**ROBUST[0], "p": 0.0}, after]),
                             tile_rng(1, 0, 0, 0, t, 2))
        assert on[-1] == off[-1] and len(on) == 2 and len(off) == 1
