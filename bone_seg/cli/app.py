"""The one place that turns a plain ``run(cfg)`` function into a Hydra command-line app.

Before any work, the command line is checked against ``conf/<config_name>.yaml`` composed once:
group choices (``model/net=segformer``, ``experiment=quick``) are composed by Hydra, then each
value override is applied to that config as Hydra applies it, which refuses a key that does not
exist (listing the valid keys at that level and the closest matches) or a value whose type differs
from the default's. Sweeps (``a=1,2``) are checked with their first value. Hydra then composes
the run's config as usual.
"""

from __future__ import annotations

import difflib
import logging
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from bone_seg.errors import BoneSegError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger(__name__)

# One id per process: run directories of concurrent runs started in the same second never collide.
_RUN_UID = secrets.token_hex(3)


def register_resolvers() -> None:
    """Register the OmegaConf resolvers our configs use (idempotent)."""
    if not OmegaConf.has_resolver("uid"):
        OmegaConf.register_new_resolver("uid", lambda: os.environ.get("BONE_SEG_RUN_UID", _RUN_UID))
    if not OmegaConf.has_resolver("scale"):
        # ${scale:n,f}: n * f rounded to an integer (sweeps shrink patch and batch sizes with it)
        OmegaConf.register_new_resolver("scale", lambda n, f: max(1, int(round(float(n) * f))))


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides, outside of a Hydra run (tests, tools).

    ``hydra:`` interpolations (job name, run directory) resolve as in a run of ``config_name``;
    the ``hydra`` node itself is left out of the result.
    """
    return _compose(config_name, overrides)[0]


def _compose(config_name: str, overrides: Sequence[str],
             groups_only: bool = False) -> tuple[DictConfig, list]:
    """The composed config and the value overrides left out of it (with ``groups_only``, every
    override that does not choose a config group option)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    values: list = []
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=config_name):
        if groups_only:
            loader = GlobalHydra.instance().config_loader()
            parsed = _parse(overrides)
            values = [o for o in parsed if not _is_group(loader, o)]
            overrides = [o.input_line for o in parsed if _is_group(loader, o)]
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, values


def _parse(overrides: Sequence[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def _is_group(loader: Any, override: Any) -> bool:
    """Whether an override chooses an option of a config group (``model/net=unet``)."""
    key = override.key_or_group
    if "." in key:
        return False
    parent, _, name = key.rpartition("/")
    return name in loader.list_groups(parent)


def first_values(args: Sequence[str]) -> list[str]:
    """Command-line overrides with sweeps replaced by their first choice (hydra.* left out)."""
    candidates = [a for a in args if not a.startswith("-") and "=" in a or a.startswith("~")]
    out = []
    for o in _parse(candidates):
        key = o.get_key_element()
        if o.key_or_group.startswith(("hydra.", "hydra/")) or o.key_or_group == "hydra":
            continue
        if o.is_sweep_override():
            values = getattr(o.value(), "list", None)
            if values:
                out.append(f"{key}={values[0]}")
        else:
            out.append(o.input_line)
    return out


def check_command_line(config_name: str, args: Sequence[str]) -> DictConfig:
    """The config the command line asks for, refusing unknown keys and wrongly typed values.

    The type expected is the one of the default (an integer stays an integer, a number a number,
    a list a list, a name a name, a count or a list); keys whose default is ``null`` take
    anything. Choices (architecture names, modes, loss names ...) are checked by the code that
    uses them, still before any work.

    Raises:
        BoneSegError: an unknown key or group option, or a value of the wrong type.
    """
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg, values = _compose(config_name, first_values(args), groups_only=True)
    except ConfigCompositionException as err:
        raise BoneSegError(str(err).split("\nConfig search path")[0]) from None
    for o in values:
        if "@" in o.key_or_group or o.is_delete():
            continue
        try:
            if o.is_add() or o.is_force_add():
                with open_dict(cfg):
                    OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True, force_add=True)
            else:
                _apply(cfg, o)
        except OmegaConfBaseException as err:
            raise BoneSegError(f"cannot apply {o.input_line}: {str(err).splitlines()[0]}") \
                from None
    return cfg


def _apply(cfg: DictConfig, override: Any) -> None:
    """Set one ``key=value`` as Hydra does (struct mode: the key must exist), checking its type."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key, value = override.key_or_group, override.value()
    old = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except (ConfigAttributeError, ConfigKeyError) as err:
        raise _unknown_key(cfg, getattr(err, "full_key", None) or key) from None
    new = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    if not _accepts(old, new):
        raise BoneSegError(
            f"{key}={value!r}: expected {_kind(old)[1]} (the default is "
            f"{OmegaConf.to_container(old) if OmegaConf.is_config(old) else old!r})"
        )


def _unknown_key(cfg: DictConfig, full_key: str) -> BoneSegError:
    """Hydra's own message says only that the key is not in the config; ours lists the keys
    that exist at that level and the closest matches."""
    parent, _, name = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    valid = sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(name, valid, n=3)
    hint = (f" Did you mean {', '.join(parent + '.' + c if parent else c for c in close)}?"
            if close else "")
    return BoneSegError(
        f"unknown config key '{full_key}'.{hint} Valid keys"
        f"{' under ' + parent if parent else ''}: {', '.join(valid)}. (To add a new key on "
        f"purpose, write +{full_key}=...)"
    )


_KINDS = ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
          (list, "a list like [a, b]"), (dict, "a mapping like {k: v}"))


def _kind(value: Any) -> tuple[type, str] | None:
    """The kind of a config value: bool before int (a bool is an int in Python)."""
    if isinstance(value, DictConfig):
        return dict, "a mapping like {k: v}"
    if OmegaConf.is_list(value):
        return list, "a list like [a, b]"
    return next(((t, d) for t, d in _KINDS if isinstance(value, t)), None)


def _accepts(old: Any, new: Any) -> bool:
    expected = _kind(old)
    if old is None or new is None or expected is None:
        return True
    if expected[0] is float:
        return isinstance(new, (int, float)) and not isinstance(new, bool)
    found = _kind(new)
    if expected[0] is str:
        # a name may also be a count or a list, as Lightning's devices ('auto' | 2 | [0, 1]) and
        # precision ('32-true' | 16); which names are valid is checked by the code that uses them
        return found is not None and found[0] in (str, int, list)
    return found is not None and found[0] is expected[0]


#: Deprecation notices of our dependencies on torch 2.14 that a user can do nothing about
#: (timm/smp call torch.jit at import; Lightning's pytree helper); matched by message only.
KNOWN_WARNINGS = (
    r"`torch\.jit\.(script|interface)` is deprecated",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def quiet_known_warnings() -> None:
    """Hide :data:`KNOWN_WARNINGS` on the terminal of an entry point (library use keeps them)."""
    import warnings

    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def hydra_main(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Wrap ``run`` as a console entry point composing ``conf/<config_name>.yaml``.

    Unknown keys are refused before any work with the list of valid keys; a
    :class:`BoneSegError` becomes one line on stderr (and in the run's log) and exit status 2.
    """

    def main() -> Any:
        register_resolvers()
        quiet_known_warnings()
        # ImageNet weights are used only from the local cache: never wait on the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            check_command_line(config_name, sys.argv[1:])
        except BoneSegError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)

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
