"""Where the code of a run came from: the git commit of the source tree, or the package version.

A run records ``mlflow.source.git.commit`` (MLflow's own tag, shown in the UI) when bone_seg runs
from a git checkout that tracks it (an editable install), with ``bone_seg.git_dirty`` saying
whether tracked files were changed; an installed wheel has no checkout, so only the version
(``bone_seg.version``) is recorded.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

from bone_seg.tracking import records

PACKAGE = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@functools.cache
def code_tags() -> dict[str, str]:
    """The run tags of the code: version, and commit and dirty flag from a checkout."""
    try:
        tags = {records.VERSION_TAG: metadata.version("bone-seg")}
    except metadata.PackageNotFoundError:
        tags = {}
    # only a checkout that tracks this very package: a venv inside some repo is not one
    if _git("ls-files", "--error-unmatch", str(PACKAGE / "__init__.py")) is None:
        return tags
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags[records.GIT_COMMIT_TAG] = commit
        status = _git("status", "--porcelain", "--untracked-files=no", "--", str(PACKAGE))
        tags[records.GIT_DIRTY_TAG] = "true" if status else "false"
    return tags
