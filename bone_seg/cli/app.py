"""The one place that turns a plain ``run(cfg)`` function into a Hydra command-line app."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from bone_seg.errors import BoneSegError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger(__name__)

# One id per process: run directories of concurrent runs started in the same second never collide.
_RUN_UID = f"{secrets.token_hex(3)}"


def register_resolvers() -> None:
    """Register the OmegaConf resolvers our configs use (idempotent)."""
    if not OmegaConf.has_resolver("uid"):
        OmegaConf.register_new_resolver("uid", lambda: os.environ.get("BONE_SEG_RUN_UID", _RUN_UID))


def hydra_main(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Wrap ``run`` as a console entry point composing ``conf/<config_name>.yaml``.

    A :class:`BoneSegError` becomes one line on stderr (and in the run's log) and exit status 2.
    """

    def main() -> Any:
        register_resolvers()

        @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
        def task(cfg: DictConfig) -> Any:
            try:
                return run(cfg)
            except BoneSegError as err:
                log.error("error: %s", err)
                sys.exit(2)

        return task()

    main.__doc__ = run.__doc__
    return main
