"""EpochLog: one readable block per epoch with the logged numbers and the best-epoch mark."""

from __future__ import annotations

import csv
import re

import pytest
from callbacks_tiny_fit import VAL_MIOU, TinySeg, capture, loaders, trainer
from torch import nn

from bone_seg.callbacks.epoch_log import EpochLog


def _blocks(messages: list[str]) -> list[str]:
    return [m for m in messages if m.startswith("Epoch ")]


def _epoch_metrics(csv_path) -> dict[int, dict[str, float]]:
    """Epoch-level values of the CSV log, by epoch."""
    out: dict[int, dict[str, float]] = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            if row.get("epoch"):
                values = {k: float(v) for k, v in row.items() if v != "" and "/" in k}
                out.setdefault(int(float(row["epoch"])), {}).update(values)
    return out


def test_one_block_per_epoch_in_order(tiny_fit):
    blocks = _blocks(tiny_fit.log_messages)
    assert len(blocks) == tiny_fit.max_epochs
    for epoch, block in enumerate(blocks, start=1):
        assert block.startswith(f"Epoch {epoch}/{tiny_fit.max_epochs} ")
    assert len(tiny_fit.epoch_log.history) == tiny_fit.max_epochs


def test_blocks_show_the_logged_numbers(tiny_fit):
    blocks = _blocks(tiny_fit.log_messages)
    logged = _epoch_metrics(tiny_fit.csv_dir / "metrics.csv")
    for epoch, block in enumerate(blocks):
        values = logged[epoch]
        lines = block.splitlines()
        assert f"loss {values['train/loss']:.4f}" in lines[1]
        assert f"mIoU {values['train/miou']:.4f}" in lines[1]
        assert f"loss {values['val/loss']:.4f}" in lines[2]
        assert f"mIoU {values['val/miou']:.4f}" in lines[2]
        assert f"mDice {values['val/dice']:.4f}" in lines[2]
        for name in ("background", "bone", "pores"):
            assert f"{name} {values[f'val/iou_{name}']:.4f}" in lines[3]
            assert f"{name} {values[f'val/dice_{name}']:.4f}" in lines[4]
        entry = tiny_fit.epoch_log.history[epoch]
        assert f"lr {entry['lr']:.3e}" in lines[0]
        assert re.search(r"time \d+\.\d+ s", lines[0])


def test_learning_rate_is_the_one_each_epoch_used(tiny_fit):
    lrs = [e["lr"] for e in tiny_fit.epoch_log.history]
    # StepLR(gamma=0.5) stepped after every epoch
    assert lrs == pytest.approx([lrs[0] * 0.5**e for e in range(len(lrs))], rel=1e-6)


def test_new_best_epochs_are_marked(tiny_fit):
    blocks = _blocks(tiny_fit.log_messages)
    best, expected = None, []
    for value in VAL_MIOU:
        expected.append(best is None or value > best)
        best = value if best is None or value > best else best
    assert ["new best" in b.splitlines()[0] for b in blocks] == expected
    assert [e["is_best"] for e in tiny_fit.epoch_log.history] == expected


def test_epochs_without_validation_and_missing_keys(tmp_path):
    class Bare(TinySeg):
        """Logs only the loss: every other value is missing."""

        def on_train_epoch_end(self) -> None:
            self._confusion.clear()

        def on_validation_epoch_end(self) -> None:
            self._confusion.clear()

    callback = EpochLog(monitor="val/loss", mode="min")
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1))
    train, val = loaders((1, 8, 8), n_items=4, batch_size=2)
    records, undo = capture("bone_seg.fit")
    try:
        trainer(
            str(tmp_path), [callback], max_epochs=3, check_val_every_n_epoch=2
        ).fit(Bare(net), train, val)
    finally:
        undo()
    blocks = _blocks(records.messages)
    assert len(blocks) == 3
    # validation ran in epoch 2 only; the others say so instead of showing stale values
    assert [e["validated"] for e in callback.history] == [False, True, False]
    assert "val    (not run this epoch)" in blocks[0] and "val    (not run this epoch)" in blocks[2]
    assert "mIoU n/a" in blocks[1] and "val/iou" not in blocks[1]
    assert "new best val/loss" in blocks[1].splitlines()[0]
    assert [e["is_best"] for e in callback.history] == [False, True, False]


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        EpochLog(mode="best")
