"""Cross-check a model's tomogram mask against a label-free threshold of the same volume.

A model trained on a few labeled patches can fail with full confidence: on the synthetic
benchmark one run called 82 % of the vacuum solid while only 11 % of the voxels had an
uncertain probability (docs/tomography.md). A classic, label-free segmentation of
the same volume does not share the model's failure modes, so a mask that hardly overlaps it
deserves a look. The reference is Otsu's threshold after a Gaussian blur of every slice (the
recipe of the benchmark's label-free ``otsu-smooth`` bar), on intensities clipped to the range
the model sees (:func:`nwwatch.normalize.intensity_range`, so one hot pixel cannot stretch the
histogram; the clipping moves the bar's IoU by at most 0.005 on the 96³ benchmark volumes).
Agreement is not accuracy: where the threshold itself fails (cupping in thick specimens) a
good mask agrees less, and a model that merely reproduces the threshold agrees fully. Otsu
cannot find a class much smaller than the other, so the agreement is not computed (NaN) for
masks that call less than ``MIN_SOLID_SHARE`` of the voxels with data solid (voxels without
data, NaN or infinite, are not counted: padding does not switch the check off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.normalize import intensity_range, normalize_image
from nwwatch.volume.nodata import count_with_data

#: Gaussian sigma (px) of the per-slice blur before the reference threshold.
REFERENCE_SIGMA_PX = 1.0
#: Below this share of solid voxels among the mask's voxels with data the agreement is NaN
#: (Otsu is unreliable).
MIN_SOLID_SHARE = 0.02


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (any shape, real; only finite values are used).

    The histogram has ``bins`` bins between the minimum and maximum, as in
    ``skimage.filters.threshold_otsu`` for float images; the threshold is the centre of the bin
    that maximises the between-class variance, and values strictly above it form the bright
    class. A constant input returns its value.

    Raises
    ------
    ValueError : no finite value.
    """
    data = np.asarray(values).reshape(-1)
    finite = np.isfinite(data)
    if not finite.all():
        data = data[finite]
    if data.size == 0:
        raise ValueError("otsu_threshold needs at least one finite value")
    low, high = float(data.min()), float(data.max())
    if low == high:
        return low
    if data.dtype.kind == "f" and high - low > float(np.finfo(data.dtype).max):
        # numpy's histogram subtracts the minimum in the data's dtype: inf past its range.
        data = data.astype(np.float64)
    counts, edges = np.histogram(data, bins=bins, range=(low, high))
    counts = counts.astype(np.float64)  # products of voxel counts overflow int64 past ~3e9
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


def blurred_volume(volume: np.ndarray, sigma_px: float = REFERENCE_SIGMA_PX) -> np.ndarray:
    """float32 (Z, Y, X): ``volume`` clipped to its :func:`~nwwatch.normalize.intensity_range`
    (what the model sees) and blurred per Z slice with a Gaussian of ``sigma_px`` (0: none).

    Voxels without data (NaN or infinite in ``volume``) are NaN here, so no reference calls
    them solid, and are left out of their neighbours' average (the Gaussian weights of the
    voxels with data renormalised, as :func:`nwwatch.volume.smooth_along_z` does along Z).
    """
    low, high = intensity_range(volume)
    raw = np.asarray(volume)
    data = np.clip(np.asarray(raw, dtype=np.float32), low, high)
    # OpenCV adds the two taps at equal distance before weighting them: in float32 that
    # overflows (inf - inf: NaN) for values beyond a quarter of float32's range.
    wide = max(abs(low), abs(high)) > float(np.finfo(np.float32).max) / 4
    for z in range(data.shape[0]):  # in place, a slice at a time: no volume-sized copy
        # Clipping made +-inf the brightest / darkest grey, and a NaN would spread over the
        # whole kernel: either way the reference near padding would be wrong.
        have = np.isfinite(raw[z]) if raw.dtype.kind == "f" else None
        if have is not None and have.all():
            have = None
        if sigma_px > 0:
            plane = data[z].astype(np.float64) if wide else data[z]
            if have is None:
                data[z] = cv2.GaussianBlur(plane, (0, 0), sigma_px)
            else:
                plane = np.where(have, plane, 0.0).astype(plane.dtype)
                weights = cv2.GaussianBlur(have.astype(np.float32), (0, 0), sigma_px)
                blurred = cv2.GaussianBlur(plane, (0, 0), sigma_px)
                data[z] = blurred / np.where(have, weights, 1.0)
        if have is not None:
            data[z][~have] = np.nan
    return data


def reference_from_blurred(blurred: np.ndarray, solid_brighter: bool) -> np.ndarray:
    """bool (Z, Y, X): Otsu's threshold of a :func:`blurred_volume`; the solid side.

    Raises
    ------
    ValueError : the volume has no finite value.
    """
    threshold = otsu_threshold(blurred)
    return blurred > threshold if solid_brighter else blurred <= threshold


