"""bone-demo with a phantom set of the user's choice, and its closing hint."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_the_demo_builds_the_chosen_phantom_set_and_names_an_mlflow_that_runs(tmp_path):
    proc = subprocess.run(
        [str(BIN / "bone-demo"), "phantom_set=tiny", "stages.fit=false", "stages.cv=false",
         f"paths.root={tmp_path}", "threads=1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    phantom = next(line for line in proc.stdout.splitlines() if line.startswith("$ bone-phantom"))
    assert "phantom_set=tiny" in phantom.split() and "threads=1" in phantom.split()
    manifest = json.loads((tmp_path / "data" / "store" / "manifest.json").read_text())
    assert manifest["scans"] == [f"tiny_0{i}" for i in range(1, 7)]
    hint = next(line for line in proc.stdout.splitlines() if " ui --backend-store-uri " in line)
    command = shlex.split(hint)
    assert os.access(command[0], os.X_OK)  # the venv's mlflow, without the venv on PATH
    assert command[1:3] == ["ui", "--backend-store-uri"]
    assert command[3] == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    transcript = (tmp_path / "demo_transcript.log").read_text().splitlines()
    # the transcript is what the terminal showed, in order, without the progress bars
    shown = iter(proc.stdout.splitlines())
    assert all(any(line == s for s in shown) for line in transcript if line)
    assert not any("%|" in line for line in transcript)
    assert sum(line.startswith("$ bone-") for line in transcript) == 2
    # the stages' output too: the store summary's row of the first scan
    assert any(re.match(r"\|\s*1 \| tiny_01 ", line) for line in transcript)
