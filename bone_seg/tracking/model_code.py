"""The pyfunc model of a bone_seg weights file, logged as *code* (MLflow's models-from-code).

MLflow runs this file when it loads the model (``mlflow.pyfunc.load_model``, ``mlflow models
serve``): it builds the network with bone_seg's own safetensors loader
(:func:`bone_seg.weights.network.load_net`) from the model's ``weights`` artifact. Nothing is
pickled when the model is logged and nothing is unpickled when it is loaded.

Input: a float32 array of windows normalised as bone_seg normalises a scan (the z-score of the
scan's statistics, ``data.normalize``), ``(N, C, H, W)`` for a 2D/2.5D network (C = the
network's input channels), ``(N, 1, D, H, W)`` for a 3D one; a single ``(H, W)`` slice is taken
as ``(1, 1, H, W)``. Output: the class of every voxel (int64, ``(N, H, W)`` / ``(N, D, H, W)``).
Windows are predicted one by one, so memory is bounded by a window.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

WEIGHTS = "weights"


class BoneSegWeights(PythonModel):
    """A bone_seg network read from its safetensors file."""

    def load_context(self, context) -> None:
        """Build the network from the ``weights`` artifact (never unpickled)."""
        import torch

        from bone_seg.weights.network import load_net

        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.net, self.meta = load_net(context.artifacts[WEIGHTS])

    def predict(self, context, model_input: Any, params: dict | None = None) -> np.ndarray:
        """The class of every voxel of each window (see the module's docstring)."""
        import torch

        from bone_seg.errors import BoneSegError

        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim == 2:
            x = x[None, None]
        want = 5 if self.meta.mode == "3d" else 4
        if x.ndim != want or x.shape[1] != self.meta.in_channels:
            raise BoneSegError(
                f"model input of shape {x.shape}: this {self.meta.mode} network takes "
                f"{want}-dimensional windows with {self.meta.in_channels} channel(s) on axis 1")
        if not np.isfinite(x).all():
            raise BoneSegError("model input holds NaN or infinite values")
        out = []
        with torch.inference_mode():
            for window in x:
                logits = self.net(torch.from_numpy(np.ascontiguousarray(window[None])))
                out.append(logits.argmax(1)[0].numpy().astype(np.int64))
        return np.stack(out)


mlflow.models.set_model(BoneSegWeights())