def reference_mask(volume: np.ndarray, solid_brighter: bool,
                   sigma_px: float = REFERENCE_SIGMA_PX) -> np.ndarray:
    """bool (Z, Y, X): Otsu's threshold of the volume after a per-slice Gaussian blur.

    Parameters
    ----------
    volume : ndarray (Z, Y, X), raw intensities; clipped to its
        :func:`~nwwatch.normalize.intensity_range` first. Non-finite voxels are never solid.
    solid_brighter : solid is the bright class (HAADF); False for bright-field contrast.
    sigma_px : blur of every Z slice, px (0: none).

    Raises
    ------
    ValueError : the volume has no finite value.
    """
    return reference_from_blurred(blurred_volume(volume, sigma_px), solid_brighter)


def agreement_with(reference: np.ndarray | None, mask: np.ndarray,
                   voxels_with_data: int | None = None) -> float:
    """IoU of the solid of ``mask`` with ``reference`` (bool, same shape); NaN when the mask
    calls less than ``MIN_SOLID_SHARE`` of the ``voxels_with_data`` (None: every voxel;
    :func:`nwwatch.volume.nodata.count_with_data`) solid or there is no reference."""
    solid = np.asarray(mask, dtype=bool)
    if reference is None or _too_little_solid(solid, voxels_with_data):
        return math.nan
    union = np.count_nonzero(solid | reference)
    return float(np.count_nonzero(solid & reference) / union)


def solid_is_brighter(volume: np.ndarray, mask: np.ndarray,
                      class_mean_intensity: dict[str, float] | None = None,
                      solid_name: str = "solid") -> bool:
    """Whether solid is the bright class.

    From the labeled pixels' mean intensities when the model recorded them
    (``ModelMetadata.extra["class_mean_intensity"]``, written by ``nwwatch train --volume``):
    the class ``solid_name`` against the mean of the other classes. Else from the mask: the
    mean intensity of the finite voxels it calls solid against the rest. A mask can be
    inverted and so agree with itself; re-export older models to get the labels' answer.
    """
    means = class_mean_intensity or {}
    others = [float(v) for k, v in means.items() if k != solid_name]
    if solid_name in means and others:
        return float(means[solid_name]) > sum(others) / len(others)
    data = np.asarray(volume)
    finite = np.isfinite(data)
    solid = np.asarray(mask, dtype=bool) & finite
    rest = ~np.asarray(mask, dtype=bool) & finite
    if not solid.any() or not rest.any():
        return True
    # float64 sums: float32 ones overflow for values near float32's largest.
    return bool(data[solid].mean(dtype=np.float64) > data[rest].mean(dtype=np.float64))


def threshold_agreement(volume: np.ndarray, mask: np.ndarray, solid_brighter: bool) -> float:
    """IoU (0..1) of the solid in ``mask`` with the solid of :func:`reference_mask`.

    Parameters
    ----------
    volume : ndarray (Z, Y, X), raw intensities.
    mask : bool or 0/1 ndarray of the same shape, 1 solid.
    solid_brighter : see :func:`reference_mask`.

    Returns NaN when the mask calls less than ``MIN_SOLID_SHARE`` of the voxels with data
    (finite) solid (Otsu cannot find so small a class) or the volume has no finite value.
    """
    solid = np.asarray(mask, dtype=bool)
    if solid.shape != np.shape(volume):
        raise ValueError(f"mask shape {solid.shape} differs from volume shape "
                         f"{np.shape(volume)}")
    with_data = count_with_data(volume)
    if _too_little_solid(solid, with_data):
        return math.nan
    try:
        reference = reference_mask(volume, solid_brighter)
    except ValueError:  # no finite value: nothing to compare with
        return math.nan
    return agreement_with(reference, solid, with_data)


def _too_little_solid(solid: np.ndarray, voxels_with_data: int | None) -> bool:
    """Whether bool ``solid`` calls less than ``MIN_SOLID_SHARE`` of the voxels with data
    (None: all) solid. Of the voxels with data: counted in the whole, a volume padded with
    NaN to eight times its size fell under it at 15 % solid in the data, and the check
    against the threshold was silently off."""
    with_data = solid.size if voxels_with_data is None else voxels_with_data
    count = np.count_nonzero(solid)
    return count == 0 or count < MIN_SOLID_SHARE * with_data


#: In-plane distance (px) beyond which a mask's solid pixel is "far from the reference".
BEYOND_DISTANCE_PX = 4.0


