"""benchmarks/gpu_check.py on a machine without a GPU: one line saying so, exit 0, nothing made."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path / "check")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA GPU visible"), proc.stdout
    assert "nothing checked" in lines[0]
    assert not (tmp_path / "check").exists()  # no phantoms, no runs


def test_with_a_gpu_visible_it_goes_on(monkeypatch):
    import torch

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_check.no_gpu_line() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.no_gpu_line().startswith("gpu_check: no CUDA GPU visible")
