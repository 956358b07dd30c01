"""Workflows: what each command does, its ``run(cfg)``, composed from the stage rooms.

One module per command (``fit``, ``predict``, ``iou``, ``import_``, ``export``, ``phantom``,
``report``, ``demo``); ``test_fold`` and ``mlflow_run`` are the fit's test-fold evaluation and its
MLflow run. Nothing is imported here.
"""
