"""Working scale: run a model at the object scale it was trained for, answer in frame pixels.

Cameras write 512² to 4096² frames at magnifications where the droplet radius ranges from
~15 px to half the frame; a network sees objects through its receptive field, so it works best
at the scale of its training frames. A model records that scale in its metadata
(``extra["working_scale"]``, written at export from the training labels)::

    {"frame_px": 512, "droplet_radius_px": [14.2, 171.0], "min_frame_px": 384}

``frame_px``: long side of the training frames; ``droplet_radius_px``: 1st-99th percentile of
the equivalent radius ``sqrt(area / pi)`` of the largest droplet region of each training label;
``min_frame_px`` (optional, default none): the training crop; smaller frames are scaled up to
it (a deep network given less than the extent it learned on loses its context);
``whole_droplet_radius_px`` (optional): the largest droplet radius the network saw whole in its
training crops, :data:`WHOLE_DROPLET_FRACTION` of the crop (absent: that fraction of
``min_frame_px``, else of ``frame_px``; null: no such rule; in-situ models only, a tomogram
model that sets it is refused).

The runtime (:class:`nwwatch.segment.session.Segmenter`) then

1. scales a frame whose long side exceeds ``frame_px`` down to ``frame_px``, and one whose
   long side is below ``min_frame_px`` up to ``min_frame_px`` (at most ``MAX_UPSCALE`` x);
2. when the largest droplet region found is larger than ``whole_droplet_radius_px``,
   segments once more at :data:`SHRINK_STEP` of the scale (long side rounded to the model's
   size multiple, never below ``min_frame_px``) and takes the class layout from that pass and
   the boundaries from the first where the first's lie near the smaller pass's
   (:func:`keep_fine_boundaries`), with the frame's boundary margins no higher than either
   pass's (:func:`nwwatch.segment.confidence.cap_confidence`) where the passes disagree beyond that
   band (:func:`passes_disagreement` over :data:`CAP_DISAGREEMENT_FRACTION`); otherwise, when
   the model knows its droplet range and the droplet lies outside it, segments once more at
   the scale that brings it to the nearest end of the range (at most ``MAX_UPSCALE`` x the
   frame and x ``frame_px``, at least 64 px on the long side). Droplet regions under
   :data:`MIN_DROPLET_AREA_PX` working pixels are not trusted for either rule. At most one
   second pass per frame;
3. resizes the softmax back to the frame (bilinear, pixel-centre aligned) and takes its
   argmax, so labels and probabilities are always in the frame's own pixels.

Models without the key (older files) get ``frame_px`` = :data:`DEFAULT_FRAME_PX` for in-situ
models and no resizing for tomogram models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from nwwatch.classes import BACKGROUND, DROPLET

#: Long side assumed for in-situ models that do not record their working scale.
DEFAULT_FRAME_PX = 512
#: Largest upscaling of a frame any rule may ask for.
MAX_UPSCALE = 4.0
#: Smallest long side (px) a frame is scaled down to.
MIN_WORKING_PX = 64
#: A droplet region smaller than this (px, at the working scale) is not trusted for rescaling.
MIN_DROPLET_AREA_PX = 30

#: Largest droplet radius a network is taken to have seen whole, as a fraction of its training
#: crop (a disk 3/4 of the crop across). Chosen from the per-frame mIoU of the shipped model
#: against droplet size (docs/models.md, bench/results/working_scale_whole_droplet.json).
WHOLE_DROPLET_FRACTION = 0.375
#: The second pass for a droplet too large to have been seen whole runs at this fraction of the
#: first pass's scale (best of 0.5-0.85 on the frames it triggers on, docs/models.md).
SHRINK_STEP = 0.75
#: Half-width (px at the first pass's scale) of the band around the smaller pass's class
#: boundaries within which the first pass's boundaries are kept (2, 4 and 8 measured,
#: docs/models.md).
BOUNDARY_BAND_PX = 8
#: A frame's boundary margin is capped at the lower of its two passes' only where they disagree,
#: outside that band, on more than this fraction of their wire and droplet pixels
#: (:func:`passes_disagreement`; 0 and 0.01 measured, docs/models.md).
CAP_DISAGREEMENT_FRACTION = 0.01

METADATA_KEY = "working_scale"


class WorkingScaleError(ValueError):
    """A model's ``working_scale`` metadata is invalid; the message names the key."""


