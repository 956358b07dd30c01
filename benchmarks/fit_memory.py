"""Peak memory of a fit does not grow with the data set: 16 phantom scans vs 4, same run.

Generates 16 phantom scans (mouse preset, 64 × 256 × 256 by default), imports all of them into one
store and the first 4 into another, then runs the same short ``bone-fit experiment=quick`` on each
under ``/usr/bin/time -v``. Reports the peak resident memory of the main process (time -v) and of
the whole process tree (the ResourceMonitor's figure from the run's log, PSS: DataLoader workers
included, shared pages counted once) and their ratios 16/4 (target <= 1.1).

    .venv/bin/python benchmarks/fit_memory.py [--root /tmp/bench_fit_memory]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from bench_result import emit

BIN = Path(sys.executable).parent


def _fit(root: Path, store: Path, batches: int) -> dict:
    cmd = ["/usr/bin/time", "-v", str(BIN / "bone-fit"), "experiment=quick", f"paths.root={root}",
           f"data.store={store}", "trainer.max_epochs=1", f"trainer.limit_train_batches={batches}",
           f"trainer.limit_val_batches={max(1, batches // 4)}", "callbacks.complexity=null"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    tree = re.search(r"peak RAM \(process tree\)\s+([\d.]+) GB", proc.stderr)
    return {"main_mb": rss / 1024, "tree_mb": float(tree.group(1)) * 1024 if tree else None}


def main() -> None:
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="/tmp/bench_fit_memory")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 256, 256])
    parser.add_argument("--batches", type=int, default=40, help="training batches of the fit")
    args = parser.parse_args()
    root = Path(args.root)
    scans = [{"id": f"m{i:02d}", "preset": "mouse", "seed": i, "shape": args.shape}
             for i in range(16)]
    make_phantom_set(root / "phantoms", scans, workers=2)
    sources = discover_scans(root / "phantoms")
    results = {}
    for n in (4, 16):
        store = root / f"store{n}"
        if not (store / "manifest.json").exists():
            import_scans(store, sources[:n], ImportOptions(), workers=2)
        results[n] = _fit(root / f"runs{n}", store, args.batches)
        print(f"{n:2d} scans: main process {results[n]['main_mb']:.0f} MB, process tree "
              f"{results[n]['tree_mb'] or float('nan'):.0f} MB", flush=True)
    for key, label in (("main_mb", "main process"), ("tree_mb", "process tree")):
        if results[4][key] and results[16][key]:
            print(f"ratio 16/4 scans, {label}: {results[16][key] / results[4][key]:.3f} "
                  "(target <= 1.1)")
            emit(f"`quick` fit peak memory, {label}: 16 vs 4 scans", f"{results[16][key]:.0f} MB",
                 f"{results[4][key]:.0f} MB", results[16][key] / results[4][key], "<= 1.1")


if __name__ == "__main__":
    main()
