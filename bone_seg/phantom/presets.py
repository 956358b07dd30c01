"""Phantom presets: the variety of the paper's Table 1 / Figure 1, as parameters.

Each preset sets the anatomy (how many bones, how thick the cortex, how porous, which special
structures) and the imaging (contrast, noise, blur, cupping, intensity steps, bit depth). A
``shape`` may be given to any preset; the anatomy scales with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from bone_seg.errors import BoneSegError

LAYOUTS = ("row", "cluster")
SPECIMENS = ("hydrated", "dry", "contracted")
DTYPES = ("uint8", "uint16", "float32")
ACQUISITIONS = (None, "ct")
MAX_SUPERSAMPLE = 7


@dataclass(frozen=True)
class Preset:
    """Parameters of a phantom (lengths in px unless said otherwise)."""

    name: str
    shape: tuple[int, int, int]
    voxel_size: float                 # µm, recorded for the store
    dtype: str = "uint16"             # uint8 | uint16 | float32
    n_bones: int = 1                  # long bones in the field of view
    layout: str = "row"               # row (side by side along X) | cluster (packed around the
                                      # centre: a triangle of 3, a square of 4, ...)
    gap: float = 4.0                  # px of background between neighbouring bones
    fill: float = 0.8                 # fraction of the field the bones span
    cortex: float = 0.22              # cortical thickness / outer radius
    irregularity: float = 0.08        # amplitude of the cross-section's angular harmonics; also
                                      # bounds the radius's wobble along Z and the aspect
    pores_per_slice: float = 1.5      # small cortical pores started per slice
    pore_radius: tuple[float, float] = (2.5, 4.0)  # several voxels across, as in real scans
    canals: int = 4                   # Haversian canals (along Z) per bone
    canal_radius: tuple[float, float] = (2.5, 3.5)
    volkmann: int = 2                 # radial canals per bone
    trabecular_ends: float = 0.25     # fraction of the length at each bone end holding trabeculae
    trabecular_density: float = 0.5   # fraction of the end cavity that is trabecular bone
    growth_plate: bool = False        # mouse-like: an unmineralised band across the bone end
    drill_hole: bool = False          # a cylinder drilled through the cortex
    broken_end: bool = False          # one bone ends in an irregular fracture surface
    fossae: int = 0                   # deep pits (fossae) in ridges of the outer surface
    fossa_width: tuple[float, float] = (3.0, 6.0)   # px across a fossa's mouth
    fossa_ridge: tuple[float, float] = (0.25, 0.4)  # height of the ridge it sits in (radii)
    # what fills the voids: hydrated (marrow) | dry (air, like the background) | contracted
    # (dehydrated marrow shrunk into the core of the cavity, air around and through it)
    specimen: str = "hydrated"
    marrow_shrink: float = 0.8        # contracted: the marrow core's radius / the cavity's
    marrow_fraction: float = 0.6      # contracted: fraction of that core that is tissue
    # imaging (intensities on a 0..1 scale before the bit-depth mapping)
    air: float = 0.08
    marrow: float = 0.22
    bone: float = 0.75
    cupping: float = 0.12             # beam hardening: relative darkening at the bone's centre
    blur: float = 0.7                 # gaussian sigma (partial volume)
    noise: float = 0.03               # SD of the additive noise
    steps: tuple[tuple[float, float], ...] = ()  # (gain, offset) per part of a composite scan
    # image formation closer to a reconstructed micro-CT (bone_seg/phantom/imaging.py); the
    # defaults reproduce the original phantoms bitwise
    supersample: int = 1              # partial volume: geometry rendered on a grid this many times
                                      # finer in Y and X (odd: 1 off, 3, 5, 7), intensities
                                      # averaged down, labels by the >= 50 % rule
                                      # (bone_seg/phantom/partial_volume.py)
    supersample_z: int = 1            # the same along Z (odd)
    psf: float = 0.0                  # the scanner's resolution: gaussian sigma in voxels,
                                      # applied on the fine grid before averaging (blur above is
                                      # applied after, on the voxel grid)
    acquisition: str | None = None    # None | ct: per slice forward projection, Beer-Lambert
                                      # photon counts, filtered back-projection
                                      # (bone_seg/phantom/acquisition.py)
    ct_angles: int = 180              # ct: projections over 180 degrees
    ct_photons: float | None = 20000.0  # ct: photons per detector pixel of an unattenuated ray
                                      # (Poisson noise); None: noise-free
    ct_attenuation: float = 4.0       # ct: attenuation (line integral) of a ray crossing the whole
                                      # field through intensity 1 above air
    extra: dict = field(default_factory=dict)

    def check(self) -> Preset:
        """Refuse values the generator cannot honour; returns the preset."""
        choices = {"layout": LAYOUTS, "specimen": SPECIMENS, "dtype": DTYPES}
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise BoneSegError(f"{key}={getattr(self, key)!r}: choose one of "
                                   f"{', '.join(valid)}")
        if int(self.n_bones) < 1 or self.gap < 0 or not 0 < self.fill <= 1:
            raise BoneSegError(f"n_bones={self.n_bones}, gap={self.gap}, fill={self.fill}: give "
                               "n_bones >= 1, gap >= 0 and 0 < fill <= 1")
        if not 0 < self.marrow_fraction < 1 or not 0 < self.marrow_shrink <= 1:
            raise BoneSegError(f"marrow_fraction={self.marrow_fraction}, marrow_shrink="
                               f"{self.marrow_shrink}: give 0 < marrow_fraction < 1 and "
                               "0 < marrow_shrink <= 1")
        self._check_formation()
        return self

    def _check_formation(self) -> None:
        """Refuse image-formation values (supersample, psf, acquisition, ct_*)."""
        for key in ("supersample", "supersample_z"):
            value = getattr(self, key)
            if (isinstance(value, bool) or not isinstance(value, int)
                    or not 1 <= value <= MAX_SUPERSAMPLE or value % 2 == 0):
                raise BoneSegError(f"{key}={value!r}: give an odd integer from 1 (off) to "
                                   f"{MAX_SUPERSAMPLE} (odd: a voxel's sub-voxel count is odd, "
                                   "so the >= 50 % bone rule never ties)")
        if not isinstance(self.psf, (int, float)) or not 0 <= self.psf < 10:
            raise BoneSegError(f"psf={self.psf!r}: give the gaussian sigma in voxels, "
                               "0 <= psf < 10 (0: off)")
        if self.acquisition not in ACQUISITIONS:
            raise BoneSegError(f"acquisition={self.acquisition!r}: choose null (off) or ct")
        if (isinstance(self.ct_angles, bool) or not isinstance(self.ct_angles, int)
                or self.ct_angles < 8):
            raise BoneSegError(f"ct_angles={self.ct_angles!r}: give an integer >= 8")
        if self.ct_photons is not None and not (isinstance(self.ct_photons, (int, float))
                                                and 1 <= self.ct_photons < 1e12):
            raise BoneSegError(f"ct_photons={self.ct_photons!r}: give photons per ray, "
                               "1 <= ct_photons < 1e12, or null for no photon noise")
        if not isinstance(self.ct_attenuation, (int, float)) or not 0 < self.ct_attenuation <= 20:
            raise BoneSegError(f"ct_attenuation={self.ct_attenuation!r}: give 0 < "
                               "ct_attenuation <= 20")

    def with_shape(self, shape) -> Preset:
        """The same preset at another size."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 8:
            raise BoneSegError(f"shape={list(shape)}: give [Z, Y, X] with every size >= 8 px")
        return replace(self, shape=shape)