@dataclass(frozen=True)
class WorkingScale:
    """Scale a model was trained at. ``frame_px`` None: run every frame as it is."""

    frame_px: int | None
    droplet_radius_px: tuple[float, float] | None = None
    #: Step 1 scales frames smaller than this up to it (None: never).
    min_frame_px: int | None = None
    #: Step 2 shrinks frames whose droplet is larger than this (working px; None: never).
    whole_droplet_radius_px: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"frame_px": self.frame_px,
                "droplet_radius_px": list(self.droplet_radius_px)
                if self.droplet_radius_px else None,
                "min_frame_px": self.min_frame_px,
                "whole_droplet_radius_px": self.whole_droplet_radius_px}

    def describe(self) -> str:
        """The scale for people, e.g. ``frames resized to 512 px; smaller than 384 px scaled
        up; droplet radius 14-207.6 px; droplets beyond 144 px seen whole``."""
        if self.frame_px is None:
            return "none (every frame or slice run as it is)"
        parts = [f"frames resized to {self.frame_px} px"]
        if self.min_frame_px is not None:
            parts.append(f"smaller than {self.min_frame_px} px scaled up")
        if self.droplet_radius_px:
            low, high = self.droplet_radius_px
            parts.append(f"droplet radius {low:g}-{high:g} px")
        if self.whole_droplet_radius_px is not None:
            parts.append(f"droplets beyond {self.whole_droplet_radius_px:g} px seen whole")
        return "; ".join(parts)

    @classmethod
    def from_metadata(cls, kind: str, extra: dict[str, Any]) -> WorkingScale:
        """Read ``extra["working_scale"]`` of a model of ``kind``; the default when absent."""
        raw = extra.get(METADATA_KEY)
        if raw is None:
            if kind != "insitu":
                return cls(None)
            return cls(DEFAULT_FRAME_PX,
                       whole_droplet_radius_px=whole_droplet_radius(DEFAULT_FRAME_PX))
        if not isinstance(raw, dict):
            raise WorkingScaleError(f"{METADATA_KEY}: expected an object, got {raw!r}")
        frame = raw.get("frame_px")
        if frame is not None and (not isinstance(frame, int) or frame < MIN_WORKING_PX):
            raise WorkingScaleError(f"{METADATA_KEY}.frame_px: {frame!r} is not an integer "
                                    f">= {MIN_WORKING_PX}")
        radius = raw.get("droplet_radius_px")
        if radius is not None:
            if (not isinstance(radius, list | tuple) or len(radius) != 2
                    or not all(isinstance(v, int | float) for v in radius)
                    or not 0 < radius[0] <= radius[1]):
                raise WorkingScaleError(f"{METADATA_KEY}.droplet_radius_px: {radius!r} is not "
                                        f"[low, high] with 0 < low <= high")
            radius = (float(radius[0]), float(radius[1]))
        smallest = raw.get("min_frame_px")
        if smallest is not None and (not isinstance(smallest, int) or smallest < MIN_WORKING_PX
                                     or (frame is not None and smallest > frame)):
            raise WorkingScaleError(f"{METADATA_KEY}.min_frame_px: {smallest!r} is not an "
                                    f"integer in [{MIN_WORKING_PX}, frame_px]")
        whole = raw.get("whole_droplet_radius_px")
        if "whole_droplet_radius_px" not in raw:  # older files; an explicit null turns it off
            crop = smallest if smallest is not None else frame
            whole = whole_droplet_radius(crop) if kind == "insitu" and crop else None
        elif whole is not None and (not isinstance(whole, int | float)
                                    or isinstance(whole, bool) or not math.isfinite(whole)
                                    or whole <= 0):
            raise WorkingScaleError(f"{METADATA_KEY}.whole_droplet_radius_px: {whole!r} is not "
                                    f"a finite positive number")
        elif whole is not None and kind != "insitu":
            # The rule reads the droplet class; in a tomogram model class 2 is something else.
            raise WorkingScaleError(f"{METADATA_KEY}.whole_droplet_radius_px: only in-situ "
                                    f"models may set it (this model is {kind!r})")
        return cls(frame, radius, smallest, None if whole is None else float(whole))

    def size_factor(self, height: int, width: int) -> float:
        """Step 1: the factor that brings the long side down to ``frame_px`` or up to
        ``min_frame_px`` (at most ``MAX_UPSCALE``); 1 in between."""
        if self.frame_px is None:
            return 1.0
        long_side = max(height, width)
        if long_side > self.frame_px:
            return self.frame_px / long_side
        if self.min_frame_px is not None and long_side < self.min_frame_px:
            return min(MAX_UPSCALE, self.min_frame_px / long_side)
        return 1.0

    def droplet_too_large(self, radius_px: float | None) -> bool:
        """Whether a droplet of ``radius_px`` (working pixels) is larger than the network saw
        whole."""
        return (self.whole_droplet_radius_px is not None and radius_px is not None
                and radius_px > self.whole_droplet_radius_px)

    def droplet_factor(self, radius_px: float | None, height: int, width: int,
                       factor: float, size_multiple: int = 1) -> float | None:
        """Step 2: the factor to run at instead of ``factor`` when ``radius_px`` (the droplet
        radius found at ``factor``, in working pixels) is too large to have been seen whole or
        lies outside the trained range; None when no second pass is needed."""
        if radius_px is None or radius_px <= 0:
            return None
        long_side = max(height, width)
        if self.droplet_too_large(radius_px):
            # Long side a multiple of the model's, so the long side gets no padded border (a
            # 0.65 pass, padded by 51 px, lost 8 points of mIoU against 0.75; docs/models.md);
            # the short side follows the aspect ratio and may still be padded.
            # Never below the training crop: step 1 scales smaller frames up to it.
            target = max(round(long_side * factor * SHRINK_STEP / size_multiple), 1)
            shortest = max(self.min_frame_px or 0, MIN_WORKING_PX)
            shrunk = max(target * size_multiple, shortest) / long_side
            return shrunk if shrunk < 0.95 * factor else None
        if self.droplet_radius_px is None:
            return None
        low, high = self.droplet_radius_px
        if low <= radius_px <= high:
            return None
        wanted = factor * min(max(radius_px, low), high) / radius_px
        # At most MAX_UPSCALE x the frame and MAX_UPSCALE x the working scale's long side: a
        # speck of droplet on a large frame must not ask for a pass many times the frame.
        cap = MAX_UPSCALE if self.frame_px is None else min(
            MAX_UPSCALE, MAX_UPSCALE * self.frame_px / long_side)
        wanted = min(wanted, cap)
        wanted = max(wanted, MIN_WORKING_PX / long_side)
        return wanted if abs(wanted - factor) > 0.05 * factor else None


