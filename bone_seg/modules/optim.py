"""Optimisers and learning-rate schedules from plain config dicts.

Optimisers: ``adam`` (BONe's default), ``adamw``, ``sgd``; keys ``lr``, ``weight_decay``,
``betas``/``eps``/``amsgrad`` (Adam, AdamW), ``momentum``/``nesterov``/``dampening`` (SGD),
``foreach``/``fused`` (torch's multi-tensor and fused kernels; null: torch's default).
Keys that do not apply to the chosen optimiser are ignored, so one config can switch optimiser
by name.

Schedules:

- ``cosine``: one cosine cycle from ``lr`` down to ``eta_min`` (1e-6) without restarts, stepped
  once per epoch (BONe's). ``T_max`` defaults to ``max_epochs - 1`` so that the last epoch trains at
  ``eta_min`` (with ``interval: step``, to the number of optimiser steps - 1).
- ``cosine_restarts``: :class:`~torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` with
  ``T_0`` (epochs, or steps with ``interval: step``) and ``T_mult``, down to ``eta_min``.
- ``none``: constant learning rate.

Either may instead be a class path with its arguments, as lightning-hydra-template writes them
(``_partial_: true`` is accepted and implied: the parameters, the optimiser, are added here)::

    optimizer: {_target_: torch.optim.RAdam, lr: 1.0e-3}
    scheduler: {_target_: torch.optim.lr_scheduler.StepLR, step_size: 5, interval: epoch}

A scheduler's ``interval`` (``epoch`` | ``step``) is Lightning's, not the class's; its null
options are dropped (the registered names' placeholders of the config).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, CosineAnnealingWarmRestarts, LRScheduler

from bone_seg.errors import BoneSegError

OPTIMIZERS: dict[str, tuple[type[Optimizer], tuple[str, ...]]] = {
    "adam": (torch.optim.Adam, ("lr", "weight_decay", "betas", "eps", "amsgrad", "foreach",
                                "fused")),
    "adamw": (torch.optim.AdamW, ("lr", "weight_decay", "betas", "eps", "amsgrad", "foreach",
                                  "fused")),
    "sgd": (torch.optim.SGD, ("lr", "weight_decay", "momentum", "nesterov", "dampening",
                              "foreach", "fused")),
}
SCHEDULERS = ("cosine", "cosine_restarts", "none")
SCHEDULER_KEYS = ("name", "eta_min", "interval", "T_max", "T_0", "T_mult")
INTERVALS = ("epoch", "step")
DEFAULT_ETA_MIN = 1e-6


def _name(cfg: Mapping[str, Any], valid: Iterable[str], key: str, default: str) -> str:
    name = str(cfg.get("name") or default).strip().lower()
    if name not in valid:
        raise BoneSegError(f"{key}.name={cfg.get('name')!r} is not known; valid: "
                           f"{', '.join(valid)}")
    return name


def _plain(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of a config, without the ``_target_``/``_partial_`` placeholders when unset."""
    cfg = dict(cfg or {})
    if cfg.get("_target_") is None:
        cfg.pop("_target_", None)
        cfg.pop("_partial_", None)
    return cfg


def _target(cfg: Mapping[str, Any], key: str, first: Any, ignorable: Iterable[str]) -> Any:
    """``<_target_ class>(first, **options)`` of a config.

    Null options and ``name`` are dropped, and so are the keys of the registered names
    (``ignorable``: the config's defaults, e.g. ``momentum``) that the class does not take, as
    for the names; any other key the class does not take is refused by it.
    """
    import inspect

    from bone_seg.networks.target import call, locate

    target = cfg["_target_"]
    factory = locate(target, f"{key}._target_")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    options = {k: v for k, v in cfg.items()
               if k not in ("_target_", "_partial_", "name") and v is not None
               and (takes_any or k in params or k not in set(ignorable))}
    if isinstance(options.get("betas"), list):
        options["betas"] = tuple(float(b) for b in options["betas"])
    return call(factory, options, f"{key}._target_={target}", first)


