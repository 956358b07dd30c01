"""Where computation runs: the one reading of a ``device=`` key, the same in every command.

``auto`` (or null)   every visible CUDA GPU, else the CPU
``cpu``              the CPU
``cuda``             every visible CUDA GPU
``cuda:<i>``         that GPU
``a,b,...``          those devices (one type), each taking a share of the work (``cpu,cpu``
                     runs two CPU workers: the code path of several GPUs, used by the tests)

Asking for a GPU where none is visible, or for one that does not exist, is refused with one
message naming the key and the fix (never a silent fall-back: the user asked for that device).
A command that uses one device only (``bone-iou``) takes the first of the list.
"""

from __future__ import annotations

from typing import Any

from bone_seg.errors import BoneSegError

_CHOICES = "use auto, cpu, cuda, cuda:<index> or a comma-separated list of them"


def resolve_devices(device: Any = "auto", key: str = "device") -> list[Any]:
    """The ``torch.device`` objects ``device`` names (see the module docstring).

    Args:
        device: the value of the key.
        key: the config key, for messages.

    Raises:
        BoneSegError: an unknown name, mixed device types, or a GPU that is not there.
    """
    import torch

    name = "auto" if device is None else str(device).strip()
    if "," in name:
        devices = [d for part in name.split(",") for d in resolve_devices(part.strip(), key)]
        if len({d.type for d in devices}) > 1:
            raise BoneSegError(f"{key}={device}: mixes device types; results would differ "
                               "between slabs")
        return devices
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return [torch.device("cpu")]
    if not name.startswith("cuda"):
        raise BoneSegError(f"{key}={device!r}: {_CHOICES}")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise BoneSegError(f"{key}={device!r}: {_CHOICES}") from None
    if not torch.cuda.is_available():
        raise BoneSegError(f"{key}={device}: no CUDA GPU is visible here; use {key}=cpu or "
                           f"{key}=auto")
    count = torch.cuda.device_count()
    if dev.index is None:
        return [torch.device("cuda", i) for i in range(count)]
    if dev.index >= count:
        raise BoneSegError(f"{key}={device} does not exist: this machine has {count} CUDA "
                           f"GPU(s), cuda:0 first; use {key}=auto, cpu or an existing cuda:N")
    return [dev]


def resolve_device(device: Any = "auto", key: str = "device") -> Any:
    """The one ``torch.device`` a single-device command runs on: the first of
    :func:`resolve_devices`."""
    return resolve_devices(device, key)[0]
