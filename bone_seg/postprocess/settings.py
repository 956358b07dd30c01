"""The post-processing rules' settings (``postprocess:`` of ``conf/predict.yaml``)."""

from __future__ import annotations

import dataclasses

from bone_seg.errors import BoneSegError

CONNECTIVITIES = (6, 18, 26)


@dataclasses.dataclass(frozen=True)
class PostprocessSettings:
    """What :func:`bone_seg.postprocess.stream.postprocess` changes; every rule off by default.

    Attributes:
        min_bone_size: bone components smaller than this (voxels) are removed.
        keep_bone_components: keep only this many largest bone components (None: all).
        min_pore_size: pore components smaller than this (voxels) are removed.
        min_pore_enclosure: pore components whose contact with bone is below this fraction of
            their contact with bone and background (the outside of the field of view counts as
            background) become background: pores lie inside a bone's envelope.
        connectivity: 6 (faces), 18 (and edges) or 26 (and corners) neighbours.

    A removed bone component takes the class it touches most (background or pores); a small pore
    component likewise (background or bone); a pore component that is not enclosed becomes
    background. Every rule judges the components of the input, in one round.
    """

    min_bone_size: int = 0
    keep_bone_components: int | None = None
    min_pore_size: int = 0
    min_pore_enclosure: float = 0.0
    connectivity: int = 26

    def __post_init__(self) -> None:
        for key in ("min_bone_size", "min_pore_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise BoneSegError(f"postprocess.{key}={v!r}: a size in voxels, 0 or more "
                                   "(0: off)")
        k = self.keep_bone_components
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise BoneSegError(f"postprocess.keep_bone_components={k!r}: a positive number of "
                               "components, or null (keep all)")
        e = self.min_pore_enclosure
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0.0 <= e <= 1.0:
            raise BoneSegError(f"postprocess.min_pore_enclosure={e!r}: a fraction in [0, 1] "
                               "(0: off)")
        if self.connectivity not in CONNECTIVITIES:
            raise BoneSegError(f"postprocess.connectivity={self.connectivity!r}: 6, 18 or 26")

    @property
    def active(self) -> bool:
        """Whether any rule can change a voxel."""
        return bool(self.min_bone_size or self.keep_bone_components or self.min_pore_size
                    or self.min_pore_enclosure)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values) -> PostprocessSettings:
        """From a config node or dict; unknown keys are refused by name."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BoneSegError(f"postprocess.{unknown[0]}: unknown key; the keys are "
                               f"{', '.join(sorted(known))}")
        if values.get("min_pore_enclosure") is not None:
            values["min_pore_enclosure"] = float(values["min_pore_enclosure"])
        return cls(**{k: v for k, v in values.items() if v is not None or
                      k == "keep_bone_components"})
