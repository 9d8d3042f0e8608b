"""Parallel-beam projector, backprojector, FBP and SIRT for single-axis tilt series.

Geometry (volumes are (Z, Y, X), integer indices are voxel centres):

- The tilt axis is the Y axis (through the centre of the (Z, X) plane), so every XZ slice
  ``volume[:, y, :]`` is an independent 2D problem. All slices are processed at once.
- At tilt ``angle_deg = 0`` the beam travels along +Z and the detector column is X. At tilt
  ``a`` the beam direction in (z, x) is ``(cos a, sin a)`` and the detector coordinate of the
  point (z, x) is ``t = (x - c) cos a - (z - c) sin a + c`` with ``c = (N - 1) / 2``.
- A tilt series is ``sinogram[angle, y, t]``: one projection image (Y, X_det) per angle, the
  way the microscope records it. The detector has N columns, so objects must stay inside the
  circle of radius N/2 in the (Z, X) plane (the phantom guarantees it).

Rotation and interpolation run in OpenCV (bilinear, all slices packed as channels), which is
what makes a 128^3 SIRT take seconds instead of minutes in plain numpy.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# OpenCV 5 warps at most 128 channels per call; larger volumes are processed in chunks of Y.
_MAX_CHANNELS = 128


def field_of_view(n: int) -> np.ndarray:
    """bool (N, N) (z, x) mask of the circle every projection sees (radius N/2 - 0.5)."""
    c = (n - 1) / 2.0
    z, x = np.ogrid[:n, :n]
    return (z - c) ** 2 + (x - c) ** 2 <= (n / 2.0 - 0.5) ** 2


def _chunks(n: int) -> list[slice]:
    return [slice(i, min(i + _MAX_CHANNELS, n)) for i in range(0, n, _MAX_CHANNELS)]


def _check_angles(angles_deg: np.ndarray) -> np.ndarray:
    angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    if angles.size == 0 or not np.all(np.isfinite(angles)):
        raise ValueError("angles_deg must be a non-empty array of finite tilt angles in degrees")
    return angles


def _forward_matrix(angle_deg: float, n: int) -> np.ndarray:
    """2x3 map from a rotated-frame pixel (col=t, row=s) to the source pixel (col=x, row=z).

    ``s`` runs along the beam, so summing the warped image over rows gives the projection.
    """
    a = math.radians(angle_deg)
    cos_a, sin_a = math.cos(a), math.sin(a)
    c = (n - 1) / 2.0
    # x = c + (t - c) cos a + (s - c) sin a ;  z = c - (t - c) sin a + (s - c) cos a
    return np.array(
        [
            [cos_a, sin_a, c - c * cos_a - c * sin_a],
            [-sin_a, cos_a, c + c * sin_a - c * cos_a],
        ],
        dtype=np.float64,
    )


def _detector_map(angle_deg: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Detector coordinate t of every (z, x) pixel, as cv2.remap maps into a 1-row image."""
    a = math.radians(angle_deg)
    c = (n - 1) / 2.0
    z, x = np.meshgrid(np.arange(n, dtype=np.float32), np.arange(n, dtype=np.float32),
                       indexing="ij")
    t = (x - c) * np.float32(math.cos(a)) - (z - c) * np.float32(math.sin(a)) + np.float32(c)
    return t.astype(np.float32), np.zeros_like(t)


