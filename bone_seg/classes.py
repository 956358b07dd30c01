"""The classes of the default task (micro-CT of bone): the one place their names are written."""

from __future__ import annotations

#: Class names of the default task, by class index (masks hold ``0..C-1``).
DEFAULT_CLASS_NAMES: tuple[str, ...] = ("background", "bone", "pores")

#: The mask value of an *unlabelled* voxel (sparse labels: a few annotated slices or strokes, the
#: rest unknown). Stored masks are uint8 with classes ``0..C-1`` (C <= 254), so 255 is never a
#: class. Losses, metrics, patch sampling and ``bone-iou`` leave such voxels out exactly.
UNLABELLED: int = 255


def default_class_names(num_classes: int) -> list[str]:
    """``background, bone, pores`` for 3 classes (the default task), ``class_<i>`` otherwise."""
    if num_classes == len(DEFAULT_CLASS_NAMES):
        return list(DEFAULT_CLASS_NAMES)
    return [f"class_{i}" for i in range(num_classes)]


#: Display colours (RGB) of the default task's classes: background black (transparent in
#: overlays), bone gold, pores blue (told apart with any colour vision, and from the grey scan);
#: further classes take the distinct colours of :data:`DISTINCT_COLOURS` in turn.
DEFAULT_CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (240, 190, 0), (0, 150, 255))

#: Well-separated colours (the first entries of Glasbey's palette, black skipped), for label LUTs.
DISTINCT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (215, 0, 0), (140, 60, 255), (2, 136, 0), (0, 172, 199), (152, 255, 0), (255, 127, 209),
    (108, 0, 79), (255, 165, 48), (0, 0, 157), (134, 112, 104), (0, 73, 66), (79, 42, 0),
    (0, 253, 207), (188, 183, 255), (149, 180, 122), (192, 4, 185),
)


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """One RGB colour per class index: class 0 black, the default task's classes their colours,
    any others Glasbey-like distinct colours (cycled past 16)."""
    colours = [DEFAULT_CLASS_COLOURS[0]]
    for i in range(1, num_classes):
        if num_classes == len(DEFAULT_CLASS_NAMES):
            colours.append(DEFAULT_CLASS_COLOURS[i])
        else:
            colours.append(DISTINCT_COLOURS[(i - 1) % len(DISTINCT_COLOURS)])
    return colours


def label_lut(num_classes: int) -> list[tuple[int, int, int]]:
    """A 256-entry RGB look-up table for a label image: the class colours for ``0..C-1``, then
    the distinct colours cycled for any other value (so stray values stay visible)."""
    colours = class_colours(num_classes)
    rest = [DISTINCT_COLOURS[i % len(DISTINCT_COLOURS)] for i in range(256 - len(colours))]
    return colours + rest
