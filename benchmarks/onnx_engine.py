"""Is ``bone-predict engine=onnxruntime`` faster than the torch engine on the CPU?

Part 1, the window pass (the windows of ``inference_peak.py``): the default 2D network
(U-Net/ResNet-18, 1 channel, 3 classes, random-initialised, eval) on ``--batch`` × ``--window``²
windows (the predictor's 4 × 128²), float32, the process's threads. Variants, interleaved per
round, median of the rounds:

* ``torch``: channels-last with batch norms folded (``fold_bn``), as ``bone-predict`` runs it;
* ``torch_default``: the default memory format, batch norms kept;
* ``onnxruntime``: the same network exported by :func:`bone_seg.weights.onnx_file.export_onnx`
  and run by :class:`bone_seg.inference.onnx_engine.OnnxNet` (what ``engine=onnxruntime`` does);
* ``openvino`` (only where the ``openvino`` package can be imported; it is not a dependency): the
  same ONNX model compiled by OpenVINO for the CPU (f32 precision, the process's threads, latency
  hint) — the measurement behind not offering ``engine=openvino`` unless it wins.

Every variant runs twice on the same input and must give bitwise identical logits; the largest
logit difference to ``torch`` and the arg-max agreement are printed. Target: onnxruntime ≥ 1.15 ×
torch.

Part 2 (``--volume``), whole prediction: ``Predictor.predict_array`` of a random volume with
each engine against MONAI's ``sliding_window_inference`` given the channels-last model (as in
``predict_vs_monai.py``: same window, overlap, gaussian blending, 4 windows per pass, softmax
probabilities, slice by slice), best of ``--repeats``; label agreement printed.

    .venv/bin/python benchmarks/onnx_engine.py [--rounds 9] [--batch 4] [--window 128]
        [--volume 4x320x320] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings

import numpy as np
import torch
from bench_result import emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def window_pass(args) -> None:
    from bone_seg.inference.fold import fold_batch_norms
    from bone_seg.inference.onnx_engine import OnnxNet, ort_threads
    from bone_seg.weights.network import create_net

    torch.manual_seed(0)
    net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3).eval()
    x = torch.randn(args.batch, 1, args.window, args.window)
    xc = x.contiguous(memory_format=torch.channels_last)
    cl = fold_batch_norms(copy.deepcopy(net).to(memory_format=torch.channels_last))
    t = time.perf_counter()
    ort = OnnxNet(net, x, ort_threads())
    export_s = time.perf_counter() - t
    runs = {"torch": lambda: cl(xc), "torch_default": lambda: net(x), "onnxruntime": lambda: ort(x)}
    ov = openvino_net(net, x)
    if ov is not None:
        runs["openvino"] = ov
    samples: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        ref = runs["torch"]().float().contiguous()
        for name, run in runs.items():
            a = run()
            same = bool(torch.equal(a, run()))
            diff = float((a.float() - ref).abs().max())
            agree = float((a.argmax(1) == ref.argmax(1)).float().mean())
            print(f"  {name:14s} bitwise repeatable: {same}, max |logit - torch| {diff:.1e}, "
                  f"arg-max agrees on {100 * agree:.4f} %")
            if name == "onnxruntime":
                ort_same, ort_diff, ort_agree = same, diff, agree
        for _ in range(args.rounds):
            for name, run in runs.items():
                t = time.perf_counter()
                for _ in range(args.passes):
                    run()
                samples[name].append((time.perf_counter() - t) / args.passes)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"{torch.get_num_threads()} threads; {args.batch} x {args.window}^2 windows; ONNX "
          f"export + session {export_s:.1f} s")
    for name, s in med.items():
        print(f"  {name:14s} {s * 1e3:7.1f} ms  ({med['torch'] / s:.2f}x torch)")
    emit("window pass U-Net/ResNet-18: onnxruntime / torch (channels-last, fold_bn)",
         f"{med['onnxruntime'] * 1e3:.0f} ms", f"torch {med['torch'] * 1e3:.0f} ms",
         med["torch"] / med["onnxruntime"], ">= 1.15",
         f"{'bitwise repeatable' if ort_same else 'NOT bitwise repeatable'}, max |logit diff| "
         f"{ort_diff:.1e}, arg-max agrees on {100 * ort_agree:.4f} %")
    if "openvino" in med:
        emit("window pass U-Net/ResNet-18: OpenVINO / onnxruntime (same ONNX model, f32)",
             f"{med['openvino'] * 1e3:.0f} ms", f"onnxruntime {med['onnxruntime'] * 1e3:.0f} ms",
             med["onnxruntime"] / med["openvino"], "> 1 to offer engine=openvino",
             f"OpenVINO / torch {med['torch'] / med['openvino']:.2f}x")
    emit("window pass U-Net/ResNet-18: onnxruntime / torch default format",
         f"{med['onnxruntime'] * 1e3:.0f} ms", f"torch {med['torch_default'] * 1e3:.0f} ms",
         med["torch_default"] / med["onnxruntime"])


def openvino_net(net: torch.nn.Module, x: torch.Tensor):
    """``net`` exported to ONNX and compiled by OpenVINO for the CPU, or None without openvino."""
    try:
        import openvino as ov
    except ImportError:
        return None
    from bone_seg.weights.onnx_file import export_onnx

    core = ov.Core()
    model = core.read_model(export_onnx(net, x))
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    arr = np.ascontiguousarray(x.numpy())
    return lambda: torch.from_numpy(request.infer({0: arr})[0].copy())


def whole_volume(args) -> None:
    from monai.inferers import sliding_window_inference

    from bone_seg.inference.predictor import Predictor
    from bone_seg.weights.meta import WeightsMeta
    from bone_seg.weights.network import create_net

    torch.manual_seed(0)
    w = args.window
    meta = WeightsMeta(arch="unet", encoder="resnet18", mode="2d", in_channels=1, num_classes=3,
                       class_names=["background", "bone", "pores"], patch_size=w)
    net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3).eval()
    shape = tuple(int(v) for v in args.volume.split("x"))
    vol = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    preds = {eng: Predictor(copy.deepcopy(net), meta, chunk_size=w, overlap=0.25,
                            blending="gaussian", batch_size=4, micro_batch=4, fold_bn=True,
                            engine=eng) for eng in ("torch", "onnxruntime")}
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)

    def monai() -> np.ndarray:
        out = np.empty(vol.shape, np.uint8)
        with torch.inference_mode():
            for z in range(vol.shape[0]):
                probs = sliding_window_inference(
                    torch.from_numpy(vol[z])[None, None], (w, w), 4,
                    lambda x: torch.softmax(net_cl(x), dim=1), overlap=0.25, mode="gaussian",
                    sigma_scale=0.125)
                conf, labels = probs.max(dim=1)
                labels[conf < 0.5] = 0
                out[z] = labels[0].to(torch.uint8).numpy()
        return out

    runs = {"torch": lambda: preds["torch"].predict_array(vol)[0],
            "onnxruntime": lambda: preds["onnxruntime"].predict_array(vol)[0],
            "monai_cl": monai}
    best = {k: float("inf") for k in runs}
    labels = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            t = time.perf_counter()
            labels[name] = run()
            best[name] = min(best[name], time.perf_counter() - t)
    mv = vol.size / 1e6
    print(f"volume {args.volume}: best of {args.repeats}")
    for name, s in best.items():
        print(f"  {name:12s} {mv / s:.3f} Mvoxel/s ({s:.2f} s)")
    agree_t = float(np.mean(labels["onnxruntime"] == labels["torch"]))
    agree_m = float(np.mean(labels["onnxruntime"] == labels["monai_cl"]))
    emit("prediction 2D U-Net/ResNet-18: engine=onnxruntime / engine=torch",
         f"{mv / best['onnxruntime']:.3f} Mvoxel/s", f"{mv / best['torch']:.3f} Mvoxel/s",
         best["torch"] / best["onnxruntime"], ">= 1.15",
         f"labels agree on {100 * agree_t:.4f} %")
    emit("prediction 2D U-Net/ResNet-18: engine=onnxruntime / MONAI (channels-last model)",
         f"{mv / best['onnxruntime']:.3f} Mvoxel/s", f"{mv / best['monai_cl']:.3f} Mvoxel/s",
         best["monai_cl"] / best["onnxruntime"], ">= 1.2",
         f"labels agree on {100 * agree_m:.3f} % (window starts differ)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--passes", type=int, default=4, help="passes per variant and round")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--volume", default="", help="also a whole prediction, e.g. 4x320x320")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    window_pass(args)
    if args.volume:
        whole_volume(args)


if __name__ == "__main__":
    main()
