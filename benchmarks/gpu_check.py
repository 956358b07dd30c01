"""A GPU check ready to run, under 5 minutes on one datacenter GPU; prints a Markdown table.

1. **AMP fit steps of ``experiment=bp2d03``**: the real ``bone-fit experiment=bp2d03 trainer=gpu``
   (U-Net/ResNet-18, 2D, 256 px, batch 64, 16-mixed) for ``--steps`` training batches and 4
   validation batches on phantom scans made here; from its MLflow run: training patches per
   second of the fitting loop, peak VRAM (NVML, device-wide, and torch's allocated peak), mean
   NVML utilisation.
2. **Prediction throughput against MONAI** on the GPU: our streamed predictor and MONAI's
   ``sliding_window_inference`` with the same random-initialised U-Net/ResNet-18, window (256),
   overlap (0.25), Gaussian blending, float16 autocast and 4 windows per forward pass, on the same
   normalised volume in memory (as ``benchmarks/predict_vs_monai.py`` on the CPU; best of 2,
   interleaved); the label agreement.
3. **Bitwise repeatability on the GPU**: ``predict_scan`` of a phantom scan with the fitted
   weights three times (batch 8, batch 8 again, batch 32): labels and confidence compared bit for
   bit.
4. **Free-VRAM batch sizing**: ``bone_seg.inference.run.auto_batch_size`` (a quarter of the free
   VRAM over the predictor's bytes per window, capped at 256): the free VRAM, the batch it chose,
   and the peak VRAM of a prediction with ``batch_size=auto``.

Nothing is downloaded (``HF_HUB_OFFLINE=1``, random initial weights). Without a CUDA GPU it says
so in one line and exits 0. A check that fails is a row of the table ("failed: ..."), the others
still run, and the exit status is 1.

    .venv/bin/python benchmarks/gpu_check.py [--root /tmp/bone_seg_gpu_check] [--steps 40]

``--device cpu`` runs the same steps on the CPU (float32; small: ``--steps 2 --batch 4 --size 256``)
to try the script itself on a machine without a GPU; its figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
BIN = Path(sys.executable).parent
WINDOW = 256


def no_gpu_line() -> str | None:
    """One line saying why there is nothing to check here, or None when a CUDA GPU is visible."""
    import torch

    if torch.cuda.is_available():
        return None
    return (f"gpu_check: no CUDA GPU visible (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}); nothing checked")


def make_store(root: Path, scans: int = 4) -> Path:
    """Phantom scans wide enough for 256-px patches, imported into a store."""
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    store = root / "store"
    if not (store / "manifest.json").exists():
        specs = [{"id": f"g{i:02d}", "preset": "mouse", "seed": i, "shape": [24, 320, 320]}
                 for i in range(scans)]
        make_phantom_set(root / "phantoms", specs, workers=min(scans, os.cpu_count() or 1))
        import_scans(store, discover_scans(root / "phantoms"), ImportOptions())
    return store


def fit_check(root: Path, store: Path, steps: int, device: str,
              batch: int | None = None) -> tuple[list[tuple[str, str]], Path]:
    """``bone-fit experiment=bp2d03 trainer=gpu`` for ``steps`` batches; its figures and weights."""
    import mlflow

    trainer = "trainer=gpu" if device == "cuda" else "trainer=cpu"
    cmd = [str(BIN / "bone-fit"), "experiment=bp2d03", trainer, f"paths.root={root}",
           f"data.store={store}", "data.num_folds=4", "data.test_fold=1", "trainer.max_epochs=1",
           f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=4",
           "test.enabled=false", f"data.num_workers={min(8, os.cpu_count() or 1)}",
           *([f"data.batch_size={batch}"] if batch else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("bone_seg").experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    m, p = run.data.metrics, run.data.params
    batch = int(p["data.batch_size"])  # the batch the fit ran with
    fit_s = m["resources/fit_time_s"]
    rows = [("fit bp2d03 (AMP): training patches/s", f"{steps * batch / fit_s:.1f} "
             f"({steps} batches of {batch} at {p['data.patch_size']} px in {fit_s:.1f} s, "
             "4 val batches included)"),
            ("fit bp2d03: peak VRAM (NVML, device)",
             f"{m.get('resources/peak_vram_gb', 0):.2f} GB"),
            ("fit bp2d03: peak VRAM (torch allocated)",
             f"{m.get('resources/torch_peak_allocated_gb', 0):.2f} GB"),
            ("fit bp2d03: mean GPU utilisation (NVML)",
             f"{m.get('resources/gpu_util_mean_pct', float('nan')):.0f} %"),
            ("fit bp2d03: precision", p.get("trainer.precision", "?"))]
    return rows, Path(run.data.tags["output_dir"]) / "best.safetensors"


def monai_check(device: str, depth: int = 16, size: int = 1024) -> list[tuple[str, str]]:
    """Our predictor against MONAI's sliding window on the GPU (float16 autocast both)."""
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    from bone_seg.inference.predictor import Predictor
    from bone_seg.weights.meta import WeightsMeta
    from bone_seg.weights.network import create_net

    torch.manual_seed(0)
    meta = WeightsMeta(arch="unet", encoder="resnet18", mode="2d", in_channels=1, num_classes=3,
                       class_names=["background", "bone", "pores"], patch_size=WINDOW)
    net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3).eval()
    vol = np.random.default_rng(0).normal(size=(depth, size, size)).astype(np.float32)
    ours = Predictor(net, meta, overlap=0.25, blending="gaussian", batch_size=64, micro_batch=4,
                     device=device, amp=True)
    gpu_net = ours.net

    def monai_run() -> np.ndarray:
        out = np.empty(vol.shape, np.uint8)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16,
                                                     enabled=device == "cuda"):
            for z in range(depth):
                x = torch.from_numpy(vol[z])[None, None].to(device)
                probs = sliding_window_inference(
                    x, (WINDOW, WINDOW), 4, lambda t: torch.softmax(gpu_net(t).float(), 1),
                    overlap=0.25, mode="gaussian", sigma_scale=0.125)
                conf, labels = probs.max(dim=1)
                labels[conf < 0.5] = 0
                out[z] = labels[0].to(torch.uint8).cpu().numpy()
        return out

    best = {"ours": float("inf"), "monai": float("inf")}
    labels = {}
    for _ in range(2):
        for name, runner in (("ours", lambda: ours.predict_array(vol)[0]), ("monai", monai_run)):
            sync(device)
            t = time.perf_counter()
            labels[name] = runner()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t)
    mvox = vol.size / 1e6
    agree = float(np.mean(labels["ours"] == labels["monai"]))
    return [("predict 2D U-Net/ResNet-18: ours", f"{mvox / best['ours']:.1f} Mvoxel/s"),
            ("predict 2D U-Net/ResNet-18: MONAI sliding window", f"{mvox / best['monai']:.1f} "
             "Mvoxel/s"),
            ("predict: ours / MONAI", f"{best['monai'] / best['ours']:.2f}x (label agreement "
             f"{100 * agree:.2f} %, {depth}x{size}x{size} volume)")]


