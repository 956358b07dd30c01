"""The best weights of a sweep's FINISHED fit runs, selected as ``bone-report`` selects them
(:func:`bone_seg.tracking.runs.fetch_runs`; ``seed=`` keeps one seed): what
``bone-morpho sweep=`` predicts each run's test scans with, and ``bone-predict sweep=`` ensembles.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from bone_seg.errors import BoneSegError
from bone_seg.reports.cv_table import label
from bone_seg.tracking.runs import fetch_runs


def selected_runs(cfg: DictConfig, runs) -> list:
    """The runs of ``runs`` (a :class:`~bone_seg.tracking.runs.SweepRuns`) of ``cfg.seed``
    (all when null)."""
    if cfg.seed is None:
        return runs.runs
    chosen = [r for r in runs.runs if label(r.data.tags.get("seed", "")) == label(cfg.seed)]
    if not chosen:
        seeds = sorted({str(r.data.tags.get("seed")) for r in runs.runs})
        raise BoneSegError(f"{runs.selection}: no FINISHED run of seed={cfg.seed}; seeds "
                           f"present: {', '.join(seeds)}")
    return chosen


def best_weights(client, run, out: Path) -> Path:
    """The run's best weights: in its run directory, else downloaded from its artifacts into
    ``<out>/weights/<run id>/``."""
    local = Path(run.data.tags.get("output_dir", "")) / "best.safetensors"
    if local.is_file():
        return local
    names = [f.path for f in client.list_artifacts(run.info.run_id)
             if f.path.endswith(".safetensors")]
    if not names:
        raise BoneSegError(f"run {run.info.run_id}: no best weights (neither {local} nor a "
                           ".safetensors artifact)")
    target = out / "weights" / run.info.run_id
    target.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run.info.run_id, names[0], str(target)))


def sweep_weights(cfg: DictConfig, out: Path) -> tuple[list[Path], list[str], str]:
    """``(weights, run names, selection)`` of the sweep ``cfg.sweep`` (and ``cfg.seed``), runs
    in the order ``fetch_runs`` gives (start time, then run id: the same order every time)."""
    runs = fetch_runs(cfg.logger.tracking_uri, cfg.logger.experiment_name, str(cfg.sweep))
    chosen = selected_runs(cfg, runs)
    selection = runs.selection + (f", seed {cfg.seed}" if cfg.seed is not None else "")
    return ([best_weights(runs.client, r, out) for r in chosen],
            [r.info.run_name or r.info.run_id for r in chosen], selection)
