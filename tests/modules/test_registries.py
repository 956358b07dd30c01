"""One registry of names per concern: the config's comments list exactly the names the code
accepts (losses, optimisers, schedules), so a name added to a registry is documented or this
fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bone_seg.modules.losses import loss_names
from bone_seg.modules.optim import OPTIMIZERS, SCHEDULERS

MODEL_YAML = Path(__file__).resolve().parents[2] / "bone_seg" / "conf" / "model" / "default.yaml"


def _documented(section: str) -> list[str]:
    """The ``a | b | c`` list of the ``name:`` comment under ``section:`` of the model config."""
    text = MODEL_YAML.read_text()
    block = text[text.index(f"\n{section}:"):]
    line = next(li for li in block.splitlines() if li.strip().startswith("name:"))
    return [n.strip() for n in re.split(r"\|", line.split("#", 1)[1])]


@pytest.mark.parametrize("section, names", [
    ("loss", loss_names()),
    ("optimizer", list(OPTIMIZERS)),
    ("scheduler", list(SCHEDULERS)),
])
def test_the_model_config_documents_each_registry_exactly(section, names):
    assert _documented(section) == names
