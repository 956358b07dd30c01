"""Throughput of our sliding-window predictor against MONAI ``sliding_window_inference``.

Target (issue "inference"): ≥ 1.0 × MONAI's throughput with the same model, window, overlap and
blending, on the same volume.

How the comparison is made fair:

* the same random-initialised U-Net/ResNet-18 (eval mode, float32, CPU, torch's threads), the same
  normalised float32 volume in memory, the same window, overlap (0.25) and blending (``gaussian``
  with sigma = window / 8, and ``constant``);
* both average **softmax probabilities** (MONAI's predictor returns ``softmax(net(x))``), then
  arg-max, maximum probability and the 0.5 threshold (for MONAI done in torch on its output);
* ours as ``bone-predict`` runs it: channels-last, batch norms folded into the convolutions
  (``fold_bn``); MONAI gets the model as loaded, and a channels-last copy of it;
* the same number of windows per forward pass: MONAI ``sw_batch_size`` = our ``micro_batch`` (4);
* 2D model: both go slice by slice — MONAI gets one ``(1, 1, Y, X)`` slice per call (it loops over
  a batch's items anyway); ours streams the volume. Window starts differ slightly (MONAI: steps
  of ``int(window * 0.75)``, last clipped to the border; ours: spread evenly), with the same
  number of windows per axis, so the work is the same; the label agreement is printed;
* 3D model (``--3d``): MONAI gets the whole ``(1, 1, Z, Y, X)`` volume, ours streams it.

Each variant runs ``--repeats`` times, interleaved (ours, MONAI, ours, ...), and the best time
counts (the machine is shared; the best is the least disturbed).

Run: ``.venv/bin/python benchmarks/predict_vs_monai.py [--depth 16] [--size 384] [--window 128]
[--repeats 3] [--3d]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings

import numpy as np
import torch
from bench_result import emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--3d", dest="three_d", action="store_true",
                    help="also compare a 3D U-Net on a (depth*4, size/2, size/2) volume")
    args = ap.parse_args()

    from monai.inferers import sliding_window_inference

    from bone_seg.inference.predictor import Predictor
    from bone_seg.weights.meta import WeightsMeta
    from bone_seg.weights.network import create_net

    def ours(net, meta, blending, channels_last):
        """A predictor, built once (as for a whole scan; the network's copy is not timed), as
        bone-predict builds it (fold_bn on; the default format variant without it)."""
        pred = Predictor(copy.deepcopy(net), meta, chunk_size=meta.patch_size, overlap=0.25,
                         blending=blending, threshold=0.5, batch_size=4, micro_batch=4,
                         channels_last=channels_last, fold_bn=channels_last)
        return lambda vol: pred.predict_array(vol)[0]

    def monai(net, vol, blending, roi, per_slice):
        def predictor(x):
            return torch.softmax(net(x), dim=1)

        def post(probs):
            conf, labels = probs.max(dim=1)
            labels[conf < 0.5] = 0
            return labels.to(torch.uint8).numpy()

        with torch.inference_mode():
            if per_slice:
                out = np.empty(vol.shape, np.uint8)
                for z in range(vol.shape[0]):
                    x = torch.from_numpy(vol[z])[None, None]
                    probs = sliding_window_inference(x, roi, 4, predictor, overlap=0.25,
                                                     mode=blending, sigma_scale=0.125)
                    out[z] = post(probs)[0]
                return out
            x = torch.from_numpy(vol)[None, None]
            probs = sliding_window_inference(x, roi, 4, predictor, overlap=0.25, mode=blending,
                                             sigma_scale=0.125)
            return post(probs)[0]

    cases = []
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    w = args.window
    meta2 = WeightsMeta(arch="unet", encoder="resnet18", mode="2d", in_channels=1, num_classes=3,
                        class_names=["background", "bone", "pores"], patch_size=w)
    net2 = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3).eval()
    vol2 = rng.normal(size=(args.depth, args.size, args.size)).astype(np.float32)
    cases.append(("2D U-Net/ResNet-18", net2, meta2, vol2, (w, w), True))
    if args.three_d:
        strides = [[2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
        d, s3 = 16, w // 2
        meta3 = WeightsMeta(arch="unet", encoder="resnet18", mode="3d", in_channels=1,
                            num_classes=3, class_names=["background", "bone", "pores"],
                            patch_size=s3, patch_depth=d, net_kwargs={"strides": strides})
        net3 = create_net("unet", "resnet18", mode="3d", in_channels=1, num_classes=3,
                          strides=strides).eval()
        vol3 = rng.normal(size=(args.depth * 2, args.size // 2, args.size // 2))
        cases.append(("3D U-Net/ResNet-18", net3, meta3, vol3.astype(np.float32), (d, s3, s3),
                      False))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of "
          f"{args.repeats}, interleaved")
    ratios = []
    for case in cases:
        ratios += compare(*case, ours, monai, args.repeats)
    print(f"\nminimum ratio ours (default) / MONAI (model as loaded): {min(ratios):.2f}x "
          "(target >= 1.0x)")


def compare(title, net, meta, vol, roi, per_slice, ours, monai, repeats) -> list[float]:
    """Time the four variants on one case; print them; return ours/MONAI per blending."""
    voxels = vol.size
    print(f"\n{title}: volume {'x'.join(map(str, vol.shape))} ({voxels / 1e6:.2f} Mvoxel), "
          f"window {'x'.join(map(str, roi))}, overlap 0.25, 4 windows per forward pass")
    fmt = torch.channels_last_3d if meta.mode == "3d" else torch.channels_last
    net_cl = copy.deepcopy(net).to(memory_format=fmt)
    ratios = []
    for blending in ("gaussian", "constant"):
        ours_cl, ours_plain = ours(net, meta, blending, True), ours(net, meta, blending, False)
        variants = {  # name: (runner, description)
            "ours": (lambda b, f=ours_cl: f(vol), "ours (default, channels-last)"),
            "monai": (lambda b: monai(net, vol, b, roi, per_slice), "MONAI, model as loaded"),
            "ours_plain": (lambda b, f=ours_plain: f(vol), "ours, channels_last=false"),
            "monai_cl": (lambda b: monai(net_cl, vol, b, roi, per_slice),
                         "MONAI, channels-last model"),
        }
        best = {name: float("inf") for name in variants}
        labels = {}
        for _ in range(repeats):
            for name, (runner, _) in variants.items():
                t = time.perf_counter()
                labels[name] = runner(blending)
                best[name] = min(best[name], time.perf_counter() - t)
        print(f"  {blending}:")
        for name, (_, desc) in variants.items():
            print(f"    {desc:32s} {voxels / best[name] / 1e6:.3f} Mvoxel/s ({best[name]:.2f} s)")
        for a, b in (("ours", "monai"), ("ours_plain", "monai"), ("ours", "monai_cl")):
            ratio = best[b] / best[a]
            agree = float(np.mean(labels[a] == labels[b]))
            if (a, b) == ("ours", "monai"):
                ratios.append(ratio)
            if b in ("monai", "monai_cl") and a == "ours":
                emit(f"{title} prediction, {blending}: ours / MONAI "
                     f"({'channels-last model' if b == 'monai_cl' else 'model as loaded'})",
                     f"{voxels / best[a] / 1e6:.3f} Mvoxel/s",
                     f"{voxels / best[b] / 1e6:.3f} Mvoxel/s", ratio,
                     ">= 1.2" if b == "monai_cl" else ">= 1.0",
                     f"labels agree on {100 * agree:.3f} %")
            print(f"    {variants[a][1]} / {variants[b][1]}: {ratio:.2f}x "
                  f"(labels agree on {100 * agree:.3f}% of voxels)")
    return ratios


if __name__ == "__main__":
    main()
