"""What a new user meets on the command line: one ``error:`` line naming the key and the fix."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from bone_seg.cli.app import bone_seg_error, check_command_line, compose_config
from bone_seg.cli.help import examples
from bone_seg.errors import BoneSegError

BIN = Path(sys.executable).parent
COMMANDS = ("phantom", "import", "export", "fit", "predict", "iou", "morpho", "report", "demo",
            "calibrate")


@pytest.mark.parametrize("name, args, message", [
    ("predict", [], r"bone-predict needs scan=\.\.\. \(no default\); e\.g\. "
                    r"bone-predict weights=<run dir>/best\.safetensors scan=s01_mouse"),
    ("export", ["scan=a"], r"bone-export needs out=\.\.\. \(no default\); e\.g\. bone-export "),
])
def test_missing_mandatory_values_are_named_with_an_example(name, args, message):
    with pytest.raises(BoneSegError, match=message):
        check_command_line(name, args, require_values=True)
    check_command_line(name, args)  # --cfg job and --help may still show them as ???


def test_a_command_line_hydra_cannot_parse_is_one_message():
    with pytest.raises(BoneSegError, match=r"cannot read the command line: .*weights=<run"):
        check_command_line("predict", ["weights=<run"])


def test_missing_values_give_one_error_line_and_exit_2_from_the_command():
    proc = subprocess.run([str(BIN / "bone-predict"), "weights=x.safetensors"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: bone-predict needs scan=...")
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("override, message", [
    ("experment=quick", r"unknown config key 'experment'\. Did you mean experiment=quick"),
    ("model/nett=unet", r"unknown config key 'model/nett'\. Did you mean model/net=unet\?"),
    ("trainr=gpu", r"Did you mean trainer=gpu.*Config groups: callbacks, data, debug, experiment"),
])
def test_config_groups_are_suggested_for_typos(override, message):
    with pytest.raises(BoneSegError, match=message):
        check_command_line("fit", [override])


def test_the_demo_takes_a_phantom_set():
    from bone_seg.workflows.demo import phantom_set_name

    check_command_line("demo", ["phantom_set=tiny"])
    cfg = compose_config("demo", ["phantom_set=tiny"])
    assert phantom_set_name() == "tiny" and cfg.phantom_set.scans[0].preset == "tiny"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_example_of_every_help_is_a_valid_command_line(name):
    for example in examples(name):
        command = re.sub(r"<[^>]*>", "x", re.split(r"\s{2,}", example)[0])  # placeholders
        args = [a for a in shlex.split(command)[1:] if "=" in a and "..." not in a]
        check_command_line(name, args)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_key_a_config_header_names_is_a_key_of_the_command(name):
    """``demo.fit=false`` in a header, where the key is ``stages.fit``, would fail here."""
    from bone_seg.cli.compose import CONF_DIR

    header = [line for line in (CONF_DIR / f"{name}.yaml").read_text().splitlines()
              if line.startswith("#")]
    keys = set(re.findall(r"(?<![\w./<-])([a-z_]+(?:\.[a-z_]+)+)=", "\n".join(header)))
    cfg = compose_config(name)
    for key in keys:
        if not key.startswith(("hydra.", "logger.tracking_uri", "bone_seg.")):  # bone_seg.*: tags
            assert OmegaConf.select(cfg, key, default="missing") != "missing", key


def test_the_end_of_demo_hint_names_an_mlflow_that_exists(tmp_path):
    from bone_seg.workflows.demo import mlflow_ui_command

    words = shlex.split(mlflow_ui_command(tmp_path / "mlflow.db"))
    assert os.access(words[0], os.X_OK) and Path(words[0]).name == "mlflow"
    assert words[1:] == ["ui", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]


def test_import_hints_name_keys_bone_import_takes(tmp_path):
    import numpy as np

    from bone_seg.io.importer import ImportOptions, ScanSource, import_scans

    np.save(tmp_path / "img.npy", np.ones((2, 8, 8), np.uint8))
    np.save(tmp_path / "msk.npy", np.full((2, 8, 8), 255, np.uint8))
    hints = []
    # unlabelled=None: the 0/255 mask is a binary mask (with 255 as unlabelled it has no labels)
    for options, mask in ((ImportOptions(unlabelled=None), "msk.npy"),
                          (ImportOptions(min_patch_size=64), None)):
        src = ScanSource("a", str(tmp_path / "img.npy"), mask and str(tmp_path / mask))
        with pytest.raises(BoneSegError, match=r"bone-import (\.\.\. )?\w+=") as info:
            import_scans(tmp_path / "store", [src], options)
        hints += re.findall(r"bone-import (?:\.\.\. )?(\w+)=", str(info.value))
        hints += re.findall(r"(\w+)=\[", str(info.value))
    assert set(hints) == {"mask_remap", "class_names", "min_patch_size"}
    keys = compose_config("import")
    assert all(k in keys for k in hints)


def test_the_readme_says_where_mlflow_3_17_keeps_the_runs_table():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "**Model training**" in readme and "#/experiments/1/runs" in readme


def test_a_bone_seg_error_wrapped_by_instantiate_is_found():
    cause = BoneSegError("data.patch_size=-5: must be an integer >= 1")
    try:
        try:
            raise cause
        except BoneSegError as err:
            raise InstantiationException("Error in call to target 'X'") from err
    except InstantiationException as wrapped:
        assert bone_seg_error(wrapped) is cause
    assert bone_seg_error(ValueError("other")) is None


@pytest.mark.parametrize("override, message", [
    ("data.patch_size=-5", "error: data.patch_size=-5: must be an integer >= 1"),
    ("model.net.weights={pickle}", "error: weights file {pickle} is not a plain weights file "
                                   "(named .safetensors, but it is a pickle)"),
    ("ckpt_path={ckpt}", "error: ckpt_path={ckpt} is not a plain weights file: a safe load "
                         "refused it"),
])
def test_errors_inside_instantiate_reach_the_user_as_one_line_exit_2(tmp_path, tiny_store,
                                                                      override, message):
    import pickle

    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(pickle.dumps({"a": 1}))
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(pickle.dumps({"state_dict": {}, "x": os.system}, protocol=2))
    override = override.format(pickle=fake, ckpt=ckpt)
    proc = subprocess.run(
        [str(BIN / "bone-fit"), f"paths.root={tmp_path}", f"data.store={tiny_store}",
         "experiment=quick", override],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in proc.stderr.splitlines() if line.strip()][-1:]
    assert errors[0].startswith(message.format(pickle=fake, ckpt=ckpt))
    for unwanted in ("Traceback", "Error executing job", "full_key", "weights_only"):
        assert unwanted not in proc.stderr
