"""Measure: ``bone-morpho`` (the same command, a child process) of a labels layer: its table of
measures (BV/TV, Tb.Th, Tb.Sp, Conn.D, ...) in the widget and the local-thickness map as an image
layer; the outputs kept in the work folder (``napari/morpho/<layer>/``)."""

from __future__ import annotations

import json

from qtpy.QtWidgets import QTableWidget

from bone_seg.gui.layers import Labels, add_output, find_layer, save_layer, voxel_size
from bone_seg.gui.panel import Job, LayerCombo, Panel, work_root
from bone_seg.gui.results import Staged, fill_table
from bone_seg.gui.score import _safe


class MeasureWidget(Panel):
    """Morphometry of a labels layer (bone-morpho); the thickness map as a layer."""

    run_label = "Measure"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.labels = LayerCombo(napari_viewer, Labels)
        self.form.addRow("labels", self.labels)
        self.table = QTableWidget()
        self.table.setMinimumHeight(200)
        self.body.addWidget(self.table)
        self.document: dict | None = None

    def job(self) -> Job:
        root = work_root()
        layer = find_layer(self.viewer, self.labels.name(), Labels, "labels to measure")
        staged = Staged(root / "napari" / "morpho" / _safe(layer.name))
        size = voxel_size(layer)
        overrides = [f"paths.root={root}", f"out={staged.tmp}", "name=morpho",
                     "voxel_size=" + ("voxels" if size is None
                                      else "[{}]".format(",".join(map(str, size))))]

        def before() -> None:
            overrides.append(f"labels={save_layer(layer, root / 'napari' / 'inputs', 'labels')}")

        def after(_) -> dict:
            return json.loads((staged.commit() / "morpho.json").read_text())

        def done(doc: dict) -> None:
            self.document = doc
            measures = doc.get("measures") or doc.get("scan", {}).get("measures", {})
            units = doc.get("units") or doc.get("scan", {}).get("units", {})
            fill_table(self.table, ["measure", "value", "unit"],
                       [[k, v, units.get(k, "")] for k, v in measures.items()])
            thickness = staged.final / "morpho_thickness.zarr"
            if thickness.exists():
                for added in add_output(self.viewer, thickness):
                    added.colormap = "magma"
                    added.name = f"{layer.name} thickness"
            self.say(f"{len(measures)} measures of {layer.name!r} ({staged.final})")

        return Job("morpho", overrides, before=before, after=after, cleanup=staged.discard,
                   done=done)
