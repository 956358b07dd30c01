"""The Hydra app wrapper: unknown keys refused before any work, with the valid keys listed."""

import pytest

from bone_seg.cli.app import check_command_line, compose_config, first_values
from bone_seg.errors import BoneSegError


def test_unknown_key_lists_valid_keys():
    with pytest.raises(BoneSegError, match=r"unknown config key 'store.chunk_yxx'. Did you mean "
                                           r"store.chunk_yx\? Valid keys under store: chunk_yx, "):
        check_command_line("import", ["store.chunk_yxx=3"])
    with pytest.raises(BoneSegError, match=r"unknown config key 'workerz'. Did you mean workers"):
        check_command_line("import", ["workerz=3"])


def test_unknown_group_option_lists_options():
    with pytest.raises(BoneSegError, match=r"(?s)Could not find 'paths/foo'.*Available options in "
                                           r"'paths':\s+default"):
        check_command_line("import", ["paths=foo"])


def test_valid_overrides_and_sweeps_pass():
    check_command_line("import", ["workers=3", "store.codec=lz4", "hydra.run.dir=/tmp/x", "-m"])
    assert first_values(["a=1,2,3", "b=x", "-m", "hydra.job.chdir=true"]) == ["a=1", "b=x"]


@pytest.mark.parametrize("override, expected", [
    ("trainer.max_epochs=2.5", "expected an integer"),
    ("model.optimizer.lr=fast", "expected a number"),
    ("data.augment=3", "expected true or false"),
    ("data.augmentation=flip", "expected a list"),
])
def test_wrong_value_types_are_refused_naming_the_key(override, expected):
    with pytest.raises(BoneSegError, match=rf"{override.split('=')[0]}=.*{expected}"):
        check_command_line("fit", [override])


def test_names_take_counts_and_lists_and_numbers_take_integers():
    check_command_line("fit", ["trainer.devices=2", "trainer=ddp", "trainer.precision=16",
                        "model.optimizer.lr=1"])
    check_command_line("fit", ["trainer=ddp", "trainer.devices=[0,1]"])


def test_the_command_line_is_composed_once(monkeypatch):
    import hydra

    calls = []
    real = hydra.compose
    monkeypatch.setattr(hydra, "compose", lambda *a, **k: calls.append(a) or real(*a, **k))
    cfg = check_command_line("fit", ["trainer=ddp", "trainer.devices=2", "data.batch_size=8",
                                     "model.optimizer.lr=1", "+extra.key=3"])
    assert len(calls) == 1
    assert (cfg.trainer.devices, cfg.data.batch_size, cfg.extra.key) == (2, 8, 3)
    assert cfg.trainer.strategy == compose_config("fit", ["trainer=ddp"]).trainer.strategy


def test_hydra_interpolations_resolve_outside_a_run():
    assert compose_config("fit", ["sweeps=cv"]).sweep == "cv"
    assert compose_config("fit").sweep == "fit"
