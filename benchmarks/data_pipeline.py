"""Does the data pipeline keep the model fed? Patches/s delivered vs patches/s the model consumes.

Both measured in this run on the built-in phantom dataset with the ``quick`` experiment:

* pipeline: the ScanDataModule's training loader (its workers, reading the Zarr store, normalising,
  augmenting) iterated alone for ``--batches`` batches;
* model: the quick model's training steps (forward, Jaccard loss, backward, Adam) on batches of the
  same shape already in memory.

    .venv/bin/python benchmarks/data_pipeline.py [--root /tmp/bench_pipeline]
"""

from __future__ import annotations

import argparse
import os
import time

from bench_data import phantom_store
from bench_result import emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import torch
    from hydra.utils import instantiate

    from bone_seg.cli.app import compose_config


    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="/tmp/bone_seg_bench_fit")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    store = phantom_store(args.root)
    overrides = ["experiment=quick", f"data.store={store}", "paths.root=" + args.root]
    if args.workers is not None:
        overrides.append(f"data.num_workers={args.workers}")
    cfg = compose_config("fit", overrides)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # start the workers
    t = time.perf_counter()
    n = 0
    for _ in range(args.batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += len(batch["image"])
    pipe = n / (time.perf_counter() - t)

    module = instantiate(cfg.model, mode=dm.mode, in_channels=dm.in_channels,
                         num_classes=dm.num_classes, class_names=list(dm.class_names))
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    steps = max(10, args.batches // 3)
    x, y = batch["image"], batch["mask"]
    loss = module.criterion(module(x), y)
    loss.backward()
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = module.criterion(module(x), y)
        loss.backward()
        opt.step()
    model = steps * len(x) / (time.perf_counter() - t)
    print(f"patch {cfg.data.patch_size} px, batch {cfg.data.batch_size}, "
          f"{cfg.data.num_workers} loader worker(s), {torch.get_num_threads()} torch threads")
    print(f"data pipeline alone : {pipe:8.1f} patches/s")
    print(f"quick model consumes: {model:8.1f} patches/s (training steps)")
    print(f"ratio pipeline/model: {pipe / model:8.2f}x (target >= 5x)")
    emit(f"data pipeline, `quick` patches ({cfg.data.num_workers} loader worker)",
         f"{pipe:.0f} patches/s", f"the model's training steps {model:.1f} patches/s",
         pipe / model, ">= 5")


if __name__ == "__main__":
    main()
