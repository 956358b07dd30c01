"""Free memory of a device, and the batch size that fits in it.

BONe's DLPred "estimates the number of tiles to process in parallel" from the free GPU memory;
:func:`batch_size_for` does that for any device, given the bytes one item needs (measured or
estimated by the caller).

On CPU the free memory is psutil's ``available`` memory, further limited by the cgroup memory
limit of the process when there is one (containers, SLURM jobs with ``--mem``), where psutil would
report the whole machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import torch

from bone_seg.errors import BoneSegError

_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a huge number close to 2**63


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_available_bytes(
    cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
    proc_cgroup: str | os.PathLike = "/proc/self/cgroup",
) -> int | None:
    """Memory still available under this process's cgroup limit, or ``None`` if unlimited/unknown.

    Reads cgroup v2 (``memory.max``, ``memory.current``) or v1 (``memory.limit_in_bytes``,
    ``memory.usage_in_bytes``); reclaimable page cache (``inactive_file``) counts as available.

    Args:
        cgroup_root: Mount point of the cgroup file system.
        proc_cgroup: The process's cgroup membership file.

    Returns:
        Bytes, or ``None`` when there is no limit or it cannot be read (not Linux).
    """
    root = Path(cgroup_root)
    v2_path = v1_path = None
    try:
        for line in Path(proc_cgroup).read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and controllers == "":
                v2_path = path.lstrip("/")
            elif "memory" in controllers.split(","):
                v1_path = path.lstrip("/")
    except (OSError, ValueError):
        return None
    # inside a cgroup namespace the mount root is the process's own cgroup: try both places
    candidates = []
    if v1_path is not None:
        candidates += [
            (root / "memory" / v1_path, "memory.limit_in_bytes", "memory.usage_in_bytes",
             "total_inactive_file"),
            (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
             "total_inactive_file"),
        ]
    if v2_path is not None:
        candidates += [
            (root / v2_path, "memory.max", "memory.current", "inactive_file"),
            (root, "memory.max", "memory.current", "inactive_file"),
        ]
    for directory, limit_file, usage_file, inactive_key in candidates:
        if not (directory / limit_file).exists():
            continue
        usage = _read_int(directory / usage_file)
        limits = [_read_int(directory / limit_file)]
        if limit_file == "memory.max":  # v2: a parent's limit applies too
            parent = directory
            while parent != root and root in parent.parents:
                parent = parent.parent
                limits.append(_read_int(parent / "memory.max"))
        else:  # v1 states the effective limit including parents
            hierarchical = _read_stat(directory / "memory.stat", "hierarchical_memory_limit")
            limits.append(hierarchical or None)
        known = [v for v in limits if v is not None and v < _UNLIMITED]
        if not known or usage is None:
            return None
        inactive = _read_stat(directory / "memory.stat", inactive_key)
        return max(0, min(known) - max(0, usage - inactive))
    return None


def free_memory_bytes(device: torch.device | str | int | None = None) -> int:
    """Bytes this process can still allocate on ``device``.

    Args:
        device: ``"cpu"`` (default when ``None``), ``"cuda"``, ``"cuda:1"``, an int (CUDA index)
            or a :class:`torch.device`. Other device types (``mps``) share system RAM and are
            treated as CPU.

    Returns:
        CUDA: the driver's free memory (``torch.cuda.mem_get_info``) plus what PyTorch's caching
        allocator holds reserved but unused (this process can reuse it). CPU: psutil's available
        memory, capped by the cgroup limit when one applies.

    Raises:
        BoneSegError: If a CUDA device is asked for and CUDA is not available.
    """
    if device is None:
        device = torch.device("cpu")
    elif isinstance(device, int):
        device = torch.device("cuda", device)
    else:
        device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BoneSegError(
                f"free_memory_bytes: device {device} was asked for but CUDA is not available; "
                "use device='cpu' (or install a CUDA build of torch and a driver)"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(0, cached))
    available = int(psutil.virtual_memory().available)
    limited = cgroup_available_bytes()
    return available if limited is None else min(available, limited)


def batch_size_for(
    bytes_per_item: int | float,
    device: torch.device | str | int | None = None,
    fraction: float = 0.5,
    min_size: int = 1,
    max_size: int | None = None,
    free_bytes: int | None = None,
) -> int:
    """The largest batch whose items fit in ``fraction`` of the free memory of ``device``.

    ``floor(fraction * free / bytes_per_item)``, clamped to ``[min_size, max_size]``. ``min_size``
    wins when even that does not fit (the caller then finds out by an out-of-memory error, as
    with any fixed batch size).

    Args:
        bytes_per_item: Memory one item needs during the step (input, activations, output).
        device: Where the batch will live (see :func:`free_memory_bytes`).
        fraction: Share of the free memory to use, in (0, 1]; leaves head room for the rest.
        min_size: Smallest batch returned (>= 1).
        max_size: Largest batch returned (``None``: no cap).
        free_bytes: Free memory to assume instead of measuring it (tests, planning).

    Returns:
        The batch size.

    Raises:
        BoneSegError: On a non-positive ``bytes_per_item``, a ``fraction`` outside (0, 1] or
            inconsistent bounds.
    """
    if not bytes_per_item > 0:
        raise BoneSegError(
            f"batch_size_for: bytes_per_item must be > 0, got {bytes_per_item}; measure or "
            "estimate the memory one item needs"
        )
    if not 0 < fraction <= 1:
        raise BoneSegError(f"batch_size_for: fraction must be in (0, 1], got {fraction}")
    if min_size < 1:
        raise BoneSegError(f"batch_size_for: min_size must be >= 1, got {min_size}")
    if max_size is not None and max_size < min_size:
        raise BoneSegError(
            f"batch_size_for: max_size ({max_size}) must be >= min_size ({min_size})"
        )
    free = free_memory_bytes(device) if free_bytes is None else int(free_bytes)
    size = int((max(0, free) * fraction) // bytes_per_item)
    size = max(min_size, size)
    return size if max_size is None else min(max_size, size)