def repeat_check(root: Path, weights: Path, store: Path, device: str) -> list[tuple[str, str]]:
    """Three GPU predictions of one scan (batch 8, 8, 32): bitwise equal labels and confidence."""
    import numpy as np
    import zarr

    from bone_seg.inference import PredictSettings, predict_scan

    arrays, times = [], []
    for i, batch in enumerate((8, 8, 32)):
        out = root / f"repeat_{i}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        report = predict_scan(str(weights), "g01", out, store_path=store, settings=PredictSettings(
            device=device, batch_size=batch, confidence=True, progress=False, summary=False))
        group = zarr.open_group(str(out), mode="r")
        arrays.append((group["labels/segmentation/0"][:], group["confidence/0"][:]))
        times.append(report.voxels_per_s / 1e6)

    def same(a, b) -> str:
        return "yes" if all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)) else "NO"

    return [("predict on GPU: rerun bitwise identical (labels, confidence)",
             same(arrays[0], arrays[1])),
            ("predict on GPU: batch 8 vs 32 bitwise identical", same(arrays[0], arrays[2])),
            ("predict on GPU (fitted bp2d03 weights, one phantom scan)",
             f"{max(times):.1f} Mvoxel/s")]


def batch_check(root: Path, weights: Path, store: Path, device: str) -> list[tuple[str, str]]:
    """The free-VRAM batch sizing, and a prediction with it."""
    import torch

    from bone_seg.inference import PredictSettings, predict_scan
    from bone_seg.inference.ensemble import load_ensemble
    from bone_seg.inference.predictor import Predictor
    from bone_seg.inference.run import auto_batch_size
    from bone_seg.monitoring.memory import free_memory_bytes

    dev = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
    ensemble = load_ensemble(str(weights))
    predictor = Predictor(ensemble, ensemble.meta, PredictSettings(), dev)
    free = free_memory_bytes(dev)
    batch = auto_batch_size(predictor, [dev])
    del predictor, ensemble
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    out = root / "auto_batch.zarr"
    shutil.rmtree(out, ignore_errors=True)
    report = predict_scan(str(weights), "g02", out, store_path=store, settings=PredictSettings(
        device=device, batch_size="auto", progress=False, summary=False))
    peak = torch.cuda.max_memory_allocated(dev) if device == "cuda" else 0
    return [("free VRAM before predicting", f"{free / 2**30:.1f} GB"),
            ("auto batch (windows per step)", f"{batch} (report: {report.batch_size}; "
             "a quarter of the free VRAM, capped at 256)"),
            ("predict with batch_size=auto: peak VRAM (torch / NVML)",
             f"{peak / 2**30:.2f} GB / {report.peak_vram_gb or float('nan'):.2f} GB")]


