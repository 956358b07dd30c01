"""The demo behind ``bone-demo``: every stage run as the command a user would type.

Each command is printed, then run as its own process with the demo's ``paths.root``, so the demo
shows the real command-line interface and leaves the same files and MLflow runs a user's session
would. A failing stage stops the demo with its exit status. What the stages print (their results on
standard output, their messages on standard error) reaches the terminal as it comes, progress bars
included, and is also written, without the progress bars, to ``<paths.root>/demo_transcript.log``:
the source of the README's transcript (``scripts/readme_demo.py``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from bone_seg.errors import BoneSegError

log = logging.getLogger("bone_seg.demo")
BIN = Path(sys.executable).parent


TRANSCRIPT = "demo_transcript.log"
#: a tqdm bar: "37%|███▋      | 11/30 [00:04<00:07, ..."
_PROGRESS_BAR = re.compile(r"\d+%\||\| *\d+/\d+ \[")


class _Transcript:
    """Print lines and append them to the transcript file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("w", encoding="utf-8")

    def print(self, text: str) -> None:
        print(text, flush=True)
        self.keep(text)

    def keep(self, text: str) -> None:
        """Append a line to the transcript only (it is on the terminal already)."""
        self.file.write(text + "\n")
        self.file.flush()

    def run(self, cmd: list[str]) -> None:
        """Run one stage: what it prints (both streams) goes to the terminal as it comes and, as
        whole lines without the progress bars, to the transcript."""
        self.print(f"\n$ {shlex.join(cmd)}")
        t = time.perf_counter()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with subprocess.Popen([str(BIN / cmd[0]), *cmd[1:]], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=env) as proc:
            assert proc.stdout is not None
            pending = b""
            while chunk := os.read(proc.stdout.fileno(), 1 << 16):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._keep_line(line)
            if pending:
                self._keep_line(pending)
        if proc.returncode != 0:
            raise BoneSegError(f"demo stage '{cmd[0]}' failed (exit {proc.returncode}); its "
                               "message is above")
        self.print(f"[{cmd[0]} took {time.perf_counter() - t:.0f} s]")

    def _keep_line(self, line: bytes) -> None:
        # a progress bar redraws itself after \r; a message printed above the bars follows the
        # \r that cleared them: the text after the last \r, unless it is a bar
        raw = line.decode("utf-8", errors="replace")
        text = raw.rsplit("\r", 1)[-1]
        if (text.strip() or "\r" not in raw) and not _PROGRESS_BAR.search(text):
            self.keep(text)


def _latest_run(runs: Path, name: str) -> Path:
    logs = sorted((runs / name).glob("*/*/config.yaml"), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise BoneSegError(f"no {name} run found under {runs}")
    return logs[-1].parent


def run(cfg: DictConfig) -> None:
    """Run the stages switched on in ``cfg.stages``."""
    t0 = time.perf_counter()
    root = Path(cfg.paths.root).resolve()
    out = _Transcript(root / TRANSCRIPT)
    _run = out.run
    common = [f"paths.root={root}"]
    if cfg.get("threads") is not None:
        common.append(f"threads={cfg.threads}")
    stages = cfg.stages
    if stages.phantom:
        _run(["bone-phantom", *common, f"phantom_set={phantom_set_name()}"])
    if stages["import"]:
        _run(["bone-import", *common, f"scan_dir={cfg.paths.phantoms}", "overwrite=true"])
    if stages.fit:
        _run(["bone-fit", *common, "sweep=demo", *cfg.fit_overrides])
        run_dir = _latest_run(Path(cfg.paths.runs), "fit")
        if stages.predict:
            test_ids = json.loads((run_dir / "splits.json").read_text())["test"]
            scan = test_ids[0]
            pred = root / "predictions" / f"{scan}.zarr"
            _run(["bone-predict", *common, f"weights={run_dir / 'best.safetensors'}",
                  f"scan={scan}", f"out={pred}", "overwrite=true"])
            _run(["bone-iou", *common, f"reference={cfg.paths.store}/scans/{scan}/mask",
                  f"prediction={pred}/labels"])
    if stages.cv:
        _run(["bone-fit", "-m", *common, "sweep=demo_cv", *cfg.cv_overrides])
        _run(["bone-report", *common, "kind=cv", "sweep=demo_cv"])
    out.print(f"\ndemo finished in {(time.perf_counter() - t0) / 60:.1f} min; outputs under "
              f"{root}; browse the runs with:\n  {mlflow_ui_command(root / 'mlflow.db')}\n"
              "then open http://127.0.0.1:5000 and choose \"Model training\" (the runs table)")


def phantom_set_name() -> str:
    """The option chosen for the config group ``phantom_set`` (``bone-demo phantom_set=tiny``)."""
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().runtime.choices.get("phantom_set", "default"))


def mlflow_ui_command(database: Path) -> str:
    """The command that opens MLflow's UI on ``database``: the ``mlflow`` executable installed
    beside this Python (the venv's, which need not be on PATH)."""
    return shlex.join([str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{database}"])
