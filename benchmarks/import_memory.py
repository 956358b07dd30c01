"""Peak resident memory and throughput of ``bone-import`` on a large TIFF-folder scan.

Runs ``bone-import`` under ``/usr/bin/time -v`` twice in the same session: on the full scan and, as
the baseline, on its first quarter of slices (a TIFF folder of symlinks). Memory bounded by a slab
means the peak is (almost) the same for both; it must stay under 1 GB for the full scan.

The input is a phantom scan written by ``benchmarks/phantom_large.py`` (default
512 × 1024 × 1024 uint16 with its mask)::

    .venv/bin/python benchmarks/phantom_large.py --out /tmp/bone_big
    .venv/bin/python benchmarks/import_memory.py --scan /tmp/bone_big/<scan_id>
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_result import emit

BIN = Path(sys.executable).parent


def _quarter(scan: Path, dest: Path) -> Path:
    """A scan folder holding the first quarter of the slices (symlinks, no copy)."""
    for part in ("image", "mask"):
        src = scan / part
        if not src.is_dir():
            continue
        files = sorted(src.iterdir())
        (dest / part).mkdir(parents=True)
        for f in files[: len(files) // 4]:
            os.symlink(f, dest / part / f.name)
    return dest


def _run_import(scan: Path, root: Path) -> dict:
    cmd = ["/usr/bin/time", "-v", str(BIN / "bone-import"), f"image={scan / 'image'}",
           f"id={scan.name}", f"paths.root={root}", "workers=1"]
    if (scan / "mask").is_dir():
        cmd.append(f"mask={scan / 'mask'}")
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024}


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.tif"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scan", type=Path, required=True,
                        help="a scan folder holding image/ (and mask/) TIFF slice folders")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bone_seg_import_"))
    try:
        quarter = _quarter(args.scan, tmp / "quarter" / args.scan.name)
        small = _run_import(quarter, tmp / "out_small")
        full = _run_import(args.scan, tmp / "out_full")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_full = len(list((args.scan / "image").iterdir()))
    in_bytes = _bytes(args.scan)
    print(f"scan {args.scan} ({n_full} slices, {in_bytes / 2**30:.2f} GiB of TIFF incl. mask)")
    print("| input | peak RSS (MB) | wall (s) |")
    print("|---|---:|---:|")
    print(f"| first quarter ({n_full // 4} slices) | {small['peak_rss_mb']:.0f} | "
          f"{small['wall_s']:.1f} |")
    print(f"| full ({n_full} slices) | {full['peak_rss_mb']:.0f} | {full['wall_s']:.1f} |")
    print(f"peak RSS full / quarter = {full['peak_rss_mb'] / small['peak_rss_mb']:.2f}× "
          f"(input 4× larger); full scan peak {full['peak_rss_mb'] / 1024:.2f} GB "
          f"({'under' if full['peak_rss_mb'] < 1024 else 'OVER'} the 1 GB target)")
    print(f"import throughput {in_bytes / 2**20 / full['wall_s']:.0f} MB/s of TIFF, "
          f"{n_full / full['wall_s']:.1f} slices/s (process start included)")
    emit(f"bone-import peak RSS: {n_full} slices vs the first quarter",
         f"{full['peak_rss_mb']:.0f} MB", f"{small['peak_rss_mb']:.0f} MB",
         full["peak_rss_mb"] / small["peak_rss_mb"], "<= 1.1",
         f"{in_bytes / 2**20 / full['wall_s']:.0f} MB/s of TIFF")


if __name__ == "__main__":
    main()
