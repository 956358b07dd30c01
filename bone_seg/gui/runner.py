"""One bone_seg command run as a child process, watched from a napari worker thread.

Why a child process and not the workflow function in a thread: a thread cannot be stopped in the
middle of a prediction or a fit, a process can (its whole process group); the command's own
checks, messages (one ``error:`` line, exit status 2) and outputs are exactly those of the
terminal. The command's standard error streams back line by line (progress and the fine-tuning
curve are read from it, or from files the command keeps, by the caller's ``on_line``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

#: the command line of ``bone-<name>``: its console script's ``main``, run by this Python
_MAIN = "import sys; from bone_seg.cli.{module} import main; sys.argv[0] = 'bone-{name}'; main()"
_MODULES = {"import": "import_"}


def command_line(name: str, overrides: list[str]) -> list[str]:
    """The argv that runs ``bone-<name> <overrides>`` with this interpreter (the console
    scripts need not be on the PATH)."""
    module = _MODULES.get(name, name)
    return [sys.executable, "-c", _MAIN.format(module=module, name=name), *overrides]


@dataclass
class Outcome:
    """How a command ended: its exit status (None: cancelled), its output lines and the one
    line to show the user."""

    returncode: int | None
    lines: list[str] = field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        return self.returncode is None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def message(self) -> str:
        """The command's ``error:`` line, else the last line it printed."""
        if self.cancelled:
            return "cancelled"
        errors = [ln for ln in self.lines if ln.startswith("error:")]
        if errors:
            return errors[-1]
        text = [ln for ln in self.lines if ln.strip()]
        tail = text[-1] if text else ""
        return f"exit status {self.returncode}" + (f": {tail}" if tail else "")


class CommandRun:
    """A started ``bone-<name>`` process; :meth:`watch` yields its output lines as they come."""

    def __init__(self, name: str, overrides: list[str], threads: int = 1):
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONUNBUFFERED="1")
        self.argv = command_line(name, [*overrides, f"threads={threads}"])
        self._cancel = threading.Event()
        self._lines: list[str] = []
        # its own session: cancel stops the command and every process it started
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1, env=env,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line.rstrip("\n"))

    def cancel(self) -> None:
        """Ask the watch loop to stop the command (from any thread)."""
        self._cancel.set()

    def _stop(self) -> None:
        """SIGTERM to the command's process group, SIGKILL after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def watch(self, poll: float = 0.2) -> Iterator[str | Outcome | None]:
        """Yield each new output line, None at each poll (a tick to look at the command's files),
        then the :class:`Outcome` (last)."""
        seen = 0
        while True:
            done = self.proc.poll() is not None
            if self._cancel.is_set() and not done:
                self._stop()
                self._reader.join(5)
                yield Outcome(None, list(self._lines))
                return
            if done:
                self._reader.join(10)
            while seen < len(self._lines):
                seen += 1
                yield self._lines[seen - 1]
            if done:
                yield Outcome(self.proc.returncode, list(self._lines))
                return
            yield None
            time.sleep(poll)


def run_to_end(run: CommandRun, on_line: Callable[[str], None] | None = None) -> Outcome:
    """Watch ``run`` until it ends (tests, scripts)."""
    for item in run.watch():
        if isinstance(item, Outcome):
            return item
        if item is not None and on_line is not None:
            on_line(item)
    raise AssertionError("unreachable")
