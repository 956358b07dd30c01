"""Sliding-window prediction, streamed slab by slab (pure PyTorch, no Lightning)."""

from bone_seg.inference.predictor import SlidingWindowPredictor, WindowPlan
from bone_seg.inference.run import predict_scan
from bone_seg.inference.windows import importance_map, window_starts

__all__ = ["SlidingWindowPredictor", "WindowPlan", "importance_map", "predict_scan",
           "window_starts"]
