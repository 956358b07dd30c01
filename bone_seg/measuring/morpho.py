"""The measuring of ``bone-morpho``: morphometry of one label volume, or of a reference and a
prediction, with the analysis settings of the config group ``morphometry``.

Outputs in ``out`` (default: the run directory), each written whole or not at all:
``<name>.json`` (everything), ``<name>.csv`` (the measures), ``<name>[_<role>]_slices.csv`` (per
slice), ``<name>.png`` (profiles and histograms) and ``<name>[_<role>]_thickness.zarr`` (the
local-thickness map). Every label is checked (pass 1) before anything is written; the JSON comes
last. (With ``mlflow=true`` the command logs the measures: :mod:`bone_seg.workflows.morpho`.)

A 2D label image (a 2D TIFF or ``.npy``, or a volume of one slice) is measured as 2D: its own
measures (:mod:`bone_seg.morphometry.measures2d`), a 2D thickness map, the same files. A volume
whose local thickness is capped by its first and last slices for more than ``face_warning`` of a
phase's voxels gets a warning in the report and the log.

:func:`measure` is the measurement itself, shared by ``bone-morpho``, ``bone-predict morpho=true``
(:mod:`bone_seg.measuring.predict_morpho`) and the agreement over a sweep's test scans
(``sweep=...``, :mod:`bone_seg.sweeps.morpho_agreement`); the analysis settings
(:data:`ANALYSIS_KEYS`) come from the config group ``morphometry`` (``conf/morphometry/``), which
``conf/morpho.yaml`` composes at its top level and ``conf/predict.yaml`` under ``morpho_settings``.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bone_seg.errors import BoneSegError
from bone_seg.io.files import save_figure_atomic
from bone_seg.io.volume import Volume
from bone_seg.morphometry.agreement import compare
from bone_seg.morphometry.analysis import Options, ScanAnalysis, ScanResult
from bone_seg.morphometry.measures import histogram_edges, histograms, scan_measures, units
from bone_seg.morphometry.plots import morphometry_figure
from bone_seg.morphometry.selection import select
from bone_seg.morphometry.source import open_label_volume
from bone_seg.morphometry.thickness_map import ThicknessMapWriter
from bone_seg.morphometry.writers import (
    format_table,
    scan_document,
    write_json,
    write_measures_csv,
    write_slices_csv,
)

log = logging.getLogger(__name__)

#: the keys of the ``morphometry`` group that say how to measure (not what, where or whether to log)
ANALYSIS_KEYS = ("num_classes", "bone_label", "pore_label", "thickness", "thickness_map",
                 "histogram_bins", "slab_depth", "max_slab_mb", "measures", "face_warning")


def _whole(value, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BoneSegError(f"{key}={value!r} must be a whole number in {low}..{high}")
    return value


def options_from(cfg: DictConfig) -> Options:
    """The analysis options of a ``bone-morpho`` config, checked.

    Raises:
        BoneSegError: a class count or label out of range, bone and pores the same class.
    """
    num_classes = _whole(cfg.num_classes, "num_classes", 2, 255)
    bone = _whole(cfg.bone_label, "bone_label", 0, num_classes - 1)
    pores = _whole(cfg.pore_label, "pore_label", 0, num_classes - 1)
    if bone == pores:
        raise BoneSegError(f"bone_label and pore_label are both {bone}; give two classes")
    return Options(num_classes=num_classes, bone_label=bone, pore_label=pores,
                   thickness=bool(cfg.thickness), slab_depth=cfg.slab_depth,
                   max_slab_mb=float(cfg.max_slab_mb), progress=True)


def _bins(value) -> int | None:
    if value is None:
        return None
    return _whole(value, "histogram_bins", 1, 100_000)


def _face_warning(cfg: DictConfig) -> float:
    value = cfg.get("face_warning", 0.1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise BoneSegError(f"face_warning={value!r} must be a share between 0 and 1 (e.g. 0.1)")
    return float(value)


def check_settings(cfg: DictConfig) -> Options:
    """The analysis settings of ``cfg`` checked (before any work), as :class:`Options`.

    Raises:
        BoneSegError: a class count or label out of range, bad ``histogram_bins`` or
            ``face_warning``.
    """
    options = options_from(cfg)
    _bins(cfg.histogram_bins)
    _face_warning(cfg)
    return options


def selected_measures(cfg: DictConfig, volumes: dict[str, Volume]) -> list[str]:
    """The measures ``cfg.measures`` asks for, checked against the volumes' dimension (a volume
    of one slice is a 2D image)."""
    requested = cfg.get("measures")
    if OmegaConf.is_config(requested):
        requested = OmegaConf.to_object(requested)
    volume = next(iter(volumes.values()))
    dims = 2 if int(volume.shape[0]) == 1 else 3
    return select(requested, dims, str(volume.path))


def open_volumes(roles: dict[str, str]) -> dict[str, Volume]:
    """The volumes of ``{role: path}``, refused unless they all have one shape."""
    volumes = {role: open_label_volume(path, role or "labels") for role, path in roles.items()}
    shapes = {role: tuple(v.shape) for role, v in volumes.items()}
    if len(set(shapes.values())) > 1:
        ref, pred = volumes["reference"], volumes["prediction"]
        raise BoneSegError(
            f"reference {ref.path} has shape {shapes['reference']} (Z, Y, X) but prediction "
            f"{pred.path} has shape {shapes['prediction']}; both must cover the same voxels"
        )
    return volumes


def _stem(name: str, role: str) -> str:
    return f"{name}_{role}" if role else name


def _thickness_passes(analyses: dict[str, ScanAnalysis], cfg: DictConfig, out: Path,
                      options: Options) -> list[Path]:
    """Pass 2 of every volume; the maps are renamed into place only when all are complete."""
    labels = {"bone": options.bone_label, "pores": options.pore_label}
    with ExitStack() as stack:
        writers = {}
        for role, analysis in analyses.items():
            if cfg.thickness_map:
                path = out / f"{_stem(cfg.name, role)}_thickness.zarr"
                writers[role] = stack.enter_context(ThicknessMapWriter(
                    path, analysis.shape, analysis.result.voxel_size_um, labels,
                    analysis.result.path, planar=analysis.planar))
            analysis.second_pass(writers[role].write if role in writers else None)
        return [w.commit() for w in writers.values()]


def face_bound_shares(res: ScanResult, cfg: DictConfig) -> dict[str, float | None]:
    """Per phase, the share of its voxels whose local thickness is capped by the volume's first
    or last slice (``{}`` for a 2D image or without thickness)."""
    labels = {"bone": cfg.bone_label, "pores": cfg.pore_label}
    return {phase: (count / int(res.class_counts[labels[phase]])
                    if res.class_counts[labels[phase]] else None)
            for phase, count in res.face_bound.items()}


def _warnings(res: ScanResult, cfg: DictConfig, values: dict) -> list[str]:
    """The report's warnings about one volume (each also a log line)."""
    found = []
    if not values.get("BV.vox", values.get("B.Ar.px")):
        found.append(f"{res.path}: no bone voxel (label {cfg.bone_label}): " + (
            "B.Ar = 0; bone thickness and B.Pm/B.Ar are null" if res.dims == 2 else
            "BV = 0; bone thickness, BS/BV, Δχ and connectivity are null"))
    limit = _face_warning(cfg)
    for phase, share in face_bound_shares(res, cfg).items():
        if share is not None and share > limit:
            key, noun = ("B.Th", "bone") if phase == "bone" else ("Po.Th", "pore")
            found.append(
                f"{res.path}: the volume is thinner than the {phase} it holds: the local "
                f"thickness of {share:.1%} of the {noun} voxels is capped by the first or last "
                f"of its {res.shape[0]} slices (their largest sphere is cut by the volume's "
                f"top or bottom face), so {key} is underestimated; measure a deeper volume, or "
                f"a single slice as 2D (face_warning={limit:g})")
    for message in found:
        log.warning("%s", message)
    return found


