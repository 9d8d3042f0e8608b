"""Detector model: electron counting noise, scintillator blur, gain, offset, read noise and
hot pixels. Input and output are (row, col) arrays."""

from __future__ import annotations

import cv2
import numpy as np


def detect(
    intensity: np.ndarray,
    rng: np.random.Generator,
    *,
    dose_e_per_px: float,
    blur_px: float,
    gain_adu_per_e: float,
    offset_adu: float,
    read_noise_adu: float,
    n_hot_pixels: int,
    hot_pixel_seed: int = 0,
) -> np.ndarray:
    """Turn a relative intensity (float (H, W), vacuum about 1) into detector counts.

    Electrons arrive with Poisson statistics at ``dose_e_per_px`` per pixel of vacuum; the
    scintillator spreads each one with a Gaussian of sigma ``blur_px`` pixels (so the noise is
    correlated, as on a real camera); then gain, offset, Gaussian read noise and
    ``n_hot_pixels`` hot pixels, whose places and levels are fixed by ``hot_pixel_seed`` (a
    camera defect, the same in every frame of a video). Returns uint16 (H, W) ADU, clipped.
    """
    electrons = rng.poisson(np.clip(intensity, 0, None) * dose_e_per_px).astype(np.float32)
    if blur_px > 0:
        electrons = cv2.GaussianBlur(electrons, (0, 0), blur_px, borderType=cv2.BORDER_REFLECT)
    signal = offset_adu + gain_adu_per_e * electrons
    if read_noise_adu > 0:
        signal += rng.normal(0.0, read_noise_adu, signal.shape).astype(np.float32)
    if n_hot_pixels > 0:
        h, w = signal.shape
        hot = np.random.default_rng(hot_pixel_seed)
        idx = hot.integers(0, h * w, n_hot_pixels)
        level = offset_adu + gain_adu_per_e * dose_e_per_px * hot.uniform(3.0, 20.0, n_hot_pixels)
        signal.reshape(-1)[idx] = level
    return np.clip(np.rint(signal), 0, 65535).astype(np.uint16)
