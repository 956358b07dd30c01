"""ImageNet weights come from the local cache only: absent -> fast clear error, present -> used."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file

from bone_seg.errors import BoneSegError
from bone_seg.weights.network import create_net


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Record (and refuse) every attempt to open a network connection."""
    attempts: list = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))
    return attempts


def test_missing_imagenet_fails_fast_without_network(empty_caches: dict, no_network: list) -> None:
    start = time.perf_counter()
    with pytest.raises(BoneSegError) as info:
        create_net("unet", "resnet18", weights="imagenet")
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert no_network == []
    message = str(info.value)
    assert "not in the local cache" in message
    assert str(empty_caches["hf"]) in message  # where to put them
    assert "models--smp-hub--resnet18.imagenet" in message
    assert "model.net.weights=null" in message


def test_missing_3d_and_timm_weights_name_their_cache(empty_caches: dict,
                                                      no_network: list) -> None:
    import segmentation_models_pytorch_3d  # noqa: F401  (imported before timing)

    start = time.perf_counter()
    with pytest.raises(BoneSegError, match="not in the local cache") as info:
        create_net("unet", "resnet18", mode="3d", weights="imagenet")
    assert str(empty_caches["torch_hub"] / "checkpoints") in str(info.value)
    with pytest.raises(BoneSegError, match="tu-resnet18.*not in the local cache"):
        create_net("unet", "tu-resnet18", weights="imagenet")
    assert time.perf_counter() - start < 2.0
    assert no_network == []


def fake_smp_cache(hf: Path, encoder: str) -> dict[str, torch.Tensor]:
    """Put random 'ImageNet' weights of ``encoder`` where smp's hub download would find them."""
    settings = smp.encoders.encoders[encoder]["pretrained_settings"]["imagenet"]
    snapshot = (hf / f"models--{settings['repo_id'].replace('/', '--')}" / "snapshots"
                / settings["revision"])
    snapshot.mkdir(parents=True)
    torch.manual_seed(5)
    enc = smp.encoders.get_encoder(encoder, in_channels=3, weights=None)
    state = {k: (torch.randn_like(v) if v.is_floating_point() else v).contiguous()
             for k, v in enc.state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text("{}")
    return state


def test_cached_imagenet_weights_are_used(empty_caches: dict, no_network: list) -> None:
    state = fake_smp_cache(empty_caches["hf"], "resnet18")
    net = create_net("unet", "resnet18", weights="imagenet", in_channels=3)
    own = net.encoder.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())
    # one input channel: smp folds the RGB kernel into one (the sum over channels)
    gray = create_net("unet", "resnet18", weights="imagenet", in_channels=1)
    assert torch.allclose(gray.encoder.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(gray.encoder.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert no_network == []


def test_cached_timm_weights_are_used(empty_caches: dict, no_network: list) -> None:
    import timm
    from timm.models._registry import get_pretrained_cfg

    repo = get_pretrained_cfg("resnet18").hf_hub_id
    folder = empty_caches["hf"] / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    torch.manual_seed(6)
    model = timm.create_model("resnet18", pretrained=False)
    state = {k: (torch.randn_like(v) if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(folder / "snapshots" / ("0" * 40) / "model.safetensors"))
    net = create_net("unet", "tu-resnet18", weights="imagenet", in_channels=3)
    own = net.encoder.model.state_dict()
    shared = [k for k in own if k in state]
    assert len(shared) == len(own)
    assert all(torch.equal(own[k], state[k]) for k in shared)
    assert no_network == []
