"""Fast Zarr chunk decoding: the ``zarrs`` Rust codec pipeline when installed.

zarr-python's default codec pipeline decodes a shard's inner chunks one at a time in Python. The
``zarrs`` package (the zarr developers' Rust implementation; a pinned dependency) decodes the same
bytes to the same values, faster: for one random 256² patch of a store scan (chunks 1×256²,
sharded, zstd) about 1.8× on 2 cores, for whole slabs about 10×. The pipeline is chosen when an
array is *opened*, so arrays opened inside :func:`fast_zarr_reads` keep it afterwards.

Two caveats of zarrs 0.2.3, both found while building the data loaders:

* A process forked after ``zarrs`` has decoded anything hangs at its first decode (the Rust
  thread pool does not survive a fork). So loaders decode with zarrs in their worker processes
  only, and start workers with ``spawn`` instead of ``fork`` once this process has entered
  :func:`fast_zarr_reads` (:func:`worker_start_method`; zarr itself imports ``zarrs`` through
  its entry points, so an import is no sign of use). Code that wants the fast pipeline should
  use :func:`fast_zarr_reads` from here, so that the use is recorded.
* An integer index whose region covers a single row or column of a neighbouring shard fails
  ("incompatible offset"): select every axis with a slice (``a[z:z+1, ...]``, not ``a[z, ...]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_used = False  # this process (or its parent before a fork) has opened arrays with zarrs


def fast_zarr_settings() -> dict[str, object]:
    """The ``zarr.config`` settings of the fastest available pipeline."""
    settings: dict[str, object] = {"codec_pipeline.batch_size": 64}
    try:
        import zarrs  # noqa: F401  (optional; registers its pipeline with zarr)

        settings["codec_pipeline.path"] = "zarrs.ZarrsCodecPipeline"
    except ImportError:  # pragma: no cover - zarrs is a pinned dependency
        pass
    return settings


@contextlib.contextmanager
def fast_zarr_reads() -> Iterator[None]:
    """Zarr arrays opened inside this block decode their chunks with the fastest pipeline."""
    import zarr

    global _used
    settings = fast_zarr_settings()
    _used = _used or "codec_pipeline.path" in settings
    with zarr.config.set(settings):
        yield


def worker_start_method() -> str:
    """How to start DataLoader workers safely: ``fork`` (fast), or ``spawn`` once this process
    has used the zarrs pipeline (a fork after a zarrs decode would hang)."""
    return "spawn" if _used else "fork"