def _write_outputs(results: dict[str, ScanResult], cfg: DictConfig, out: Path,
                   extra: dict, selected: list[str]) -> tuple[dict, list[Path]]:
    first = next(iter(results.values()))
    all_units = units(first.voxel_size_um is not None, first.dims)
    unit = {k: all_units[k] for k in selected}
    every = {role: scan_measures(res, cfg.bone_label, cfg.pore_label)
             for role, res in results.items()}
    values = {role: {k: v[k] for k in selected} for role, v in every.items()}
    warnings = {role: _warnings(res, cfg, every[role]) for role, res in results.items()}
    edges = histogram_edges(list(results.values()), _bins(cfg.histogram_bins))
    written = [write_slices_csv(res, out / f"{_stem(cfg.name, role)}_slices.csv")
               for role, res in results.items()]
    def document(role: str) -> dict:
        res = results[role]
        return {**scan_document(res, values[role], unit), "dims": res.dims,
                "thickness_at_faces": face_bound_shares(res, cfg) if res.dims == 3 else None,
                "warnings": warnings[role]}

    if "" in results:
        rows = [{"measure": k, "unit": unit[k], "value": values[""][k]} for k in unit]
        doc = {**document(""), "thickness_histogram": histograms(results[""], edges)}
    else:
        rows = compare(values["reference"], values["prediction"], unit)
        doc = {role: document(role) for role in results}
        doc["agreement"] = rows
        doc["thickness_histogram"] = {role: histograms(res, edges)
                                      for role, res in results.items()}
    written.append(write_measures_csv(rows, out / f"{cfg.name}.csv"))
    runs = [(role, res) for role, res in results.items()]
    figure = morphometry_figure(runs, list(values.values()), all_units, edges)
    written.append(save_figure_atomic(figure, out / f"{cfg.name}.png"))
    doc.update(extra)
    log.info("%s\n%s", "morphometry" + (" (prediction − reference)" if "" not in results else ""),
             format_table(rows))
    return doc, written


