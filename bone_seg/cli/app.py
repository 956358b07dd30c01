"""The one place that turns a workflow's ``run(cfg)`` into a Hydra command-line app.

``--help`` is answered from the command's YAML alone (:mod:`bone_seg.cli.help`). Any other command
line is first checked against ``conf/<config_name>.yaml`` composed once
(:mod:`bone_seg.cli.checks`: unknown keys and groups, wrongly typed and missing values), then Hydra
composes the run's config as usual and the workflow module is imported only then, so that a refused
command line or a help costs no import of torch or Lightning. A :class:`BoneSegError` (also one
raised inside Hydra's ``instantiate``) becomes one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from bone_seg.cli.checks import check_command_line, first_values
from bone_seg.cli.compose import CONF_DIR, compose_config, register_resolvers
from bone_seg.cli.terminal import quiet_known_warnings, tidy_library_logging
from bone_seg.errors import BoneSegError

__all__ = ["CONF_DIR", "check_command_line", "compose_config", "first_values", "hydra_main",
           "register_resolvers"]

log = logging.getLogger(__name__)

#: Hydra flags that print something instead of running the command (no value is required)
_NO_RUN_FLAGS = ("--cfg", "-c", "--info", "-i", "--hydra-help", "--shell-completion", "-sc")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: set by the one-process-per-job launcher: where a sweep job writes its return value
RETURN_FILE_ENV = "BONE_SEG_RETURN_FILE"


def bone_seg_error(err: BaseException) -> BoneSegError | None:
    """The :class:`BoneSegError` behind ``err``: itself, or the cause Hydra's ``instantiate``
    (or any other wrapper) chained it to."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, BoneSegError):
            return unwrap_worker_error(err)
        seen.add(id(err))
        err = err.__cause__ if err.__cause__ is not None or err.__suppress_context__ \
            else err.__context__
    return None


def unwrap_worker_error(err: BoneSegError) -> BoneSegError:
    """``err`` with its own message again when a worker process raised it: a PyTorch DataLoader
    re-raises a worker's exception as the same type whose message is the worker's whole traceback
    (``Caught X in DataLoader worker process 0. Original Traceback ...``); the message is its
    last line(s), after ``module.X: ``."""
    text = str(err)
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return err
    cls = type(err)
    prefixes = (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: ")
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        for prefix in prefixes:
            if lines[i].startswith(prefix):
                return cls("\n".join([lines[i][len(prefix):], *lines[i + 1:]]).strip())
    return err


def apply_threads(threads: Any) -> None:
    """``threads=<n>``: CPU threads of this process and of the processes it starts (torch's
    intra-op threads, OpenMP, BLAS); ``null`` leaves the defaults (or what a sweep launcher set).
    """
    if threads is None:
        return
    from bone_seg.errors import positive_int

    n = positive_int(threads, "threads")
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def hand_back(value: Any) -> Any:
    """A sweep job's return value, also written where its launcher reads it (as JSON, by the
    first process only: DDP's other ranks rerun the same command line), for a sweeper that
    optimises it (hydra_plugins/bone_seg_plugins/subprocess_launcher.py)."""
    path = os.environ.get(RETURN_FILE_ENV)
    ranks = (os.environ.get(k, "0") for k in ("LOCAL_RANK", "NODE_RANK", "RANK"))
    if path and all(r == "0" for r in ranks):
        import json

        from bone_seg.atomic import write_text_atomic

        write_text_atomic(path, json.dumps(value, default=_plain) + "\n")
    return value


def _plain(value: Any) -> Any:
    """A return value's JSON form: a record's own (``to_dict``, e.g. a prediction report), else
    its text."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else str(value)


def _load(target: str | Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """The workflow's ``run``: ``"bone_seg.workflows.fit"`` is imported only when needed."""
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name or "run")


def _fail(err: BoneSegError, logger: logging.Logger | None = None) -> None:
    if logger is not None:
        logger.error("error: %s", err)
    else:
        print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(2)


def hydra_main(config_name: str,
               run: str | Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Wrap ``run`` (a callable, or the module holding ``run`` as ``"bone_seg.workflows.fit"``) as
    a console entry point composing ``conf/<config_name>.yaml``.

    Unknown keys are refused before any work with the list of valid keys; a
    :class:`BoneSegError` becomes one line on stderr (and in the run's log) and exit status 2.
    """

    def main() -> Any:
        args = sys.argv[1:]
        if "--help" in args or "-h" in args:
            from bone_seg.cli.help import help_text

            print(help_text(config_name), end="", flush=True)
            return None
        import hydra

        register_resolvers()
        quiet_known_warnings()
        # ImageNet weights are used only from the local cache: never wait on the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            check_command_line(config_name, args,
                               require_values=not any(a in _NO_RUN_FLAGS for a in args))
        except BoneSegError as err:
            _fail(err)

        @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
        def task(cfg: DictConfig) -> Any:
            try:
                apply_threads(cfg.get("threads"))
                workflow = _load(run)
                tidy_library_logging()
                return hand_back(workflow(cfg))
            except Exception as err:
                found = bone_seg_error(err)
                if found is None:
                    raise
                _fail(found, log)

        return task()

    return main
