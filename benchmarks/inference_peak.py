"""How close to the machine's matmul peak is the U-Net/ResNet-18 window pass of prediction?

The network of ``bone-predict``'s default 2D model (U-Net/ResNet-18, 1 channel, 3 classes) in
eval mode under ``inference_mode`` on micro-batches of windows: ``--batch`` × ``--window``² (the
predictor's default 4 × 128²). Multiply-adds counted by ``torch.utils.flop_counter``, divided by
the median time of a pass: GMAC/s as a fraction of the matmul peak (``peak.py``). Variants,
interleaved per round:

* ``default`` and ``channels_last`` memory format (the predictor's default);
* ``cl+fold_bn``: batch norms folded into the convolutions (``Predictor(fold_bn=True)``, what
  ``bone-predict fold_bn=true`` does);
* ``cl+jit_freeze``: TorchScript trace, ``torch.jit.freeze`` and ``optimize_for_inference``
  (oneDNN fusion of convolution, batch norm, addition and ReLU), only reported;
* ``--compile``: ``torch.compile`` with inductor's freezing, its compile time reported.

Every variant is run twice on the same input and must give bitwise identical logits (printed).

    .venv/bin/python benchmarks/inference_peak.py [--rounds 9] [--batch 4] [--window 128]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
from bench_result import MatmulClock, emit, peak_gmacs

warnings.filterwarnings("ignore")


def variants(net, x, compile_: bool) -> dict:
    from bone_seg.inference.fold import fold_batch_norms

    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    out = {"default": (net, x), "channels_last": (cl, x.contiguous(
        memory_format=torch.channels_last))}
    xc = out["channels_last"][1]
    out["cl+fold_bn"] = (fold_batch_norms(copy.deepcopy(cl)), xc)
    with torch.inference_mode():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(
            copy.deepcopy(cl), xc, check_trace=False)))
    out["cl+jit_freeze"] = (frozen, xc)
    if compile_:
        import torch._inductor.config as inductor

        inductor.freezing = True
        out["cl+compile"] = (torch.compile(copy.deepcopy(cl)), xc)
    return out


def main() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from bone_seg.weights.network import create_net

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--passes", type=int, default=4, help="passes per variant and round")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    peak = peak_gmacs()
    torch.manual_seed(0)
    net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3).eval()
    x = torch.randn(args.batch, 1, args.window, args.window)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        ref = net(x)
    macs = counter.get_total_flops() / 2
    runs = variants(net, x, args.compile)
    samples = {k: [] for k in runs}
    scaled = {k: [] for k in runs}
    clock = MatmulClock()
    repeat_ok, warm = {}, {}
    with torch.inference_mode():
        for name, (model, inp) in runs.items():
            t = time.perf_counter()
            a = model(inp)
            warm[name] = time.perf_counter() - t
            repeat_ok[name] = bool(torch.equal(a, model(inp)))
            diff = float((a.float() - ref).abs().max())
            print(f"  {name:14s} warm-up {warm[name]:.1f} s, bitwise repeatable: "
                  f"{repeat_ok[name]}, max |logit - default| {diff:.2e}")
        for _ in range(args.rounds):
            for name, (model, inp) in runs.items():
                t = time.perf_counter()
                for _ in range(args.passes):
                    model(inp)
                dt = (time.perf_counter() - t) / args.passes
                samples[name].append(dt)
                scaled[name].append(dt * clock())
    med = {k: statistics.median(v) for k, v in samples.items()}
    frac = {k: macs / 1e9 / statistics.median(v) for k, v in scaled.items()}
    print(f"{torch.get_num_threads()} threads, peak {peak:.1f} GMAC/s; {args.batch} x "
          f"{args.window}^2 windows, {macs / 1e9:.2f} GMAC per pass")
    for name, t in med.items():
        print(f"  {name:14s} {t * 1e3:7.1f} ms  {macs / t / 1e9:6.1f} GMAC/s = "
              f"{frac[name]:.2f} of the matmul rate between the rounds")
    report(med, frac, macs, peak, repeat_ok, warm)


def report(med, frac, macs, peak, repeat_ok, warm) -> None:
    ours = "cl+fold_bn"
    emit("window pass U-Net/ResNet-18 (fraction of the matmul peak)",
         f"{macs / med[ours] / 1e9:.1f} GMAC/s ({ours}, as bone-predict)",
         f"matmul between the rounds {macs / med[ours] / 1e9 / frac[ours]:.1f} GMAC/s (peak on "
         f"top {peak:.1f})", frac[ours], ">= 0.85",
         "bitwise repeatable" if repeat_ok[ours] else "NOT bitwise repeatable")
    for name in med:
        if name != "default":
            note = f"compile {warm[name]:.0f} s" if "compile" in name else ""
            emit(f"window pass: {name} speed-up", f"{med[name] * 1e3:.0f} ms",
                 f"default format {med['default'] * 1e3:.0f} ms", med["default"] / med[name],
                 note=note + ("" if repeat_ok[name] else " not bitwise repeatable"))


if __name__ == "__main__":
    main()
