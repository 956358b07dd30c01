"""The Hydra app wrapper: unknown keys refused before any work, with the valid keys listed."""

import pytest

from bone_seg.cli.app import _first_values, check_overrides
from bone_seg.errors import BoneSegError


def test_unknown_key_lists_valid_keys():
    with pytest.raises(BoneSegError, match=r"unknown config key 'store.chunk_yxx'. Did you mean "
                                           r"store.chunk_yx\? Valid keys under store: chunk_yx, "):
        check_overrides("import", ["store.chunk_yxx=3"])
    with pytest.raises(BoneSegError, match=r"unknown config key 'workerz'. Did you mean workers"):
        check_overrides("import", ["workerz=3"])


def test_unknown_group_option_lists_options():
    with pytest.raises(BoneSegError, match=r"(?s)Could not find 'paths/foo'.*Available options in "
                                           r"'paths':\s+default"):
        check_overrides("import", ["paths=foo"])


def test_valid_overrides_and_sweeps_pass():
    check_overrides("import", ["workers=3", "store.codec=lz4", "hydra.run.dir=/tmp/x", "-m"])
    assert _first_values(["a=1,2,3", "b=x", "-m", "hydra.job.chdir=true"]) == ["a=1", "b=x"]
