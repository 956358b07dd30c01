"""Where the configs live and how a command's config is composed outside of a Hydra run.

The configs live at the top of the source tree: ``conf/`` (one file per command, one folder per
group) and ``sweeps/`` (the multirun definitions, the ``sweeps`` group through the link
``conf/sweeps``). The package reaches them through the link ``bone_seg/conf -> ../conf``, which a
wheel turns into package data, so an editable install and a wheel read the same files, found with
:mod:`importlib.resources`. Hydra's search path holds this folder and Hydra's own
configs only: nothing else on disk is scanned.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict


def config_dir() -> Path:
    """The folder of the configs (``bone_seg/conf``: the link to ``conf/`` in the source tree,
    the files themselves in a wheel)."""
    return Path(str(files("bone_seg").joinpath("conf")))


CONF_DIR = config_dir()

# One id per process: run directories of concurrent runs started in the same second never collide.
_RUN_UID = secrets.token_hex(3)


def register_resolvers() -> None:
    """Register the OmegaConf resolvers our configs use (idempotent)."""
    if not OmegaConf.has_resolver("uid"):
        # cached as Hydra's ${now:}: a sweep's jobs on other machines (SLURM) get the sweep's
        # cache with its config, so they resolve the sweep's folder as the sweep did
        OmegaConf.register_new_resolver(
            "uid", lambda: os.environ.get("BONE_SEG_RUN_UID", _RUN_UID), use_cache=True)
    if not OmegaConf.has_resolver("scale"):
        # ${scale:n,f}: n * f rounded to an integer (sweeps shrink patch and batch sizes with it)
        OmegaConf.register_new_resolver("scale", lambda n, f: max(1, int(round(float(n) * f))))


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides, outside of a Hydra run (tests,
    tools).

    ``hydra:`` interpolations (job name, run directory) resolve as in a run of ``config_name``;
    the ``hydra`` node itself is left out of the result.
    """
    return compose(config_name, overrides)[0]


def compose(config_name: str, overrides: Sequence[str],
            groups_only: bool = False) -> tuple[DictConfig, list, list[str]]:
    """The composed config, the value overrides left out of it (with ``groups_only``, every
    override that does not choose a config group option) and the config groups of the command
    (``experiment``, ``model/net``, ...; Hydra's own left out)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    values: list = []
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=config_name):
        loader = GlobalHydra.instance().config_loader()
        if groups_only:
            parsed = parse(overrides)
            values = [o for o in parsed if not is_group(loader, o)]
            overrides = [o.input_line for o in parsed if is_group(loader, o)]
        cfg = hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    groups = sorted(g for g in cfg.hydra.runtime.choices if not g.startswith("hydra"))
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, values, groups


def search_path() -> list[str]:
    """The config search path Hydra uses for a command (``provider: path`` entries)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return [f"{e.provider}: {e.path}" for e in loader.get_search_path().get_path()]


def parse(overrides: Sequence[str]) -> list:
    """Hydra's parse of command-line overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def is_group(loader: Any, override: Any) -> bool:
    """Whether an override chooses an option of a config group (``model/net=unet``)."""
    key = override.key_or_group
    if "." in key:
        return False
    parent, _, name = key.rpartition("/")
    return name in loader.list_groups(parent)
