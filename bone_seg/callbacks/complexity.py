"""Model complexity (FLOPs and parameters) with fvcore, as BONe's DLFit profiles it.

BONe counts FLOPs with fvcore's ``FlopCountAnalysis`` on one batch of the training set (the ``F``
of its weighted ranking, paper section 2.5.3) and parameters with ``parameter_count_table``. We
use the same library, so the numbers are comparable with the paper.

Counting convention: fvcore counts **one fused multiply-add as one flop** (it reports MACs: a
``Conv2d`` with ``C_in * k * k`` weights per output value costs ``C_in * k * k`` flops per output
value, the bias is not counted). Element-wise ops (ReLU, additions) are ignored by design; ops
fvcore has no formula for are *unsupported* and count 0; we count them and report how many.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.seed import isolate_rng
from torch import nn

from bone_seg.tracking import records

_INPUT_KEYS = ("image", "images", "x", "input", "inputs")


@contextlib.contextmanager
def quiet_fvcore() -> Iterator[None]:
    """Silence what fvcore triggers on torch 2.x, matched by message/category only.

    The ``torch.jit`` deprecation ``FutureWarning`` (raised when fvcore is imported and when it
    traces) and tracer warnings about data-dependent Python values.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning
        )
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def count_parameters(net: nn.Module) -> tuple[int, int]:
    """Total and trainable parameter counts (shared parameters counted once).

    Args:
        net: The network.

    Returns:
        ``(total, trainable)``.
    """
    params = list(net.parameters())  # de-duplicates shared parameters
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def parameter_table(net: nn.Module, max_depth: int = 3) -> str:
    """fvcore's ``parameter_count_table`` of ``net`` (a Markdown table)."""
    with quiet_fvcore():
        from fvcore.nn import parameter_count_table

        return parameter_count_table(net, max_depth=max_depth)


def count_flops(net: nn.Module, inputs: torch.Tensor) -> tuple[int, Counter[str]]:
    """FLOPs of one forward pass of ``net`` on ``inputs`` (fvcore convention: 1 MAC = 1 flop).

    The network is traced as it is (call it in eval mode under ``torch.no_grad``; see
    :class:`ModelComplexity`). fvcore's warnings are silenced; the unsupported ops are returned.

    Args:
        net: The network.
        inputs: One input tensor (the whole batch as it reaches ``net.forward``).

    Returns:
        ``(flops, unsupported_ops)``: the total and a counter of unsupported op names.
    """
    with quiet_fvcore():
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(net, (inputs,))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        total = int(analysis.total())
        return total, Counter(analysis.unsupported_ops())


def find_input(batch: Any, key: str | int | None = None) -> torch.Tensor:
    """The network input in a batch.

    Args:
        batch: A tensor, a dict or a tuple/list as the DataLoader yields it.
        key: Key/index of the input; default: the tensor itself, a dict's ``image``/``images``/
            ``x``/``input``/``inputs`` entry, or the first tensor of a tuple/list/dict.

    Returns:
        The input tensor.

    Raises:
        TypeError: If no tensor is found.
    """
    if key is not None:
        found = batch[key]
    elif isinstance(batch, torch.Tensor):
        found = batch
    elif isinstance(batch, Mapping):
        named = [batch[k] for k in _INPUT_KEYS if k in batch]
        candidates = named + list(batch.values())
        found = next((c for c in candidates if isinstance(c, torch.Tensor)), None)
    elif isinstance(batch, list | tuple):
        found = next((c for c in batch if isinstance(c, torch.Tensor)), None)
    else:
        found = None
    if not isinstance(found, torch.Tensor):
        raise TypeError(
            f"ModelComplexity: no input tensor found in a batch of type {type(batch).__name__}; "
            "set input_key to the key/index of the images in the batch"
        )
    return found