def project(volume: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Parallel-beam line integrals of ``volume`` around the Y axis.

    Parameters
    ----------
    volume : ndarray (Z, Y, X) with Z == X == N, any real dtype
        Density per voxel; the result is in density x voxel-length units. Voxels outside
        :func:`field_of_view` are ignored.
    angles_deg : array (A,)
        Tilt angles in degrees (see the module docstring for the geometry).

    Returns
    -------
    sinogram : float32 (A, Y, N)
        ``sinogram[a, y, t]`` = sum of ``volume[:, y, :]`` along the beam at tilt ``a``.
    """
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3 or vol.shape[0] != vol.shape[2]:
        raise ValueError(f"volume must be (Z, Y, X) with Z == X, got shape {vol.shape}")
    angles = _check_angles(angles_deg)
    n, ny = vol.shape[0], vol.shape[1]
    # Outside the field of view no detector sees the whole orbit; zero it so that project and
    # backproject stay adjoint (objects must lie inside it anyway).
    vol = vol * field_of_view(n)[:, np.newaxis, :]
    # (Z, X, Y): the Y slices become channels of one (Z, X) image.
    packed = [np.ascontiguousarray(vol[:, sl, :].transpose(0, 2, 1)) for sl in _chunks(ny)]
    sino = np.empty((angles.size, ny, n), dtype=np.float32)
    for i, angle in enumerate(angles):
        matrix = _forward_matrix(float(angle), n)
        for sl, chunk in zip(_chunks(ny), packed, strict=True):
            warped = cv2.warpAffine(chunk, matrix, (n, n),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            warped = warped.reshape(n, n, -1)  # cv2 drops a length-1 channel axis
            sino[i, sl, :] = warped.sum(axis=0).T
    return sino


def backproject(sinogram: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`project`: smear every projection back along its beam direction.

    Parameters
    ----------
    sinogram : ndarray (A, Y, N)
    angles_deg : array (A,)

    Returns
    -------
    volume : float32 (N, Y, N) = (Z, Y, X), the unweighted sum over angles, zero outside
        :func:`field_of_view`.
    """
    sino = np.asarray(sinogram, dtype=np.float32)
    angles = _check_angles(angles_deg)
    if sino.ndim != 3 or sino.shape[0] != angles.size:
        raise ValueError(f"sinogram must be (A, Y, N) with A == {angles.size} angles, "
                         f"got shape {sino.shape}")
    _, ny, n = sino.shape
    out = np.zeros((n, n, ny), dtype=np.float32)  # (Z, X, Y), transposed at the end
    for i, angle in enumerate(angles):
        map_t, map_row = _detector_map(float(angle), n)
        for sl in _chunks(ny):
            row = np.ascontiguousarray(sino[i, sl, :].T)[np.newaxis]  # (1, N, channels)
            smeared = cv2.remap(row, map_t, map_row, interpolation=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            out[:, :, sl] += smeared.reshape(n, n, -1)
    out *= field_of_view(n)[:, :, np.newaxis]
    return np.ascontiguousarray(out.transpose(0, 2, 1))


def ramp_filter(sinogram: np.ndarray, window: str = "ramp") -> np.ndarray:
    """Filter every projection row with the band-limited ramp ``|w|`` (Kak & Slaney).

    The filter is the Fourier transform of the discrete spatial ramp kernel on a zero-padded
    grid, which avoids the DC offset of sampling ``|w|`` directly.

    Parameters
    ----------
    sinogram : ndarray (A, Y, N)
    window : {"ramp", "shepp-logan", "hann"}
        Apodisation that trades resolution for noise.

    Returns
    -------
    float32 (A, Y, N)
    """
    sino = np.asarray(sinogram, dtype=np.float32)
    n = sino.shape[-1]
    size = max(64, 1 << int(math.ceil(math.log2(2 * n))))
    k = np.concatenate([np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)])
    kernel = np.zeros(size)
    kernel[0] = 0.25
    kernel[1::2] = -1.0 / (math.pi * k) ** 2
    response = np.real(np.fft.rfft(kernel))  # ~|w| in cycles per sample
    freq = np.fft.rfftfreq(size)  # cycles per sample, 0 .. 0.5
    if window == "shepp-logan":
        response *= np.sinc(freq)
    elif window == "hann":
        response *= 0.5 * (1.0 + np.cos(2.0 * math.pi * freq))
    elif window != "ramp":
        raise ValueError(f"unknown FBP window {window!r}; use 'ramp', 'shepp-logan' or 'hann'")
    spectrum = np.fft.rfft(sino, n=size, axis=-1)
    return np.fft.irfft(spectrum * response.astype(np.complex64), n=size, axis=-1)[..., :n] \
        .astype(np.float32)


def _angle_step_rad(angles: np.ndarray) -> float:
    if angles.size < 2:
        return math.pi
    return float(np.radians(np.median(np.diff(np.sort(angles)))))


def fbp(sinogram: np.ndarray, angles_deg: np.ndarray, window: str = "ramp") -> np.ndarray:
    """Filtered backprojection.

    With angles covering 180 deg the result is the density of the projected volume; a limited
    tilt range leaves the missing wedge empty (elongation along Z, streaks).

    Returns
    -------
    float32 (Z, Y, X) in the units of the projected density.
    """
    angles = _check_angles(angles_deg)
    filtered = ramp_filter(sinogram, window)
    # Riemann sum of the backprojection integral over the angles (Kak & Slaney eq. 3.61).
    return backproject(filtered, angles) * np.float32(_angle_step_rad(angles))


def sirt(sinogram: np.ndarray, angles_deg: np.ndarray, n_iter: int = 30,
         nonnegative: bool = True) -> np.ndarray:
    """Simultaneous iterative reconstruction: ``x += C A^T R (b - A x)``.

    ``R`` and ``C`` are the inverse row and column sums of the projector. Every iteration is
    one projection and one backprojection of the whole volume.

    Returns
    -------
    float32 (Z, Y, X)
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    sino = np.asarray(sinogram, dtype=np.float32)
    angles = _check_angles(angles_deg)
    _, ny, n = sino.shape
    ones = np.ones((n, 1, n), dtype=np.float32)
    row_sum = project(ones, angles)  # (A, 1, N): ray lengths
    col_sum = backproject(np.ones((angles.size, 1, n), dtype=np.float32), angles)
    inv_row = np.where(row_sum > 1e-3, 1.0 / np.maximum(row_sum, 1e-3), 0.0).astype(np.float32)
    inv_col = np.where(col_sum > 1e-3, 1.0 / np.maximum(col_sum, 1e-3), 0.0).astype(np.float32)
    x = np.zeros((n, ny, n), dtype=np.float32)
    for _ in range(n_iter):
        residual = (sino - project(x, angles)) * inv_row
        x += backproject(residual, angles) * inv_col
        if nonnegative:
            np.maximum(x, 0.0, out=x)
    return x
