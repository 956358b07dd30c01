"""The machine's practical peak: a large fp32 matmul (GMAC/s) and memory read bandwidth (GB/s).

Everything compute-bound in the suite is reported as a fraction of the matmul figure (one
multiply-add = one MAC); the read bandwidth bounds the memory-bound work (reading, blending,
counting). Both with torch's threads (``OMP_NUM_THREADS``), best of repeats.

    .venv/bin/python benchmarks/peak.py [--size 2048] [--mib 512]
"""

from __future__ import annotations

import argparse
import json
import time

from bench_result import matmul_gmacs


def read_gbs(mib: int, seconds: float = 1.5) -> float:
    """Best rate of summing a ``mib`` MiB float32 tensor (each byte read once), GB/s."""
    import torch

    x = torch.ones(mib * 2**20 // 4)
    x.sum()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="matmul side")
    ap.add_argument("--mib", type=int, default=512, help="MiB read for the bandwidth")
    args = ap.parse_args()
    gmacs = matmul_gmacs(args.size)
    gbs = read_gbs(args.mib)
    print(f"{torch.get_num_threads()} threads: {args.size}^3 fp32 matmul {gmacs:.1f} GMAC/s, "
          f"read bandwidth {gbs:.1f} GB/s")
    print("PEAK " + json.dumps({"gmacs": gmacs, "read_gbs": gbs, "matmul": args.size,
                                "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