def voxel_size_option(cfg: DictConfig):
    """``voxel_size`` of a config as a plain value (a number, a list, ``voxels`` or None)."""
    size = cfg.voxel_size
    return OmegaConf.to_object(size) if OmegaConf.is_config(size) else size


def measure(cfg: DictConfig, volumes: dict[str, Volume],
            voxel_size: tuple[float, float, float] | None) -> tuple[dict, list[Path]]:
    """Measure ``volumes`` (``{"": one}`` or ``{"reference": r, "prediction": p}``) into
    ``cfg.out``: the document (also its JSON, written last) and the JSON, CSV and PNG files.

    ``cfg`` holds :data:`ANALYSIS_KEYS`, ``out`` and ``name``.

    Raises:
        BoneSegError: bad settings, or a label outside ``0..num_classes-1`` (found before
            anything is written).
    """
    options = options_from(cfg)
    _bins(cfg.histogram_bins)
    _face_warning(cfg)
    selected = selected_measures(cfg, volumes)
    if voxel_size is None:
        log.info("results in voxel units (voxel_size=voxels)")
    start = time.perf_counter()
    analyses = {role: ScanAnalysis(v, voxel_size, options) for role, v in volumes.items()}
    for analysis in analyses.values():
        analysis.first_pass()  # every label is checked here, before any output
    out = Path(cfg.out)
    maps = _thickness_passes(analyses, cfg, out, options) if options.thickness else []
    extra = {"seconds": round(time.perf_counter() - start, 3),
             "thickness_maps": [str(p) for p in maps]}
    if any(a.planar for a in analyses.values()):
        log.info("a 2D image (one slice): measured as 2D (areas, perimeter, 2D local thickness)")
    doc, written = _write_outputs({r: a.result for r, a in analyses.items()}, cfg, out, extra,
                                  selected)
    json_path = write_json(doc, out / f"{cfg.name}.json")
    log.info("wrote %s, %s.csv, %s.png%s in %s", json_path.name, cfg.name, cfg.name,
             "".join(f", {p.name}" for p in maps), out)
    return doc, [json_path, *written]
