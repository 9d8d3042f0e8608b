"""Image formation: exit wave, Fresnel propagation (defocus), random textures, illumination.

All arrays are (row, col). The exit wave lives on the supersampled, padded render grid whose
sample spacing is ``pixel_size_nm / S``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Relativistic electron wavelength at 200 kV, nm.
WAVELENGTH_200KV_NM = 0.0025079


def fresnel_propagate(
    wave: np.ndarray, defocus_nm: float, sample_nm: float, wavelength_nm: float
) -> np.ndarray:
    """Propagate a complex exit wave by ``defocus_nm`` with the transfer function
    ``exp(-i pi lambda df k^2)`` (k in cycles/nm). With the object phase ``+sigma V t`` used
    here, **negative** ``defocus_nm`` is underfocus: a phase object gets a bright Fresnel
    fringe just outside its edges (positive: overfocus, dark fringe outside).

    The grid is treated as periodic: pad it (with the scene continued, not with zeros) by more
    than the blur reach ``lambda df k_max / sample`` before calling.
    """
    k_row = np.fft.fftfreq(wave.shape[0], d=sample_nm)
    k_col = np.fft.fftfreq(wave.shape[1], d=sample_nm)
    chirp_row = np.exp(-1j * math.pi * wavelength_nm * defocus_nm * k_row**2)
    chirp_col = np.exp(-1j * math.pi * wavelength_nm * defocus_nm * k_col**2)
    spectrum = np.fft.fft2(wave)
    # The chirp separates: exp(-i a (kr^2 + kc^2)) = exp(-i a kr^2) exp(-i a kc^2).
    spectrum *= chirp_row[:, None].astype(spectrum.dtype)
    spectrum *= chirp_col[None, :].astype(spectrum.dtype)
    return np.fft.ifft2(spectrum)


def fringe_width_to_defocus_nm(
    fringe_px: float, pixel_size_nm: float, wavelength_nm: float
) -> float:
    """Defocus magnitude whose first Fresnel fringe, ``sqrt(lambda |df|)``, is ``fringe_px``
    pixels wide."""
    return (fringe_px * pixel_size_nm) ** 2 / wavelength_nm


def gaussian_field(
    shape: tuple[int, int],
    correlation_px: float,
    seed: int,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Periodic Gaussian random field, complex64 (H, W): real and imaginary parts are two
    independent fields with zero mean, unit variance and a Gaussian correlation of
    ``correlation_px`` samples; ``shift`` translates both by (rows, cols) samples (sub-sample
    shifts are exact), so a drifting specimen keeps its texture.
    """
    rng = np.random.default_rng(seed)
    normals = rng.standard_normal((2, *shape), dtype=np.float32)
    white = np.empty(shape, np.complex64)
    white.real, white.imag = normals[0], normals[1]
    sigma_k = 1.0 / (2.0 * math.pi * max(correlation_px, 1e-3))
    # Gaussian filter and shift ramp are separable: two 1-D factors instead of a 2-D array.
    factors = []
    for axis, n in enumerate(shape):
        k = np.fft.fftfreq(n)
        f = np.exp(-(k**2) / (2.0 * sigma_k**2)) * np.exp(-2j * math.pi * k * shift[axis])
        factors.append(f.astype(np.complex64))
    white *= factors[0][:, None]
    white *= factors[1][None, :]
    field = np.fft.ifft2(white)
    norm = math.sqrt(float(np.sum(np.abs(factors[0]) ** 2) * np.sum(np.abs(factors[1]) ** 2)))
    return field / np.float32(max(norm / (shape[0] * shape[1]), 1e-12))


def bin_pixels(image: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping ``factor`` x ``factor`` blocks: (H*f, W*f) -> float32 (H, W)."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image.reshape(h, factor, w, factor).mean(axis=(1, 3), dtype=np.float32)


def illumination(
    shape: tuple[int, int], gradient: float, direction_deg: float, vignette: float
) -> np.ndarray:
    """Relative beam intensity, float32 (H, W), mean about 1: a linear ramp of +-``gradient``
    across the frame along ``direction_deg`` (screen convention) times a radial fall-off of
    ``vignette`` at the corners."""
    h, w = shape
    rows = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None] / max(h, w)
    cols = (np.arange(w, dtype=np.float32) - (w - 1) / 2)[None, :] / max(h, w)
    angle = math.radians(direction_deg)
    ramp = 2.0 * (cols * math.cos(angle) - rows * math.sin(angle))
    radial = (rows**2 + cols**2) * 2.0
    return ((1.0 + gradient * ramp) * (1.0 - vignette * radial)).astype(np.float32)


def smooth_field(shape: tuple[int, int], correlation_px: float, seed: int,
                 shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Slow random field, float32 (H, W), unit variance, generated on a coarse grid and
    resized (cheap for correlation lengths of tens of pixels)."""
    step = max(1.0, correlation_px / 4.0)
    coarse = (max(8, math.ceil(shape[0] / step)), max(8, math.ceil(shape[1] / step)))
    field = gaussian_field(coarse, correlation_px / step, seed,
                           shift=(shift[0] / step, shift[1] / step)).real
    return cv2.resize(field.astype(np.float32), (shape[1], shape[0]),
                      interpolation=cv2.INTER_CUBIC)
