"""Batch norms folded into convolutions: same logits (to rounding), repeatable, ensembles too."""

import copy

import numpy as np
import pytest
import torch
from inference_helpers import save_model, tiny_model

from bone_seg.inference import Predictor
from bone_seg.inference.ensemble import load_ensemble
from bone_seg.inference.fold import conv_bn_pairs, fold_batch_norms

NORMS = (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def _trained_looking(net, seed=0):
    """Batch-norm statistics and affine parameters away from their initial 0/1 (folding an
    initial batch norm is nearly the identity and would prove little)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, NORMS):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return net


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_folded_network_has_no_batch_norm_and_the_same_logits(mode):
    net, _ = tiny_model(mode)
    net = _trained_looking(net)
    pairs = conv_bn_pairs(net)
    norms = sum(isinstance(m, NORMS) for m in net.modules())
    assert len(pairs) == norms > 20, "every batch norm of U-Net/ResNet-18 follows a conv"
    x = torch.randn(2, 1, 16, 32, 32) if mode == "3d" else torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        ref = net(x)
        folded = fold_batch_norms(copy.deepcopy(net))
        out = folded(x)
    assert not any(isinstance(m, NORMS) for m in folded.modules())
    assert not torch.equal(out, ref)  # rounding differs: it is a setting of its own
    # float rounding of a deep network: relative to the logits' range
    assert float((out - ref).abs().max()) <= 1e-4 * float(ref.abs().max())


def test_training_mode_network_is_refused():
    net, _ = tiny_model("2d")
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(net.train())


def test_predictor_with_fold_bn_repeatable_and_leaves_the_callers_network():
    net, meta = tiny_model("2d")
    net = _trained_looking(net)
    vol = np.random.default_rng(0).normal(size=(5, 50, 45)).astype(np.float32)
    plain = Predictor(net, meta, batch_size=8).predict_array(vol)
    first = Predictor(net, meta, batch_size=8, fold_bn=True).predict_array(vol)
    again = Predictor(net, meta, batch_size=4, fold_bn=True).predict_array(vol)
    assert any(isinstance(m, NORMS) for m in net.modules()), "the caller's net was folded"
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(first[1], plain[1], atol=1e-4)
    assert np.mean(first[0] == plain[0]) > 0.999


def test_ensemble_members_are_refolded_when_they_change(tmp_path):
    paths = [save_model(tmp_path / f"{s}.safetensors", "2d", seed=s) for s in (0, 1)]
    vol = np.random.default_rng(1).normal(size=(8, 32, 32)).astype(np.float32)

    def run(fold):
        ens = load_ensemble(paths)
        return Predictor(ens, ens.meta, blending="constant", overlap=0.0, batch_size=4,
                         micro_batch=4, threshold=0.0, fold_bn=fold).predict_array(vol)

    plain, folded, again = run(False), run(True), run(True)
    np.testing.assert_array_equal(folded[1], again[1])
    np.testing.assert_allclose(folded[1], plain[1], atol=1e-4)  # rounding only
    single = load_ensemble(paths[:1])
    one = Predictor(single, single.meta, blending="constant", overlap=0.0, batch_size=4,
                    micro_batch=4, threshold=0.0, fold_bn=True).predict_array(vol)
    assert np.abs(one[1] - folded[1]).max() > 1e-3, "the second member changed nothing"
