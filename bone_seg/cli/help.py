"""``bone-<command> --help``: what the command does, examples, and the groups and keys to change.

Everything comes from the command's own YAML (``conf/<command>.yaml``): its header comment
(the first line says what the command does, the indented ``bone-…`` lines are the examples), its
defaults list (the config groups, with the options found in their folders) and its keys with their
comments. Nothing is composed and nothing outside ``conf`` is read, so the help costs a
few small files and no import of torch, Lightning or MLflow.
"""

from __future__ import annotations

import re
from pathlib import Path

from bone_seg.cli.compose import CONF_DIR

_EXAMPLE = re.compile(r"^\s{2,}(bone-\S+.*)$")
_HIDDEN_KEYS = ("_target_", "_convert_", "_partial_", "_recursive_", "defaults")


def _header(config_name: str) -> list[str]:
    """The comment lines at the top of the command's YAML, without their ``#``."""
    lines = []
    for line in (CONF_DIR / f"{config_name}.yaml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return lines


def examples(config_name: str) -> list[str]:
    """The example command lines of the command's YAML header (with their explanations)."""
    return [m.group(1).rstrip() for line in _header(config_name) if (m := _EXAMPLE.match(line))]


def _body(config_name: str) -> list[str]:
    """The command's own keys: its YAML without the header, the defaults list and ``hydra:``."""
    out, skipping = [], True
    for line in (CONF_DIR / f"{config_name}.yaml").read_text(encoding="utf-8").splitlines():
        top = bool(line) and not line[0].isspace() and not line.startswith(("-", "#"))
        if top:
            skipping = line.startswith(("defaults:", "hydra:"))
        if not skipping and (out or line.strip()):
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def _defaults(yaml: Path) -> list[tuple[str, str | None]]:
    """``(group, default option)`` of a YAML's defaults list (Hydra's own group left out)."""
    from omegaconf import OmegaConf

    entries = OmegaConf.load(yaml).get("defaults", []) if yaml.is_file() else []
    out = []
    for entry in entries:
        if not hasattr(entry, "items"):
            continue
        for group, option in entry.items():
            if group != "hydra" and not str(group).startswith("override"):
                out.append((str(group), None if option is None else str(option)))
    return out


def _options(group: str) -> list[str]:
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _group_keys(group: str, option: str | None) -> list[str]:
    """The top-level keys of a group's default option (what ``<group>.<key>=`` can change)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / group / f"{option}.yaml"
    if option is None or not path.is_file() or path.read_text().startswith("# @package _global_"):
        return []
    return [str(k) for k in OmegaConf.load(path) if str(k) not in _HIDDEN_KEYS]


def _group_lines(config_name: str) -> tuple[list[str], list[str]]:
    """The lines of the groups section and of the groups' keys."""
    groups, keys = [], []
    for entry, option in _defaults(CONF_DIR / f"{config_name}.yaml"):
        group, _, package = entry.partition("@")  # morphometry@morpho_settings: under that key
        option_yaml = CONF_DIR / group / f"{option}.yaml"
        nested = [(f"{group}/{sub}", choice) for sub, choice in _defaults(option_yaml)]
        for name, default in [(group, option), *nested]:
            shown = [f"[{o}]" if o == default else o for o in _options(name)]
            note = "" if default is not None else "   (none by default)"
            if name == "sweeps":
                note = "   (with -m: a multirun)"
            if package and name == group:
                note += f"   (as {package}.<key>)"
            groups.append(f"  {name:<15} {', '.join(shown)}{note}")
        if group == "sweeps":
            groups.append(f"  {'hydra/launcher':<15} {', '.join(_options('hydra/launcher'))}"
                          "   (with -m: how the runs are started)")
        for name, default in [(group, option), *nested]:
            names = _group_keys(name, default)
            if names:
                keys.append(f"  {name.replace('/', '.')}.<key>: {', '.join(names)}")
    return groups, keys


def help_text(config_name: str) -> str:
    """The ``--help`` text of ``bone-<config_name>``."""
    command = f"bone-{config_name}"
    header = _header(config_name)
    first = next((i for i, line in enumerate(header) if _EXAMPLE.match(line)), len(header))
    description = [line for line in header[:first] if line.strip()]
    notes = [line for line in header[first:] if line.strip() and not _EXAMPLE.match(line)]
    groups, group_keys = _group_lines(config_name)
    parts = [*description, "", "Examples:", *(f"  {e}" for e in examples(config_name))]
    if notes:
        parts += ["", *notes]
    if groups:
        parts += ["", "Config groups (group=option; [default]):", *groups]
    parts += ["", f"Keys (key=value; the defaults of {_relative(config_name)}):",
              *(f"  {line}" for line in _body(config_name))]
    if group_keys:
        parts += ["", "Keys of the groups (group.key=value):", *group_keys]
    parts += ["", f"The whole composed configuration: {command} --cfg job [overrides]. "
              f"Hydra's own options: {command} --hydra-help."]
    return "\n".join(parts) + "\n"


def _relative(config_name: str) -> str:
    return str(Path("bone_seg") / "conf" / f"{config_name}.yaml")
