"""The Model Registry: a fit's logged model registered under a name, with an alias.

``bone-report ... register=<name> alias=<alias>`` registers the sweep's top run
(:mod:`bone_seg.sweeps.register` chooses it); commands then take
``weights=models:/<name>@<alias>`` (:mod:`bone_seg.tracking.resolve`). Moving the alias to a
newer version changes what every such command uses, without touching a file.
"""

from __future__ import annotations

import json
import re

from bone_seg.errors import BoneSegError

#: the version's tag naming its logged model (read by :mod:`bone_seg.tracking.resolve`)
MODEL_ID_TAG = "bone_seg.model_id"
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def run_model_id(client, run) -> str:
    """The id of the model a fit run logged (its best weights).

    Raises:
        BoneSegError: the run logged no model.
    """
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    if not outputs:
        raise BoneSegError(f"run {run.info.run_id} ({run.info.run_name}) logged no MLflow model: "
                           "it was fitted before bone-fit logged its weights as a model; fit it "
                           "again to register it")
    return outputs[-1].model_id


def _link_version(client, model_id: str, name: str, version: int | str) -> None:
    """Name the version on its logged model (the tag the UI's Models page shows as "Registered
    models"; what ``mlflow.register_model`` writes, which would need MLflow's global tracking
    URI, so it is written here through the client)."""
    tag = "mlflow.modelVersions"
    model = client.get_logged_model(model_id)
    versions = json.loads(model.tags.get(tag) or "[]")
    if any(v.get("name") == name and str(v.get("version")) == str(version) for v in versions):
        return  # a tracking server links it itself on create_model_version
    versions.append({"name": name, "version": version})
    client.set_logged_model_tags(model_id, {tag: json.dumps(versions)})


def register_run_model(tracking_uri: str, run_id: str, name: str, alias: str) -> str:
    """Register the model of fit run ``run_id`` as a new version of ``name`` and point
    ``alias`` at it; returns the version.

    Raises:
        BoneSegError: a name or alias MLflow refuses (``v1``-style aliases are reserved), or a
            run without a model.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not name or "/" in name or "@" in name:
        raise BoneSegError(f"register={name!r}: a registered model's name, without / or @")
    if not _ALIAS.match(alias or "") or re.match(r"^[vV]\d+$", alias):
        raise BoneSegError(f"alias={alias!r}: letters, digits, _ and -, starting with a letter, "
                           "and not v<number> (MLflow keeps those for versions); e.g. champion")
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    model_id = run_model_id(client, run)
    try:
        try:
            client.create_registered_model(
                name, description="bone_seg segmentation model (bone-report register=)")
        except MlflowException as err:
            if "already exists" not in str(err).lower() and \
                    "RESOURCE_ALREADY_EXISTS" not in str(err):
                raise
        source = client.get_logged_model(model_id).artifact_location
        mv = client.create_model_version(name, source=source, run_id=run_id,
                                         model_id=model_id,
                                         tags={"bone_seg.run_name": run.info.run_name or "",
                                               MODEL_ID_TAG: model_id})
        client.set_registered_model_alias(name, alias, mv.version)
        _link_version(client, model_id, name, mv.version)
    except MlflowException as err:
        raise BoneSegError(f"MLflow at {tracking_uri} refused to register run {run_id} as "
                           f"{name}@{alias}: {err}") from err
    return str(mv.version)