def keep_fine_boundaries(fine: np.ndarray, coarse: np.ndarray, fine_labels: np.ndarray,
                         coarse_labels: np.ndarray, band_px: int,
                         band: np.ndarray | None = None) -> np.ndarray:
    """Softmax float32 (C, H, W): ``coarse`` (a pass at a smaller scale, mapped back), except
    where the full-scale ``fine`` pass places a boundary within ``band_px`` pixels
    (Chebyshev) of a class boundary of ``coarse_labels``: there ``fine`` is taken.
    ``fine_labels``, ``coarse_labels``: uint8 (H, W), the passes' argmax. ``band``:
    :func:`coarse_band` of ``coarse_labels`` and ``band_px`` when the caller has it already.

    The smaller pass gets the layout of a droplet too large for the network right; the
    measurement needs the boundary at the first pass's resolution. Every class boundary of
    the result is one pass's: a region where the passes disagree (8-connected) is given the
    first pass's classes only when it lies inside the band, else the smaller pass's, and the
    smaller pass's softmax also covers the band around those regions, so its boundary keeps
    its own margins. Switching softmax at the band's edge alone would put a boundary of
    neither pass there wherever the passes disagree across it."""
    kernel = _band_kernel(band_px)
    if band is None:
        band = coarse_band(coarse_labels, band_px)
    disagree = (fine_labels != coarse_labels).view(np.uint8)
    count, regions = cv2.connectedComponents(disagree, connectivity=8)
    if count == 1:  # the passes agree everywhere: the labels are the same either way
        return np.where(band[None], fine, coarse)
    outside = np.bincount(regions[~band & (disagree > 0)], minlength=count) > 0
    outside[0] = False
    coarse_owned = cv2.dilate(outside[regions].view(np.uint8), kernel) > 0
    # A disagreement region touching the smaller pass's neighbourhood goes to it whole.
    touched = np.bincount(regions[coarse_owned], minlength=count) > 0
    touched[0] = False
    use_fine = band & ~coarse_owned & ~touched[regions]
    return np.where(use_fine[None], fine, coarse)


def _band_kernel(band_px: int) -> np.ndarray:
    """The (2 band_px + 1)² square: a Chebyshev neighbourhood of ``band_px`` pixels."""
    return np.ones((2 * max(int(band_px), 0) + 1,) * 2, np.uint8)


