"""The benchmark suite's bookkeeping: every entry runs a script that exists, recorded figures are
dated, targets are judged honestly, the README is generated with the notes kept."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from suite_entries import ENTRIES  # noqa: E402
from suite_readme import render, verdict  # noqa: E402


def test_every_entry_has_its_script_and_recorded_ones_a_date():
    recorded = json.loads((BENCH / "recorded.json").read_text())
    names = [e.name for e in ENTRIES]
    assert len(set(names)) == len(names)
    for entry in ENTRIES:
        assert (BENCH / entry.script).is_file(), entry.script
        if entry.recorded:
            assert recorded[entry.name]["date"] and recorded[entry.name]["rows"], entry.name
        else:
            assert entry.quick, f"{entry.name} needs a --quick size"


@pytest.mark.parametrize(("ratio", "target", "result"), [
    (1.25, ">= 1.2", "pass"), (1.19, ">= 1.2", "fail"), (1.1, "<= 1.1", "pass"),
    (1.11, "<= 1.1", "fail"), (None, ">= 1", "fail"), (0.5, None, "—"), (2.0, "about 1", "fail"),
])
def test_verdict(ratio, target, result):
    assert verdict({"ratio": ratio, "target": target}) == result


def test_readme_has_the_peak_every_row_and_the_notes():
    row = {"work": "w|x", "ours": "1 s", "baseline": "2 s", "ratio": 0.5, "target": "<= 1.05",
           "note": ""}
    results = [{"entry": "e", "question": "q?", "script": "e.py", "args": ["--quick"],
                "wall_s": 3.0, "exit_code": 0, "rows": [row], "error": None},
               {"entry": "bad", "question": "q2?", "script": "b.py", "args": [], "wall_s": 1.0,
                "exit_code": 1, "rows": [], "error": "Traceback"}]
    text = render({"gmacs": 80.0, "read_gbs": 10.0, "matmul": 2048}, results, 2, True, 60.0)
    assert "**80.0 GMAC/s**" in text and "1 pass, 1 fail" in text
    assert "| `e` | w\\|x | 1 s | 2 s | 0.5 | <= 1.05 | pass |" in text
    assert "| `bad` | (the script failed" in text
    assert (BENCH / "notes.md").read_text() in text
