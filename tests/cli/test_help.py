"""``--help`` of every command: a description, 3-5 examples, the command's groups and keys, and a
bounded amount of work (nothing outside conf searched, no torch/Lightning/MLflow import).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bone_seg.cli.compose import CONF_DIR, search_path
from bone_seg.cli.help import examples, help_text

COMMANDS = ("phantom", "import", "export", "fit", "predict", "iou", "morpho", "report", "demo",
            "calibrate")
HEAVY = ("torch", "lightning", "mlflow", "segmentation_models_pytorch", "zarr")

# every command's --help, run as the console scripts run it, in one fresh interpreter; it reports
# the texts, the heavy modules imported and the files and folders Python opened or listed
_PROBE = f"HEAVY = {HEAVY!r}\n" + """
import contextlib, importlib, io, json, os, sys
opened = []
real_open, real_listdir, real_scandir = open, os.listdir, os.scandir
def count(real):
    def wrapper(path=".", *a, **k):
        opened.append(str(path))
        return real(path, *a, **k)
    return wrapper
import builtins
builtins.open, os.listdir, os.scandir = count(real_open), count(real_listdir), count(real_scandir)
texts = {}
for name in sys.argv[1:]:
    module = importlib.import_module(f"bone_seg.cli.{name}_" if name == "import" else
                                     f"bone_seg.cli.{name}")
    sys.argv = [f"bone-{name}", "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.main()
    texts[name] = out.getvalue()
heavy = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps({"texts": texts, "heavy": heavy, "opened": opened}))
"""


@pytest.fixture(scope="module")
def probe():
    proc = subprocess.run([sys.executable, "-c", _PROBE, *COMMANDS], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_help_imports_nothing_heavy_and_reads_only_the_package_configs(probe):
    assert probe["heavy"] == []
    conf = str(CONF_DIR)
    config_reads = [p for p in probe["opened"] if p.endswith(".yaml") or "/conf" in p]
    assert config_reads and all(p.startswith(conf) for p in config_reads), config_reads
    # the work of nine helps is a few dozen small files, not a walk of a directory tree
    assert len(config_reads) < 150, len(config_reads)


def test_the_search_path_holds_only_hydra_and_the_package_configs():
    entries = search_path()
    folders = [e for e in entries if not e.split(": ", 1)[1].startswith(("pkg://", "structured:"))]
    assert folders == [f"main: {CONF_DIR}"], entries
    assert [e for e in entries if "pkg://" in e] == ["hydra: pkg://hydra.conf"], entries
    yaml_files = list(CONF_DIR.rglob("*.yaml"))
    assert len(yaml_files) < 100  # what Hydra may ever list for a command


@pytest.mark.parametrize("name", COMMANDS)
def test_help_describes_the_command_with_examples_groups_and_keys(probe, name):
    text = probe["texts"][name]
    assert text == help_text(name)
    first = text.splitlines()[0]
    assert first.startswith(f"bone-{name}") and len(first) > 30
    shown = [line.strip() for line in text.split("Examples:\n")[1].split("\n\n")[0].splitlines()]
    assert 3 <= len(shown) <= 5 and all(e.startswith(f"bone-{name}") for e in shown)
    assert shown == examples(name)
    assert "threads: null" in text  # every command's own keys, with their comments
    for junk in (".venv", "site-packages", "test_utils", "hydra/env", "mlflow/"):
        assert junk not in text


def test_fit_help_lists_its_groups_with_options_and_the_keys_of_each(probe):
    text = probe["texts"]["fit"]
    groups = text.split("Config groups (group=option; [default]):\n")[1].split("\n\n")[0]
    names = [line.split()[0] for line in groups.splitlines()]
    assert names == ["paths", "data", "model", "model/net", "trainer", "logger", "callbacks",
                     "experiment", "sweeps", "hydra/launcher", "debug"]
    assert "bp2d03, easy, finetune, pretrain, quick" in groups and "[unet]" in groups
    assert "cv, dims, grid" in groups
    assert "local_parallel, slurm" in groups
    assert "fdr, limit, overfit, profiler   (none by default)" in groups
    assert "  data.<key>: store, num_folds, test_fold" in text
    assert "  model.net.<key>: arch, encoder" in text
    assert "ckpt_path: null" in text and "\nhydra:" not in text and "  job:" not in text


def test_the_configs_are_package_data():
    assert CONF_DIR == Path(__file__).resolve().parents[2] / "bone_seg" / "conf"
    assert (CONF_DIR / "sweeps" / "cv.yaml").is_file()