def coarse_band(coarse_labels: np.ndarray, band_px: int) -> np.ndarray:
    """bool (H, W): pixels within ``band_px`` pixels (Chebyshev) of a class boundary pixel of
    ``coarse_labels`` (uint8 (H, W)): where :func:`keep_fine_boundaries` may keep the first
    pass's boundaries. The runtime computes it once per second-pass frame and gives it to
    that function and to :func:`passes_disagreement`."""
    edges = cv2.morphologyEx(coarse_labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    return cv2.dilate((edges > 0).view(np.uint8), _band_kernel(band_px)) > 0


def passes_disagreement(fine_labels: np.ndarray, coarse_labels: np.ndarray,
                        band_px: int, band: np.ndarray | None = None) -> float:
    """Fraction, in [0, 1], of the pixels that either pass calls wire or droplet on which the
    passes' classes differ farther than ``band_px`` pixels (Chebyshev) from a class boundary
    of ``coarse_labels`` (the band where :func:`keep_fine_boundaries` may keep the first
    pass's boundaries); 0 when neither pass finds anything. ``fine_labels``,
    ``coarse_labels``: uint8 (H, W), the passes' argmax in the same pixels. ``band``:
    :func:`coarse_band` of ``coarse_labels`` and ``band_px`` when the caller has it already."""
    if band is None:
        band = coarse_band(coarse_labels, band_px)
    differ = (fine_labels != coarse_labels) & ~band
    objects = np.count_nonzero((fine_labels != BACKGROUND) | (coarse_labels != BACKGROUND))
    return float(np.count_nonzero(differ)) / objects if objects else 0.0


def whole_droplet_radius(crop_px: int) -> float:
    """Largest droplet radius (px) taken to fit whole in ``crop_px`` training crops."""
    return round(WHOLE_DROPLET_FRACTION * crop_px, 1)


def largest_droplet_radius_px(labels: np.ndarray,
                              min_area_px: float = MIN_DROPLET_AREA_PX) -> float | None:
    """Equivalent radius ``sqrt(area / pi)`` (px of ``labels``) of the largest 8-connected
    droplet region of ``labels`` (uint8 (H, W)); None when there is none of at least
    ``min_area_px`` pixels of ``labels`` (labels in frame pixels run at a working factor f:
    ``MIN_DROPLET_AREA_PX / f**2``)."""
    mask = labels == DROPLET
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    # Components of the droplet pixels' bounding box only: same areas, a fraction of the work.
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].view(np.uint8)
    # Areas by counting the labels: the same as connectedComponentsWithStats' areas, at a
    # fraction of its cost (which computes centroids and boxes too).
    count, regions = cv2.connectedComponents(crop, connectivity=8)
    area = int(np.bincount(regions.ravel(), minlength=count)[1:].max()) if count > 1 else 0
    return math.sqrt(area / math.pi) if area >= min_area_px else None


def resize_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize float32 (N, H, W) to (N, height, width): area averaging down, bilinear up."""
    n, h, w = images.shape
    if (h, w) == (height, width):
        return images
    method = cv2.INTER_AREA if height * width < h * w else cv2.INTER_LINEAR
    out = np.empty((n, height, width), np.float32)
    for i in range(n):
        out[i] = cv2.resize(images[i], (width, height), interpolation=method)
    return out


def resize_probabilities(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of softmax maps float32 (N, C, h, w) to (N, C, height, width),
    renormalised so each pixel sums to 1."""
    n, c, h, w = probs.shape
    if (h, w) == (height, width):
        return probs
    out = np.empty((n, c, height, width), np.float32)
    for i in range(n):
        for k in range(c):
            out[i, k] = cv2.resize(probs[i, k], (width, height), interpolation=cv2.INTER_LINEAR)
    out /= np.maximum(out.sum(axis=1, keepdims=True), np.float32(1e-12))
    return out


def working_shape(height: int, width: int, factor: float) -> tuple[int, int]:
    """(rows, cols) of a frame scaled by ``factor`` (at least 1 px each)."""
    return max(1, round(height * factor)), max(1, round(width * factor))


def working_frame_px(shapes: list[tuple[int, ...]]) -> int:
    """The frame size (long side, px) of a model trained on frames of ``shapes`` (H, W):
    their median long side, at least :data:`MIN_WORKING_PX`."""
    return max(int(np.median([max(shape) for shape in shapes])), MIN_WORKING_PX)


def scale_from_labels(labels: list[np.ndarray], crop_px: int | None = None) -> WorkingScale:
    """The working scale of a model trained on ``labels`` (uint8 (H, W) each, 255 unlabeled)
    with random ``crop_px`` crops: median long side, the 1st-99th percentile of the largest
    droplet region's equivalent radius over the labels that have one, ``crop_px`` (capped
    at the frame size) as the smallest frame, and the whole-droplet radius of the crop (of
    the frame without crops)."""
    if not labels:
        raise ValueError("scale_from_labels: no labels")
    frame = working_frame_px([lab.shape for lab in labels])
    radii = [r for r in (largest_droplet_radius_px(lab) for lab in labels) if r is not None]
    droplet = None
    if len(radii) >= 5:
        low, high = np.percentile(radii, (1.0, 99.0))
        droplet = (round(float(low), 1), round(float(high), 1))
    smallest = None if crop_px is None else int(min(max(crop_px, MIN_WORKING_PX), frame))
    return WorkingScale(frame, droplet, smallest,
                        whole_droplet_radius(smallest if smallest is not None else frame))
