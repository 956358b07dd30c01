"""What does the resource monitor cost a training loop? Steps/s with and without it.

Three runs of the same training steps (the quick model's U-Net/ResNet-18, 2.5D 96-px batches of 8,
random data), each with two idle child processes holding memory as DataLoader workers do:

* no monitor (the baseline);
* the monitor reading PSS every 0.5 s (``max_overhead=1``: what it did before the budget);
* the monitor as configured (``max_overhead=0.01``: memory samples spaced to 1 % of a core);
* no monitor again (the ratios are against the mean of the two baselines).

    .venv/bin/python benchmarks/monitor_overhead.py [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench_result import emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHILD = "import numpy, time; a = numpy.ones(150_000_000 // 8); time.sleep(3600)"


def _steps_per_s(step, steps: int, monitor=None) -> tuple[float, dict | None]:
    if monitor is not None:
        monitor.start()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    rate = steps / (time.perf_counter() - t)
    return rate, (monitor.stop() if monitor is not None else None)


def main() -> None:
    import segmentation_models_pytorch as smp
    import torch

    from bone_seg.monitoring.resources import ResourceMonitor

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    children = [subprocess.Popen([sys.executable, "-c", CHILD]) for _ in range(2)]
    try:
        net = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=3)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x, y = torch.randn(8, 3, 96, 96), torch.randint(0, 3, (8, 96, 96))

        def step() -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

        for _ in range(3):
            step()
        time.sleep(2)  # the children have allocated their memory
        base, _ = _steps_per_s(step, args.steps)
        runs = {}
        for name, budget in (("PSS every 0.5 s", 1.0), ("PSS, 1 % budget", 0.01)):
            mon = ResourceMonitor(0.5, gpus=None, memory_metric="pss", max_overhead=budget)
            runs[name] = _steps_per_s(step, args.steps, mon)
        again, _ = _steps_per_s(step, args.steps)  # the baseline again: the machine's drift
        print(f"{torch.get_num_threads()} torch threads, {args.steps} steps per run, "
              f"2 idle children")
        print(f"no monitor          : {base:6.2f} steps/s before, {again:6.2f} after")
        base = (base + again) / 2
        for name, (rate, summary) in runs.items():
            print(f"{name:<20}: {rate:6.2f} steps/s  {rate / base:5.3f}x the baseline  "
                  f"({summary['num_memory_samples']} memory samples, peak "
                  f"{summary['peak_rss_gb']:.2f} GB)")
            if "budget" in name:
                emit("training steps with the resource monitor (1 % budget)",
                     f"{rate:.2f} steps/s", f"no monitor {base:.2f} steps/s", rate / base,
                     ">= 0.95", f"{summary['num_memory_samples']} memory samples")
    finally:
        for child in children:
            child.kill()


if __name__ == "__main__":
    main()
