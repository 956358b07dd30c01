"""A small ScanDataModule over a test store, shared by the datamodule tests."""

from bone_seg.datamodules.datamodule import ScanDataModule


def make_dm(store, *, setup: bool = True, seed: int = 3, **kw) -> ScanDataModule:
    """16-px patches, 2 per tile, batches of 4, in-process loading."""
    args = {"patch_size": 16, "patches_per_tile": 2, "batch_size": 4, "num_workers": 0,
            "seed": seed, **kw}
    dm = ScanDataModule(str(store.path), **args)
    if setup:
        dm.setup("fit")
    return dm
