"""Porous grain phantoms: a thresholded Gaussian random field inside a rough envelope."""

from __future__ import annotations

import math

import numpy as np

from nwwatch.synth.tomo_radon import field_of_view


def gaussian_random_field(shape: tuple[int, ...], correlation_length_px: float,
                          rng: np.random.Generator) -> np.ndarray:
    """White noise low-pass filtered in Fourier space by a Gaussian kernel.

    The kernel's std in real space is ``correlation_length_px`` voxels.
    The field is periodic (FFT); its autocorrelation is a Gaussian of std
    ``sqrt(2) * correlation_length_px`` voxels.

    Returns
    -------
    float32 array of ``shape``, zero mean, unit standard deviation.
    """
    if not correlation_length_px > 0:
        raise ValueError(f"correlation_length_px must be > 0, got {correlation_length_px}")
    noise = rng.standard_normal(shape, dtype=np.float32)
    spectrum = np.fft.rfftn(noise, axes=tuple(range(len(shape))))
    k2 = np.zeros(spectrum.shape, dtype=np.float32)
    for axis, n in enumerate(shape):
        freq = (np.fft.rfftfreq(n) if axis == len(shape) - 1 else np.fft.fftfreq(n))
        view = [1] * len(shape)
        view[axis] = -1
        k2 = k2 + (freq.astype(np.float32) ** 2).reshape(view)
    spectrum *= np.exp(np.float32(-2.0 * math.pi**2 * correlation_length_px**2) * k2)
    field = np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape)))).astype(np.float32)
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field


def grain_envelope(size: int, rng: np.random.Generator, *, roughness: float = 0.08,
                   roughness_length_px: float | None = None) -> np.ndarray:
    """Rough ellipsoidal grain centred in a (size, size, size) box, inside the tilt field of view.

    Semi-axes are drawn in [0.30, 0.44] x size (Z, the beam direction, the shortest: grains
    lie flat on the support film); the ellipsoid radius is modulated by a smooth random field
    of relative amplitude ``roughness``.

    Returns
    -------
    bool (Z, Y, X), True inside the grain.
    """
    axes = np.sort(rng.uniform(0.30, 0.44, size=3)) * size  # smallest along Z
    semi_z, semi_y, semi_x = axes[0], axes[2], axes[1]
    c = (size - 1) / 2.0
    z, y, x = np.ogrid[:size, :size, :size]
    radius = np.sqrt(((z - c) / semi_z) ** 2 + ((y - c) / semi_y) ** 2 + ((x - c) / semi_x) ** 2,
                     dtype=np.float32)
    length = roughness_length_px if roughness_length_px is not None else size / 10.0
    bumps = gaussian_random_field((size, size, size), length, rng)
    inside = radius + np.float32(roughness) * bumps < 1.0
    # Keep clear of the field of-view edge and the Y faces so every ray sees the whole grain.
    margin = field_of_view(size)
    fov = np.zeros((size, size), dtype=bool)
    fov[2:-2, 2:-2] = margin[2:-2, 2:-2]
    inside &= fov[:, np.newaxis, :]
    inside[:, :2, :] = False
    inside[:, -2:, :] = False
    return inside


def porous_grain(size: int, rng: np.random.Generator, *, porosity: float = 0.45,
                 pore_length_px: float = 2.0, roughness: float = 0.08
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Truth mask of a porous grain and its envelope.

    ``porosity`` is the pore fraction inside the envelope: the random field is thresholded at
    that quantile of its values inside the grain.

    Returns
    -------
    truth : uint8 (Z, Y, X), 1 solid, 0 pore or vacuum
    grain : bool (Z, Y, X), the envelope
    """
    if not 0.0 < porosity < 1.0:
        raise ValueError(f"porosity must be in (0, 1), got {porosity}")
    if size < 16:
        raise ValueError(f"size must be >= 16 voxels, got {size}")
    grain = grain_envelope(size, rng, roughness=roughness)
    field = gaussian_random_field((size, size, size), pore_length_px, rng)
    threshold = np.quantile(field[grain], porosity)
    truth = (grain & (field > threshold)).astype(np.uint8)
    return truth, grain
