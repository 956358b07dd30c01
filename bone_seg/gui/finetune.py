"""Fine-tune: ``bone-fit experiment=finetune`` (the same command, a child process) from the
chosen weights on the store that "Label slices" saved into; the validation mIoU of each epoch is
drawn live from the fit's epoch log (the lines it prints, as its run log keeps them) and the run
is logged to MLflow like any fit. Once finished, the best weights can segment again (Segment,
weights = file)."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from bone_seg.atomic import remove
from bone_seg.errors import BoneSegError
from bone_seg.gui.panel import Job, Panel, PathEdit, work_root

#: lines of the fit's epoch log (bone_seg.callbacks.epoch_log) and its closing lines
EPOCH = re.compile(r"^Epoch (\d+)/(\d+)")
VAL = re.compile(r"^\s+val\s+loss \S+\s+mIoU (\S+)")
WEIGHTS = re.compile(r"best validation mIoU \S+ at epoch \d+; weights: (.+)$")
RUN = re.compile(r"run directory: (.+); MLflow run (\S+)$")


class FineTuneWidget(Panel):
    """Fine-tune with ``bone-fit experiment=finetune``; the validation mIoU curve, live."""

    run_label = "Fine-tune"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.weights_kind = QComboBox()
        self.weights_kind.addItems(["pretrained", "file"])
        self.weights = PathEdit("starting weights: a .safetensors or a BONe .pth")
        self.store = PathEdit("store (default: <work folder>/data/store)", folder=True)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        self.freeze = QCheckBox("freeze the encoder (decoder and head only)")
        self.extra = QLineEdit()
        self.extra.setPlaceholderText("more bone-fit settings, e.g. data.patch_size=128")
        for label, widget in (("weights", self.weights_kind), ("", self.weights),
                              ("store", self.store), ("epochs", self.epochs), ("", self.freeze),
                              ("settings", self.extra)):
            self.form.addRow(label, widget)
        self.figure = Figure(figsize=(3.2, 2.2), dpi=80, tight_layout=True)
        self.axes = self.figure.add_subplot()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.body.addWidget(self.canvas)
        self.curve: list[tuple[int, float]] = []
        self.best_weights: Path | None = None
        self.run_id: str | None = None
        self._draw()

    def _draw(self) -> None:
        ax = self.axes
        ax.clear()
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation mIoU")
        if self.curve:
            ax.plot(*zip(*self.curve, strict=True), "o-", color="tab:blue")
        ax.grid(alpha=0.3)
        self.canvas.draw_idle()

    def job(self) -> Job:
        root = work_root()
        store = Path(self.store.text()) if self.store.text() else root / "data" / "store"
        if not (store / "manifest.json").is_file():
            raise BoneSegError(f"{store}: not a dataset store; save annotations (Label slices) "
                               "first or choose the store")
        if self.weights_kind.currentText() == "file":
            if not self.weights.text():
                raise BoneSegError("weights: give the starting weights file, or choose pretrained")
            weights = self.weights.text()
        else:
            weights = self.weights.text() or "pretrained"
        run_dir = root / "runs" / "fit" / "napari" / time.strftime("%Y-%m-%d_%H-%M-%S")
        try:
            extra = shlex.split(self.extra.text())
        except ValueError as e:
            raise BoneSegError(f"settings: {e}") from e
        overrides = ["experiment=finetune", f"paths.root={root}", f"data.store={store}",
                     f"model.net.weights={weights}", f"trainer.max_epochs={self.epochs.value()}",
                     f"hydra.run.dir={run_dir}", *extra]
        if self.freeze.isChecked():
            overrides.append("model.net.freeze_encoder=true")
        self.curve, self.best_weights, self.run_id = [], None, None
        self._draw()
        state = {"epoch": 0, "epochs": self.epochs.value()}

        def on_line(line: str) -> None:
            if m := EPOCH.match(line):
                state["epoch"], state["epochs"] = int(m.group(1)), int(m.group(2))
                self.progress.setRange(0, state["epochs"])
                self.progress.setValue(state["epoch"])
            elif (m := VAL.match(line)) and m.group(1) != "-":
                self.curve.append((state["epoch"], float(m.group(1))))
                self._draw()
            elif m := WEIGHTS.search(line):
                self.best_weights = Path(m.group(1).strip())
            elif m := RUN.search(line):
                self.run_id = m.group(2)

        def cleanup() -> None:  # a cancelled fit: its run folder goes, its MLflow run is KILLED
            kill_runs(root, run_dir)
            remove(run_dir)

        def done(_) -> None:
            best = max((v for _, v in self.curve), default=float("nan"))
            self.say(f"fine-tuned: best validation mIoU {best:.4f}; weights {self.best_weights} "
                     f"(MLflow run {self.run_id}); segment again with weights = file")

        return Job("fit", overrides, cleanup=cleanup, on_line=on_line, done=done)


def kill_runs(root: Path, run_dir: Path) -> None:
    """Mark the MLflow runs of ``run_dir`` that are still RUNNING as KILLED (the fit was stopped
    before it could end its run)."""
    from bone_seg.tracking.fit_run import kill_running_runs

    if (root / "mlflow.db").is_file():
        kill_running_runs(f"sqlite:///{root / 'mlflow.db'}", run_dir)
