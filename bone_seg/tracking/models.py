"""A fit's best weights as an MLflow model (MLflow 3's ``LoggedModel``), without pickle.

:func:`log_weights_model` writes a pyfunc model whose code is :mod:`bone_seg.tracking.model_code`
(models-from-code: MLflow copies the file and runs it on load) and whose one artifact is the
safetensors file, links it to the fit's run as the run's output, and returns its id; the metrics
the fit logs afterwards (test scores, wall time) are logged with that id (:func:`log_model_metrics`)
so the UI shows them on the model. Everything goes through one :class:`mlflow.MlflowClient` of the
fit's tracking URI: no global MLflow state, no active run.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.safetensors_file import load_weights

MODEL_NAME = "model"
MODEL_CODE = Path(__file__).with_name("model_code.py")
#: what the model needs besides bone_seg itself (installed where bone_seg is)
REQUIREMENTS = ("torch", "safetensors", "segmentation-models-pytorch", "numpy", "mlflow")


def requirements() -> list[str]:
    """The pinned requirements of the model's environment (what is installed here)."""
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def signature(meta: WeightsMeta):
    """Tensor signature: float32 windows in, int64 classes out (see :mod:`.model_code`)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    spatial = (-1, -1, -1) if meta.mode == "3d" else (-1, -1)
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, meta.in_channels, *spatial))]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1, *spatial))]))


def log_weights_model(client, run_id: str, weights: str | Path, name: str = MODEL_NAME) -> str:
    """Log ``weights`` (a bone_seg ``.safetensors``) as the run's MLflow model; its id.

    Args:
        client: an :class:`mlflow.MlflowClient` of the run's tracking URI.
        run_id: the fit's run (the model's source run; the model is its output).
        weights: the best weights file.
        name: the model's name in the run.
    """
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    weights = Path(weights)
    _, meta = load_weights(weights)  # a bad file fails before anything is logged
    run = client.get_run(run_id)
    model = client.create_logged_model(
        run.info.experiment_id, name=name, source_run_id=run_id, model_type="bone_seg",
        params=dict(run.data.params),
        tags={"bone_seg.arch": meta.arch, "bone_seg.encoder": meta.encoder,
              "bone_seg.mode": meta.mode, "bone_seg.classes": ",".join(meta.class_names)})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            with warnings.catch_warnings():
                # the signature is given (``signature``): MLflow's notes that it does not read
                # predict's type hints as one, and that an input example (MLflow would load and
                # run the network while logging) is missing, say nothing a user can act on
                for note in (r".*input example was not provided", r".*Type hint used in the model",
                             r"Failed to infer signature from type hint"):
                    warnings.filterwarnings("ignore", message=note)
                mlflow.pyfunc.save_model(
                    str(local), python_model=str(MODEL_CODE),
                    artifacts={"weights": str(weights)},
                    mlflow_model=Model(artifact_path=model.artifact_location, run_id=run_id,
                                       model_id=model.model_id, model_uuid=model.model_id),
                    signature=signature(meta), pip_requirements=requirements())
            client.log_model_artifacts(model.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
        client.finalize_logged_model(model.model_id, "READY")
    except BaseException:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    return model.model_id


def log_model_metrics(client, run_id: str, model_id: str | None,
                      metrics: Mapping[str, float]) -> None:
    """Log the run's ``metrics``, linked to its model ``model_id`` (when there is one)."""
    from mlflow.entities import Metric

    if not metrics:
        return
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[
        Metric(k, float(v), now, 0, run_id=run_id, model_id=model_id) for k, v in metrics.items()])
