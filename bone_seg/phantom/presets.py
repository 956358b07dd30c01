"""Phantom presets: the variety of the paper's Table 1 / Figure 1, as parameters.

Each preset sets the anatomy (how many bones, how thick the cortex, how porous, which special
structures) and the imaging (contrast, noise, blur, cupping, intensity steps, bit depth). A
``shape`` may be given to any preset; the anatomy scales with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from bone_seg.errors import BoneSegError


@dataclass(frozen=True)
class Preset:
    """Parameters of a phantom (lengths in px unless said otherwise)."""

    name: str
    shape: tuple[int, int, int]
    voxel_size: float                 # µm, recorded for the store
    dtype: str = "uint16"             # uint8 | uint16 | float32
    n_bones: int = 1                  # long bones packed side by side in the field of view
    gap: float = 4.0                  # px between neighbouring bones
    fill: float = 0.8                 # fraction of the field the bones span
    cortex: float = 0.22              # cortical thickness / outer radius
    irregularity: float = 0.08        # amplitude of the cross-section's angular harmonics
    pores_per_slice: float = 1.5      # small cortical pores started per slice
    pore_radius: tuple[float, float] = (1.5, 3.0)
    canals: int = 4                   # Haversian canals (along Z) per bone
    canal_radius: tuple[float, float] = (1.5, 2.5)
    volkmann: int = 2                 # radial canals per bone
    trabecular_ends: float = 0.25     # fraction of the length at each bone end holding trabeculae
    trabecular_density: float = 0.45  # fraction of the end cavity that is trabecular bone
    growth_plate: bool = False        # mouse-like: an unmineralised band across the bone end
    drill_hole: bool = False          # a cylinder drilled through the cortex
    broken_end: bool = False          # the last bone ends in an irregular fracture plane
    # imaging (intensities on a 0..1 scale before the bit-depth mapping)
    air: float = 0.08
    marrow: float = 0.22
    bone: float = 0.75
    cupping: float = 0.12             # beam hardening: relative darkening at the bone's centre
    blur: float = 0.7                 # gaussian sigma (partial volume)
    noise: float = 0.03               # SD of the additive noise
    steps: tuple[tuple[float, float], ...] = ()  # (gain, offset) per part of a composite scan
    extra: dict = field(default_factory=dict)

    def with_shape(self, shape) -> Preset:
        """The same preset at another size."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 8:
            raise BoneSegError(f"shape={list(shape)}: give [Z, Y, X] with every size >= 8 px")
        return replace(self, shape=shape)


PRESETS: dict[str, Preset] = {
    # every structure in a tiny volume, for tests
    "tiny": Preset("tiny", (24, 96, 96), 5.0, n_bones=2, gap=3.0, fill=0.9, cortex=0.3,
                   pores_per_slice=1.0, canals=3, volkmann=1, growth_plate=True,
                   drill_hole=True, broken_end=True, trabecular_ends=0.3),
    # small and thin-walled, growth plate, high contrast (Table 1: mouse femur/tibia)
    "mouse": Preset("mouse", (48, 160, 160), 5.0, n_bones=2, gap=4.0, cortex=0.25,
                    growth_plate=True, pores_per_slice=0.6, canals=2),
    # thick porous cortex, 16-bit
    "river_otter": Preset("river_otter", (48, 192, 192), 20.0, cortex=0.35,
                          pores_per_slice=2.5, canals=6, volkmann=3, drill_hole=True),
    # composite scan: parts along Z with intensity steps, several bones
    "leopard": Preset("leopard", (48, 192, 192), 40.0, n_bones=3, gap=4.0, cortex=0.3,
                      pores_per_slice=1.5, canals=4, steps=((1.0, 0.0), (0.85, 0.04),
                                                            (1.1, -0.02))),
    # low contrast, noisier, broken end
    "sea_otter": Preset("sea_otter", (40, 160, 160), 25.0, cortex=0.3, bone=0.5, marrow=0.28,
                        noise=0.04, broken_end=True, pores_per_slice=1.5, canals=4),
    # 8-bit scan of a large bone
    "capybara": Preset("capybara", (40, 176, 176), 35.0, dtype="uint8", cortex=0.28,
                       pores_per_slice=2.0, canals=5, drill_hole=True),
    # benchmarks: 512 x 1024 x 1024, generated slab by slab
    "large": Preset("large", (512, 1024, 1024), 10.0, n_bones=2, gap=8.0, cortex=0.25,
                    pores_per_slice=6.0, pore_radius=(2.0, 5.0), canals=12,
                    canal_radius=(2.0, 4.0), volkmann=4, growth_plate=True, drill_hole=True),
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
    return preset.with_shape(shape) if shape is not None else preset.with_shape(preset.shape)
