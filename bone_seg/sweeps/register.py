"""``bone-report ... register=<name> alias=<alias>``: the sweep's top run into the Model Registry.

``register_by=miou`` takes the run of the highest mIoU (the figure the reports rank by: the
test fold's mIoU); ``register_by=score`` the top run of the weighted ranking (``rank.*``
settings; one run per configuration, as ``kind=rank`` requires).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from bone_seg.errors import BoneSegError
from bone_seg.reports.ranking import paper_weights, rank_configs
from bone_seg.reports.run_scores import run_miou, run_result
from bone_seg.tracking.registry import register_run_model

log = logging.getLogger(__name__)
BY = ("miou", "score")


def top_run(cfg: DictConfig, runs):
    """The sweep's top run by ``cfg.register_by``."""
    if cfg.register_by not in BY:
        raise BoneSegError(f"register_by={cfg.register_by!r}: use one of {', '.join(BY)}")
    if not runs.runs:
        raise BoneSegError(f"{runs.selection}: no FINISHED run to register")
    if cfg.register_by == "miou":
        scored = [(r, run_miou(runs.client, r)) for r in runs.runs]
        # ties: the earliest run (fetch_runs' order), the same every time
        return max(scored, key=lambda rs: rs[1])[0]
    results = [(run, run_result(runs.client, run)) for run in runs.runs]
    names = [res.name for _, res in results]
    if len(set(names)) != len(names):
        raise BoneSegError(f"register_by=score ranks one run per configuration, and "
                           f"{runs.selection} holds several runs of one configuration (folds or "
                           "seeds); use register_by=miou")
    weights = (OmegaConf.to_container(cfg.rank.weights) if cfg.rank.weights is not None
               else paper_weights(float(cfg.rank.miou_weight)))
    best = rank_configs([res for _, res in results], weights, missing=cfg.rank.missing).top(1)[0]
    return next(r for r, res in results if res.name == best.name)


def register_top_run(cfg: DictConfig, runs) -> str:
    """Register the top run's model as ``cfg.register`` with alias ``cfg.alias``; the
    ``models:/`` URI commands take."""
    if not cfg.alias:
        raise BoneSegError(f"register={cfg.register} needs alias=<alias> (e.g. alias=champion): "
                           "commands take weights=models:/<name>@<alias>")
    run = top_run(cfg, runs)
    version = register_run_model(runs.tracking_uri, run.info.run_id, str(cfg.register),
                                 str(cfg.alias))
    uri = f"models:/{cfg.register}@{cfg.alias}"
    log.info("registered run %s (%s, by %s) as %s version %s: weights=%s", run.info.run_id,
             run.info.run_name, cfg.register_by, cfg.register, version, uri)
    return uri
