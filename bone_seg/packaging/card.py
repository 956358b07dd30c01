"""The README (model card) of a BioImage Model Zoo package, from the weights' metadata: task,
classes, data, scores, the recipe, how to run it, the normalisation rule, citation, licence."""

from __future__ import annotations

from typing import Any

from bone_seg.packaging.rdf import clip_range, halo
from bone_seg.weights.meta import WeightsMeta

BONE_CITATION = (
    "Lee A.H. et al. (2026), Deep learning software and revised 2D model to segment bone in "
    "micro-CT scans, Frontiers in Bioinformatics, doi:10.3389/fbinf.2025.1677527")


def _recipe(config: dict[str, Any]) -> list[str]:
    """The fit's main choices, as far as its resolved config records them."""
    lines = []
    for key in ("model", "optim", "loss", "trainer", "data"):
        node = config.get(key)
        if isinstance(node, dict):
            plain = {k: v for k, v in node.items() if isinstance(v, (str, int, float, bool))}
            if plain:
                lines.append(f"- **{key}**: " + ", ".join(f"{k}={v}" for k, v in
                                                            sorted(plain.items())[:12]))
    return lines or ["- (the weights record no fit configuration)"]


def model_card(meta: WeightsMeta, *, name: str, weights_name: str, voxel_size: float | None,
               license: str, cv_scores: dict[str, Any] | None = None) -> str:
    """The package's README.md."""
    lo, hi = clip_range(meta)
    norm = ("(x - mean) / SD" if meta.normalization == "zscore" else "(x - min) / (max - min)")
    splits = {k: v for k, v in (meta.splits or {}).items() if v}
    score = (f"{meta.best_metric} = {meta.best_score:.4f} at epoch {meta.best_epoch}"
             if meta.best_score is not None else "not recorded")
    lines = [
        f"# {name}",
        "",
        "Semantic segmentation of micro-CT scans of bone into "
        + ", ".join(f"`{c}` ({i})" for i, c in enumerate(meta.class_names))
        + " (the Bone-Pores task of BONe). Written by bone_seg's `bone-export format=bioimageio`.",
        "",
        "## Model",
        f"- {meta.arch} with a {meta.encoder} encoder, {meta.mode} "
        + (f"({meta.slices} neighbouring slices as channels)" if meta.mode == "2.5d" else "")
        + f"; trained on {meta.patch_size} px patches"
        + (f" x {meta.patch_depth} slices" if meta.patch_depth else "") + ".",
        "- Output: the softmax probability of each class; the label is the arg-max (bone_seg "
        "also sets voxels whose top probability is below 0.5 to background).",
        f"- Tiling: any size of the form min + n x step (rdf.yaml); a halo of {halo(meta)} px per "
        "side should be cropped from each tile.",
        f"- Voxel size of the training data: {f'{voxel_size} µm' if voxel_size else 'not recorded'}"
        " (predict scans at a similar resolution, or resample them).",
        "",
        "## Data and scores",
        "- Scans: " + ("; ".join(f"{k}: {', '.join(v)}" for k, v in splits.items())
                        if splits else "not recorded") + ".",
        f"- Best validation score: {score}.",
    ]
    if cv_scores:
        lines.append("- Cross-validation: " + ", ".join(f"{k} = {v}" for k, v in cv_scores.items()))
    lines += [
        "",
        "## Training recipe",
        *_recipe(meta.config),
        "- Library versions: " + ", ".join(f"{k} {v}" for k, v in sorted(meta.versions.items())),
        "",
        "## Normalisation (read this before predicting)",
        f"bone_seg normalises a scan as {norm} with the **whole scan's** statistics over voxels "
        f"> 0 (`stats_policy={meta.stats_policy}`), then clips to [{lo}, {hi}]. The package's "
        "preprocessing uses the **input's own** statistics over all its voxels, then the same "
        "clip. Both agree when you feed a whole slice (2D/2.5D) or volume (3D) of the scan whose "
        "background is not exactly 0; do not feed small crops (their statistics differ), and "
        "crop away zero padding first. Exact alternative: normalise the scan yourself with its "
        "statistics over voxels > 0 and remove the normalisation steps from rdf.yaml.",
        "",
        "## How to run",
        "- **Fiji / deepImageJ**: Plugins > deepImageJ > Install Model > this zip; open a "
        "slice (or stack for 3D), run the model (TorchScript or ONNX weights); the arg-max of "
        "the output channels is the label image.",
        "- **Python**: `pip install bioimageio.core onnxruntime`, then "
        "`bioimageio predict --weight-format onnx <this.zip> --inputs <image.npy>` or "
        "`bioimageio.core.predict(model='<this.zip>', inputs=array)`.",
        "- **bone_seg**: `bone-predict weights=<this.zip> scan=<scan>` runs the bone_seg weights "
        f"inside (`{weights_name}`) with its sliding-window predictor and the exact "
        "normalisation.",
        "",
        "## Validation",
        "The package's test input (a bone_seg phantom, one patch) and output reproduce with "
        "`bioimageio test <this.zip>` (both weights formats; tolerance in rdf.yaml). The "
        "model's accuracy on real scans is the validation score above; check it on a few "
        "labelled slices of your own scans before relying on it.",
        "",
        "## Citation",
        f"If you use this model, cite the BONe paper: {BONE_CITATION}.",
        "",
        "## Licence and authors",
        f"Licence: {license}. Authors: fill in `authors` in rdf.yaml (placeholders written by "
        "bone-export).",
        "",
    ]
    return "\n".join(lines)
