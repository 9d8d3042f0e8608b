"""Online augmentation suited to TEM frames, applied to image and label consistently.

Geometric transforms (flips, rot90) move image and label together; intensity transforms
(gamma, contrast/brightness, Gaussian noise, Gaussian blur) touch the image only. Images are
normalised float32 in [-1, 1] (``normalize_image``) before and after. Crops choose a window
that contains at least one labeled pixel, so sparse labels (a few patches of a tomogram
slice) still reach the loss.

Each transform is split into its random draws (``draw_*``, the only calls on the generator)
and their application (``apply_*``, array work only), so that one thread can draw the
crops of many batches in order while others apply them (:mod:`training.sampler`).
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


class LabeledPixels:
    """The labeled (not 255) pixels of a uint8 (H, W) label image, in row-major order
    (that of ``np.nonzero``), counted per row so that the k-th is found without listing them.
    """

    def __init__(self, label: np.ndarray) -> None:
        self.label = label
        self.cumulative = np.cumsum(np.count_nonzero(label != UNLABELED, axis=1))

    @property
    def count(self) -> int:
        return int(self.cumulative[-1]) if self.cumulative.size else 0

    def pixel(self, k: int) -> tuple[int, int]:
        """(row, col) of the k-th labeled pixel (0 <= k < count)."""
        row = int(np.searchsorted(self.cumulative, k, side="right"))
        before = int(self.cumulative[row - 1]) if row else 0
        return row, int(np.flatnonzero(self.label[row] != UNLABELED)[k - before])


def padded_shape(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(H, W) of an image of ``shape`` after :func:`pad_to_crop`."""
    return max(shape[0], size), max(shape[1], size)


def pad_to_crop(
    image: np.ndarray, label: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pad an image smaller than ``size`` (reflect, or edge when too small to reflect) and
    its label (255) at the bottom and right; larger images are returned as they are."""
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if pad_h or pad_w:
        mode = "reflect" if pad_h < image.shape[0] and pad_w < image.shape[1] else "edge"
        image = np.pad(image, ((0, pad_h), (0, pad_w)), mode=mode)
        if label is not None:
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=UNLABELED)
    return image, label


def draw_window(
    shape: tuple[int, int], labeled: LabeledPixels | None, size: int, rng: np.random.Generator
) -> tuple[int, int]:
    """Origin (row, col) of a ``size`` window in a padded image of ``shape``; with the
    labeled pixels (of the unpadded label), a window that contains a random one of them."""
    height, width = shape
    r0 = int(rng.integers(0, height - size + 1))
    c0 = int(rng.integers(0, width - size + 1))
    if labeled is not None:
        count = labeled.count
        if count and count < height * width:
            row, col = labeled.pixel(int(rng.integers(count)))
            # Window origins that contain pixel (row, col).
            r0 = int(rng.integers(max(0, row - size + 1), min(row, height - size) + 1))
            c0 = int(rng.integers(max(0, col - size + 1), min(col, width - size) + 1))
    return r0, c0


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
    labeled = LabeledPixels(label) if label is not None else None
    r0, c0 = draw_window(padded_shape(image.shape, size), labeled, size, rng)
    return crop_window(image, label, size, r0, c0)


def crop_window(
    image: np.ndarray, label: np.ndarray | None, size: int, r0: int, c0: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``size`` window at (r0, c0) of the image (and label) padded by :func:`pad_to_crop`."""
    image, label = pad_to_crop(image, label, size)
    window = (slice(r0, r0 + size), slice(c0, c0 + size))
    return image[window], (label[window] if label is not None else None)


def draw_geometric(rng: np.random.Generator, config: AugmentConfig) -> tuple[int, bool]:
    """(k quarter turns, flip) of :func:`geometric`."""
    k = int(rng.integers(4)) if config.rot90 else 0
    flip = bool(config.flip and rng.random() < 0.5)
    return k, flip


def apply_geometric(
    image: np.ndarray, label: np.ndarray | None, k: int, flip: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``np.rot90(., k)`` then a left-right flip, image and label alike (contiguous copies)."""
    image = np.rot90(image, k)
    if flip:
        image = image[:, ::-1]
    if label is not None:
        label = np.rot90(label, k)
        if flip:
            label = label[:, ::-1]
        label = np.ascontiguousarray(label)
    return np.ascontiguousarray(image), label


def geometric(
    image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator, config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random flips and 90 degree rotations (the 8 symmetries of the square)."""
    return apply_geometric(image, label, *draw_geometric(rng, config))


@dataclass(frozen=True)
class IntensityDraw:
    """The random choices of :func:`intensity`; None: that transform is not applied.
    ``noise``: float32 of the image's shape, already scaled by its sigma."""

    gamma: float | None = None
    contrast: float | None = None
    brightness: float | None = None  # drawn with ``contrast``
    blur_sigma: float | None = None
    noise: np.ndarray | None = None


def draw_intensity(
    shape: tuple[int, int], rng: np.random.Generator, config: AugmentConfig
) -> IntensityDraw:
    """The draws of :func:`intensity` for an image of ``shape``, in its order (the noise
    image too: drawing it is what advances the generator)."""
    gamma = contrast = brightness = blur_sigma = noise = None
    if rng.random() < config.p_gamma:
        gamma = float(rng.uniform(*config.gamma_range))
    if rng.random() < config.p_contrast:
        contrast = float(rng.uniform(*config.contrast_range))
        brightness = float(rng.uniform(*config.brightness_range))
    if rng.random() < config.p_blur:
        blur_sigma = float(rng.uniform(*config.blur_sigma_range))
    if rng.random() < config.p_noise:
        sigma = float(rng.uniform(*config.noise_sigma_range))
        noise = rng.normal(0.0, sigma, shape).astype(np.float32)
    return IntensityDraw(gamma, contrast, brightness, blur_sigma, noise)


def apply_intensity(image: np.ndarray, draw: IntensityDraw) -> np.ndarray:
    """Gamma, contrast/brightness, blur, noise as drawn; result clipped to [-1, 1]."""
    out = image.astype(np.float32, copy=True)
    if draw.gamma is not None:
        unit = np.clip((out + 1.0) * 0.5, 0.0, 1.0)
        out = (unit**draw.gamma) * 2.0 - 1.0
    if draw.contrast is not None:
        out = out * draw.contrast
        out = out + draw.brightness
    if draw.blur_sigma is not None:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=draw.blur_sigma,
                               borderType=cv2.BORDER_REFLECT)
    if draw.noise is not None:
        out = out + draw.noise
    return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)


def intensity(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Gamma, contrast/brightness, Gaussian noise and blur; result clipped to [-1, 1]."""
    return apply_intensity(image, draw_intensity(image.shape, rng, config))


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