class ModelComplexity(pl.Callback):
    """Log FLOPs (one patch, one batch) and parameter counts of the model's network.

    At fit start: parameter counts (total, trainable), logged, and fvcore's parameter table written
    to the run's log. At the first training batch (so the input shape is that of a real batch, for
    2D ``(B, C, H, W)``, 2.5D and 3D ``(B, C, D, H, W)`` data alike): FLOPs of one forward pass
    on the first sample (``flops_patch``) and on the whole batch (``flops_batch``, BONe's ``F``),
    counted in eval mode without gradients and with the RNG state isolated (so reproducible runs
    stay bitwise identical); each module's train/eval mode is restored afterwards.

    Logged metrics (measurements; step = global step at the time): ``complexity/params``,
    ``complexity/params_trainable``, ``complexity/flops_patch``, ``complexity/flops_batch``.
    Logged params (facts of the run, in the config's dotted style): ``complexity.input_shape``,
    ``complexity.unsupported_ops`` (``aten::add_ x8, ...``: the ops fvcore counts as 0). The batch
    size is the param ``data.batch_size``.

    "One batch" is the batch one process sees (with DDP, the per-device batch).

    Distributed runs: FLOPs are counted on global rank 0 only; counting uses no collective (the
    unwrapped network in eval mode, where SyncBatchNorm does not synchronise), so other ranks
    simply wait at their first gradient all-reduce and nothing can deadlock.

    If tracing fails (an op fvcore's tracer cannot handle), a warning is logged, the FLOP values
    stay ``None`` and training continues.

    Counting happens inside the first epoch; the seconds it took are published as
    ``fit_overhead_s``, which :class:`~bone_seg.callbacks.resources.ResourceMonitorCallback` and
    :class:`~bone_seg.callbacks.epoch_log.EpochLog` subtract from the fitting and epoch times (BONe
    profiles the model before its fitting loop).

    Args:
        net_attr: Attribute of the LightningModule holding the network (falls back to the
            LightningModule itself when absent).
        input_key: Key/index of the input in a batch (default: see :func:`find_input`).
        table_max_depth: Depth of fvcore's parameter table.
        logger_name: Python logger the table and results are written to.

    Attributes:
        results: ``{"params", "params_trainable", "flops_patch", "flops_batch", "batch_size",
            "input_shape", "unsupported_ops" (name -> count), "unsupported_ops_count"}``, or
            ``None`` before the fit starts.
        fit_overhead_s: Seconds spent counting inside the fitting loop (this fit).
    """

    def __init__(
        self,
        net_attr: str = "net",
        input_key: str | int | None = None,
        table_max_depth: int = 3,
        logger_name: str = "bone_seg.fit",
    ) -> None:
        self.net_attr = net_attr
        self.input_key = input_key
        self.table_max_depth = table_max_depth
        self._log_to = logging.getLogger(logger_name)
        self.results: dict[str, Any] | None = None
        self.fit_overhead_s = 0.0
        self._flops_done = False

    def _net(self, pl_module: pl.LightningModule) -> nn.Module:
        net = getattr(pl_module, self.net_attr, None)
        return net if isinstance(net, nn.Module) else pl_module

    @staticmethod
    def _log_metrics(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Count parameters, log them and write fvcore's parameter table to the log."""
        net = self._net(pl_module)
        total, trainable = count_parameters(net)
        self.results = {
            "params": total,
            "params_trainable": trainable,
            "flops_patch": None,
            "flops_batch": None,
            "batch_size": None,
            "input_shape": None,
            "unsupported_ops": {},
            "unsupported_ops_count": 0,
        }
        self._flops_done = False
        self.fit_overhead_s = 0.0
        if not trainer.is_global_zero:
            return
        self._log_metrics(
            trainer, {records.PARAMS: total, "complexity/params_trainable": trainable}
        )
        self._log_to.info("Model parameters: %d (%d trainable)", total, trainable)
        self._log_to.debug(
            "fvcore parameter_count_table:\n%s", parameter_table(net, self.table_max_depth)
        )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """On the first training batch of the fit: count FLOPs for one patch and one batch."""
        if self._flops_done:
            return
        self._flops_done = True
        if not trainer.is_global_zero or self.results is None:
            return
        t0 = time.perf_counter()
        try:
            self._count_flops(trainer, pl_module, batch)
        finally:
            self.fit_overhead_s += time.perf_counter() - t0

    def _count_flops(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any) -> None:
        try:
            x = find_input(batch, self.input_key)
        except (TypeError, KeyError, IndexError) as exc:
            self._log_to.warning("FLOPs not counted: %s", exc)
            return
        net = self._net(pl_module)
        weight = next((p for p in net.parameters() if p.is_floating_point()), None)
        if weight is not None and x.is_floating_point() and x.dtype != weight.dtype:
            x = x.to(weight.dtype)  # "true" half precision: the step casts the batch the same way
        modes = {m: m.training for m in net.modules()}
        net.eval()
        try:
            with torch.no_grad(), isolate_rng():
                flops_patch, unsupported = count_flops(net, x[:1])
                flops_batch, _ = count_flops(net, x)
        except Exception as exc:  # a tracer failure must not stop the training
            self._log_to.warning("FLOPs not counted: fvcore could not trace the network: %s", exc)
            return
        finally:
            for module, training in modes.items():
                module.training = training
        batch_size = int(x.shape[0])
        self.results.update(
            flops_patch=flops_patch,
            flops_batch=flops_batch,
            batch_size=batch_size,
            input_shape=tuple(int(s) for s in x.shape),
            unsupported_ops=dict(unsupported),
            unsupported_ops_count=int(sum(unsupported.values())),
        )
        self._log_metrics(
            trainer,
            {
                "complexity/flops_patch": flops_patch,
                records.FLOPS: flops_batch,
            },
        )
        names = ", ".join(f"{k} x{v}" for k, v in sorted(unsupported.items())) or "none"
        for logger in trainer.loggers:
            logger.log_hyperparams(
                {
                    "complexity.input_shape": "x".join(map(str, x.shape)),
                    "complexity.unsupported_ops": names[:500],
                }
            )
        self._log_to.info(
            "Model FLOPs (fvcore, 1 multiply-add = 1 flop): %.4g per patch, %.4g per batch of %d "
            "(input %s); unsupported ops (counted as 0): %s",
            flops_patch,
            flops_batch,
            batch_size,
            tuple(x.shape),
            names,
        )
