"""ModelComplexity: fvcore FLOPs per patch and per batch, parameter counts, logging."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import pytest
import torch
from callbacks_tiny_fit import TinySeg, capture, conv_flops, loaders, trainer
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from bone_seg.callbacks.complexity import ModelComplexity, count_flops, find_input


def test_fvcore_convention_one_multiply_add_is_one_flop():
    conv = nn.Conv2d(3, 5, kernel_size=3, padding=1, bias=True)
    x = torch.randn(1, 3, 7, 9)
    flops, unsupported = count_flops(conv, x)
    # per output value: in_channels * 3 * 3 multiply-adds; the bias is not counted
    assert flops == 5 * 7 * 9 * 3 * 3 * 3
    assert not unsupported


def test_flops_batch_is_batch_size_times_patch_and_equals_hand_count(tiny_fit):
    r = tiny_fit.complexity.results
    spatial = tiny_fit.image_shape[1:]
    assert r["batch_size"] == tiny_fit.batch_size
    assert r["input_shape"] == (tiny_fit.batch_size, *tiny_fit.image_shape)
    assert r["flops_patch"] == conv_flops(tiny_fit.module.net, spatial)
    assert r["flops_batch"] == tiny_fit.batch_size * r["flops_patch"]
    assert r["unsupported_ops_count"] == 0


def test_params_are_the_tensor_element_counts(tiny_fit):
    r = tiny_fit.complexity.results
    assert r["params"] == sum(p.numel() for p in tiny_fit.module.net.parameters())
    assert r["params_trainable"] == r["params"]


def test_complexity_is_logged_to_every_logger(tiny_fit):
    r = tiny_fit.complexity.results
    keys = ("flops_patch", "flops_batch", "params", "params_trainable")
    csv_values = {}
    for row in tiny_fit.csv_metrics():
        for key in keys:
            if row.get(f"complexity/{key}"):
                csv_values[key] = float(row[f"complexity/{key}"])
    assert csv_values == {k: float(r[k]) for k in keys}
    run = tiny_fit.mlflow_run()
    for key in keys:
        assert run.data.metrics[f"complexity/{key}"] == float(r[key])
    assert run.data.params["complexity.input_shape"] == "x".join(map(str, r["input_shape"]))
    # the batch size is a setting (data.batch_size) and unsupported ops a fact: no metrics
    assert run.data.params["complexity.unsupported_ops"]
    assert not {"complexity/batch_size", "complexity/unsupported_ops"} & set(run.data.metrics)


def test_parameter_table_is_in_the_log_and_fvcore_is_quiet(tiny_fit):
    text = "\n".join(tiny_fit.log_messages)
    assert "#elements or shape" in text  # fvcore's parameter_count_table
    assert f"Model parameters: {tiny_fit.complexity.results['params']}" in text
    assert "per batch of" in text
    assert not [m for m in tiny_fit.fvcore_messages if "nsupported" in m]
    assert not [w for w in tiny_fit.warnings if "torch.jit" in w or "fvcore" in w]


def test_3d_input_with_an_unsupported_op_and_frozen_parameters(tmp_path):
    net = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.Softmax(dim=1))
    net[0].bias.requires_grad_(False)
    callback = ModelComplexity()
    image_shape, batch_size = (1, 8, 8, 8), 2
    train, val = loaders(image_shape, n_items=4, batch_size=batch_size)
    fvcore_records, undo = capture("fvcore", logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer(
                str(tmp_path), [callback], CSVLogger(str(tmp_path)), max_epochs=1,
                limit_train_batches=1, limit_val_batches=0,
            ).fit(TinySeg(net), train, val)
    finally:
        undo()
    r = callback.results
    assert r["flops_patch"] == conv_flops(net, image_shape[1:])
    assert r["flops_batch"] == batch_size * r["flops_patch"]
    assert r["unsupported_ops"] == {"aten::softmax": 1}
    assert r["unsupported_ops_count"] == 1
    assert r["params"] == sum(p.numel() for p in net.parameters())
    assert r["params_trainable"] == r["params"] - net[0].bias.numel()
    # silenced: neither fvcore's logging nor Python warnings about it
    assert not [m for m in fvcore_records.messages if "nsupported" in m]
    assert not [str(w.message) for w in caught if "torch.jit" in str(w.message)]


class _Stub:
    """The few Trainer attributes the callback reads."""

    def __init__(self, rank_zero: bool = True) -> None:
        self.is_global_zero = rank_zero
        self.loggers: list = []
        self.global_step = 0


def _module_with_frozen_bn() -> nn.Module:
    module = nn.Module()
    module.net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Dropout(0.5), nn.Conv2d(2, 3, 1)
    )
    module.net.train()
    module.net[1].eval()  # a frozen batch norm stays in eval mode
    return module


def test_modes_rng_and_running_stats_are_untouched():
    module = _module_with_frozen_bn()
    modes = {name: m.training for name, m in module.net.named_modules()}
    stats = module.net[1].running_mean.clone()
    callback = ModelComplexity()
    trainer_stub = _Stub()
    callback.on_fit_start(trainer_stub, module)
    batch = {"image": torch.randn(3, 1, 8, 8)}
    rng = torch.get_rng_state()
    callback.on_train_batch_start(trainer_stub, module, batch, 0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert {name: m.training for name, m in module.net.named_modules()} == modes
    assert torch.equal(module.net[1].running_mean, stats)
    assert callback.results["flops_batch"] == 3 * callback.results["flops_patch"] > 0
    assert callback.fit_overhead_s > 0
    # once per fit only
    callback.results["flops_batch"] = -1
    callback.on_train_batch_start(trainer_stub, module, torch.randn(5, 1, 8, 8), 1)
    assert callback.results["flops_batch"] == -1


def test_other_ranks_do_not_count_flops():
    module = _module_with_frozen_bn()
    callback = ModelComplexity()
    stub = _Stub(rank_zero=False)
    callback.on_fit_start(stub, module)
    callback.on_train_batch_start(stub, module, torch.randn(2, 1, 8, 8), 0)
    assert callback.results["flops_batch"] is None
    assert callback.results["params"] == sum(p.numel() for p in module.net.parameters())


def test_batch_without_a_tensor_is_a_warning_not_a_crash(caplog):
    module = _module_with_frozen_bn()
    callback = ModelComplexity()
    stub = _Stub()
    callback.on_fit_start(stub, module)
    with caplog.at_level(logging.WARNING, logger="bone_seg.fit"):
        callback.on_train_batch_start(stub, module, {"names": ["a", "b"]}, 0)
    assert callback.results["flops_batch"] is None
    assert "input_key" in caplog.text


def test_find_input():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.zeros(2, 4, 4)
    assert find_input(x) is x
    assert find_input((x, y)) is x
    assert find_input({"mask": y, "image": x}) is x
    assert find_input({"a": "b", "data": x}) is x
    assert find_input({"other": y, "volume": x}, key="volume") is x
    with pytest.raises(TypeError, match="input_key"):
        find_input(SimpleNamespace())
