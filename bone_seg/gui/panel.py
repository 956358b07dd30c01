"""The frame every bone_seg widget shares: its settings (a form), a run button, a progress bar,
a cancel button and one message line; the work runs in a napari worker thread around a
:class:`~bone_seg.gui.runner.CommandRun`, so the viewer never waits."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from bone_seg.errors import BoneSegError
from bone_seg.gui.runner import CommandRun, Outcome


def work_root() -> Path:
    """Where the widgets' commands keep their runs, predictions and MLflow database: the
    commands' own default (``$BONE_SEG_ROOT``, else ``bone_seg_out`` in the current folder)."""
    return Path(os.environ.get("BONE_SEG_ROOT", "bone_seg_out")).absolute()


@dataclass
class Job:
    """What a widget runs: ``bone-<command> <overrides>`` with, in the worker thread,
    ``before()`` first (write an input), ``progress()`` at each tick (``(done, total)`` or None),
    ``after(outcome)`` once it succeeded (its value goes to ``done`` in the GUI thread) and
    ``cleanup()`` once it failed or was cancelled (remove what it left half-written).
    ``on_line`` sees each output line in the GUI thread."""

    command: str
    overrides: list[str]
    before: Callable[[], Any] | None = None
    progress: Callable[[], tuple[int, int] | None] | None = None
    after: Callable[[Outcome], Any] | None = None
    cleanup: Callable[[], Any] | None = None
    on_line: Callable[[str], Any] | None = None
    done: Callable[[Any], Any] | None = None


class Panel(QWidget):
    """A dock widget: :attr:`form` for the settings, then Run / Cancel, the progress bar and the
    message line. Subclasses build their form and call :meth:`start` with a :class:`Job`."""

    run_label = "Run"

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.form = QFormLayout()
        self.run_button = QPushButton(self.run_label)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setObjectName("bone_seg_message")
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.body = QVBoxLayout()  # results under the message (tables, plots)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addLayout(self.body)
        layout.addStretch(1)
        self.run_button.clicked.connect(self._clicked)
        self.cancel_button.clicked.connect(self.cancel)
        self.worker = None
        self._run: CommandRun | None = None
        self._cancelled = False
        self.last_outcome: Outcome | None = None
        self.last_result: Any = None

    # --- what subclasses implement -------------------------------------------------------------
    def job(self) -> Job:
        """The job for the current settings; raise :class:`BoneSegError` for a bad input."""
        raise NotImplementedError

    # --- running ---------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.worker is not None

    def say(self, text: str) -> None:
        """Show one line to the user (the one place a widget reports)."""
        self.message.setText(text)

    def _clicked(self) -> None:
        try:
            job = self.job()
        except BoneSegError as e:
            self.say(f"error: {e}")
            return
        self.start(job)

    def start(self, job: Job) -> None:
        """Run ``job`` in a worker thread (one at a time per widget)."""
        if self.busy:
            self.say("busy: wait for the running command or cancel it")
            return
        self._cancelled, self._run, self.last_outcome = False, None, None
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the command says how far it is
        self.say(f"running bone-{job.command} ...")
        worker = create_worker(self._work, job, _start_thread=False)
        worker.yielded.connect(lambda item: self._yielded(job, item))
        worker.returned.connect(lambda value: self._returned(job, value))
        worker.errored.connect(self._errored)
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()

    def cancel(self) -> None:
        """Stop the running command; its half-written outputs are removed (the job's cleanup)."""
        self._cancelled = True
        if self._run is not None:
            self._run.cancel()
        self.say("cancelling ...")

    def _work(self, job: Job):
        """The worker thread: before, the command (lines, progress), after or cleanup."""
        try:
            if job.before is not None:
                job.before()
            if self._cancelled:
                return ("cancelled", Outcome(None))
            run = CommandRun(job.command, job.overrides)
            self._run = run
            if self._cancelled:
                run.cancel()
            last = 0.0
            outcome = None
            for item in run.watch():
                if isinstance(item, Outcome):
                    outcome = item
                elif item is not None:
                    yield ("line", item)
                if job.progress is not None and time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    step = job.progress()
                    if step is not None:
                        yield ("progress", step)
            assert outcome is not None
            if not outcome.ok:
                if job.cleanup is not None:
                    job.cleanup()
                return ("cancelled" if outcome.cancelled else "failed", outcome)
            return ("ok", outcome, job.after(outcome) if job.after is not None else None)
        except BoneSegError as e:
            if job.cleanup is not None:
                job.cleanup()
            return ("error", f"error: {e}")

    def _yielded(self, job: Job, item) -> None:
        kind, value = item
        if kind == "line":
            if job.on_line is not None:
                job.on_line(value)
            if value.strip() and not value.startswith(" "):
                self.say(value[:300])
        elif kind == "progress":
            done, total = value
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)

    def _returned(self, job: Job, value) -> None:
        kind = value[0]
        if kind == "error":
            self.say(value[1])
            return
        self.last_outcome = value[1]
        if kind == "cancelled":
            self.say("cancelled; nothing half-written is left")
        elif kind == "failed":
            self.say(value[1].message())
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.last_result = value[2]
            if job.done is not None:
                try:
                    job.done(value[2])
                except BoneSegError as e:
                    self.say(f"error: {e}")

    def _errored(self, exc: Exception) -> None:
        self.say(f"error: {type(exc).__name__}: {exc}")

    def _finished(self) -> None:
        self.worker, self._run = None, None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)


class PathEdit(QWidget):
    """A path field with a Browse button (a file, or a folder with ``folder=True``)."""

    def __init__(self, placeholder: str = "", folder: bool = False, parent=None):
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.folder = folder
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit)
        row.addWidget(browse)

    def _browse(self) -> None:
        path = (QFileDialog.getExistingDirectory(self) if self.folder
                else QFileDialog.getOpenFileName(self)[0])
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's naming)
        self.edit.setText(text)


class LayerCombo(QComboBox):
    """The names of the viewer's layers of one type, kept up to date (an empty first entry
    with ``optional``)."""

    def __init__(self, viewer, kind: type, optional: bool = False, parent=None):
        super().__init__(parent)
        self.viewer, self.kind, self.optional = viewer, kind, optional
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed,
                      viewer.layers.events.reordered):
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, event=None) -> None:
        current = self.currentText()
        names = [layer.name for layer in reversed(self.viewer.layers)
                 if isinstance(layer, self.kind)]
        self.blockSignals(True)
        self.clear()
        self.addItems([""] * self.optional + names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)

    def name(self) -> str:
        return self.currentText()
