"""Expected calibration error (ECE) and reliability bins, accumulated batch by batch.

Equal-width bins over [0, 1] (``bins`` of them; a probability of exactly 1 falls in the last bin):

* **top-label** ECE: the confidence is the largest class probability, "correct" means that the
  arg-max class is the label; ``ECE = Σ_b n_b / N · |acc_b − conf_b|``.
* **per class** ECE (class ``c``): every voxel's probability of class ``c`` against whether its
  label is ``c`` (the one-vs-rest reliability of that class), same formula.

Counts are int64 and sums float64, so accumulating in any batching gives the same figures up to
float64 rounding. torchmetrics' ``MulticlassCalibrationError`` (``norm="l1"``) computes the same
top-label ECE on whole tensors; this accumulator exists because a scan's voxels are streamed
(it never holds more than a batch) and because torchmetrics has no per-class (one-vs-rest)
variant.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bone_seg.errors import BoneSegError


def check_bins(bins: int, key: str = "bins") -> int:
    """``bins`` as an int >= 2.

    Raises:
        BoneSegError: fewer than 2 bins or not an integer.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise BoneSegError(f"{key}={bins!r}: the number of equal-width probability bins, an "
                           "integer >= 2 (e.g. 15)")
    return int(bins)


@dataclasses.dataclass
class ReliabilityBins:
    """Per-bin counts, confidence sums and hits: top-label (row 0) and per class (rows 1..C).

    Args:
        num_classes: classes of the probabilities.
        bins: equal-width bins over [0, 1].
    """

    num_classes: int
    bins: int = 15

    def __post_init__(self) -> None:
        self.bins = check_bins(self.bins)
        rows = self.num_classes + 1
        self.count = np.zeros((rows, self.bins), np.int64)
        self.conf = np.zeros((rows, self.bins), np.float64)
        self.hits = np.zeros((rows, self.bins), np.float64)

    def _add(self, row: int, p: np.ndarray, hit: np.ndarray) -> None:
        b = np.minimum((p * self.bins).astype(np.int64), self.bins - 1).clip(0)
        self.count[row] += np.bincount(b, minlength=self.bins)
        self.conf[row] += np.bincount(b, weights=p.astype(np.float64), minlength=self.bins)
        self.hits[row] += np.bincount(b, weights=hit.astype(np.float64), minlength=self.bins)

    def update(self, probs: np.ndarray, labels: np.ndarray) -> None:
        """Add ``probs`` ``(N, C)`` (rows summing to 1) with their ``labels`` ``(N,)``."""
        probs = np.asarray(probs)
        labels = np.asarray(labels).ravel()
        if probs.ndim != 2 or probs.shape[1] != self.num_classes or len(probs) != len(labels):
            raise BoneSegError(f"reliability: probabilities of shape {probs.shape} and "
                               f"{len(labels)} labels; expected (N, {self.num_classes}) and N")
        if len(labels) == 0:
            return
        top = probs.argmax(axis=1)
        self._add(0, probs.max(axis=1), top == labels)
        for c in range(self.num_classes):
            self._add(c + 1, probs[:, c], labels == c)

    def ece(self, row: int = 0) -> float | None:
        """The ECE of ``row`` (0: top-label; ``c + 1``: class ``c``), None without voxels."""
        n = self.count[row].sum()
        if n == 0:
            return None
        gap = np.abs(self.hits[row] - self.conf[row])  # n_b · |acc_b − conf_b|
        return float(gap.sum() / n)

    def summary(self, class_names: list[str]) -> dict:
        """Plain JSON: the ECEs and each row's per-bin accuracy, confidence and count."""
        def curve(row: int) -> dict:
            n = self.count[row]
            with np.errstate(invalid="ignore", divide="ignore"):
                acc = np.where(n > 0, self.hits[row] / np.maximum(n, 1), np.nan)
                conf = np.where(n > 0, self.conf[row] / np.maximum(n, 1), np.nan)
            return {"accuracy": [None if np.isnan(v) else float(v) for v in acc],
                    "confidence": [None if np.isnan(v) else float(v) for v in conf],
                    "count": n.tolist()}

        return {"bins": self.bins, "voxels": int(self.count[0].sum()),
                "ece": self.ece(0),
                "ece_per_class": {name: self.ece(c + 1) for c, name in enumerate(class_names)},
                "top_label": curve(0),
                "per_class": {name: curve(c + 1) for c, name in enumerate(class_names)}}
