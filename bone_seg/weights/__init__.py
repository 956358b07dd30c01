"""The weights file, its one home: what it holds and how it becomes a network.

- :mod:`~bone_seg.weights.meta`: :class:`WeightsMeta`, the metadata schema and its validation.
- :mod:`~bone_seg.weights.safetensors_file`: our format (one ``.safetensors`` file).
- :mod:`~bone_seg.weights.bone`: BONe DLFit's ``.pth`` layout (import and export).
- :mod:`~bone_seg.weights.detect`: which format a file holds; loading either.
- :mod:`~bone_seg.weights.network`: weights → network (pretrained or from a file).

Nothing is imported here: each user imports what it needs. No Lightning in this package; weights
are never unpickled with code execution.
"""
