"""The experiment presets' augmentation: the paper's pipeline exactly, and every new op usable
from a config."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from bone_seg.cli.app import compose_config
from bone_seg.datamodules.augment import DEFAULT_PIPELINE, check_pipeline


@pytest.mark.parametrize("experiment", ["bp2d03", "easy", "quick"])
def test_presets_use_the_papers_augmentation(experiment):
    cfg = compose_config("fit", [f"experiment={experiment}"])
    steps = OmegaConf.to_container(cfg.data.augmentation, resolve=True)
    assert check_pipeline(steps) == check_pipeline(list(DEFAULT_PIPELINE))


def test_robustness_ops_compose_from_the_command_line():
    cfg = compose_config("fit", ["experiment=quick", "data.augmentation=[{op: noise, p: 0.3, "
                                 "range: [0.0, 0.3]}, {op: blur, p: 0.2, range: [0.5, 1.5]}, "
                                 "{op: gamma, p: 0.3, range: [0.7, 1.5]}]"])
    steps = check_pipeline(OmegaConf.to_container(cfg.data.augmentation, resolve=True))
    assert [s["op"] for s in steps] == ["noise", "blur", "gamma"]
