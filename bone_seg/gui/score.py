"""Score: ``bone-iou`` (the same command, a child process) of a labels layer against a reference
labels layer: class-wise IoU and Dice and their means in a table, the JSON and CSV kept in the
work folder (``napari/scores/<prediction>_vs_<reference>/``)."""

from __future__ import annotations

import json

from qtpy.QtWidgets import QTableWidget

from bone_seg.errors import BoneSegError
from bone_seg.gui.layers import Labels, find_layer, save_layer, volume_data
from bone_seg.gui.panel import Job, LayerCombo, Panel, work_root
from bone_seg.gui.results import Staged, fill_table


class ScoreWidget(Panel):
    """IoU / Dice of a labels layer against a reference labels layer (bone-iou)."""

    run_label = "Score"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.prediction = LayerCombo(napari_viewer, Labels)
        self.reference = LayerCombo(napari_viewer, Labels)
        self.form.addRow("prediction", self.prediction)
        self.form.addRow("reference", self.reference)
        self.table = QTableWidget()
        self.table.setMinimumHeight(150)
        self.body.addWidget(self.table)
        self.scores: dict | None = None

    def job(self) -> Job:
        root = work_root()
        pred = find_layer(self.viewer, self.prediction.name(), Labels, "prediction")
        ref = find_layer(self.viewer, self.reference.name(), Labels, "reference")
        inputs = root / "napari" / "inputs"
        name = f"{_safe(pred.name)}_vs_{_safe(ref.name)}"
        staged = Staged(root / "napari" / "scores" / name)
        overrides = [f"paths.root={root}", f"out={staged.tmp}", "name=iou"]

        def before() -> None:
            shapes = volume_data(pred, "prediction").shape, volume_data(ref, "reference").shape
            if shapes[0] != shapes[1]:
                raise BoneSegError(f"prediction {pred.name!r} {shapes[0]} and reference "
                                   f"{ref.name!r} {shapes[1]} differ in shape: score a "
                                   "segmentation of the reference's scan")
            overrides.append(f"prediction={save_layer(pred, inputs, 'prediction')}")
            overrides.append(f"reference={save_layer(ref, inputs, 'reference')}")

        def after(_) -> dict:
            return json.loads((staged.commit() / "iou.json").read_text())

        def done(scores: dict) -> None:
            self.scores = scores
            rows = [[c["name"], c["iou"], c["dice"]] for c in scores["classes"]]
            rows.append(["mean", scores["mean_iou"], scores["mean_dice"]])
            fill_table(self.table, ["class", "IoU", "Dice"], rows)
            ignored = scores.get("ignored_voxels") or 0
            self.say(f"mIoU {scores['mean_iou']:.4f}, mDice {scores['mean_dice']:.4f}"
                     + (f"; {ignored} unlabelled reference voxels left out" if ignored else "")
                     + f" ({staged.final})")

        return Job("iou", overrides, before=before, after=after, cleanup=staged.discard,
                   done=done)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
