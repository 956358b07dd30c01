"""Files that would run code are refused with a message that never suggests an unsafe load."""

import os
import pickle
from pathlib import Path

import pytest
import torch

from bone_seg.callbacks.atomic_checkpoint import AtomicCheckpointIO, read_checkpoint
from bone_seg.errors import BoneSegError
from bone_seg.weights.detect import load_any_weights


class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_named_safetensors_is_refused_by_content(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"model_state": _Payload(marker)}, protocol=2))
    with pytest.raises(BoneSegError, match=r"weights file .*model\.safetensors is not a plain "
                                           r"weights file \(named \.safetensors, but it is a "
                                           r"pickle\): a safe load refused it") as info:
        load_any_weights(path)
    assert "weights_only" not in str(info.value) and "ran nothing" in str(info.value)
    assert not marker.exists()


def test_a_malicious_checkpoint_is_refused_naming_ckpt_path(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": _Payload(marker)}, path)
    for read in (read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(BoneSegError, match=r"ckpt_path=.*last\.ckpt is not a plain weights "
                                               r"file: .*GLOBAL posix\.system.*give the "
                                               r"last\.ckpt of the bone-fit run") as info:
            read(path)
        assert "weights_only" not in str(info.value)
    assert not marker.exists()


def test_checkpoints_that_are_not_ours_or_not_files_are_named(tmp_path):
    with pytest.raises(BoneSegError, match=r"ckpt_path=.*nothing\.ckpt: no such checkpoint"):
        read_checkpoint(tmp_path / "nothing.ckpt")
    torch.save({"w": torch.ones(1)}, tmp_path / "weights.pt")
    with pytest.raises(BoneSegError, match=r"is not a Lightning checkpoint \(no state_dict\)"):
        read_checkpoint(tmp_path / "weights.pt")
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BoneSegError, match=r"cut\.ckpt is not a readable PyTorch file"):
        read_checkpoint(tmp_path / "cut.ckpt")
    torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": 3}, tmp_path / "good.ckpt")
    assert AtomicCheckpointIO().load_checkpoint(tmp_path / "good.ckpt")["epoch"] == 3
