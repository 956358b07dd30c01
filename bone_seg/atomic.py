"""Nothing half-written looks complete: every file or folder is written under a temporary name in
its destination folder and renamed over the destination when complete (one helper, used by every
room: JSON records, weights files, TIFF stacks, checkpoints, reports, store scans).

The temporary name says which process writes it (``.<name>.tmp-<host>-<pid>``), so the leftovers
of a killed process can be told from the work in progress of a live one and removed
(:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
# ".<name>.tmp-<host>-<pid>"; written before hosts were named: ".<name>.tmp-<pid>"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<host>[A-Za-z0-9_.]+)-)?(?P<pid>\d+)$")


def temporary_name(path: str | os.PathLike) -> Path:
    """``<folder>/.<name>.tmp-<host>-<pid>``: hidden, beside ``path``, unique per process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders of :func:`atomic_path` in ``folder`` whose writer
    (a process of this host) is gone; those of live processes and of other hosts are kept.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _TEMPORARY.match(entry.name)
        if m and (m["host"] or _HOST) == _HOST and not _alive(int(m["pid"])):
            remove(entry)
            removed.append(entry)
    return removed


def remove(path: str | os.PathLike) -> None:
    """Remove a file or a folder tree, if present."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` at; rename it over ``path`` on success.

    Parent folders are created. A folder written at the temporary path replaces a folder at
    ``path`` whole. On any exception the temporary file or folder is removed and ``path`` is left
    as it was.

    Args:
        path: the destination (a file or a folder).
        fsync: flush a written file to disk before the rename (weights files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    remove(tmp)
    try:
        yield tmp
        if fsync and tmp.is_file():
            _fsync(tmp)
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, line endings as given) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (one trailing newline) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
