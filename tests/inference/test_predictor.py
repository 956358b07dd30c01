"""The predictor: streamed equals whole-volume, repeatable bitwise, all input modes."""

import numpy as np
import pytest
from inference_helpers import tiny_model

from bone_seg.inference.predictor import Predictor

MODES = {"2d": (7, 50, 45), "2.5d": (7, 50, 45), "3d": (40, 40, 36)}


def _volume(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(MODES))
def model(request):
    return request.param, *tiny_model(request.param)


def _stream(pred, vol, ranges):
    labels = np.full(vol.shape, 255, np.uint8)
    conf = np.full(vol.shape, -1, np.float32)
    for z0, z1 in ranges:
        for z, lab, cf, *_ in pred.stream(lambda a, b: vol[a:b], vol.shape, z0, z1, read_ahead=3):
            assert z0 <= z and z + len(lab) <= z1
            labels[z:z + len(lab)], conf[z:z + len(cf)] = lab, cf
    return labels, conf


def test_streamed_ranges_equal_whole_volume_and_batch_sizes(model):
    mode, net, meta = model
    vol = _volume(MODES[mode])
    whole = Predictor(net, meta, batch_size=1).predict_array(vol)
    assert whole[0].dtype == np.uint8 and whole[1].dtype == np.float32
    assert len(np.unique(whole[0])) > 1, "the test net should predict more than one class"
    depth = vol.shape[0]
    cuts = [(0, 3), (3, 4), (4, depth)] if mode != "3d" else [(0, 13), (13, 29), (29, depth)]
    for batch in (1, 8):
        pred = Predictor(net, meta, batch_size=batch)
        for ranges in ([(0, depth)], cuts, cuts[::-1]):
            labels, conf = _stream(pred, vol, ranges)
            np.testing.assert_array_equal(labels, whole[0])
            np.testing.assert_array_equal(conf, whole[1])


def test_network_always_sees_one_micro_batch_shape():
    """Batch sizes change how many windows are prepared per step, never the forward shape (batch
    1 and batch 8 differ in the last bits on CPU: see the predictor's docstring)."""
    net, meta = tiny_model("2d")
    seen = []
    hook = net.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    try:
        for batch in (1, 3, 8):
            Predictor(net, meta, batch_size=batch, micro_batch=4).predict_array(
                _volume((3, 50, 45)))
    finally:
        hook.remove()
    assert seen and set(seen) == {(4, 1, 32, 32)}


def test_threshold_and_confidence(model):
    mode, net, meta = model
    vol = _volume(MODES[mode], seed=1)
    low = Predictor(net, meta, threshold=0.0).predict_array(vol)
    high = Predictor(net, meta, threshold=1.0).predict_array(vol)
    np.testing.assert_array_equal(low[1], high[1])
    assert (low[1] >= 1 / 3 - 1e-6).all() and (low[1] <= 1 + 1e-6).all()
    assert (high[0][high[1] < 1.0] == 0).all()
    mid = Predictor(net, meta, threshold=0.6).predict_array(vol)
    assert (mid[0][mid[1] < 0.6] == 0).all()
    np.testing.assert_array_equal(mid[0][mid[1] >= 0.6], low[0][low[1] >= 0.6])


@pytest.mark.parametrize("blending", ["constant", "gaussian"])
def test_volume_smaller_than_window_is_padded(blending):
    for mode, shape in (("2d", (2, 20, 9)), ("2.5d", (1, 31, 20)), ("3d", (5, 12, 40))):
        net, meta = tiny_model(mode)
        labels, conf = Predictor(net, meta, blending=blending).predict_array(_volume(shape))
        assert labels.shape == shape and np.isfinite(conf).all()


def test_reruns_identical(model):
    mode, net, meta = model
    vol = _volume(MODES[mode], seed=2)
    a = Predictor(net, meta, blending="constant", overlap=0.5).predict_array(vol)
    b = Predictor(net, meta, blending="constant", overlap=0.5, batch_size=5).predict_array(vol)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_the_settings_object_is_what_the_predictor_follows(model):
    from bone_seg.errors import BoneSegError
    from bone_seg.inference.settings import PredictSettings

    mode, net, meta = model
    vol = _volume(MODES[mode])
    settings = PredictSettings(blending="constant", overlap=0.5, threshold=0.6, batch_size=4,
                               fold_bn=False)
    pred = Predictor(net, meta, settings)
    assert pred.settings is settings and (pred.blending, pred.overlap, pred.batch) == (
        "constant", 0.5, 4)
    by_keyword = Predictor(net, meta, blending="constant", overlap=0.5, threshold=0.6,
                           batch_size=4)
    for a, b in zip(pred.predict_array(vol), by_keyword.predict_array(vol), strict=True):
        np.testing.assert_array_equal(a, b)
    assert Predictor(net, meta, settings, overlap=0.25).overlap == 0.25  # a change on top
    with pytest.raises(BoneSegError, match=r"Predictor has no setting\(s\) \['overlapp'\]"):
        Predictor(net, meta, overlapp=0.5)
