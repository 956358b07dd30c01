"""``weights=`` naming MLflow records, resolved to a local safetensors file.

Forms accepted by every command that takes weights (``bone-predict``, ``bone-export``,
``bone-morpho``, the ensemble's ``sweep=`` runs):

- ``models:/<name>@<alias>`` or ``models:/<name>/<version>``: a version of a registered model
  (:mod:`bone_seg.tracking.registry`), read through its MLflow model;
- ``models:/<model id>`` (``m-...``): a logged model;
- ``runs:/<run id>`` or a bare run id (32 hex digits): the run's best weights;
  ``runs:/<run id>/<path>``: that artifact of the run.

A file is downloaded once into ``<cache>/<model or run id>/`` (a logged model's or a run's files
never change) and read with bone_seg's own loader like any weights file: nothing is unpickled.
A run of this machine whose run directory still holds the weights is read from there.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bone_seg.errors import BoneSegError
from bone_seg.tracking.registry import MODEL_ID_TAG

MODELS = "models:/"
RUNS = "runs:/"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
SUFFIX = ".safetensors"


def is_mlflow_weights(weights: Any) -> bool:
    """Whether ``weights`` names MLflow records (``models:/``, ``runs:/`` or a run id)."""
    if not isinstance(weights, str):
        return False
    text = weights.strip()
    return text.startswith((MODELS, RUNS)) or bool(_RUN_ID.match(text))


def resolve_weights_uri(weights: Any, tracking_uri: str, cache_dir: str | os.PathLike,
                        key: str = "weights") -> Any:
    """``weights`` as a local safetensors path when it names MLflow records; else unchanged.

    Args:
        weights: a command's weights value.
        tracking_uri: the tracking store to ask (``logger.tracking_uri``).
        cache_dir: where downloaded files are kept (``<paths.cache>/mlflow``).
        key: the config key, for messages.

    Raises:
        BoneSegError: no such model, alias, version, run or artifact (the message names what
            exists), or the records hold no safetensors file.
    """
    if not is_mlflow_weights(weights):
        return weights
    from mlflow import MlflowClient

    text = str(weights).strip()
    client = MlflowClient(tracking_uri)
    cache = Path(cache_dir).expanduser()
    if text.startswith(MODELS):
        return str(_model_weights(client, text, cache, key))
    run_id, path = (text[len(RUNS):].split("/", 1) + [""])[:2] if text.startswith(RUNS) \
        else (text, "")
    return str(_run_weights(client, run_id, path, cache, key))


def model_id_of(client, uri: str, key: str = "weights") -> str:
    """The logged model's id that ``models:/...`` names.

    Raises:
        BoneSegError: unknown registered model, alias, version or model id.
    """
    from mlflow.exceptions import MlflowException

    ref = uri[len(MODELS):].strip("/")
    if ref.startswith("m-") and "@" not in ref and "/" not in ref:
        try:
            return client.get_logged_model(ref).model_id
        except MlflowException:
            raise BoneSegError(f"{key}={uri}: no logged model {ref} at "
                               f"{client.tracking_uri}") from None
    name, alias, version = _split(ref, uri, key)
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise BoneSegError(
            f"{key}={uri}: no registered model '{name}' at {client.tracking_uri}; registered: "
            f"{', '.join(names) or 'none (bone-report ... register=<name> alias=<alias>)'}"
        ) from None
    try:
        mv = (client.get_model_version_by_alias(name, alias) if alias is not None
              else client.get_model_version(name, version))
    except MlflowException:
        aliases = ", ".join(f"@{a} (version {v})" for a, v in sorted(registered.aliases.items()))
        versions = ", ".join(str(v) for v in sorted(int(m.version) for m in
                                                     client.search_model_versions(f"name='{name}'")))
        what = f"alias '{alias}'" if alias is not None else f"version {version}"
        raise BoneSegError(f"{key}={uri}: registered model '{name}' has no {what}; its aliases: "
                           f"{aliases or 'none'}; its versions: {versions or 'none'}") from None
    if getattr(mv, "model_id", None):
        return mv.model_id
    if (mv.tags or {}).get(MODEL_ID_TAG):  # registered by bone-report (register_run_model)
        return mv.tags[MODEL_ID_TAG]
    if str(mv.source).startswith(MODELS):
        return str(mv.source)[len(MODELS):].strip("/")
    raise BoneSegError(f"{key}={uri}: version {mv.version} of '{name}' is not a logged model "
                       f"(source {mv.source}); register a model that bone-fit logged")


def _split(ref: str, uri: str, key: str) -> tuple[str, str | None, str | None]:
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise BoneSegError(f"{key}={uri}: write models:/<name>@<alias>, models:/<name>/<version> or "
                       "models:/<model id>")


def _model_weights(client, uri: str, cache: Path, key: str) -> Path:
    """The safetensors artifact of the logged model ``uri`` names (downloaded once)."""
    import mlflow.artifacts

    model_id = model_id_of(client, uri, key)
    target = cache / model_id
    found = sorted(target.glob(f"*{SUFFIX}")) if target.is_dir() else []
    if found:
        return found[0]
    model = client.get_logged_model(model_id)
    with tempfile.TemporaryDirectory(dir=_mkdir(cache)) as tmp:
        got = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"{model.artifact_location.rstrip('/')}/artifacts", dst_path=tmp,
            tracking_uri=client.tracking_uri))
        files = sorted(got.rglob(f"*{SUFFIX}"))
        if not files:
            raise BoneSegError(f"{key}={uri}: logged model {model_id} holds no {SUFFIX} file; "
                               "only models that bone-fit logged can be used as weights")
        return _place(files[0], target)


def _run_weights(client, run_id: str, path: str, cache: Path, key: str) -> Path:
    """The run's best weights (or its artifact ``path``): the run directory's file when it is
    still there, else downloaded once."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise BoneSegError(f"{key}={run_id}: no run {run_id} at {client.tracking_uri}; copy a "
                           "run id from the MLflow UI or bone-report's table") from None
    if not path:
        local = Path(run.data.tags.get("output_dir", "")) / f"best{SUFFIX}"
        if run.data.tags.get("output_dir") and local.is_file():
            return local
        names = [a.path for a in client.list_artifacts(run_id) if a.path.endswith(SUFFIX)]
        if not names:
            raise BoneSegError(f"{key}=runs:/{run_id}: the run has no {SUFFIX} artifact; "
                               "artifacts: " + ", ".join(a.path for a in client.list_artifacts(
                                   run_id)))
        path = names[0]
    target = cache / run_id
    if (target / Path(path).name).is_file():
        return target / Path(path).name
    with tempfile.TemporaryDirectory(dir=_mkdir(cache)) as tmp:
        try:
            got = Path(client.download_artifacts(run_id, path, tmp))
        except (MlflowException, OSError):
            names = ", ".join(a.path for a in client.list_artifacts(run_id))
            raise BoneSegError(f"{key}=runs:/{run_id}/{path}: no such artifact; the run's "
                               f"artifacts: {names}") from None
        if got.is_dir():
            files = sorted(got.rglob(f"*{SUFFIX}"))
            if not files:
                raise BoneSegError(f"{key}=runs:/{run_id}/{path}: a folder without a {SUFFIX}")
            got = files[0]
        return _place(got, target)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _place(file: Path, target: Path) -> Path:
    """Move a downloaded file into the cache folder atomically (no half-written file there)."""
    _mkdir(target)
    final = target / file.name
    partial = target / f".{file.name}.partial"
    shutil.move(str(file), partial)
    os.replace(partial, final)
    return final