def solid_beyond_reference(mask: np.ndarray, reference: np.ndarray,
                           distance_px: float = BEYOND_DISTANCE_PX) -> float:
    """Share (0..1) of the solid voxels of ``mask`` lying more than ``distance_px`` from every
    solid pixel of ``reference`` in their own Z slice.

    A model that calls vacuum solid far from the grain (slices the label-free threshold finds
    empty, or pore-free vacuum beside the grain) puts solid where no threshold would: the
    IoU with the reference barely sees it when the grain itself agrees.

    Parameters
    ----------
    mask, reference : bool or 0/1 ndarrays (Z, Y, X) of one shape, 1 solid.
    distance_px : in-plane Euclidean distance between pixel centres.

    Returns NaN when the mask has no solid voxel. A slice whose reference has no solid counts
    every solid pixel of the mask in it as beyond.
    """
    solid = np.asarray(mask, dtype=bool)
    ref = np.asarray(reference, dtype=bool)
    if solid.shape != ref.shape or solid.ndim != 3:
        raise ValueError(f"mask {solid.shape} and reference {ref.shape} must be one (Z, Y, X) "
                         f"shape")
    total = np.count_nonzero(solid)
    if total == 0:
        return math.nan
    beyond = 0
    for z in range(solid.shape[0]):
        if not solid[z].any():
            continue
        if not ref[z].any():
            beyond += int(np.count_nonzero(solid[z]))
            continue
        # distance of every pixel to the nearest reference solid pixel (cv2: to the nearest 0)
        dist = cv2.distanceTransform((~ref[z]).astype(np.uint8), cv2.DIST_L2,
                                     cv2.DIST_MASK_PRECISE)
        beyond += int(np.count_nonzero(solid[z] & (dist > distance_px)))
    return beyond / total


@dataclass(frozen=True)
class ClassContrast:
    """How far apart in intensity the two sides of a solid / non-solid split lie.

    separation_sd : (mean of the solid side - mean of the rest) / their pooled standard
        deviation; positive when the solid side is the brighter one. NaN when a side has
        fewer than two voxels.
    solid_sd_ratio : standard deviation of the solid side / that of the rest (NaN likewise,
        or when the rest is constant).
    solid_share : share (0..1) of the counted voxels on the solid side.
    """

    separation_sd: float
    solid_sd_ratio: float
    solid_share: float

    def as_dict(self) -> dict[str, float]:
        """Rounded for a model's metadata."""
        return {"separation_sd": round(self.separation_sd, 4),
                "solid_sd_ratio": round(self.solid_sd_ratio, 4),
                "solid_share": round(self.solid_share, 6)}


class ContrastAccumulator:
    """Count, sum and sum of squares of each side of a split, slice by slice (float64), so
    that a volume's statistics need no volume-sized copy."""

    def __init__(self) -> None:
        self._n = np.zeros(2)
        self._sum = np.zeros(2)
        self._squares = np.zeros(2)

    def add(self, values: np.ndarray, solid: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add the voxels of ``values`` (normalised units) where ``valid`` (default: finite),
        split by the bool ``solid`` of the same shape."""
        data = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(data) if valid is None else np.asarray(valid, dtype=bool)
        side = np.asarray(solid, dtype=bool)
        for i, where in enumerate((keep & ~side, keep & side)):
            chosen = data[where]
            self._n[i] += chosen.size
            self._sum[i] += chosen.sum()
            self._squares[i] += np.square(chosen).sum()

    def result(self) -> ClassContrast:
        """The :class:`ClassContrast` of everything added."""
        n, total = self._n, self._n.sum()
        share = float(n[1] / total) if total else math.nan
        if n.min() < 2:
            return ClassContrast(math.nan, math.nan, share)
        mean = self._sum / n
        # sample variances; clipped at 0 against rounding in the difference
        var = np.maximum(self._squares - n * mean ** 2, 0.0) / (n - 1)
        pooled = math.sqrt(float(((n - 1) * var).sum() / (total - 2)))
        separation = float(mean[1] - mean[0]) / pooled if pooled > 0 else math.nan
        ratio = math.sqrt(float(var[1] / var[0])) if var[0] > 0 else math.nan
        return ClassContrast(separation, ratio, share)


def mask_contrast(volume: np.ndarray, mask: np.ndarray,
                  value_range: tuple[float, float] | None = None) -> ClassContrast:
    """The :class:`ClassContrast` of a mask's solid against the rest, on the volume in the
    normalised units the model sees (:func:`~nwwatch.normalize.normalize_image` with
    ``value_range``, default the volume's :func:`~nwwatch.normalize.intensity_range`).
    Non-finite voxels (no data) are left out. One slice at a time: no volume-sized copy.

    Parameters
    ----------
    volume : ndarray (Z, Y, X), raw intensities.
    mask : bool or 0/1 ndarray of the same shape, 1 solid.
    """
    data = np.asarray(volume)
    solid = np.asarray(mask, dtype=bool)
    if solid.shape != data.shape or data.ndim != 3:
        raise ValueError(f"mask {solid.shape} and volume {data.shape} must be one (Z, Y, X) "
                         f"shape")
    value_range = intensity_range(data) if value_range is None else value_range
    floating = data.dtype.kind == "f"
    acc = ContrastAccumulator()
    for z in range(data.shape[0]):
        valid = np.isfinite(data[z]) if floating else np.ones(data.shape[1:], bool)
        acc.add(normalize_image(data[z], value_range, nan_fill="darkest"), solid[z], valid)
    return acc.result()
