"""Export a stored volume as a TIFF stack, slab by slab."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from bone_seg.errors import BoneSegError
from bone_seg.io.tiff_writer import Display, TiffSliceWriter, write_multipage
from bone_seg.io.volume import Volume

FORMATS = ("folder", "multipage")


def export_tiff(
    volume: Volume,
    out: str | Path,
    fmt: str = "folder",
    prefix: str = "slice",
    voxel_size=None,
    slab_depth: int = 16,
    overwrite: bool = False,
    labels: int | None = None,
    display_range: tuple[float, float] | None = None,
) -> Path:
    """Write ``volume`` to ``out`` as a folder of slices or one multi-page TIFF.

    Memory holds one slab of ``slab_depth`` slices. The output appears under its final name only
    when complete.

    Args:
        voxel_size: µm (a number or ``(z, y, x)``); None: the volume's own, if it has one.
        labels: the number of classes of a label volume (display range ``0..C-1`` and a LUT).
        display_range: the display range of an image (ignored for labels).
    """
    if fmt not in FORMATS:
        raise BoneSegError(f"format={fmt!r} is not known; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise BoneSegError(f"{out} already exists; choose another out=... or pass overwrite=true")
    voxel_size = voxel_size or getattr(volume, "voxel_size", None)
    if labels:
        display = Display.for_labels(labels)
    else:
        display = Display(*display_range) if display_range else None
    depth = volume.shape[0]
    bar = tqdm(total=depth, desc=f"export {out.name}", unit="slice", disable=None)

    def slabs():
        for z0 in range(0, depth, slab_depth):
            slab = volume.read(z0, min(z0 + slab_depth, depth))
            yield slab
            bar.update(len(slab))

    if fmt == "folder":
        with TiffSliceWriter(
            out, depth, prefix=prefix, voxel_size=voxel_size, overwrite=overwrite, display=display
        ) as writer:
            for slab in slabs():
                writer.write(slab)
    else:
        if out.suffix.lower() not in (".tif", ".tiff"):
            out = out.with_suffix(".tif")
        write_multipage(
            out, volume.shape, volume.dtype, slabs(), voxel_size=voxel_size, overwrite=overwrite,
            display=display)
    bar.close()
    return out
