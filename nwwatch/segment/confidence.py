"""How sure the model was of a frame, where the measurement looks: the ``confidence`` column.

The contact angle is read off the class boundaries (the droplet's outline, the wire's sides
and the wire/droplet interface), so that is where the model's certainty matters. For each
pixel the margin is the softmax probability of the most likely class minus that of the
runner-up (0: a coin toss between two classes, 1: certain). The confidence of a frame is the
mean margin over the boundary band (pixels within ``band_px`` of a change of predicted class),
halved when the measurement gave no valid angle:

    confidence = mean(margin over band) * (1 if angle_valid else 0.5)        in [0, 1]

A sharp, well-placed boundary has margins near 1 one pixel away from it; a model that hesitates
spreads the transition over several pixels and the mean drops. Frames without any boundary
(nothing found) use the mean margin over the whole frame. Frames with the lowest confidence go
to the labelling queue (:mod:`nwwatch.results.label_queue`).
"""

from __future__ import annotations

import cv2
import numpy as np

#: Half-width (px) of the band around predicted class boundaries.
BAND_PX = 2
#: Factor applied when the measurement gave no valid angle.
INVALID_ANGLE_FACTOR = 0.5


def boundary_band(labels: np.ndarray, band_px: int = BAND_PX) -> np.ndarray:
    """bool (H, W): pixels within ``band_px`` (chessboard distance) of a change of class in
    ``labels`` uint8 (H, W)."""
    kernel = np.ones((2 * band_px + 1, 2 * band_px + 1), np.uint8)
    grad = cv2.morphologyEx(np.ascontiguousarray(labels, dtype=np.uint8), cv2.MORPH_GRADIENT,
                            kernel)
    return grad > 0


def _band_indices(labels: np.ndarray, band_px: int) -> np.ndarray:
    """``np.flatnonzero(boundary_band(labels, band_px))`` of uint8 (H, W) ``labels``, found
    in the box around the pixels of classes other than 0 only: every change of class
    involves such a pixel, so the band lies within ``band_px`` of the box, and a margin of
    ``2 * band_px`` gives each of its pixels its whole window (the same indices, in the same
    order, for a fraction of the work where the objects fill part of the frame)."""
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    height, width = lab.shape
    x, y, w, h = cv2.boundingRect(lab)  # of the non-zero pixels
    if w == 0 or h == 0:
        return np.zeros(0, np.intp)
    margin = 2 * band_px
    r0, c0 = max(y - margin, 0), max(x - margin, 0)
    r1, c1 = min(y + h + margin, height), min(x + w + margin, width)
    rows, cols = np.divmod(np.flatnonzero(boundary_band(lab[r0:r1, c0:c1], band_px)),
                           c1 - c0)
    return (rows + r0) * width + (cols + c0)


def _top_two_margin(values: np.ndarray) -> np.ndarray:
    """float (N,): largest minus second largest of ``values`` (C >= 2, N) along axis 0, by
    one pass over the classes (np.partition along a short axis 0 is several times slower)."""
    first = np.maximum(values[0], values[1])
    second = np.minimum(values[0], values[1])
    for row in values[2:]:
        np.maximum(second, np.minimum(first, row), out=second)
        np.maximum(first, row, out=first)
    return first - second


def frame_confidence(probabilities: np.ndarray, labels: np.ndarray, angle_valid: bool,
                     band_px: int = BAND_PX) -> float:
    """Confidence of one segmented frame (see the module docstring).

    Parameters
    ----------
    probabilities : float (C, H, W) softmax of the model, C >= 2.
    labels : uint8 (H, W) predicted classes (argmax of ``probabilities``).
    angle_valid : whether the measurement gave a valid contact angle.

    Returns
    -------
    float in [0, 1].
    """
    probs = np.asarray(probabilities)
    if probs.ndim != 3 or probs.shape[0] < 2 or probs.shape[1:] != labels.shape:
        raise ValueError(f"probabilities must be (C >= 2, H, W) matching labels {labels.shape}, "
                         f"got {probs.shape}")
    flat = probs.reshape(probs.shape[0], -1)
    # The band is a thin strip: gather its pixels by index (a boolean mask over the
    # (C, H, W) array costs as much as the whole frame).
    band = _band_indices(labels, band_px)
    values = np.take(flat, band, axis=1) if band.size else flat
    margin = float(np.mean(_top_two_margin(values), dtype=np.float64))
    return float(np.clip(margin, 0.0, 1.0)) * (1.0 if angle_valid else INVALID_ANGLE_FACTOR)


def cap_confidence(probabilities: np.ndarray, labels: np.ndarray, ceiling: float,
                   band_px: int = BAND_PX) -> np.ndarray:
    """float32 (C, H, W) ``probabilities`` with every pixel's two most likely classes moved
    towards an even split, just enough that :func:`frame_confidence` of the result is at
    most ``ceiling``; unchanged when it already is.

    Each pixel becomes ``k * p + (1 - k) * q``, ``q`` half on each of its two most likely
    classes: every margin is scaled by ``k``, the argmax (``labels``, uint8 (H, W)) is kept,
    and so is which side of 0.5 every class probability lies on (the measurement contours
    the droplet at 0.5). Used where a frame's softmax is put together from two passes: its
    confidence must not exceed that of either pass.
    """
    current = frame_confidence(probabilities, labels, True, band_px)
    if current <= ceiling or current <= 0.0:
        return probabilities
    keep = np.float32(max(ceiling, 0.0) / current)
    # The runner-up class of each pixel, a channel at a time (argsort along C is slow).
    runner_up = np.zeros(labels.shape, np.uint8)
    best = np.full(labels.shape, -np.inf, np.float32)
    for c in range(probabilities.shape[0]):
        value = np.where(labels == c, np.float32(-np.inf), probabilities[c])
        runner_up[value > best] = c
        np.maximum(best, value, out=best)
    out = (probabilities * keep).astype(np.float32, copy=False)
    half = np.float32((1.0 - keep) / 2.0)
    for c in range(probabilities.shape[0]):
        out[c] += half * ((labels == c) | (runner_up == c))
    return out
