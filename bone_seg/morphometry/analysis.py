"""Morphometry of one label volume in two streamed passes along Z.

Pass 1 reads every slab once (plus a halo for the distance maximum) and checks its labels,
counts classes, measures every slice (:mod:`~bone_seg.morphometry.slice_geometry`), feeds the bone
windows that give its Euler characteristic, connectivity and surface area, and finds each phase's
largest distance exactly (:func:`~bone_seg.morphometry.distance.certified_max_sq`). Pass 2 (local
thickness) needs that maximum for its halo: it reads each slab with ``2R + 1`` slices on both sides
and paints the spheres (:mod:`~bone_seg.morphometry.thickness`).

A volume of one slice (a 2D image: a 2D TIFF or ``.npy``, or a ``(1, Y, X)`` array) is measured as
2D (``ScanResult.dims == 2``): pass 1 also counts the bone's boundary transitions for its perimeter
(:mod:`~bone_seg.morphometry.perimeter`) and skips the 3D connectivity and the distance maxima;
pass 2 is the 2D local thickness (largest inscribed discs, :mod:`~bone_seg.morphometry
.thickness2d`) of the slice, held whole.

Memory holds one slab and its halo — ``(slab + 2·halo) · Y · X`` voxels times about
:data:`BYTES_PER_VOXEL` — whatever the depth of the scan; per-slice results (a few numbers per
slice) and the thickness distributions (one pair per distinct radius) are all that grow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from bone_seg.errors import BoneSegError
from bone_seg.io.store import ChunkLayout
from bone_seg.io.volume import Volume
from bone_seg.morphometry.balls import BallTable
from bone_seg.morphometry.connectivity import Connectivity, StreamedConnectivity
from bone_seg.morphometry.distance import anisotropy, certified_max_sq
from bone_seg.morphometry.distribution import Distribution
from bone_seg.morphometry.perimeter import intercepts
from bone_seg.morphometry.slice_geometry import COLUMNS, slice_geometry
from bone_seg.morphometry.source import checked_labels, open_label_volume
from bone_seg.morphometry.thickness import Painter, halo_slices, slab_thickness_sq
from bone_seg.morphometry.thickness2d import planar_thickness_sq

#: Working bytes per voxel of a slab and its halo (labels, masks, float32 distances, canvas).
BYTES_PER_VOXEL = 24

PHASES = ("bone", "pores")

#: Slices per shard of the dataset store's layout (and of the thickness map).
SHARD_DEPTH = ChunkLayout().shard_depth


@dataclass(frozen=True)
class Options:
    """What to measure and how much to hold.

    Attributes:
        num_classes: labels must lie in ``0..num_classes-1``.
        bone_label: class index of bone.
        pore_label: class index of pores (the envelope is bone + pores).
        thickness: compute local thickness (pass 2).
        slab_depth: slices per slab (``None``: from ``max_slab_mb``).
        max_slab_mb: working memory aimed at for a slab without its halo, in MiB.
        progress: show progress bars (silent when not a terminal).
    """

    num_classes: int = 3
    bone_label: int = 1
    pore_label: int = 2
    thickness: bool = True
    slab_depth: int | None = None
    max_slab_mb: float = 64.0
    progress: bool = True

    def depth_for(self, shape: tuple[int, int, int]) -> int:
        """Slices per slab for a volume of ``shape``."""
        if self.slab_depth is not None:
            if isinstance(self.slab_depth, bool) or int(self.slab_depth) < 1:
                raise BoneSegError(f"slab_depth={self.slab_depth!r} must be a whole number ≥ 1")
            return min(int(self.slab_depth), shape[0])
        per_slice = shape[1] * shape[2] * BYTES_PER_VOXEL
        depth = max(1, int(self.max_slab_mb * 2**20 // per_slice))
        if depth >= SHARD_DEPTH:  # whole shards of the thickness map per slab
            depth -= depth % SHARD_DEPTH
        return min(shape[0], depth)


@dataclass
class ScanResult:
    """Everything measured on one volume (raw: counts, per-slice arrays, distributions).

    ``dims`` is 2 for a volume of one slice (a 2D image, measured as 2D), else 3; ``intercepts``
    (2D) the bone's boundary transitions per direction (:func:`~bone_seg.morphometry.perimeter
    .intercepts`); ``face_bound`` (3D) per phase the voxels whose local thickness is capped by the
    scan's first or last slice (:func:`~bone_seg.morphometry.thickness.slab_thickness_sq`).
    """

    path: str
    shape: tuple[int, int, int]
    voxel_size_um: tuple[float, float, float] | None
    class_counts: np.ndarray
    slices: dict[str, np.ndarray]
    connectivity: Connectivity
    bone_windows: np.ndarray
    max_sq: dict[str, float] = field(default_factory=dict)
    thickness: dict[str, Distribution] = field(default_factory=dict)
    dims: int = 3
    intercepts: dict[str, int] = field(default_factory=dict)
    face_bound: dict[str, int] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in the length unit of the results (mm, or voxels)."""
        if self.voxel_size_um is None:
            return (1.0, 1.0, 1.0)
        return tuple(v * 1e-3 for v in self.voxel_size_um)  # type: ignore[return-value]

    @property
    def thickness_scale(self) -> float:
        """Length of one distance unit (the smallest spacing; in 2D the smaller pixel spacing) in
        the thickness unit (µm/voxel)."""
        if self.voxel_size_um is None:
            return 1.0
        return min(self.voxel_size_um[3 - self.dims:])

    @property
    def aniso(self) -> tuple[float, ...]:
        """The spacings (z, y, x; in 2D y, x) in units of the smallest one."""
        spacing = (1.0, 1.0, 1.0) if self.voxel_size_um is None else self.voxel_size_um
        return anisotropy(spacing[3 - self.dims:])


class ScanAnalysis:
    """The two passes over one volume; :meth:`first_pass` checks every label before any output.

    ``volume`` is a path, an array or a :class:`~bone_seg.io.volume.Volume`; ``voxel_size_um``
    is ``(z, y, x)`` in µm, or ``None`` for results in voxel units.
    """

    def __init__(self, volume: Volume | np.ndarray | str, voxel_size_um, options: Options):
        self.volume = open_label_volume(volume, "labels")
        self.options = options
        self.shape = tuple(int(s) for s in self.volume.shape)
        self.depth = self.options.depth_for(self.shape)
        self.result = ScanResult(
            path=str(self.volume.path), shape=self.shape,
            voxel_size_um=None if voxel_size_um is None else tuple(voxel_size_um),
            class_counts=np.zeros(options.num_classes, np.int64), slices={},
            connectivity=Connectivity(0, None, None, None), bone_windows=np.zeros(256, np.int64),
            dims=2 if self.shape[0] == 1 else 3,
        )
        self.aniso = self.result.aniso
        self._halo = dict.fromkeys(PHASES, 0)

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Checked uint8 labels of slices ``[lo, hi)``."""
        return checked_labels(self.volume.read(lo, hi), lo, self.volume, self.options.num_classes)

    def label(self, phase: str) -> int:
        """Class index of a phase."""
        return self.options.bone_label if phase == "bone" else self.options.pore_label

    def _slabs(self, desc: str) -> Iterator[tuple[int, int]]:
        bar = tqdm(total=self.shape[0], unit="slice", desc=desc, leave=False,
                   disable=None if self.options.progress else True)
        try:
            for z0 in range(0, self.shape[0], self.depth):
                z1 = min(self.shape[0], z0 + self.depth)
                yield z0, z1
                bar.update(z1 - z0)
        finally:
            bar.close()

    def _span(self, z0: int, z1: int, halo: int) -> tuple[int, int]:
        return max(0, z0 - halo), min(self.shape[0], z1 + halo)

    @property
    def planar(self) -> bool:
        """A 2D image (one slice), measured as 2D."""
        return self.result.dims == 2

    def first_pass(self) -> None:
        """Counts, slice geometry, connectivity, surface windows, distance maxima (2D: counts,
        slice geometry, perimeter transitions)."""
        res, opts = self.result, self.options
        if self.planar:
            self._planar_first_pass()
            return
        connectivity = StreamedConnectivity(self.shape)
        parts: list[dict[str, np.ndarray]] = []
        res.max_sq = dict.fromkeys(PHASES, 0.0)
        for z0, z1 in self._slabs(f"morphometry {self.volume.path}"):
            halo = max(self._halo.values()) if opts.thickness else 0
            lo, hi = self._span(z0, z1, halo)
            labels = self.read(lo, hi)
            core = labels[z0 - lo : z1 - lo]
            bone = core == opts.bone_label
            res.class_counts += np.bincount(core.reshape(-1), minlength=opts.num_classes)
            parts.append(slice_geometry(bone, bone | (core == opts.pore_label), z0, res.spacing))
            connectivity.add(bone)
            if opts.thickness:
                self._distance_maxima(labels, lo, (z0, z1))
        res.slices = {k: np.concatenate([p[k] for p in parts]) for k in COLUMNS}
        res.connectivity = connectivity.result()
        res.bone_windows = connectivity.windows.counts.copy()

    def _planar_first_pass(self) -> None:
        res, opts = self.result, self.options
        labels = self.read(0, 1)
        bone = labels == opts.bone_label
        res.class_counts += np.bincount(labels.reshape(-1), minlength=opts.num_classes)
        res.slices = slice_geometry(bone, bone | (labels == opts.pore_label), 0, res.spacing)
        res.intercepts = intercepts(bone[0])
        res.max_sq = dict.fromkeys(PHASES, 0.0)

    def _distance_maxima(self, labels: np.ndarray, lo: int, core: tuple[int, int]) -> None:
        for phase in PHASES:
            value = self.label(phase)
            p_lo, p_hi = self._span(*core, self._halo[phase])
            first = labels[p_lo - lo : p_hi - lo] == value
            best, self._halo[phase] = certified_max_sq(
                lambda a, b, v=value: self.read(a, b) == v, self.shape[0], core,
                self._halo[phase], self.aniso, first=first)
            self.result.max_sq[phase] = max(self.result.max_sq[phase], best)

    def second_pass(self, write: Callable[[int, np.ndarray], None] | None = None) -> None:
        """Local thickness of both phases; ``write(z0, map)`` receives each slab's map (float32,
        thickness in µm — voxels without a voxel size — on bone and pore voxels, 0 elsewhere)."""
        res = self.result
        if self.planar:
            self._planar_second_pass(write)
            return
        painters = {p: Painter(BallTable(res.max_sq[p], self.aniso), self.shape[1:])
                    for p in PHASES if res.max_sq.get(p, 0) > 0}
        res.thickness = {p: Distribution() for p in PHASES}
        res.face_bound = dict.fromkeys(PHASES, 0)
        halo = max([halo_slices(res.max_sq[p], self.aniso[0]) for p in painters] + [0])
        for z0, z1 in self._slabs(f"thickness {self.volume.path}"):
            lo, hi = self._span(z0, z1, halo)
            labels = self.read(lo, hi)
            slab_map = np.zeros((z1 - z0, *self.shape[1:]), np.float32)
            for phase, painter in painters.items():
                p_lo, p_hi = self._span(z0, z1, halo_slices(res.max_sq[phase], self.aniso[0]))
                phase_mask = labels[p_lo - lo : p_hi - lo] == self.label(phase)
                faces: list[np.ndarray] = []
                sq = slab_thickness_sq(phase_mask, (p_lo, p_hi), (z0, z1), self.shape[0], painter,
                                       faces_out=faces)
                res.thickness[phase].add(sq)
                res.face_bound[phase] += int(np.count_nonzero(faces[0]))
                on = sq > 0
                slab_map[on] = 2.0 * np.sqrt(sq[on]) * res.thickness_scale
            if write is not None:
                write(z0, slab_map)


    def _planar_second_pass(self, write: Callable[[int, np.ndarray], None] | None) -> None:
        res = self.result
        labels = self.read(0, 1)[0]
        res.thickness = {p: Distribution() for p in PHASES}
        thickness_map = np.zeros((1, *self.shape[1:]), np.float32)
        for phase in PHASES:
            sq, res.max_sq[phase] = planar_thickness_sq(labels == self.label(phase), self.aniso)
            res.thickness[phase].add(sq)
            on = sq > 0
            thickness_map[0][on] = 2.0 * np.sqrt(sq[on]) * res.thickness_scale
        if write is not None:
            write(0, thickness_map)


def analyze(volume: Volume | np.ndarray | str, voxel_size_um, options: Options | None = None,
            write: Callable[[int, np.ndarray], None] | None = None) -> ScanResult:
    """Both passes over ``volume``; see :class:`ScanAnalysis`."""
    analysis = ScanAnalysis(volume, voxel_size_um, options or Options())
    analysis.first_pass()
    if analysis.options.thickness:
        analysis.second_pass(write)
    return analysis.result
