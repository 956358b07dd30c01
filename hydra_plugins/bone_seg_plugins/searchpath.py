"""Adds the project folder to Hydra's search path, so the sweeps in ``sweeps/`` are a config group:
``bone-fit -m sweeps=cv`` (each sweep file says at its top what it runs)."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

PROJECT = Path(__file__).resolve().parents[2]


class BoneSegSearchPath(SearchPathPlugin):
    """The project folder after ``conf/``: its ``sweeps/`` folder is the group ``sweeps``."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Append the project folder when it holds ``sweeps/``."""
        if (PROJECT / "sweeps").is_dir():
            search_path.append("bone_seg", f"file://{PROJECT}")
