"""How close to the machine's matmul peak is a training step? 2D, 2.5D and 3D, per variant.

The step is the ``quick`` model's (U-Net/ResNet-18, Jaccard loss, Adam): forward, loss,
backward, optimiser step on a batch already in memory (2D/2.5D: 8 × 96² with 1 / 3 channels; 3D:
2 × 16 × 64², the 3D U-Net of ``predict_vs_monai.py``). Its multiply-adds are counted by
``torch.utils.flop_counter`` (convolutions and matmuls, forward and backward) and divided by the
step time: GMAC/s, as a fraction of the matmul peak (``peak.py``). Variants, interleaved per
round (A B C … A B C …), median step time of each:

* ``default`` / ``channels_last`` memory format (network and batch);
* Adam's ``for-loop``, ``foreach`` and ``fused`` kernels (channels-last);
* ``--bf16``: bf16 autocast on the CPU (channels-last), only reported (measured 12 × slower on
  the 2-core development CPU, which has no native bf16 instructions);
* ``--compile``: ``torch.compile`` of the network (channels-last), its compile time reported.

Then a torch.profiler table of the default path's step (2.5D): each op's share of the time.

    .venv/bin/python benchmarks/train_step.py [--steps 15] [--rounds 5] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from bench_result import MatmulClock, emit, peak_gmacs

warnings.filterwarnings("ignore", category=UserWarning)
DEFAULT_CHANNELS_LAST = True  # conf/model/default.yaml's model.channels_last
STRIDES_3D = [[2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]


def make_case(mode: str):
    from bone_seg.modules.losses import build_loss_from_config
    from bone_seg.weights.network import create_net

    torch.manual_seed(0)
    if mode == "3d":
        net = create_net("unet", "resnet18", mode="3d", in_channels=1, num_classes=3,
                         strides=STRIDES_3D)
        x, y = torch.randn(2, 1, 16, 64, 64), torch.randint(0, 3, (2, 16, 64, 64))
    else:
        c = 3 if mode == "2.5d" else 1
        net = create_net("unet", "resnet18", mode=mode, in_channels=c, num_classes=3)
        x, y = torch.randn(8, c, 96, 96), torch.randint(0, 3, (8, 96, 96))
    return net, x, y, build_loss_from_config({"name": "jaccard"})


class Step:
    """One variant's training step (its own copy of the network and optimiser)."""

    def __init__(self, case, channels_last: bool, adam: str = "for-loop", bf16: bool = False,
                 compile_: bool = False):
        import copy

        net, x, y, self.loss = case
        fmt = (torch.channels_last_3d if x.ndim == 5 else torch.channels_last) if channels_last \
            else torch.contiguous_format
        self.net = copy.deepcopy(net).to(memory_format=fmt).train()
        self.x, self.y, self.bf16 = x.contiguous(memory_format=fmt), y, bf16
        kw = {"foreach": adam == "foreach", "fused": adam == "fused" or None}
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, **kw)
        self.run = torch.compile(self.net) if compile_ else self.net
        t = time.perf_counter()
        self()  # warm-up (and compilation)
        self.warmup_s = time.perf_counter() - t

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.run(self.x)
        self.loss(logits.float(), self.y).backward()
        self.opt.step()


def macs_per_step(case) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    net, x, y, loss = case
    with FlopCounterMode(display=False) as counter:
        loss(net(x), y).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def time_variants(variants: dict, steps: int, rounds: int, clock: MatmulClock):
    """Median seconds per step of each variant, rounds interleaved, and the median of each
    round's matmul rate (GMAC/s) times those seconds (the step's cost in matmul seconds: the
    fraction of the peak is its GMAC over this)."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    scaled: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, step in variants.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            dt = (time.perf_counter() - t) / steps
            samples[name].append(dt)
            scaled[name].append(dt * clock())
    return ({k: statistics.median(v) for k, v in samples.items()},
            {k: statistics.median(v) for k, v in scaled.items()})


def profile(step: Step, top: int = 8) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    with prof(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(3):
            step()
    events = [e for e in p.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    print(f"profile of the default step (self CPU time, top {top}):")
    for e in events[:top]:
        print(f"  {e.key:48s} {100 * e.self_cpu_time_total / total:5.1f} %")
    return ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f} %" for e in events[:4])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=15, help="steps per variant and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", nargs="+", default=["2.5d", "2d", "3d"])
    ap.add_argument("--compile", action="store_true", help="also torch.compile (2.5D)")
    ap.add_argument("--bf16", action="store_true",
                    help="also bf16 autocast (2.5D; 12x slower here: no native bf16)")
    args = ap.parse_args()
    peak = peak_gmacs()
    print(f"{torch.get_num_threads()} threads, peak {peak:.1f} GMAC/s")
    for mode in args.modes:
        run_mode(mode, args, peak)


def run_mode(mode: str, args, peak: float) -> None:
    case = make_case(mode)
    macs = macs_per_step(case)
    variants = {"default": Step(case, False), "channels_last": Step(case, True)}
    if mode == "2.5d":
        variants.update({"cl+foreach": Step(case, True, "foreach"),
                         "cl+fused": Step(case, True, "fused")})
        if args.bf16:
            variants["cl+bf16"] = Step(case, True, "fused", bf16=True)
        if args.compile:
            variants["cl+fused+compile"] = Step(case, True, "fused", compile_=True)
    med, scaled = time_variants(variants, args.steps, args.rounds, MatmulClock())
    n = len(case[1])
    print(f"\n{mode}: {macs / 1e9:.2f} GMAC per step (batch {n}, forward + backward)")
    for name, t in med.items():
        extra = f", warm-up {variants[name].warmup_s:.1f} s" if "compile" in name else ""
        print(f"  {name:18s} {t * 1e3:7.1f} ms/step  {n / t:6.1f} patches/s  "
              f"{macs / t / 1e9:6.1f} GMAC/s = {macs / 1e9 / scaled[name]:.2f} of the "
              f"matmul rate between the rounds{extra}")
    ours = "channels_last" if DEFAULT_CHANNELS_LAST else "default"
    emit(f"training step {mode} (fraction of the matmul peak)",
         f"{macs / med[ours] / 1e9:.1f} GMAC/s ({ours}, as bone-fit)",
         f"matmul between the rounds {scaled[ours] / med[ours]:.1f} GMAC/s (peak on top "
         f"{peak:.1f})", macs / 1e9 / scaled[ours], ">= 0.60" if mode == "2.5d" else None,
         f"{n / med[ours]:.1f} patches/s")
    emit(f"training step {mode}: channels-last speed-up", f"{med['channels_last'] * 1e3:.0f} "
         "ms/step", f"default format {med['default'] * 1e3:.0f} ms", med["default"]
         / med["channels_last"])
    if mode == "2.5d":
        for name in ("cl+foreach", "cl+fused", "cl+bf16", "cl+fused+compile"):
            if name in med:
                note = (f"compile {variants[name].warmup_s:.0f} s" if "compile" in name
                        else "bf16 autocast, CPU" if "bf16" in name else "")
                emit(f"training step 2.5d: {name} speed-up", f"{med[name] * 1e3:.0f} ms/step",
                     f"channels-last, for-loop Adam {med['channels_last'] * 1e3:.0f} ms",
                     med["channels_last"] / med[name], note=note)
        shares = profile(variants["channels_last"])
        emit("training step 2.5d: where the time goes (profile)", shares, "", None)


if __name__ == "__main__":
    main()
