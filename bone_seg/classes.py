"""The classes of the default task (micro-CT of bone): the one place their names are written."""

from __future__ import annotations

#: Class names of the default task, by class index (masks hold ``0..C-1``).
DEFAULT_CLASS_NAMES: tuple[str, ...] = ("background", "bone", "pores")


def default_class_names(num_classes: int) -> list[str]:
    """``background, bone, pores`` for 3 classes (the default task), ``class_<i>`` otherwise."""
    if num_classes == len(DEFAULT_CLASS_NAMES):
        return list(DEFAULT_CLASS_NAMES)
    return [f"class_{i}" for i in range(num_classes)]