def build_optimizer(params: Iterable[torch.nn.Parameter],
                    cfg: Mapping[str, Any] | None) -> Optimizer:
    """The optimiser of a ``model.optimizer`` config over ``params``.

    Raises:
        BoneSegError: unknown name or key, or values torch refuses.
    """
    cfg = _plain(cfg)
    params = [p for p in params if p.requires_grad]
    if not params:
        raise BoneSegError("model.optimizer: no trainable parameters (is everything frozen?)")
    if cfg.get("_target_") is not None:
        every = {k for _, keys in OPTIMIZERS.values() for k in keys}
        return _target(cfg, "model.optimizer", params, every)
    name = _name(cfg, OPTIMIZERS, "model.optimizer", "adam")
    cls, used = OPTIMIZERS[name]
    every = {"name"} | {k for _, keys in OPTIMIZERS.values() for k in keys}
    unknown = sorted(set(cfg) - every)
    if unknown:
        raise BoneSegError(f"model.optimizer has unknown key(s) {unknown}; valid: "
                           f"{', '.join(sorted(every))}")
    options = {k: cfg[k] for k in used if cfg.get(k) is not None}
    if "betas" in options:
        options["betas"] = tuple(float(b) for b in options["betas"])
    try:
        return cls(params, **options)
    except (ValueError, TypeError) as err:
        raise BoneSegError(f"model.optimizer {name} with {options}: {err}") from None


def build_scheduler(
    optimizer: Optimizer,
    cfg: Mapping[str, Any] | None,
    *,
    max_epochs: int | None,
    total_steps: int | None = None,
) -> dict[str, Any] | None:
    """The Lightning ``lr_scheduler`` dict of a ``model.scheduler`` config (None for ``none``).

    Args:
        optimizer: the optimiser to schedule.
        cfg: ``{"name", "eta_min", "interval", "T_max", "T_0", "T_mult"}``.
        max_epochs: the trainer's epoch count (for ``cosine`` per epoch).
        total_steps: the trainer's optimiser step count (for ``cosine`` per step).

    Raises:
        BoneSegError: unknown name/key/interval, or no length to derive ``T_max`` from.
    """
    cfg = _plain(cfg)
    if cfg.get("_target_") is not None:
        interval = str(cfg.pop("interval", None) or "epoch").lower()
        if interval not in INTERVALS:
            raise BoneSegError(f"model.scheduler.interval={interval!r}; valid: "
                               f"{', '.join(INTERVALS)}")
        scheduler = _target(cfg, "model.scheduler", optimizer, SCHEDULER_KEYS)
        return {"scheduler": scheduler, "interval": interval, "frequency": 1}
    unknown = sorted(set(cfg) - set(SCHEDULER_KEYS))
    if unknown:
        raise BoneSegError(f"model.scheduler has unknown key(s) {unknown}; valid: "
                           f"{', '.join(SCHEDULER_KEYS)}")
    name = _name(cfg, SCHEDULERS, "model.scheduler", "cosine")
    if name == "none":
        return None
    interval = str(cfg.get("interval") or "epoch").lower()
    if interval not in INTERVALS:
        raise BoneSegError(f"model.scheduler.interval={interval!r}; valid: {', '.join(INTERVALS)}")
    eta_min = float(cfg["eta_min"]) if cfg.get("eta_min") is not None else DEFAULT_ETA_MIN
    scheduler: LRScheduler
    if name == "cosine":
        t_max = cfg.get("T_max")
        if t_max is None:
            length = max_epochs if interval == "epoch" else total_steps
            if length is None or length < 1:
                raise BoneSegError(f"model.scheduler cosine per {interval} needs the run's "
                                   f"length: set trainer.max_epochs or model.scheduler.T_max")
            t_max = max(1, int(length) - 1)  # the last epoch/step then runs at eta_min
        scheduler = CosineAnnealingLR(optimizer, T_max=int(t_max), eta_min=eta_min)
    else:
        t_0 = int(cfg.get("T_0") or 10)
        t_mult = int(cfg.get("T_mult") or 1)
        if t_0 < 1 or t_mult < 1:
            raise BoneSegError(f"model.scheduler T_0={t_0}, T_mult={t_mult} must be >= 1")
        scheduler = CosineAnnealingWarmRestarts(optimizer, T_0=t_0, T_mult=t_mult,
                                                eta_min=eta_min)
    return {"scheduler": scheduler, "interval": interval, "frequency": 1}
