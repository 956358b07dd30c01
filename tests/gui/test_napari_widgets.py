"""The napari widgets in a real viewer (napari's viewer fixture, under an X server:
scripts/with_xvfb.sh): each action's layers and files equal the command's (bone-predict,
bone-import, bone-fit, bone-iou, bone-morpho), a cancel leaves nothing half-written, a bad input
shows one message. Tiny phantoms and a tiny random network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
    pytest.skip("no X server: run under scripts/with_xvfb.sh (make test does)",
                allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))
from fit_helpers import TINY  # noqa: E402
from inference_helpers import save_model, scan  # noqa: E402

from bone_seg.cli.app import compose_config  # noqa: E402
from bone_seg.io.store import DatasetStore  # noqa: E402

pytestmark = pytest.mark.gui
BIN = Path(sys.executable).parent
WAIT = 240_000  # ms: a child process on a busy 2-core machine


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("BONE_SEG_ROOT", str(tmp_path / "work"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path / "work"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("w") / "tiny.safetensors", "2.5d", patch=32)


def _run(panel, qtbot):
    panel._clicked()
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT)
    return panel.message.text()


def test_segment_labels_equal_bone_predict(make_napari_viewer, qtbot, root, weights):
    from bone_seg.gui.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(scan((12, 64, 64)), name="femur", scale=(5.0, 5.0, 5.0),
                     metadata={"units": "micrometre"})
    w = SegmentWidget(viewer)
    w.weights_kind.setCurrentText("file")
    w.weights.setText(str(weights))
    w.suggest.setValue(2)
    text = _run(w, qtbot)
    assert w.report is not None, text
    names = [layer.name for layer in viewer.layers]
    assert {"femur labels", "femur confidence", "femur suggestions"} <= set(names)
    assert "Mvoxel/s" in text and "bone:" in text and "mm³" in text
    labels = viewer.layers["femur labels"]
    assert list(labels.scale) == [5.0, 5.0, 5.0] and labels.features["class"][1] == "bone"
    # bone-predict itself on the very file the widget read: the same labels, bitwise
    (npy,) = (root / "napari" / "inputs").glob("*/femur.npy")
    out = root / "cli.zarr"
    proc = subprocess.run([str(BIN / "bone-predict"), f"weights={weights}", f"scan={npy}",
                           f"out={out}", "confidence=true", "suggest=2", "voxel_size=5.0",
                           f"paths.root={root}", "threads=1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import zarr

    ours = zarr.open_group(str(w.out), mode="r")["labels/segmentation/0"][:]
    theirs = zarr.open_group(str(out), mode="r")["labels/segmentation/0"][:]
    np.testing.assert_array_equal(ours, theirs)
    from bone_seg.gui.layers import volume_data

    np.testing.assert_array_equal(np.asarray(volume_data(labels, "labels")), theirs)
    assert (json.loads((w.out / "suggestions.json").read_text())["suggestions"]
            == json.loads((out / "suggestions.json").read_text())["suggestions"])
    # the suggested slices: next / previous move the viewer there
    from bone_seg.gui.label_slices import LabelSlicesWidget

    slices = LabelSlicesWidget(viewer)
    slices.suggestions.setCurrentText("femur suggestions")
    slices.step(1)
    assert viewer.dims.current_step[0] == slices.slices()[0]
    slices.step(1)
    assert viewer.dims.current_step[0] == slices.slices()[1]


def test_cancel_leaves_no_output(make_napari_viewer, qtbot, root, weights):
    from bone_seg.gui.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(scan((96, 256, 256)), name="big")
    w = SegmentWidget(viewer)
    w.weights_kind.setCurrentText("file")
    w.weights.setText(str(weights))
    w._clicked()
    qtbot.waitUntil(lambda: w._run is not None, timeout=WAIT)
    out = root / "predictions" / "big.zarr"
    qtbot.waitUntil(lambda: out.exists(), timeout=WAIT)  # it has started writing
    w.cancel()
    qtbot.waitUntil(lambda: not w.busy, timeout=WAIT)
    assert w.message.text().startswith("cancelled")
    assert not out.exists() and not list(out.parent.glob(".big.zarr*"))
    assert "big labels" not in viewer.layers


def test_bad_inputs_show_one_message(make_napari_viewer, qtbot, root, tmp_path, weights):
    from bone_seg.gui.segment import SegmentWidget

    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    w.weights_kind.setCurrentText("file")
    w.weights.setText(str(weights))
    w._clicked()
    assert not w.busy and w.message.text().startswith("error: no image layer")
    viewer.add_image(np.zeros((64, 64), np.uint16), name="flat")
    w._clicked()
    assert not w.busy and "2D" in w.message.text() and "3D scans" in w.message.text()
    viewer.layers.clear()
    viewer.add_image(scan((8, 64, 64)), name="ok")
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    w.weights.setText(str(bad))
    text = _run(w, qtbot)
    assert text.startswith("error:") and "bad.safetensors" in text
    assert "\n" not in text and "Traceback" not in text
    assert not (root / "predictions" / "ok.zarr").exists()


def test_annotations_saved_and_imported_sparse(make_napari_viewer, qtbot, root):
    from bone_seg.classes import UNLABELLED
    from bone_seg.gui.label_slices import LabelSlicesWidget

    viewer = make_napari_viewer()
    image = scan((10, 64, 64))
    viewer.add_image(image, name="otter", scale=(4.0, 4.0, 4.0), metadata={"units": "micrometre"})
    w = LabelSlicesWidget(viewer)
    w.new_annotations()
    painted = viewer.layers["otter annotations"]
    painted.data[3, 10:30, 10:40] = 2  # bone
    painted.data[3, 40:50, :] = 1  # background
    painted.data[6, 5:9, 5:9] = 3  # pores
    text = _run(w, qtbot)
    assert "saved otter" in text, text
    scan_ = DatasetStore(root / "data" / "store").open_scan("otter")
    mask = scan_.mask[:]
    expected = np.full(image.shape, UNLABELLED, np.uint8)
    expected[3, 10:30, 10:40], expected[3, 40:50, :], expected[6, 5:9, 5:9] = 1, 0, 2
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(scan_.image[:], image)
    assert scan_.attrs["unlabelled_count"] == int((expected == UNLABELLED).sum())
    assert scan_.attrs["voxel_size"] in (4.0, [4.0, 4.0, 4.0])


@pytest.mark.slow
def test_finetune_run_finishes_in_mlflow(make_napari_viewer, qtbot, root, weights, tiny_store):
    from bone_seg.gui.finetune import FineTuneWidget

    viewer = make_napari_viewer()
    w = FineTuneWidget(viewer)
    w.weights_kind.setCurrentText("file")
    w.weights.setText(str(weights))
    w.store.setText(str(tiny_store))
    w.epochs.setValue(1)
    tiny = [o for o in TINY if not o.startswith(("experiment=", "trainer.max_epochs"))]
    w.extra.setText(" ".join(tiny))
    text = _run(w, qtbot)
    assert text.startswith("fine-tuned"), text
    assert len(w.curve) == 1 and 0 <= w.curve[0][1] <= 1 and w.best_weights.is_file()
    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db").get_run(w.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val/miou"] == pytest.approx(w.curve[0][1], abs=5e-5)


def test_score_equals_bone_iou(make_napari_viewer, qtbot, root, tiny_store):
    from bone_seg.gui.score import ScoreWidget
    from bone_seg.workflows import iou

    viewer = make_napari_viewer()
    ref = DatasetStore(tiny_store).open_scan("tiny_01").mask[:]
    pred = ref.copy()
    half = pred[: len(pred) // 2]
    half[half == 1] = 0  # bone missed in the first half
    viewer.add_labels(ref, name="reference")
    viewer.add_labels(pred, name="prediction")
    w = ScoreWidget(viewer)
    w.prediction.setCurrentText("prediction")
    w.reference.setCurrentText("reference")
    text = _run(w, qtbot)
    assert text.startswith("mIoU"), text
    inputs = root / "napari" / "inputs"
    (p,), (r,) = inputs.glob("*/prediction.npy"), inputs.glob("*/reference.npy")
    cfg = compose_config("iou", [f"prediction={p}", f"reference={r}", f"out={root / 'cli'}",
                                 f"paths.root={root}"])
    scores = iou.run(cfg)
    assert w.scores["mean_iou"] == scores["mean_iou"] < 1
    assert w.scores["classes"] == scores["classes"]
    assert w.table.rowCount() == 4 and w.table.item(3, 0).text() == "mean"


def test_measure_table_and_thickness_layer(make_napari_viewer, qtbot, root, tiny_store):
    from bone_seg.gui.measure import MeasureWidget

    viewer = make_napari_viewer()
    mask = DatasetStore(tiny_store).open_scan("tiny_02").mask[:]
    viewer.add_labels(mask, name="tiny_02 mask", scale=(10.0, 10.0, 10.0),
                      metadata={"units": "micrometre"})
    w = MeasureWidget(viewer)
    text = _run(w, qtbot)
    assert "measures of" in text, text
    bone, pores = int((mask == 1).sum()), int((mask == 2).sum())
    assert w.document["measures"]["BV/TV"] == pytest.approx(bone / (bone + pores))
    assert "tiny_02 mask thickness" in viewer.layers
    assert w.table.rowCount() == len(w.document["measures"])
    assert not list((root / "napari" / "morpho").glob(".*"))  # no temporary left


def test_reader_preference_opens_without_a_chooser(make_napari_viewer, npe2pm, tmp_path):
    """napari's builtins claim *.zarr as well: without a preference napari cannot choose (File >
    Open asks; viewer.open(plugin=None) refuses); with the README's preference, or
    plugin="bone-seg", bone_seg's reader opens it."""
    from napari.settings import get_settings

    from bone_seg.io.napari_writer import write_labels

    labels = np.random.default_rng(0).integers(0, 3, (6, 32, 32)).astype(np.uint8)
    (path,) = write_labels(str(tmp_path / "painted.zarr"), labels,
                           {"name": "p", "scale": [5.0, 5.0, 5.0],
                            "metadata": {"units": "micrometre"}})
    viewer = make_napari_viewer()
    # the test's plugin manager discovers nothing: register napari's builtins and ours, as
    # installed beside each other
    import npe2

    import bone_seg

    if "napari" not in npe2pm:
        npe2pm.register(npe2.PluginManifest.from_distribution("napari"))
    npe2pm.register(str(Path(bone_seg.__file__).parent / "napari.yaml"))
    from napari.plugins import _npe2

    assert set(_npe2.get_readers(path)) == {"napari", "bone-seg"}, _npe2.get_readers(path)
    from napari.plugins.utils import get_preferred_reader

    assert get_preferred_reader(path) is None, get_settings().plugins.extension2reader
    with pytest.raises(Exception, match="Multiple plugins found"):
        viewer.open(path, plugin=None)  # as File > Open and drag-and-drop choose
    settings = get_settings().plugins
    before = dict(settings.extension2reader)
    try:
        settings.extension2reader = {**before, "*.zarr": "bone-seg", "*.zarr/": "bone-seg"}
        (layer,) = viewer.open(path, plugin=None)
    finally:
        settings.extension2reader = before
    assert layer.__class__.__name__ == "Labels" and list(layer.scale) == [5.0, 5.0, 5.0]
    np.testing.assert_array_equal(np.asarray(layer.data), labels)
    (again,) = viewer.open(path, plugin="bone-seg")
    assert again.features["class"][2] == "pores"
