"""The built-in phantom dataset's store for the benchmarks that fit: built once per root."""

from __future__ import annotations

import sys
from pathlib import Path


def phantom_store(root: str | Path, set_name: str = "default") -> Path:
    """``<root>/store`` of ``conf/phantom_set/<set_name>.yaml``'s phantoms, built when missing
    (a store already there is reused as it is)."""
    root = Path(root)
    if (root / "store" / "manifest.json").is_file():
        return root / "store"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_phantom_store

    return build_phantom_store(root, set_name)
