"""The command line checked against the config it asks for, before any work.

Group choices (``model/net=segformer``, ``experiment=quick``) are composed by Hydra, then each
value override is applied to that config as Hydra applies it, which refuses a key that does not
exist (listing the valid keys at that level and the closest keys or config groups) or a value
whose type differs from the default's. Sweeps (``a=1,2``) are checked with their first value.
Values a command cannot run without (``???`` in its config) must be given.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from bone_seg.cli.compose import compose, parse
from bone_seg.errors import BoneSegError


def first_values(args: Sequence[str]) -> list[str]:
    """Command-line overrides with sweeps replaced by their first choice (hydra.* left out)."""
    candidates = [a for a in args if not a.startswith("-") and "=" in a or a.startswith("~")]
    out = []
    for o in parse(candidates):
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


def check_command_line(config_name: str, args: Sequence[str],
                       require_values: bool = False) -> DictConfig:
    """The config the command line asks for, refusing unknown keys and wrongly typed values.

    The type expected is the one of the default (an integer stays an integer, a number a number,
    a list a list, a name a name, a count or a list); keys whose default is ``null`` take
    anything. Choices (architecture names, modes, loss names ...) are checked by the code that
    uses them, still before any work.

    Args:
        config_name: the command's config (``fit``).
        args: the command line after the program name.
        require_values: also refuse the command line when it leaves a mandatory value (``???``)
            unset.

    Raises:
        BoneSegError: an unknown key or group option, a value of the wrong type, or a missing
            mandatory value.
    """
    from hydra.errors import ConfigCompositionException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg, values, groups = compose(config_name, first_values(args), groups_only=True)
    except ConfigCompositionException as err:
        raise BoneSegError(str(err).split("\nConfig search path")[0]) from None
    except OverrideParseException as err:
        raise BoneSegError(f"cannot read the command line: {str(err).splitlines()[0]} (quote "
                           "values holding spaces or <>|&; characters: key='a value')") from None
    for o in values:
        if "@" in o.key_or_group or o.is_delete():
            continue
        try:
            if o.is_add() or o.is_force_add():
                with open_dict(cfg):
                    OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True, force_add=True)
            else:
                _apply(cfg, o, groups)
        except OmegaConfBaseException as err:
            raise BoneSegError(f"cannot apply {o.input_line}: {str(err).splitlines()[0]}") \
                from None
    if require_values:
        check_mandatory(config_name, cfg)
    return cfg


def check_mandatory(config_name: str, cfg: DictConfig) -> None:
    """Refuse a config whose mandatory values (``???``) are not set, naming each key and an
    example command line from the command's ``--help``."""
    from bone_seg.cli.help import examples

    missing = sorted(OmegaConf.missing_keys(cfg))
    if not missing:
        return
    command = f"bone-{config_name}"
    wanted = [e for e in examples(config_name) if all(f"{k}=" in e for k in missing)]
    hint = f"; e.g. {wanted[0].split('  ')[0]}" if wanted else ""
    keys = " and ".join(f"{k}=..." for k in missing)
    raise BoneSegError(f"{command} needs {keys} (no default){hint}; see {command} --help")


def _apply(cfg: DictConfig, override: Any, groups: list[str]) -> None:
    """Set one ``key=value`` as Hydra does (struct mode: the key must exist), checking its type."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key, value = override.key_or_group, override.value()
    if "/" in key:  # a config group that does not exist (a real one was composed already)
        raise _unknown_key(cfg, key, value, groups)
    old = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except (ConfigAttributeError, ConfigKeyError) as err:
        raise _unknown_key(cfg, getattr(err, "full_key", None) or key, value, groups) from None
    new = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    if not _accepts(old, new):
        raise BoneSegError(
            f"{key}={value!r}: expected {_kind(old)[1]} (the default is "
            f"{OmegaConf.to_container(old) if OmegaConf.is_config(old) else old!r})"
        )


def _unknown_key(cfg: DictConfig, full_key: str, value: Any, groups: list[str]) -> BoneSegError:
    """Hydra's own message says only that the key is not in the config; ours lists the keys
    that exist at that level and the closest keys or config groups (``experment=quick``: did you
    mean ``experiment=quick``?)."""
    parent, _, name = full_key.replace("/", ".").rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    valid = sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []
    close_groups = difflib.get_close_matches(full_key, groups, n=2, cutoff=0.8)
    close = [parent + "." + c if parent else c for c in difflib.get_close_matches(name, valid, n=3)]
    close = [c for c in close if c.replace(".", "/") not in close_groups]
    suggestions = [f"{g}={value}" for g in close_groups] + close
    hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
    group_list = f" Config groups: {', '.join(groups)}." if groups and not parent else ""
    return BoneSegError(
        f"unknown config key '{full_key}'.{hint} Valid keys"
        f"{' under ' + parent if parent else ''}: {', '.join(valid)}.{group_list} (To add a new "
        f"key on purpose, write +{full_key}=...)"
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
