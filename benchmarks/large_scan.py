"""A large phantom scan generated slab by slab, then imported: both memory-bounded?

Runs ``phantom_large.py`` (peak RSS against the volume's size) and ``import_memory.py`` (peak RSS
of ``bone-import`` on the scan against its first quarter) one after the other on a scan of
``--shape``, in a temporary folder (kept with ``--out``).

    .venv/bin/python benchmarks/large_scan.py [--shape 512 1024 1024] [--out /tmp/bone_big]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 1024, 1024])
    ap.add_argument("--out", help="keep the scan here (default: a temporary folder)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bone_seg_large_"))
    try:
        subprocess.run([sys.executable, str(HERE / "phantom_large.py"), "--out", str(out),
                        "--shape", *map(str, args.shape)], check=True)
        subprocess.run([sys.executable, str(HERE / "import_memory.py"), "--scan",
                        str(out / "large_0")], check=True)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
