"""Label slices: jump between the slices the model suggests (``bone-predict suggest=N``, shown
as a Points layer by bone_seg's reader), paint them with napari's own Labels tools in an
annotation layer, and save: the painted voxels become the mask, every voxel not painted
*unlabelled* (:data:`bone_seg.classes.UNLABELLED`), and image + sparse mask are imported into the
store by ``bone-import`` (the same command, as a child process).

The annotation layer holds ``class + 1`` where painted and 0 where not (napari's eraser), so
nothing is labelled before it is painted: label 1 is background, 2 bone, 3 pores (their names
show in the status bar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Points
from qtpy.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton

from bone_seg.atomic import atomic_path, remove_stale_temporaries
from bone_seg.classes import UNLABELLED, class_colours, default_class_names
from bone_seg.errors import BoneSegError
from bone_seg.gui.layers import Image, Labels, find_layer, volume_data, voxel_size
from bone_seg.gui.panel import Job, LayerCombo, Panel, PathEdit, work_root


class LabelSlicesWidget(Panel):
    """Suggested slices, an annotation layer to paint, and "save annotations" (bone-import)."""

    run_label = "Save annotations"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.image = LayerCombo(napari_viewer, Image)
        self.suggestions = LayerCombo(napari_viewer, Points, optional=True)
        self.position = QLabel("no suggestion chosen")
        self.previous_button, self.next_button = QPushButton("◀ previous"), QPushButton("next ▶")
        steps = QHBoxLayout()
        steps.addWidget(self.previous_button)
        steps.addWidget(self.next_button)
        self.new_button = QPushButton("New annotation layer")
        self.annotations = LayerCombo(napari_viewer, Labels)
        self.store = PathEdit("store (default: <work folder>/data/store)", folder=True)
        self.scan_id = QLineEdit()
        self.scan_id.setPlaceholderText("scan id (default: the image layer's name)")
        self.form.addRow("image layer", self.image)
        self.form.addRow("suggestions", self.suggestions)
        self.form.addRow(self.position)
        self.form.addRow(steps)
        self.form.addRow(self.new_button)
        self.form.addRow("annotations", self.annotations)
        self.form.addRow("store", self.store)
        self.form.addRow("scan id", self.scan_id)
        self.index = -1
        self.previous_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.new_button.clicked.connect(self.new_annotations)

    # --- suggested slices ------------------------------------------------------------------------
    def slices(self) -> list[int]:
        """The suggested slices (z, voxel coordinates) in rank order."""
        if not self.suggestions.name():
            raise BoneSegError("no suggestions layer: segment with 'suggest slices' above 0 (or "
                               "open a prediction made with bone-predict suggest=N)")
        layer = self.viewer.layers[self.suggestions.name()]
        return [int(round(p[0])) for p in layer.data]

    def step(self, direction: int) -> None:
        """Show the next (+1) or previous (-1) suggested slice."""
        try:
            zs = self.slices()
        except BoneSegError as e:
            self.say(f"error: {e}")
            return
        if not zs:
            self.say("the suggestions layer holds no point")
            return
        self.index = (self.index + direction) % len(zs)
        self.viewer.dims.set_current_step(0, zs[self.index])
        self.position.setText(f"suggestion {self.index + 1} of {len(zs)}: slice {zs[self.index]}")

    # --- annotations -----------------------------------------------------------------------------
    def new_annotations(self) -> None:
        """An empty annotation layer over the image (0: not labelled; class k painted as k+1)."""
        try:
            layer = find_layer(self.viewer, self.image.name(), Image, "scan to annotate")
            shape = volume_data(layer, "scan to annotate").shape
        except BoneSegError as e:
            self.say(f"error: {e}")
            return
        names = default_class_names(3)
        colours = {i + 1: [c / 255 for c in rgb] + [1.0]
                   for i, rgb in enumerate(class_colours(len(names)))}
        colours[0] = [0.0, 0.0, 0.0, 0.0]
        colours[None] = [0.0, 0.0, 0.0, 0.0]
        new = self.viewer.add_labels(
            np.zeros(shape, np.uint8), name=f"{layer.name.removesuffix(' image')} annotations",
            scale=layer.scale,
            colormap=colours, features={"index": list(range(len(names) + 1)),
                                        "class": ["not labelled", *names]},
            metadata={"class_names": names, "annotation_offset": 1,
                      "units": (layer.metadata or {}).get("units")})
        new.selected_label = 2  # bone
        new.mode = "paint"
        self.annotations.setCurrentText(new.name)
        self.say("paint label 1 = background, 2 = bone, 3 = pores on the suggested slices; "
                 "what is not painted stays unlabelled")

    def job(self) -> Job:
        root = work_root()
        image = find_layer(self.viewer, self.image.name(), Image, "scan to annotate")
        shape = volume_data(image, "scan").shape
        if not self.annotations.name():
            raise BoneSegError("no annotation layer: press 'New annotation layer' and paint")
        painted = self.viewer.layers[self.annotations.name()]
        data = np.asarray(volume_data(painted, "annotations"))
        if data.shape != shape:
            raise BoneSegError(f"annotation layer {painted.name!r} has shape {data.shape}, the "
                               f"image {image.name!r} {shape}: annotate that image")
        if not data.any():
            raise BoneSegError(f"annotation layer {painted.name!r}: nothing painted yet")
        if data.max() > 3:
            raise BoneSegError(f"annotation layer {painted.name!r} holds label {data.max()}; "
                               "paint 1 = background, 2 = bone, 3 = pores")
        scan_id = self.scan_id.text() or "".join(
            c if c.isalnum() or c in "-_" else "_" for c in image.name)
        store = Path(self.store.text()) if self.store.text() else root / "data" / "store"
        folder = root / "napari" / "annotations" / scan_id
        overrides = [f"paths.root={root}", f"store_path={store}", f"id={scan_id}",
                     f"image={folder / 'image.npy'}", f"mask={folder / 'mask.npy'}",
                     f"unlabelled={UNLABELLED}", "overwrite=true", "workers=1"]
        size = voxel_size(image)
        if size is not None:
            overrides.append("voxel_size=" + (f"{size[0]}" if len(set(size)) == 1
                                              else "[{}]".format(",".join(map(str, size)))))

        def before() -> None:
            mask = np.where(data == 0, UNLABELLED, data.astype(np.int16) - 1).astype(np.uint8)
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / "mask.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, mask)
            with atomic_path(folder / "image.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(volume_data(image, "scan")))

        def cleanup() -> None:  # the killed import's scans/.<id>.tmp-* folder goes
            if (store / "scans").is_dir():
                remove_stale_temporaries(store / "scans")

        def done(_) -> None:
            unlabelled = int((data == 0).sum())
            self.last_saved = {"store": store, "scan_id": scan_id, "unlabelled": unlabelled}
            self.say(f"saved {scan_id} into {store}: {int(data.size) - unlabelled} voxels "
                     f"labelled on {int(data.any(axis=(1, 2)).sum())} slice(s), {unlabelled} "
                     "unlabelled")

        return Job("import", overrides, before=before, cleanup=cleanup, done=done)
