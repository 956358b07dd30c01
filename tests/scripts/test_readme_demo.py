"""scripts/readme_demo.py: the README's demo transcript is rendered from a demo's transcript, and
the check notices moved figures (not moved times); the README's block agrees with itself."""

import importlib.util
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location("readme_demo", ROOT / "scripts" / "readme_demo.py")
readme_demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_demo)

TRANSCRIPT = """
$ bone-import paths.root=/x/out scan_dir=/x/out/data/phantoms overwrite=true
importing 3 scan(s) into /x/out/data/store
|  # | scan |
|  1 | a    |
|  2 | b    |
|  3 | c    |
[bone-import took 10 s]

$ bone-fit paths.root=/x/out sweep=demo experiment=quick
GPU available: False, used: False
/venv/lightning/fabric/plugins/environments/slurm.py:204: The `srun` command is available
/venv/lib/python3.11/site-packages/mlflow/pyfunc/model.py:320: UserWarning: Type hint used
  func_info = _get_func_info_if_type_hint_supported(predict_attr)
Epoch 1/3  lr 1.000e-03  time 139.8 s  ** new best val/miou: 0.8728 **
  train  loss 0.4060  mIoU 0.6825
  val    loss 0.2244  mIoU 0.8728  mDice 0.9302
saved best weights (epoch 2, val/miou 0.9203) to /x/out/runs/fit/best.safetensors
Epoch 2/3  lr 9.699e-04  time 36.1 s  ** new best val/miou: 0.9203 **
  train  loss 0.3000  mIoU 0.7000
  val    loss 0.2000  mIoU 0.9203  mDice 0.9500
Epoch 3/3  lr 1.000e-06  time 30.0 s
  train  loss 0.2000  mIoU 0.7500
  val    loss 0.2100  mIoU 0.9100  mDice 0.9400
Resources (finished):
  wall time                    200.1 s
test fold mIoU 0.9264, mDice 0.9599
[bone-fit took 210 s]
"""


def test_the_transcript_is_shortened_by_its_rules():
    text = readme_demo.render(TRANSCRIPT)
    assert "paths.root" not in text and "/x/out" not in text
    assert "$ bone-import scan_dir=bone_seg_out/data/phantoms overwrite=true" in text
    assert "|  2 | b    |" not in text and "|  3 | c    |" in text  # first and last row, … between
    assert "GPU available" not in text and "saved best weights" not in text
    assert "srun" not in text and "Warning" not in text and "func_info" not in text
    assert "  train  loss 0.4060  mIoU 0.6825" in text  # indented lines of the fit's own stay
    assert "Epoch 1/3" in text and "Epoch 2/3" in text and "Epoch 3/3" not in text  # first, best
    assert "test fold mIoU 0.9264" in text and "  wall time" in text
    assert readme_demo.epochs_line(TRANSCRIPT).endswith("0.873, **0.920**, 0.910.")


def test_the_check_notices_moved_figures_but_not_moved_times(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_demo.BEGIN}\n{readme_demo.END}\nrest\n")
    log = tmp_path / "demo_transcript.log"
    log.write_text(TRANSCRIPT)
    assert readme_demo.main([str(log), "--readme", str(readme)]) == 0
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("rest\n")
    assert readme_demo.main([str(log), "--check", "--readme", str(readme)]) == 0
    log.write_text(TRANSCRIPT.replace("time 36.1 s", "time 50.2 s").replace("took 210", "took 9"))
    assert readme_demo.main([str(log), "--check", "--readme", str(readme)]) == 0
    log.write_text(TRANSCRIPT.replace("0.9264", "0.9301"))
    assert readme_demo.main([str(log), "--check", "--readme", str(readme)]) == 1
    assert readme_demo.main([str(tmp_path / "none.log"), "--readme", str(readme)]) == 2


def _means(lines):
    return [float(line.split("|")[3]) for line in lines if line.startswith("|   | mean ")]


def test_the_readmes_transcript_agrees_with_itself():
    block = readme_demo.readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    fit = block.split("$ bone-fit sweep=demo ", 1)[1].split("\n$ ", 1)[0].splitlines()
    fold = float(re.search(r"test fold mIoU (\S+),", "\n".join(fit)).group(1))
    assert abs(statistics.mean(_means(fit)) - fold) < 1e-4  # the mean of its test scans
    iou = block.split("$ bone-iou ", 1)[1].split("\n$ ", 1)[0].splitlines()
    assert _means(iou)[0] == _means(fit)[0]  # bone-iou scores the first test scan's prediction
    rows = re.findall(r"^\| (\d|Mean ± SD across folds) +\| (\S+) ±", block, flags=re.M)
    folds = [float(v) for k, v in rows if k != "Mean ± SD across folds"]
    overall = next(float(v) for k, v in rows if k == "Mean ± SD across folds")
    assert len(folds) == 5 and abs(statistics.mean(folds) - overall) < 1e-4
