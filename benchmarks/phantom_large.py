"""Generate the large phantom (default 512 × 1024 × 1024 uint16 + mask) slab by slab.

Prints the wall time, this process's peak resident memory and the write throughput; the volume
alone is 1 GiB (image) + 0.5 GiB (mask), so a peak far below that shows generation never holds it.

    .venv/bin/python benchmarks/phantom_large.py --out /tmp/bone_big [--shape 512 1024 1024]
"""

from __future__ import annotations

import argparse
import resource
import time

from bench_result import emit

from bone_seg.workflows.phantom import write_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="/tmp/bone_big")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 1024, 1024])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t = time.perf_counter()
    folder = write_phantom(args.out, "large_0", "large", args.seed, args.shape, progress=True)
    wall = time.perf_counter() - t
    z, y, x = args.shape
    mb = z * y * x * 3 / 2**20  # uint16 image + uint8 mask
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{folder}: {z}x{y}x{x} in {wall:.0f} s ({mb / wall:.1f} MB/s written), "
          f"peak RSS {peak:.0f} MB = {peak / mb:.3f} x the volume's {mb:.0f} MB")
    emit(f"phantom generation {z}x{y}x{x}: peak RSS vs the volume (image + mask)",
         f"{peak:.0f} MB", f"volume {mb:.0f} MB", peak / mb, "<= 1.0",
         f"{mb / wall:.1f} MB/s written; imports included in the peak")


if __name__ == "__main__":
    main()
