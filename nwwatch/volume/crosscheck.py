"""Cross-check a model's tomogram mask against a label-free threshold of the same volume.

A model trained on a few labeled patches can fail with full confidence: on the synthetic
benchmark one run called 82 % of the vacuum solid while only 11 % of the voxels had an
uncertain probability (docs/tomography.md, Session 5). A classic, label-free segmentation of
the same volume does not share the model's failure modes, so a mask that hardly overlaps it
deserves a look. The reference is Otsu's threshold after a Gaussian blur of every slice, the
bar every learned method is benchmarked against. Agreement is not accuracy: where the
threshold itself fails (cupping in thick specimens) a good mask agrees less, and a model that
merely reproduces the threshold agrees fully.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Gaussian sigma (px) of the per-slice blur before the reference threshold.
REFERENCE_SIGMA_PX = 1.0


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (any shape, real, finite values only are used).

    The histogram has ``bins`` bins between the minimum and maximum, as in
    ``skimage.filters.threshold_otsu``; the threshold is the centre of the bin that maximises
    the between-class variance, and values strictly above it form the bright class. A
    constant input returns its value.
    """
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise ValueError("otsu_threshold needs at least one finite value")
    low, high = float(data.min()), float(data.max())
    if low == high:
        return low
    counts, edges = np.histogram(data, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = np.cumsum(counts[::-1])[::-1]
    sum_low = np.cumsum(counts * centres)
    sum_high = np.cumsum((counts * centres)[::-1])[::-1]
    # Split after bin i: class low = bins 0..i, class high = bins i+1..
    mean_low = sum_low[:-1] / np.maximum(weight_low[:-1], 1)
    mean_high = sum_high[1:] / np.maximum(weight_high[1:], 1)
    between = weight_low[:-1] * weight_high[1:] * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between))])


def reference_mask(volume: np.ndarray, solid_brighter: bool,
                   sigma_px: float = REFERENCE_SIGMA_PX) -> np.ndarray:
    """bool (Z, Y, X): Otsu's threshold of the volume after a per-slice Gaussian blur.

    Parameters
    ----------
    volume : ndarray (Z, Y, X), raw intensities.
    solid_brighter : solid is the bright class (HAADF); False for bright-field contrast.
    sigma_px : blur of every Z slice, px (0: none).
    """
    data = np.asarray(volume, dtype=np.float32)
    if sigma_px > 0:
        data = np.stack([cv2.GaussianBlur(s, (0, 0), sigma_px) for s in data])
    above = data > otsu_threshold(data)
    return above if solid_brighter else ~above


def solid_is_brighter(volume: np.ndarray, mask: np.ndarray,
                      class_mean_intensity: dict[str, float] | None = None) -> bool:
    """Whether solid is the bright class.

    From the labeled pixels' mean intensities when the model recorded them
    (``ModelMetadata.extra["class_mean_intensity"]``, written by ``nwwatch train --volume``),
    else from the mask: the mean intensity of what it calls solid against the rest.
    """
    if class_mean_intensity and {"solid", "pore"} <= set(class_mean_intensity):
        return class_mean_intensity["solid"] > class_mean_intensity["pore"]
    solid = np.asarray(mask, dtype=bool)
    if solid.all() or not solid.any():
        return True
    data = np.asarray(volume, dtype=np.float64)
    return bool(data[solid].mean() > data[~solid].mean())


def threshold_agreement(volume: np.ndarray, mask: np.ndarray, solid_brighter: bool) -> float:
    """IoU (0..1) of the solid in ``mask`` with the solid of :func:`reference_mask`.

    Parameters
    ----------
    volume : ndarray (Z, Y, X), raw intensities.
    mask : bool or 0/1 ndarray of the same shape, 1 solid.
    solid_brighter : see :func:`reference_mask`.

    Returns 1.0 when neither calls any voxel solid.
    """
    solid = np.asarray(mask, dtype=bool)
    if solid.shape != np.shape(volume):
        raise ValueError(f"mask shape {solid.shape} differs from volume shape "
                         f"{np.shape(volume)}")
    reference = reference_mask(volume, solid_brighter)
    union = np.count_nonzero(solid | reference)
    return float(np.count_nonzero(solid & reference) / union) if union else 1.0
