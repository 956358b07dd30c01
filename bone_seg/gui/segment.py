"""Segment: ``bone-predict`` on an image layer (or a scan on disk) with the chosen weights (a
file, the pretrained model, an MLflow run's best weights or a sweep's ensemble), TTA, uncertainty,
suggestions and post-processing; the output opens as layers (labels with class names and
colours, confidence / uncertainty) and the run's report is shown in the widget."""

from __future__ import annotations

import json
from pathlib import Path

from qtpy.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from bone_seg.atomic import remove
from bone_seg.errors import BoneSegError
from bone_seg.gui.layers import Image, add_output, find_layer, save_layer, voxel_size
from bone_seg.gui.panel import Job, LayerCombo, Panel, PathEdit, work_root
from bone_seg.inference.record import PredictionReport

WEIGHT_KINDS = ("file", "pretrained", "MLflow run", "sweep")


class SegmentWidget(Panel):
    """Segment a scan with ``bone-predict`` (the same command, run as a child process)."""

    run_label = "Segment"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.weights_kind = QComboBox()
        self.weights_kind.addItems(WEIGHT_KINDS)
        self.weights = PathEdit("a .safetensors / BONe .pth; a run id; a sweep name")
        self.image = LayerCombo(napari_viewer, Image)
        self.scan = PathEdit("or a scan on disk: store scan, TIFF folder, .tif, .npy, Zarr",
                             folder=True)
        self.tta = QComboBox()
        self.tta.addItems(["none", "flips", "mirror", "rotations"])
        self.uncertainty = QCheckBox("entropy map")
        self.confidence = QCheckBox("confidence map")
        self.confidence.setChecked(True)
        self.suggest = QSpinBox()
        self.suggest.setRange(0, 100)
        self.min_bone = QSpinBox()
        self.min_bone.setRange(0, 10**9)
        self.min_pore = QSpinBox()
        self.min_pore.setRange(0, 10**9)
        self.output = QLineEdit()
        self.output.setPlaceholderText("output name (default: the layer's)")
        for label, widget in (("weights", self.weights_kind), ("", self.weights),
                              ("image layer", self.image), ("", self.scan), ("TTA", self.tta),
                              ("maps", self.uncertainty), ("", self.confidence),
                              ("suggest slices", self.suggest),
                              ("min bone size (voxels)", self.min_bone),
                              ("min pore size (voxels)", self.min_pore),
                              ("output", self.output)):
            self.form.addRow(label, widget)
        self.report: PredictionReport | None = None
        self.out: Path | None = None

    def job(self) -> Job:
        root = work_root()
        overrides = [f"paths.root={root}", "overwrite=true"]
        source = self.scan.text()
        if source:
            scan, name = source, Path(source.rstrip("/")).name.removesuffix(".zarr")
            layer = None
        else:
            layer = find_layer(self.viewer, self.image.name(), Image, "scan to segment")
            from bone_seg.gui.layers import volume_data

            volume_data(layer, "scan to segment")  # a 2D image is refused before any work
            scan, name = None, layer.name.removesuffix(" image")  # bone_seg's reader's name
        name = self.output.text() or name
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        out = root / "predictions" / f"{safe}.zarr"
        overrides += [f"out={out}", *self._weights_overrides(root)]
        if self.tta.currentText() != "none":
            overrides.append(f"tta={self.tta.currentText()}")
        if self.uncertainty.isChecked():
            overrides.append("uncertainty=[entropy]")
        if self.confidence.isChecked():
            overrides.append("confidence=true")
        if self.suggest.value():
            overrides.append(f"suggest={self.suggest.value()}")
        overrides += [f"postprocess.min_bone_size={self.min_bone.value()}",
                      f"postprocess.min_pore_size={self.min_pore.value()}"]
        size = voxel_size(layer) if layer is not None else None
        if size is not None and len(set(size)) == 1:  # bone-predict's voxel_size= is one number;
            overrides.append(f"voxel_size={size[0]}")  # an anisotropic layer's is not passed on
        kind, value = self.weights_kind.currentText(), self.weights.text()

        def before() -> None:
            if layer is not None:
                overrides.append(
                    f"scan={save_layer(layer, root / 'napari' / 'inputs', 'scan', stem=safe)}")
            else:
                overrides.append(f"scan={scan}")
            if kind == "MLflow run":
                overrides.append(f"weights={run_weights(value, root)}")

        def progress():
            try:
                p = json.loads((out / "progress.json").read_text())
                return len(p.get("slabs", {})), int(p["num_slabs"])
            except (OSError, ValueError, KeyError):
                return None

        def cleanup() -> None:  # nothing half-written stays: the output and its lock go
            remove(out)
            remove(out.parent / f".{out.name}.lock")

        def after(outcome) -> dict:
            return PredictionReport.read(out / "report.json")

        def done(report: PredictionReport) -> None:
            self.report, self.out = report, out
            add_output(self.viewer, out)
            self.say(report_text(report))

        return Job("predict", overrides, before=before, progress=progress, after=after,
                   cleanup=cleanup, done=done)

    def _weights_overrides(self, root: Path) -> list[str]:
        kind, value = self.weights_kind.currentText(), self.weights.text()
        if kind == "pretrained":
            return [f"weights={value or 'pretrained'}"]
        if not value:
            raise BoneSegError(f"weights: give the {kind} (a .safetensors or BONe .pth file, an "
                               "MLflow run id or a sweep name), or choose pretrained")
        if kind == "file":
            return [f"weights={value}"]
        if kind == "sweep":
            return [f"sweep={value}"]
        return []  # MLflow run: its best weights are found in the worker (before)


def run_weights(run_id: str, root: Path) -> Path:
    """The best weights of MLflow run ``run_id`` in the widgets' tracking database (resolved as
    ``bone-predict weights=<run id>`` resolves it)."""
    from bone_seg.tracking.resolve import resolve_weights_uri

    return Path(resolve_weights_uri(run_id, f"sqlite:///{root}/mlflow.db", root / "napari"))


def report_text(report: PredictionReport) -> str:
    """The report's figures in a few lines: time, throughput, class volumes."""
    voxel = report.voxel_size
    size = [float(v) for v in (voxel if isinstance(voxel, list) else [voxel] * 3)] \
        if voxel else None
    unit = size[0] * size[1] * size[2] * 1e-9 if size else None  # µm³ → mm³
    lines = [f"{report.name}: {report.wall_time_s:.1f} s, "
             f"{(report.voxels_per_s or 0) / 1e6:.3f} Mvoxel/s"]
    for cls, count in (report.class_counts or {}).items():
        volume = f" = {count * unit:.4g} mm³" if unit else ""
        lines.append(f"{cls}: {count} voxels{volume}")
    mean = (report.confidence or {}).get("mean")
    if mean is not None:
        lines.append(f"mean confidence {mean:.4f}")
    return "\n".join(lines)
