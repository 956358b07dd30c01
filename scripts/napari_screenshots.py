"""Regenerate the screenshots of the napari widgets (docs/images/napari_*.png): a phantom store,
then in a real napari window each widget's action as a user does it — segment a scan (the
pretrained model when `make pretrained` has built it, else a small random network), jump to a
suggested slice and paint it, fine-tune on the store (2 tiny epochs), score the segmentation
against the phantom's mask, measure it — and a screenshot of the window after each. Needs the
napari extra and an X server:

    scripts/with_xvfb.sh .venv/bin/python scripts/napari_screenshots.py [--weights FILE]
        [--out docs/images]

Takes a few minutes on 2 cores; the work folder is a temporary one (--keep to keep it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def build_store(root: Path) -> Path:
    """The tiny phantom set (conf/phantom_set/tiny.yaml) and its store under ``root``."""
    from omegaconf import OmegaConf

    from bone_seg.cli.app import compose_config
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    cfg = compose_config("phantom", ["phantom_set=tiny"])
    scans = OmegaConf.to_container(cfg.phantom_set.scans, resolve=True)
    make_phantom_set(root / "phantoms", scans, workers=1)
    import_scans(root / "data" / "store", discover_scans(root / "phantoms"), ImportOptions())
    return root / "data" / "store"


def default_weights(root: Path) -> tuple[str, str]:
    """``(kind, value)`` for the Segment widget: the pretrained model if built, else a random
    2.5D U-Net saved under ``root``."""
    from bone_seg.weights.cache import resolve_weights

    try:
        cache = Path(os.environ.get("BONE_SEG_CACHE", "~/.cache/bone_seg")).expanduser()
        path = Path(resolve_weights("pretrained", cache / "pretrained", key="weights"))
        if not path.is_file():
            raise FileNotFoundError(path)
        return "file", str(path)
    except Exception:
        import torch

        from bone_seg.weights.meta import WeightsMeta
        from bone_seg.weights.network import create_net
        from bone_seg.weights.safetensors_file import save_weights

        torch.manual_seed(0)
        net = create_net("unet", "resnet18", mode="2.5d", in_channels=3, num_classes=3)
        meta = WeightsMeta(arch="unet", encoder="resnet18", mode="2.5d", in_channels=3,
                           num_classes=3, class_names=["background", "bone", "pores"],
                           patch_size=64, slices=3)
        save_weights(root / "random.safetensors", net.state_dict(), meta)
        return "file", str(root / "random.safetensors")


def wait(panel, app, limit: float = 900.0) -> None:
    start = time.monotonic()
    while panel.busy and time.monotonic() - start < limit:
        app.processEvents()
        time.sleep(0.05)
    for _ in range(20):  # let the layers draw
        app.processEvents()
        time.sleep(0.05)


def shoot(viewer, path: Path) -> None:
    """The whole window (dock included) as a PNG, reduced until it is under 300 kB."""
    from PIL import Image

    image = Image.fromarray(viewer.screenshot(canvas_only=False, flash=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    width = image.width
    while True:
        shown = image if width == image.width else image.resize(
            (width, round(image.height * width / image.width)), Image.LANCZOS)
        shown.save(path, optimize=True)
        if path.stat().st_size < 300_000 or width < 600:
            break
        width = int(width * 0.85)
    print(f"{path}: {shown.width}x{shown.height}, {path.stat().st_size // 1024} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder of the PNGs")
    parser.add_argument("--weights", default=None, help="weights for Segment (a file)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    out = Path(args.out).absolute()
    root = Path(tempfile.mkdtemp(prefix="bone_seg_napari_"))
    os.environ["BONE_SEG_ROOT"] = str(root)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        run(root, out, args.weights)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"work folder: {root}")


def run(root: Path, out: Path, weights: str | None) -> None:
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from bone_seg.gui.finetune import FineTuneWidget
    from bone_seg.gui.label_slices import LabelSlicesWidget
    from bone_seg.gui.layers import add_output, volume_data
    from bone_seg.gui.measure import MeasureWidget
    from bone_seg.gui.score import ScoreWidget
    from bone_seg.gui.segment import SegmentWidget

    store = build_store(root)
    kind, value = ("file", weights) if weights else default_weights(root)
    viewer = napari.Viewer(title="bone_seg", show=True)
    viewer.window.resize(1500, 950)
    app = QApplication.instance()
    add_output(viewer, store / "scans" / "tiny_01")
    viewer.layers["tiny_01 mask"].visible = False
    viewer.dims.set_current_step(0, 12)

    def dock(widget, name):
        for existing in list(viewer.window.dock_widgets):
            viewer.window.remove_dock_widget(viewer.window.dock_widgets[existing])
        viewer.window.add_dock_widget(widget, name=name, area="right")
        app.processEvents()
        return widget

    seg = dock(SegmentWidget(viewer), "Segment")
    seg.weights_kind.setCurrentText(kind)
    seg.weights.setText(value)
    seg.image.setCurrentText("tiny_01 image")
    seg.suggest.setValue(3)
    seg._clicked()
    wait(seg, app)
    print(seg.message.text())
    viewer.layers["tiny_01 confidence"].visible = False
    shoot(viewer, out / "napari_segment.png")

    slices = dock(LabelSlicesWidget(viewer), "Label slices")
    slices.image.setCurrentText("tiny_01 image")
    slices.suggestions.setCurrentText("tiny_01 suggestions")
    slices.step(1)
    slices.new_annotations()
    z = slices.slices()[0]
    painted = viewer.layers["tiny_01 annotations"]
    labels = np.asarray(volume_data(viewer.layers["tiny_01 labels"], "labels")[z])
    stroke = np.zeros_like(labels, bool)
    stroke[20:70, 15:80] = True  # a painted patch of the slice: the predicted classes there
    painted.data[z][stroke] = labels[stroke] + 1
    painted.refresh()
    slices.scan_id.setText("tiny_01_painted")
    slices._clicked()
    wait(slices, app)
    print(slices.message.text())
    shoot(viewer, out / "napari_label_slices.png")

    tune = dock(FineTuneWidget(viewer), "Fine-tune")
    tune.weights_kind.setCurrentText("file")
    tune.weights.setText(value)
    tune.epochs.setValue(3)
    tune.extra.setText("data.patch_size=64 data.batch_size=8 data.patches_per_tile=1 "
                       "data.num_workers=0 callbacks.complexity=null")
    tune._clicked()
    wait(tune, app)
    print(tune.message.text())
    shoot(viewer, out / "napari_finetune.png")

    score = dock(ScoreWidget(viewer), "Score")
    score.prediction.setCurrentText("tiny_01 labels")
    score.reference.setCurrentText("tiny_01 mask")
    score._clicked()
    wait(score, app)
    print(score.message.text())
    shoot(viewer, out / "napari_score.png")

    measure = dock(MeasureWidget(viewer), "Measure")
    measure.labels.setCurrentText("tiny_01 labels")
    measure._clicked()
    wait(measure, app)
    print(measure.message.text())
    viewer.layers["tiny_01 annotations"].visible = False
    shoot(viewer, out / "napari_measure.png")
    viewer.close()


if __name__ == "__main__":
    sys.exit(main())
