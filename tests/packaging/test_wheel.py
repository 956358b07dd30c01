"""The package installs from a wheel with its configs inside, and its commands run from there.

The wheel is built from a copy of the sources, installed into a fresh venv (``--no-deps``; the
dependencies are the running interpreter's, reached through a ``.pth`` file, so nothing is
downloaded), and run from an empty folder: nothing of the source tree is on the path.
"""

import glob
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(cmd, cwd, timeout=300):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("bone_seg", "hydra_plugins", "conf", "sweeps"):  # links kept, as in a clone
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", dist, src], cwd=src)
    return next(dist.glob("bone_seg-*.whl"))


def test_the_wheel_holds_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"bone_seg/conf/{Path(p).relative_to(ROOT / 'conf')}"  # glob follows conf/sweeps
               for p in glob.glob(str(ROOT / "conf" / "**" / "*.yaml"), recursive=True)}
    assert len(configs) > len(list((ROOT / "conf").rglob("*.yaml")))  # sweeps/ counted
    assert configs and configs <= names, sorted(configs - names)
    assert {"bone_seg/conf/fit.yaml", "bone_seg/conf/sweeps/cv.yaml",
            "bone_seg/conf/sweeps/grid.yaml"} <= names


def test_installed_from_the_wheel_the_commands_run(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    bin_dir = venv / "bin"
    _run([sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "-q",
          "--no-deps", "--no-index", wheel], cwd=tmp_path)
    purelib = subprocess.run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig."
                              "get_paths()['purelib'])"], capture_output=True, text=True,
                             check=True).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "bone_seg_test_deps.pth").write_text("\n".join(deps) + "\n")
    work = tmp_path / "work"
    work.mkdir()
    where = _run([bin_dir / "python", "-c", "import bone_seg; print(bone_seg.__file__)"], work)
    assert where.stdout.strip().startswith(purelib)
    job = _run([bin_dir / "bone-fit", "--cfg", "job", "experiment=quick", "sweeps=cv"], work)
    assert "experiment_name: quick" in job.stdout and "sweep: cv" in job.stdout
    helped = _run([bin_dir / "bone-predict", "--help"], work)
    assert "Examples:" in helped.stdout
    _run([bin_dir / "bone-phantom", "preset=tiny", "id=t1", f"out={tmp_path / 'ph'}",
          f"paths.root={tmp_path / 'root'}", "workers=1"], work)
    assert (tmp_path / "ph" / "t1" / "image").is_dir()
    assert (tmp_path / "ph" / "t1" / "mask").is_dir()
    assert not (work / "bone_seg_out").exists()