PRESETS: dict[str, Preset] = {
    # every structure in a tiny volume, for tests: three packed bones, a fossa, a drill hole, a
    # growth plate, a broken end, contracted marrow (both marrow and air in the cavity)
    "tiny": Preset("tiny", (24, 96, 96), 5.0, n_bones=3, layout="cluster", gap=3.0, fill=0.94,
                   cortex=0.3, irregularity=0.04, pore_radius=(1.5, 3.0), canal_radius=(1.5, 2.5),
                   pores_per_slice=1.0, canals=3, volkmann=1, growth_plate=True,
                   drill_hole=True, broken_end=True, fossae=1, fossa_width=(3.0, 4.0),
                   specimen="contracted", trabecular_ends=0.3),
    # small and thin-walled, growth plates, high contrast; paired humeri and femora packed
    # together (Table 1 and Figure 5: mouse), a fossa (the intertrochanteric fossa)
    "mouse": Preset("mouse", (48, 160, 160), 5.0, n_bones=4, layout="cluster", gap=3.0,
                    fill=0.86, cortex=0.35, irregularity=0.04, growth_plate=True,
                    pores_per_slice=0.6, canals=2, fossae=1),
    # a dry museum humerus: thick porous cortex, drill holes, the olecranon fossa, 16-bit
    "river_otter": Preset("river_otter", (48, 192, 192), 20.0, cortex=0.45, specimen="dry",
                          pores_per_slice=2.5, canals=6, volkmann=3, drill_hole=True, fossae=1),
    # composite scan: parts along Z with intensity steps; three dry bones packed
    "leopard": Preset("leopard", (48, 192, 192), 40.0, n_bones=3, layout="cluster", gap=4.0,
                      irregularity=0.05, cortex=0.4, specimen="dry", pores_per_slice=1.5,
                      canals=4, steps=((1.0, 0.0), (0.85, 0.04), (1.1, -0.02))),
    # low contrast, noisier; two dry bones side by side, one broken, a fossa
    "sea_otter": Preset("sea_otter", (40, 160, 160), 25.0, n_bones=2, gap=4.0, cortex=0.4,
                        bone=0.5, marrow=0.28, noise=0.04, specimen="dry", broken_end=True,
                        pores_per_slice=1.5, canals=4, fossae=1),
    # 8-bit scan of mixed dry elements packed together, a drill hole, a fossa
    "capybara": Preset("capybara", (40, 176, 176), 35.0, dtype="uint8", n_bones=3,
                       layout="cluster", gap=5.0, irregularity=0.06, cortex=0.4, specimen="dry",
                       pores_per_slice=2.0, canals=5, drill_hole=True, fossae=1),
    # the paper's hard case alone (Figure 2): four large dry bones packed 3 px apart, thin walls
    # round cavities wider than a small patch; the background between the bones is as narrow as
    # a cavity and has the cavity's intensity (benchmarks/receptive_field.py)
    "packed": Preset("packed", (16, 384, 384), 10.0, n_bones=4, layout="cluster", gap=3.0,
                     fill=0.92, cortex=0.2, irregularity=0.04, specimen="dry",
                     pores_per_slice=2.0, canals=6, fossae=2, trabecular_ends=0.1,
                     trabecular_density=0.45),
    # benchmarks: 512 x 1024 x 1024, generated slab by slab
    "large": Preset("large", (512, 1024, 1024), 10.0, n_bones=2, gap=8.0, cortex=0.25,
                    pores_per_slice=6.0, pore_radius=(2.0, 5.0), canals=12,
                    canal_radius=(2.0, 4.0), volkmann=4, growth_plate=True, drill_hole=True,
                    fossae=1),
}


def get_preset(name: str, shape=None, **overrides) -> Preset:
    """The preset ``name``, optionally resized and with fields overridden."""
    if name not in PRESETS:
        raise BoneSegError(f"preset={name!r} is not known; use one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    known = {f.name for f in fields(Preset)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise BoneSegError(f"phantom preset fields {bad} are not known; valid: {sorted(known)}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    preset = replace(preset, **overrides)
    preset = preset.with_shape(shape) if shape is not None else preset.with_shape(preset.shape)
    return preset.check()