def sync(device: str) -> None:
    """Wait for the GPU's queued work (timing)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="/tmp/bone_seg_gpu_check")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--size", type=int, default=1024, help="Y/X of the MONAI comparison")
    parser.add_argument("--batch", type=int, default=None, help="fit batch (bp2d03's: 64)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = parser.parse_args()
    line = no_gpu_line() if args.device == "cuda" else None
    if line:
        print(line)
        return 0
    import torch

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "none: --device cpu"
    rows: list[tuple[str, str]] = [("GPU", f"{name}, torch {torch.__version__}, CUDA "
                                           f"{torch.version.cuda}")]
    failed = 0
    store = make_store(root)
    weights = None
    dev = args.device
    checks = [("fit", lambda: fit_check(root, store, args.steps, dev, args.batch)),
              ("monai", lambda: monai_check(dev, size=args.size)),
              ("repeat", lambda: repeat_check(root, weights, store, dev)),
              ("batch", lambda: batch_check(root, weights, store, dev))]
    for name, check in checks:
        t = time.perf_counter()
        try:
            if name in ("repeat", "batch") and weights is None:
                raise RuntimeError("no fitted weights (the fit check failed)")
            result = check()
            if name == "fit":
                result, weights = result
            rows += result
        except Exception as err:  # noqa: BLE001 - a failed check is a row; the others run
            failed += 1
            traceback.print_exc()
            rows.append((f"{name} check", f"failed: {type(err).__name__}: {err}"))
        print(f"[{name} check: {time.perf_counter() - t:.0f} s]", flush=True)
    rows.append(("whole check", f"{time.perf_counter() - t0:.0f} s"))
    print("\n| check | figure |\n|---|---|")
    for key, value in rows:
        print(f"| {key} | {value} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
