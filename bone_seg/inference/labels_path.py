"""Where a prediction output keeps its full-resolution labels (the layout
:mod:`bone_seg.inference.output` writes, and the older ones it still reads)."""

from __future__ import annotations

from pathlib import Path


def labels_array(out: str | Path) -> Path:
    """The full-resolution labels array of a prediction output ``out``: ``<out>/labels`` when
    that is an array, else followed down the OME-Zarr (NGFF 0.4/0.5) metadata of the groups there
    (a ``labels`` list, then ``multiscales[0].datasets[0].path``)."""
    import zarr

    path = Path(out) / "labels"
    for _ in range(4):
        try:
            node = zarr.open(str(path), mode="r")
        except Exception:  # noqa: BLE001 - not (yet) a Zarr node: the caller names the path
            return path
        if isinstance(node, zarr.Array):
            return path
        attrs = dict(node.attrs)
        ome = attrs.get("ome", attrs)
        if ome.get("labels"):
            path = path / str(ome["labels"][0])
        elif ome.get("multiscales"):
            path = path / str(ome["multiscales"][0]["datasets"][0]["path"])
        else:
            return path
    return path
