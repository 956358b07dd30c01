"""Sliding-window prediction, streamed slab by slab (pure PyTorch, no Lightning)."""

from bone_seg.inference.predictor import Predictor
from bone_seg.inference.record import PredictionReport
from bone_seg.inference.run import predict_scan
from bone_seg.inference.settings import PredictSettings
from bone_seg.inference.windows import WindowPlan, importance_map, window_starts

__all__ = ["PredictSettings", "PredictionReport", "Predictor", "WindowPlan", "importance_map",
           "predict_scan", "window_starts"]
