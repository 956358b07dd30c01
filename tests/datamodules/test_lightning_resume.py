"""A real Lightning fit killed mid-epoch and resumed from its last checkpoint sees exactly the
batches, and ends with exactly the weights, of an uninterrupted fit."""

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from bone_seg.datamodules.datamodule import ScanDataModule


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Conv2d(1, 3, 1)
        self.seen = []

    def training_step(self, batch, batch_idx):
        image, mask = batch["image"], batch["mask"].long()
        self.seen.append((self.current_epoch, batch_idx, float(image.double().sum()),
                          int(mask.sum())))
        return torch.nn.functional.cross_entropy(self.net(image), mask)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", torch.nn.functional.cross_entropy(self.net(batch["image"]),
                                                               batch["mask"].long()))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class Kill(pl.Callback):
    """Stands in for SIGKILL: stop dead at a global step (before its checkpoint is written)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise RuntimeError("killed")


def _fit(store, root, workers, callbacks=(), ckpt=None, epochs=2):
    dm = ScanDataModule(str(store.path), patch_size=16, patches_per_tile=2, batch_size=4,
                        num_workers=workers, seed=11)
    model = Tiny()
    saver = ModelCheckpoint(dirpath=root, every_n_train_steps=1, save_last=True, save_top_k=0)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False, num_sanity_val_steps=0,
                         callbacks=[saver, *callbacks], default_root_dir=root)
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt, weights_only=False)
    except RuntimeError as err:
        assert "killed" in str(err)
    return model


# offset 1: killed at the first batch of the second epoch, so the last checkpoint is the one
# written after the first epoch's last batch (the loader must then start the next epoch)
@pytest.mark.parametrize(("workers", "offset"), [(0, 3), (2, 3), (0, 1)])
def test_kill_and_resume_mid_epoch_is_exact(small_store, tmp_path, workers, offset):
    store, _ = small_store
    reference = _fit(store, tmp_path / "ref", workers)
    per_epoch = sum(1 for e, *_ in reference.seen if e == 0)
    kill_at = per_epoch + offset
    first = _fit(store, tmp_path / "run", workers, [Kill(kill_at)])
    assert first.seen == reference.seen[:kill_at]
    resumed = _fit(store, tmp_path / "run", workers, ckpt=str(tmp_path / "run" / "last.ckpt"))
    # the killed step's checkpoint was never written: resume repeats it, then carries on
    assert resumed.seen == reference.seen[kill_at - 1:]
    for a, b in zip(resumed.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
