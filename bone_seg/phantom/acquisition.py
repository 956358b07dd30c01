"""A CT acquisition of one slice: forward projection, photon noise, filtered back-projection.

The slice's intensities above the air level are its linear attenuation ``μ`` (per voxel,
``ct_attenuation`` / field width per unit of intensity, so that a ray crossing the whole field
through intensity 1 above air is attenuated by ``exp(-ct_attenuation)``). Parallel-beam
projections over 180° (``ct_angles`` of them, :func:`skimage.transform.radon`) give the line
integrals ``p``; a detector pixel counts ``Poisson(I0 · exp(-p))`` photons (``I0 = ct_photons``;
none: noise-free), the log gives ``p`` back with the noise, and filtered back-projection with the
ramp filter (:func:`skimage.transform.iradon`) reconstructs the slice, with a reconstruction's
edge overshoot, streaks from few angles and its spatially correlated noise.

The photon noise of slice ``z`` comes from ``default_rng([seed, 3, z])``: the same for any slab.
A non-square slice is padded with air to a square and cropped back.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import iradon, radon


def angles(n: int) -> np.ndarray:
    """``n`` projection angles in degrees, evenly over [0, 180)."""
    return np.linspace(0.0, 180.0, int(n), endpoint=False)


def ct_slice(image: np.ndarray, air: float, *, n_angles: int, photons: float | None,
             attenuation: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The reconstruction of a slice (0..1 intensity scale in and out).

    Args:
        image: ``(Y, X)`` intensities.
        air: the air level of this slice (attenuates nothing).
        n_angles: projections over 180°.
        photons: photons per detector pixel of an unattenuated ray; ``None``: no noise.
        attenuation: line integral of a ray crossing the field's width through intensity 1
            above air.
        rng: the photon noise's generator (needed when ``photons`` is given).

    Returns:
        ``(Y, X)`` float32, the reconstructed intensities.
    """
    Y, X = image.shape
    n = max(Y, X)
    oy, ox = (n - Y) // 2, (n - X) // 2
    mu = np.zeros((n, n), np.float64)
    mu[oy:oy + Y, ox:ox + X] = image - air
    per_voxel = attenuation / n
    theta = angles(n_angles)
    line = radon(mu, theta, circle=False) * per_voxel
    if photons is not None:
        counts = rng.poisson(photons * np.exp(-line))
        # a ray no photon crossed reads as half a photon (the log stays finite)
        line = -np.log(np.maximum(counts, 0.5) / photons)
    rec = iradon(line / per_voxel, theta, output_size=n, filter_name="ramp", circle=False)
    return (rec[oy:oy + Y, ox:ox + X] + air).astype(np.float32)
