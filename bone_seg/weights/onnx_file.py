"""A network as ONNX (``bone-predict engine=onnxruntime``, ``bone-export format=bioimageio``).

torch's TorchScript-based exporter (``dynamo=False``) is used: it turns a segmentation-models
network into ONNX in about a second on 2 cores and keeps the spatial axes symbolic (the torch.export
based exporter needs a guard per size the decoder's skip connections meet, and takes tens of
seconds). Opset :data:`OPSET` (ONNX Runtime 1.32 runs it; deepImageJ's ONNX Runtime does too).

The graph is exported from the network in eval mode, float32, on the CPU; with ``softmax`` the
class probabilities are the output (what a package hands to a receiving lab), else the logits
(what the sliding-window predictor blends, like the torch engine's).
"""

from __future__ import annotations

import io
import warnings

import torch

from bone_seg.errors import BoneSegError

OPSET = 17


class _WithSoftmax(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def export_onnx(net: torch.nn.Module, example: torch.Tensor, *, softmax: bool = False,
                dynamic: bool = False) -> bytes:
    """The ONNX model of ``net`` for inputs shaped like ``example``.

    Args:
        net: the network (a copy is exported: ``net`` is left as it was).
        example: an input of the shape (and dtype) the model will run.
        softmax: append a softmax over the classes (output: probabilities).
        dynamic: batch and spatial axes symbolic (a package's model); else the example's shape
            exactly (the predictor's fixed micro-batches).

    Returns:
        The serialised ONNX model.

    Raises:
        BoneSegError: the exporter refused the network (the message names the error).
    """
    import copy

    model = copy.deepcopy(net).float().eval().to("cpu", memory_format=torch.contiguous_format)
    if softmax:
        model = _WithSoftmax(model).eval()
    x = example.detach().to("cpu", torch.float32).contiguous()
    names = ("batch", "channel", "z", "y", "x")[:1] + ("z", "y", "x")[-(x.dim() - 2):]
    axes = {0: "batch", **{i: n for i, n in enumerate(names[1:], start=2)}}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notices about its own deprecation
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": axes, "output": axes} if dynamic else None,
                              do_constant_folding=True)
    except Exception as err:  # the exporter raises many error types
        raise BoneSegError(f"the network could not be exported to ONNX: {err}") from None
    return buf.getvalue()
