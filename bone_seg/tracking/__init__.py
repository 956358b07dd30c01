"""Tracking: every conversation with MLflow, and the names the runs are recorded under.

One responsibility per module (nothing is imported here, so reading a name pulls in no MLflow):

* :mod:`~bone_seg.tracking.records` — the record contract's names (tags, metrics, artifacts, run
  names) that writers and readers share; :mod:`~bone_seg.tracking.morpho_names` — morphometry's
  measures as metric names.
* :mod:`~bone_seg.tracking.store` — the tracking database, its lock, experiment creation.
* :mod:`~bone_seg.tracking.log` — a command's scores and inputs logged as a run (``bone-iou``,
  ``bone-morpho``, ``bone-predict morpho=true``).
* :mod:`~bone_seg.tracking.fit_run` — a fit's run (Lightning's MLflow logger, parameters, dataset
  input, artifacts, its end); :mod:`~bone_seg.tracking.provenance` — the code's tags;
  :mod:`~bone_seg.tracking.sweep_run` — a multirun's parent run (a Hydra callback).
* :mod:`~bone_seg.tracking.runs` — selecting a sweep's finished fit runs and reading their tags,
  metrics and files (reports, sweep ensembles, morphometry agreement).
* :mod:`~bone_seg.tracking.publish` — a report's own run with its files and figures.
* :mod:`~bone_seg.tracking.models` — a fit's best weights as an MLflow model (code in
  :mod:`~bone_seg.tracking.model_code`: it reads the safetensors file, nothing is pickled);
  :mod:`~bone_seg.tracking.registry` — the Model Registry; :mod:`~bone_seg.tracking.resolve` —
  ``runs:/``, ``models:/`` and run-id weights resolved to their safetensors file.

No other package of bone_seg imports ``mlflow`` (an import-linter contract in ``pyproject.toml``).
"""
