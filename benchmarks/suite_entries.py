"""The entries of ``run_all.py``: which script answers which question, at which size.

``quick`` sizes fit a quiet 2-core CPU in about 10 minutes together; ``full`` are the scripts'
own defaults (the figures of their docstrings). ``recorded`` entries are expensive accuracy
experiments (hours on 2 cores): the suite shows their last recorded figures from
``recorded.json``, dated and marked as such, rather than rerunning them.
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    name: str
    script: str
    question: str
    quick: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    recorded: bool = False


ENTRIES = (
    Entry("lightning_overhead", "lightning_overhead.py",
          "what does our LightningModule/Trainer cost over a plain PyTorch loop, per epoch?",
          ("--epochs", "3", "--train-batches", "12", "--val-batches", "4", "--rounds", "2"),
          ("--epochs", "4", "--train-batches", "40", "--val-batches", "10", "--rounds", "3")),
    Entry("train_step", "train_step.py",
          "how close to the matmul peak is a training step (2D, 2.5D, 3D; memory formats, "
          "optimiser kernels, torch.compile)?",
          ("--steps", "6", "--rounds", "3"), ("--steps", "15", "--rounds", "5", "--compile")),
    Entry("inference_peak", "inference_peak.py",
          "how close to the matmul peak is the U-Net/ResNet-18 window pass?",
          ("--rounds", "5"), ("--rounds", "9")),
    Entry("onnx_engine", "onnx_engine.py",
          "is bone-predict engine=onnxruntime faster than the torch engine (and MONAI)?",
          ("--rounds", "5", "--volume", "2x256x256", "--repeats", "2"),
          ("--rounds", "9", "--volume", "4x320x320", "--repeats", "3")),
    Entry("predict_vs_monai", "predict_vs_monai.py",
          "is prediction faster than MONAI's sliding_window_inference on equal terms?",
          ("--depth", "4", "--size", "320", "--repeats", "2"), ("--3d",)),
    Entry("predict_memory", "predict_memory.py", "is prediction memory bounded by a slab?",
          ("--depth", "4", "--size", "384"), ()),
    Entry("pyramid_cost", "pyramid_cost.py",
          "what do the OME-Zarr pyramid and its metadata cost bone-predict?",
          ("--depth", "4", "--size", "384", "--repeats", "1"), ()),
    Entry("ensemble_cost", "ensemble_cost.py",
          "what do an ensemble of 5 and TTA cost bone-predict (time, peak RSS)?",
          ("--depth", "4", "--size", "256"), ()),
    Entry("postprocess_cost", "postprocess_cost.py",
          "is post-processing's memory bounded by slabs, and what does streaming cost?",
          ("--depth", "16", "--size", "384", "--repeats", "1"), ()),
    Entry("morphometry", "morphometry.py",
          "how fast is exact local thickness; is bone-morpho's memory bounded by a slab?",
          ("--depth", "32", "--size", "160"), ()),
    Entry("data_pipeline", "data_pipeline.py", "does the data pipeline keep the quick model fed?",
          ("--batches", "30"), ()),
    Entry("monitor_overhead", "monitor_overhead.py", "does the resource monitor slow training?",
          ("--steps", "15"), ()),
    Entry("fit_memory", "fit_memory.py", "does a fit's memory grow with the data set?",
          ("--shape", "24", "128", "128", "--batches", "8"), ()),
    Entry("iou_throughput", "iou_throughput.py",
          "is bone-iou >= 1 GB/s and far faster than torchmetrics?",
          ("--depth", "16", "--size", "512", "--repeats", "2"), ()),
    Entry("chunking", "chunking.py", "which Zarr layout for random 2D patch reads and 3D slabs?",
          ("--depth", "32", "--two"), ()),
    Entry("large_scan", "large_scan.py",
          "are phantom generation and bone-import memory bounded by a slab on a large scan?",
          ("--shape", "192", "768", "768"), ()),
    Entry("receptive_field", "receptive_field.py",
          "does a larger patch (receptive field) help on the paper's hard case?", recorded=True),
    Entry("robustness", "robustness.py",
          "do noise/blur/gamma augmentations help on imaging the model never saw?",
          recorded=True),
    Entry("ensemble_accuracy", "ensemble_accuracy.py",
          "do an ensemble, TTA and post-processing segment held-out scans better?",
          recorded=True),
    Entry("image_formation", "image_formation.py",
          "does partial volume + the scanner's PSF give phantoms whose models find the bone edge "
          "of a reconstructed CT?", recorded=True),
    Entry("pretrained", "pretrained_eval.py",
          "how good is the pretrained starting model on presets and seeds it never saw?",
          recorded=True),
    Entry("labelling_budget", "labelling_budget.py",
          "how many labelled slices does fine-tuning on a new kind of scan need?", recorded=True),
    Entry("openvino", "onnx_engine.py",
          "would OpenVINO beat onnxruntime as a CPU engine (same ONNX model)?", recorded=True),
    Entry("calibration", "calibration.py",
          "does temperature scaling calibrate the network (ECE before/after, per class; members "
          "or the mean of an ensemble)?", recorded=True),
    Entry("quality_check", "quality_check.py",
          "does the per-scan check rank unseen, shifted scans by their true error (Spearman with "
          "mIoU), and what does it cost?", recorded=True),
    Entry("quality_check_time", "quality_check.py",
          "what does the per-scan check add to bone-predict's time?",
          ("--timing", "--rounds", "3", "--depth", "16", "--preset", "mouse",
           "--root", "/tmp/bench_quality_time"),
          ("--timing", "--rounds", "5", "--depth", "48", "--preset", "mouse",
           "--root", "/tmp/bench_quality_time")),
)
