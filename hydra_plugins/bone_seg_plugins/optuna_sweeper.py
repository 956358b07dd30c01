"""A Hydra sweeper that searches with Optuna (TPE by default) in a storage that outlives the sweep,
so that a second ``-m`` call with the same study continues it.

Why not the ``hydra-optuna-sweeper`` package: its latest release (1.3.0) requires
``optuna<3``, and Optuna 2.10's RDB storage cannot open an SQLite database under SQLAlchemy 2
(``get_current_version`` fails its assertion), which MLflow 3.17's ``alembic`` requires; without
a database there is no resume. This sweeper keeps that package's configuration (``direction``,
``study_name``, ``storage``, ``n_trials``, ``n_jobs``, ``sampler``, ``params`` in Hydra's
override syntax) and uses Optuna's own ask-and-tell interface.

Search space (``params`` and sweep overrides on the command line, the latter winning):
``choice(a,b,c)`` → categorical; ``interval(lo,hi)`` → uniform over real numbers (Hydra reads
its ends as floats), ``tag(log, interval(lo,hi))`` → log-uniform; ``range(a,b[,step])`` → a
stepped integer (or float) range, ``b`` excluded as in Python's ``range``. Other overrides are fixed for every
trial.

Each trial is one job of the launcher (``n_jobs`` at a time). A job's return value is the
objective (a number), or a mapping holding it under ``objective``; its ``run_id`` and
``output_dir``, when present, are stored as the trial's user attributes (the MLflow run and the
run directory). ``n_trials`` trials are added per call. The sampler's ``seed`` is offset by the
number of trials already in the study, so a resumed search does not replay its first random
trials. Failed jobs are recorded as failed trials, the search goes on, and the sweep fails at the
end naming them. ``<sweep dir>/optimization_results.yaml`` holds the best trial so far.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class OptunaSweeperConf:
    """Config of :class:`OptunaSweeper` (``hydra/sweeper=bone_optuna``)."""

    _target_: str = "hydra_plugins.bone_seg_plugins.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sampler is built here, its seed offset on a resume
    direction: str = "maximize"
    objective: Optional[str] = None  # noqa: UP045 - OmegaConf 2.3 takes no `str | None`
    study_name: Optional[str] = None  # noqa: UP045
    storage: Optional[str] = None  # noqa: UP045
    n_trials: int = 20
    n_jobs: int = 1
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler",
                                                  "seed": None})
    params: Any = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="bone_optuna", node=OptunaSweeperConf,
                             provider="bone_seg")


class TrialsFailed(RuntimeError):
    """Some trials of the search failed."""


def distribution(override):
    """The Optuna distribution of a sweep override, or None for a fixed value."""
    import optuna.distributions as d

    if not override.is_sweep_override():
        return None
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return d.CategoricalDistribution([v for v in override.sweep_iterator()])
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in (sweep.tags or set())
        return d.FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        step = sweep.step
        if all(isinstance(v, int) for v in values) and isinstance(step, int):
            return d.IntDistribution(values[0], values[-1], step=step)
        return d.FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
    raise ValueError(f"{override.input_line}: not a search space Optuna can take")


def describe(dist) -> str:
    """A distribution in a few words (the sweep's log)."""
    choices = getattr(dist, "choices", None)
    if choices is not None:
        return "one of " + ", ".join(map(str, choices))
    scale = "log-uniform" if dist.log else "uniform"
    step = f" step {dist.step}" if dist.step is not None else ""
    return f"{scale} {dist.low}..{dist.high}{step}"


def value_text(value: Any) -> str:
    """A sampled value as an override's value."""
    return repr(value) if isinstance(value, float) else str(value)


class OptunaSweeper(Sweeper):
    """Ask Optuna for ``n_trials`` trials, run them through the launcher, tell the results."""

    def __init__(self, direction: str = "maximize", objective: str | None = None,
                 study_name: str | None = None, storage: str | None = None, n_trials: int = 20,
                 n_jobs: int = 1, sampler: Any = None, params: Any = None) -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"hydra.sweeper.direction={direction}: maximize or minimize")
        if n_trials < 1 or n_jobs < 1:
            raise ValueError("hydra.sweeper.n_trials and n_jobs must be at least 1")
        self.direction, self.objective = direction, objective
        self.study_name, self.storage = study_name, storage
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.sampler = sampler
        self.params = dict(OmegaConf.to_container(params, resolve=True)
                           if isinstance(params, DictConfig) else params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _space(self, arguments: "list[str]") -> "tuple[dict, list[str]]":
        """The search space ``{key: distribution}`` and the fixed overrides."""
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        space: dict = {}
        fixed: dict = {}
        for override in parser.parse_overrides(lines):
            key = override.get_key_element()
            dist = distribution(override)
            space.pop(key, None)
            fixed.pop(key, None)
            if dist is None:
                fixed[key] = override.input_line
            else:
                space[key] = dist
        return space, list(fixed.values())

    def _study(self):
        import optuna

        if self.storage and self.storage.startswith("sqlite:///"):
            Path(self.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(study_name=self.study_name, storage=self.storage,
                                    direction=self.direction, load_if_exists=True)
        node = OmegaConf.create(OmegaConf.to_container(self.sampler, resolve=True)
                                if isinstance(self.sampler, DictConfig) else
                                self.sampler or {"_target_": "optuna.samplers.TPESampler"})
        seed = node.get("seed")
        if seed is not None:
            node.seed = int(seed) + len(study.trials)  # a resumed search draws anew
        study.sampler = instantiate(node)
        return study

    def sweep(self, arguments: list[str]) -> Any:
        """Run ``n_trials`` trials (``n_jobs`` at a time); returns their job returns."""
        assert self.config is not None and self.launcher is not None
        import optuna

        space, fixed = self._space(arguments)
        if not space:
            raise ValueError("the Optuna sweep has no search space: give hydra.sweeper.params "
                             "or sweep overrides such as 'model.optimizer.lr=interval(1e-4,1e-2)'")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = self._study()
        log.info("Optuna study %s (%s): %d trial(s) so far, %d more, %d at a time; %s",
                 study.study_name, self.storage or "in memory", len(study.trials), self.n_trials,
                 self.n_jobs, "; ".join(f"{k}: {describe(v)}" for k, v in space.items()))
        returns, failed = [], []
        while len(returns) < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs,
                                                          self.n_trials - len(returns)))]
            batch = [tuple(f"{k}={value_text(t.params[k])}" for k in space) + tuple(fixed)
                     for t in trials]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            self.job_idx += len(batch)
            for trial, ret in zip(trials, results, strict=True):
                value, why = self._objective(trial, ret)
                if why is None:
                    study.tell(trial, value)
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    failed.append(f"trial {trial.number} ({' '.join(ret.overrides)}): {why}")
                    log.warning("Optuna trial %d failed: %s", trial.number, why)
            returns.extend(results)
        self._write_results(study, sweep_dir)
        if failed:
            raise TrialsFailed(f"{len(failed)} of {len(returns)} trial(s) failed: "
                               + "; ".join(failed))
        return [returns]

    def _objective(self, trial, ret) -> "tuple[float | None, str | None]":
        """The job's objective value, or why there is none; stores the run's id and folder."""
        trial.set_user_attr("job_dir", str(ret.working_dir))
        if ret.status != JobStatus.COMPLETED:
            return None, str(getattr(ret, "_return_value", "the job failed"))
        value = ret.return_value
        if isinstance(value, dict):
            for key in ("run_id", "output_dir"):
                if value.get(key) is not None:
                    trial.set_user_attr(key, str(value[key]))
            if self.objective is None or value.get(self.objective) is None:
                return None, (f"the job returned no {self.objective!r} (set "
                              "hydra.sweeper.objective to one of: "
                              f"{', '.join(sorted(value))})")
            value = value[self.objective]
        try:
            return float(value), None
        except (TypeError, ValueError):
            return None, f"the job returned {value!r}, not a number"

    def _write_results(self, study, sweep_dir: Path) -> None:
        import optuna

        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        summary = {"name": "optuna", "study_name": study.study_name, "storage": self.storage,
                   "direction": self.direction, "trials": len(study.trials),
                   "completed": len(done)}
        if done:
            best = study.best_trial
            summary.update(best_trial=best.number, best_value=best.value,
                           best_params=dict(best.params))
            log.info("Optuna best so far: trial %d, value %.6g, %s", best.number, best.value,
                     " ".join(f"{k}={value_text(v)}" for k, v in best.params.items()))
        OmegaConf.save(OmegaConf.create(summary), sweep_dir / "optimization_results.yaml")
