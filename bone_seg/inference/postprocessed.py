"""The post-processed labels of a prediction (``postprocess:`` settings), beside the network's.

Layout added to the output (:mod:`bone_seg.inference.output`)::

    labels/postprocessed/   NGFF label image, the same pyramid, colours and names as
                            ``labels/segmentation`` (the network's labels, kept unchanged); listed
                            first in ``labels``'s ``ome.labels`` once complete, so every reader
                            (bone-iou, bone-morpho, bone-export, napari) takes it
    postprocess.json        {"key": {settings, the prediction's fingerprint}, "decided",
                             "slabs": {i: {"class_counts", "changes"}}, "complete"}
    postprocess.npz         pass 1's decisions (:class:`bone_seg.postprocess.stream.Decisions`)

Pass 2 reads the network's labels, never its own output, so a stopped run continues with the
slabs not recorded; other settings (or another prediction) start the post-processing again. The
output's ``complete`` attribute is false while post-processing runs.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
from tqdm.auto import tqdm

from bone_seg.atomic import atomic_path, write_json_atomic
from bone_seg.inference.output import CHUNK_YX, LABEL_NAME, PredictionOutput
from bone_seg.io import ngff
from bone_seg.io.pyramid import create_levels, write_levels
from bone_seg.postprocess.settings import PostprocessSettings
from bone_seg.postprocess.stream import Decisions, apply_decisions, find_decisions

NAME = "postprocessed"


def postprocess_output(output: PredictionOutput, s: PostprocessSettings, progress: bool,
                       name: str):
    """Post-process ``output``'s labels (every slab written); returns ``(final labels array,
    report or None)``. Sets ``output.label_images`` for the caller's
    :meth:`~bone_seg.inference.output.PredictionOutput.mark_complete`, which lists them."""
    labels_group = output.group[ngff.LABELS_GROUP]
    state_path = output.path / "postprocess.json"
    if not s.active:
        if NAME in labels_group or state_path.exists():
            output.group.attrs["complete"] = False
            _drop(output)
        return output.labels, None
    t0 = time.perf_counter()
    key = json.loads(json.dumps({"settings": s.as_dict(), "source": output.fingerprint}))
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state is not None and state.get("key") == key and state.get("complete"):
        output.label_images = [NAME, LABEL_NAME]
        return _levels(output)[0], _report(state, s, t0)
    output.group.attrs["complete"] = False
    if state is None or state.get("key") != key or NAME not in labels_group:
        _drop(output)
        create_levels(labels_group.create_group(NAME), output.pyramid, "uint8", CHUNK_YX,
                      fill_value=0)
        state = {"key": key, "decided": False, "slabs": {}, "complete": False}
        write_json_atomic(state_path, state)
    bar = tqdm(total=2 * output.num_slabs, desc=f"post-process {name}", unit="slab",
               disable=None if progress else True)
    decisions = _decide(output, s, state, bar)
    levels = _levels(output)
    for i in range(output.num_slabs):
        if str(i) not in state["slabs"]:
            z0, z1 = output.slab_range(i)
            raw = np.asarray(output.labels[z0:z1])
            new = apply_decisions(raw, i, decisions, s)
            write_levels(levels, z0, new, output.pyramid, "nearest")
            state["slabs"][str(i)] = _slab_stats(raw, new, len(output.class_names))
            write_json_atomic(state_path, state)
        bar.update(1)
    bar.close()
    output.label_images = [NAME, LABEL_NAME]
    state["complete"] = True
    write_json_atomic(state_path, state)
    return levels[0], _report(state, s, t0)


def _decide(output: PredictionOutput, s: PostprocessSettings, state: dict, bar) -> Decisions:
    """Pass 1's decisions: the saved ones when this key's were saved, else found and saved."""
    path = output.path / "postprocess.npz"
    if state.get("decided") and path.exists():
        bar.update(output.num_slabs)
        return Decisions.load(path)
    decisions = find_decisions(lambda z0, z1: output.labels[z0:z1], output.shape,
                               output.slab_depth, s, len(output.class_names),
                               progress=lambda: bar.update(1))
    with atomic_path(path) as tmp:
        decisions.save(tmp)
    state["decided"], state["counts"] = True, decisions.counts
    write_json_atomic(output.path / "postprocess.json", state)
    return decisions


def _slab_stats(raw: np.ndarray, new: np.ndarray, k: int) -> dict:
    changes = np.bincount(raw.ravel().astype(np.int64) * k + new.ravel(), minlength=k * k)
    return {"class_counts": np.bincount(new.ravel(), minlength=k).tolist(),
            "changes": changes.reshape(k, k).tolist()}


def _report(state: dict, s: PostprocessSettings, t0: float) -> dict:
    """The report's ``postprocess`` entry and the post-processed class counts."""
    slabs = state["slabs"].values()
    counts = np.sum([v["class_counts"] for v in slabs], axis=0).astype(np.int64)
    changes = np.sum([v["changes"] for v in slabs], axis=0).astype(np.int64)
    moved = changes.copy()
    np.fill_diagonal(moved, 0)
    return {"settings": s.as_dict(), **state.get("counts", {}),
            "voxels_changed": int(moved.sum()), "changes": changes.tolist(),
            "class_counts": counts.tolist(), "time_s": round(time.perf_counter() - t0, 3)}


def _levels(output: PredictionOutput) -> list:
    group = output.group[f"{ngff.LABELS_GROUP}/{NAME}"]
    return [group[str(k)] for k in range(len(output.pyramid.factors))]


def _drop(output: PredictionOutput) -> None:
    """Remove post-processed labels and their records (the network's labels listed alone)."""
    labels_group = output.group[ngff.LABELS_GROUP]
    if NAME in labels_group:
        del labels_group[NAME]
    for f in ("postprocess.json", "postprocess.npz"):
        (output.path / f).unlink(missing_ok=True)
    output.label_images = [LABEL_NAME]
    shutil.rmtree(output.path / "labels" / NAME, ignore_errors=True)
