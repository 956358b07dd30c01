"""experiment=pretrain publishes its best weights into the cache; experiment=finetune starts from
them (model.net.weights=pretrained) or from any weights file. Tiny sizes, 1 epoch, on the CPU."""

from __future__ import annotations

import json

import pytest
import yaml
from fit_helpers import TINY, run_dirs, run_fit
from omegaconf import OmegaConf

from bone_seg.cli.app import compose_config
from bone_seg.errors import BoneSegError
from bone_seg.fitting.publish import check_target
from bone_seg.tracking.fit_run import run_params
from bone_seg.weights.safetensors_file import load_weights

SMALL = [o for o in TINY if not o.startswith("experiment=")] + ["trainer.max_epochs=1"]


def test_the_recipes_compose_with_their_documented_starting_points(tmp_path, monkeypatch):
    monkeypatch.setenv("BONE_SEG_CACHE", str(tmp_path))
    pre = compose_config("fit", ["experiment=pretrain"])
    assert pre.experiment_name == "pretrain" and pre.model.net.weights is None
    assert pre.publish_to == f"{tmp_path}/pretrained/pretrained.safetensors"
    assert pre.data.store == "bone_seg_out/data/pretrain/store"
    fine = compose_config("fit", ["experiment=finetune"])
    assert fine.experiment_name == "finetune" and fine.publish_to is None
    assert fine.model.net.weights == "pretrained" and fine.model.net.adapt_heads is True
    assert fine.data.mode == pre.data.mode and fine.data.slices == pre.data.slices
    # sparse labels: every patch holds labels, and several patches come from each labelled slice
    assert fine.data.min_labelled > 0 and fine.data.patches_per_tile > pre.data.patches_per_tile
    assert fine.data.store == "bone_seg_out/data/store"
    assert compose_config("fit").publish_to is None  # nothing is published unless asked
    # where the weights go is plumbing, not a setting of the experiment: no MLflow param
    params = run_params(OmegaConf.to_container(pre, resolve=True))
    assert "publish_to" not in params and params["data.mode"] == pre.data.mode
    dims = run_params(OmegaConf.to_container(compose_config("fit", ["sweeps=dims"]),
                                             resolve=True))
    assert not [k for k in dims if k.startswith("dims_batch.")] and "dims_batch_3d" in dims


@pytest.mark.parametrize("value, message", [
    ("x/model.pth", r"publish_to=x/model\.pth: give the file to write, ending in \.safetensors"),
    ("x/model", r"ending in \.safetensors"),
])
def test_a_bad_publish_target_is_refused(value, message):
    with pytest.raises(BoneSegError, match=message):
        check_target(value)


def test_a_folder_is_not_a_publish_target(tmp_path):
    folder = tmp_path / "m.safetensors"
    folder.mkdir()
    with pytest.raises(BoneSegError, match=r"is a folder; give the file to write"):
        check_target(folder)
    assert check_target(None) is None and check_target("") is None


@pytest.mark.slow
def test_pretrain_publishes_and_finetune_starts_from_it(tmp_path, tiny_store, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BONE_SEG_CACHE", str(cache))
    run_fit(tmp_path / "pre", tiny_store, "experiment=pretrain", *SMALL)
    (run,) = run_dirs(tmp_path / "pre")
    published = cache / "pretrained" / "pretrained.safetensors"
    # byte for byte the run's best weights, saying which recipe made them
    assert published.read_bytes() == (run / "best.safetensors").read_bytes()
    state, meta = load_weights(published)
    assert meta.config["experiment_name"] == "pretrain"
    provenance = json.loads(published.with_suffix(".json").read_text())
    assert provenance["experiment"] == "pretrain" and provenance["output_dir"] == str(run)
    assert provenance["source"] == str(run / "best.safetensors") and provenance["run_id"]
    assert not list(published.parent.glob(".*"))  # no temporary left

    # fine-tune from the alias with a frozen encoder: the encoder is the published one, exactly
    run_fit(tmp_path / "fine", tiny_store, "experiment=finetune", *SMALL,
            "model.net.freeze_encoder=true")
    (fine,) = run_dirs(tmp_path / "fine")
    config = yaml.safe_load((fine / "config.yaml").read_text())
    assert config["model"]["net"]["weights"] == str(published)  # the run names the file
    tuned, tuned_meta = load_weights(fine / "best.safetensors")
    assert tuned_meta.config["experiment_name"] == "finetune"
    encoder = [k for k in state if k.startswith("encoder.")]
    assert encoder and all((tuned[k] == state[k]).all() for k in encoder)
    assert any(not (tuned[k] == state[k]).all() for k in state if k.startswith("decoder."))
    assert published.read_bytes() == (run / "best.safetensors").read_bytes()  # not republished
