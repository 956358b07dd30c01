"""The Optuna sweeper's search space: Hydra's sweep syntax turned into Optuna distributions."""

import optuna.distributions as d
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.bone_seg_plugins.optuna_sweeper import distribution, value_text


def _dist(line: str):
    (override,) = OverridesParser.create().parse_overrides([line])
    return distribution(override)


def test_sweep_syntax_to_distributions():
    assert _dist("a=choice(unet,segformer)") == d.CategoricalDistribution(["unet", "segformer"])
    assert _dist("a=choice(32,64)").choices == (32, 64)
    assert _dist("lr=tag(log, interval(1e-4, 1e-2))") == d.FloatDistribution(1e-4, 1e-2,
                                                                             log=True)
    assert _dist("x=interval(0.1, 0.9)") == d.FloatDistribution(0.1, 0.9)
    assert _dist("n=interval(2, 8)") == d.FloatDistribution(2.0, 8.0)  # Hydra: floats
    assert _dist("n=range(16, 80, 16)") == d.IntDistribution(16, 64, step=16)  # 80 excluded
    assert _dist("x=range(0.0, 1.0, 0.25)") == d.FloatDistribution(0.0, 0.75, step=0.25)
    assert _dist("seed=42") is None  # fixed for every trial


def test_values_round_trip_as_overrides():
    parser = OverridesParser.create()
    for value in (1.2345678901234567e-05, 256, "efficientnet-b3", "focal_tversky"):
        (override,) = parser.parse_overrides([f"k={value_text(value)}"])
        assert override.value() == value


def test_sweeper_settings_checked():
    from hydra_plugins.bone_seg_plugins.optuna_sweeper import OptunaSweeper

    with pytest.raises(ValueError, match="maximize or minimize"):
        OptunaSweeper(direction="up")
    with pytest.raises(ValueError, match="at least 1"):
        OptunaSweeper(n_trials=0)
