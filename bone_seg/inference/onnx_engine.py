"""``engine=onnxruntime``: the network of each member run by ONNX Runtime on the CPU.

Each member's network (its weights loaded, batch norms folded when ``fold_bn``) is exported once
to ONNX (:func:`bone_seg.weights.onnx_file.export_onnx`) for the predictor's one input shape
(``micro_batch`` windows) and opened in an ONNX Runtime session: one session per member (an
ensemble of n ResNet-18 U-Nets holds n graphs of ~57 MB, unlike the torch engine's one network
per architecture). Everything around the forward pass — TTA transforms, softmax, the ensemble's
sums, blending, uncertainty — is the torch engine's code, run on the session's logits.

Repeatability: the session runs sequentially with a fixed number of intra-op threads (the
process's torch threads, i.e. ``threads=``), and the graph is optimised the same way on every
run, so a window's logits are bitwise identical on reruns (tested); the thread count is part of
an output's fingerprint. ONNX Runtime's kernels (MLAS) differ from oneDNN's in the last bits: the
labels agree with the torch engine's on >= 99.99 % of voxels (tests/inference/test_onnx_engine.py;
measured figures in benchmarks/README.md), but not bitwise.
"""

from __future__ import annotations

import numpy as np
import torch

from bone_seg.errors import BoneSegError
from bone_seg.weights.onnx_file import export_onnx

ENGINES = ("torch", "onnxruntime")


def check_engine(engine: str, device: torch.device | None = None) -> str:
    """``engine`` if known (and, for onnxruntime, on the CPU), else a message naming the fix."""
    if engine not in ENGINES:
        raise BoneSegError(f"engine={engine!r} is not known; use one of {', '.join(ENGINES)}")
    if engine == "onnxruntime" and device is not None and device.type != "cpu":
        raise BoneSegError(f"engine=onnxruntime runs on the CPU, not {device}; pass device=cpu "
                           "(or engine=torch for the GPU)")
    return engine


def ort_threads() -> int:
    """The intra-op threads of a session: the process's torch threads (``threads=``)."""
    return max(1, int(torch.get_num_threads()))


def open_session(model: bytes, threads: int):
    """An ONNX Runtime CPU session of ``model`` that runs the same way every time."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own error types
        raise BoneSegError(f"ONNX Runtime could not open the model: {err}") from None


class OnnxNet:
    """A network's ONNX Runtime session, called like the network on CPU tensors.

    Args:
        net: the network holding the member's weights (exported once, for ``example``'s shape).
        example: an input of the one shape the session will run.
        threads: intra-op threads (fixed: part of what the result depends on).
    """

    def __init__(self, net: torch.nn.Module, example: torch.Tensor, threads: int):
        self.shape = tuple(example.shape)
        self.session = open_session(export_onnx(net, example), threads)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != self.shape:
            raise BoneSegError(f"the ONNX model was exported for inputs {self.shape}, got "
                               f"{tuple(x.shape)}")
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input: arr})[0])
