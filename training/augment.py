"""Online augmentation suited to TEM frames, applied to image and label consistently.

Geometric transforms (flips, rot90) move image and label together; intensity transforms
(gamma, contrast/brightness, Gaussian noise, Gaussian blur) touch the image only. Images are
normalised float32 in [-1, 1] (``normalize_image``) before and after. Crops choose a window
that contains at least one labeled pixel, so sparse labels (a few patches of a tomogram
slice) still reach the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.classes import UNLABELED


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; the defaults stay within what real TEM frames show."""

    flip: bool = True
    rot90: bool = True
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_gamma: float = 0.5
    contrast_range: tuple[float, float] = (0.8, 1.2)
    brightness_range: tuple[float, float] = (-0.1, 0.1)
    p_contrast: float = 0.5
    noise_sigma_range: tuple[float, float] = (0.0, 0.06)
    p_noise: float = 0.5
    blur_sigma_range: tuple[float, float] = (0.5, 1.2)
    p_blur: float = 0.25


def effective_crop(crop: int, images: list[np.ndarray], multiple: int = 1) -> int:
    """The crop side to use: ``crop``, or less when every image is smaller.

    A window larger than every image only adds padding (label 255) for the network to run
    over: the crop is capped at the largest image side rounded up to ``multiple`` (the
    model's size multiple), which keeps the same pixels in view at a fraction of the cost.
    """
    if not images:
        return crop
    largest = max(max(image.shape[:2]) for image in images)
    return min(crop, -(-largest // multiple) * multiple)


def random_crop(
    image: np.ndarray, label: np.ndarray | None, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``size`` x ``size`` window; images smaller than that are padded (reflect / 255).

    With a label, the window is placed so that a randomly chosen labeled pixel lies inside it.

    Parameters
    ----------
    image : float32 (H, W).  label : uint8 (H, W) or None.

    Returns
    -------
    (image (size, size), label (size, size) or None)
    """
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if pad_h or pad_w:
        mode = "reflect" if pad_h < image.shape[0] and pad_w < image.shape[1] else "edge"
        image = np.pad(image, ((0, pad_h), (0, pad_w)), mode=mode)
        if label is not None:
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=UNLABELED)
    height, width = image.shape
    r0 = int(rng.integers(0, height - size + 1))
    c0 = int(rng.integers(0, width - size + 1))
    if label is not None:
        rows, cols = np.nonzero(label != UNLABELED)
        if rows.size and rows.size < label.size:
            k = int(rng.integers(rows.size))
            # Window origins that contain pixel (rows[k], cols[k]).
            r0 = int(rng.integers(max(0, rows[k] - size + 1), min(rows[k], height - size) + 1))
            c0 = int(rng.integers(max(0, cols[k] - size + 1), min(cols[k], width - size) + 1))
    window = (slice(r0, r0 + size), slice(c0, c0 + size))
    return image[window], (label[window] if label is not None else None)


def geometric(
    image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator, config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random flips and 90 degree rotations (the 8 symmetries of the square)."""
    k = int(rng.integers(4)) if config.rot90 else 0
    flip = bool(config.flip and rng.random() < 0.5)
    image = np.rot90(image, k)
    if flip:
        image = image[:, ::-1]
    if label is not None:
        label = np.rot90(label, k)
        if flip:
            label = label[:, ::-1]
        label = np.ascontiguousarray(label)
    return np.ascontiguousarray(image), label


def intensity(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Gamma, contrast/brightness, Gaussian noise and blur; result clipped to [-1, 1]."""
    out = image.astype(np.float32, copy=True)
    if rng.random() < config.p_gamma:
        gamma = float(rng.uniform(*config.gamma_range))
        unit = np.clip((out + 1.0) * 0.5, 0.0, 1.0)
        out = (unit**gamma) * 2.0 - 1.0
    if rng.random() < config.p_contrast:
        out = out * float(rng.uniform(*config.contrast_range))
        out = out + float(rng.uniform(*config.brightness_range))
    if rng.random() < config.p_blur:
        sigma = float(rng.uniform(*config.blur_sigma_range))
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    if rng.random() < config.p_noise:
        sigma = float(rng.uniform(*config.noise_sigma_range))
        out = out + rng.normal(0.0, sigma, out.shape).astype(np.float32)
    return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)


def augment(
    image: np.ndarray,
    label: np.ndarray | None,
    rng: np.random.Generator,
    config: AugmentConfig | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Geometric then intensity augmentation of one (image, label) pair."""
    config = config or AugmentConfig()
    image, label = geometric(image, label, rng, config)
    return intensity(image, rng, config), label
