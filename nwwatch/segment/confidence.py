"""How sure the model was of a frame: the ``confidence`` column, the labelling queue's ranking.

The confidence of a frame is the mIoU its labels would score if the model's own softmax were
the truth's expectation, halved when the measurement gave no valid angle:

    IoU_c      = sum(p_c over pixels labelled c) / (pixels labelled c + sum(p_c elsewhere))
    confidence = mean(IoU_c over the classes present) * (1 if angle_valid else 0.5)   in [0, 1]

Uncertain pixels (a boundary spread over several pixels, a region the model hesitates on)
lower the IoU of their class by their share of that class's area, so the same hesitant
outline costs a small droplet more than a large one, as it costs the true per-frame mIoU. A
mean margin over the boundary band (the confidence before measurement 2.2.3,
:func:`band_margin`) weighs every boundary pixel alike: on a growth video with a small
droplet (seed 303) it ranked the frames backwards by per-frame mIoU (Spearman -0.28), the
wire's long, sharp sides outweighing the droplet's outline (docs/labelling.md, "How the
queue ranks frames"). Frames with the lowest confidence go to the labelling queue
(:mod:`nwwatch.results.label_queue`).

:func:`band_margin` stays the measure of how sharp the boundaries are: the whole-droplet
pass caps a merged softmax's margins at the lower of its two passes' (:func:`cap_confidence`).
"""

from __future__ import annotations

import math

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


def _check(probs: np.ndarray, labels: np.ndarray) -> None:
    if probs.ndim != 3 or probs.shape[0] < 2 or probs.shape[1:] != labels.shape:
        raise ValueError(f"probabilities must be (C >= 2, H, W) matching labels {labels.shape}, "
                         f"got {probs.shape}")


def band_margin(probabilities: np.ndarray, labels: np.ndarray, band_px: int = BAND_PX) -> float:
    """Mean top-two margin (most likely class's softmax minus the runner-up's; 0: a coin
    toss, 1: certain) over the pixels within ``band_px`` of a change of class in ``labels``
    uint8 (H, W); over the whole frame where there is none. ``probabilities``: float
    (C >= 2, H, W). Returns a float in [0, 1]."""
    probs = np.asarray(probabilities)
    _check(probs, labels)
    flat = probs.reshape(probs.shape[0], -1)
    # The band is a thin strip: gather its pixels by index (a boolean mask over the
    # (C, H, W) array costs as much as the whole frame).
    band = _band_indices(labels, band_px)
    values = np.take(flat, band, axis=1) if band.size else flat
    return float(np.clip(np.mean(_top_two_margin(values), dtype=np.float64), 0.0, 1.0))


def expected_iou(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float64 (C,): each class's IoU between ``labels`` uint8 (H, W) and the softmax
    ``probabilities`` float (C >= 2, H, W) read as the truth's expectation,
    ``sum(p_c over labels == c) / (count(labels == c) + sum(p_c over labels != c))``; NaN
    for a class neither labelled nor expected anywhere (union below half a pixel)."""
    probs = np.asarray(probabilities)
    _check(probs, labels)
    if probs.dtype.itemsize < 4:  # a float16 sum over a frame overflows (65504)
        probs = probs.astype(np.float32)
    n_classes = probs.shape[0]
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    # float32 sums: numpy's pairwise summation keeps them to ~1e-6 relative, at a third of
    # the time of float64 ones.
    total = probs.reshape(n_classes, -1).sum(axis=1).astype(np.float64)
    # Classes other than 0 are labelled only inside the box around their pixels: outside it
    # every pixel is class 0's, so per-class sums there follow from the whole-frame ones.
    x, y, w, h = cv2.boundingRect(lab)
    box_labels, box = lab[y:y + h, x:x + w], probs[:, y:y + h, x:x + w]
    count = np.zeros(n_classes)
    inside = np.zeros(n_classes)
    for c in range(n_classes):
        # One mask per class gives the count and the sum (np.bincount of uint8 labels
        # converts the box to intp first: a third of this function's time).
        mask = box_labels == c
        count[c] = np.count_nonzero(mask)
        inside[c] = box[c][mask].sum()
    count[0] += lab.size - box_labels.size
    inside[0] += total[0] - float(box[0].sum())
    union = count + total - inside
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0.5, inside / union, np.nan)


def frame_confidence(probabilities: np.ndarray, labels: np.ndarray, angle_valid: bool) -> float:
    """Confidence of one segmented frame (see the module docstring).

    Parameters
    ----------
    probabilities : float (C, H, W) softmax of the model, C >= 2.
    labels : uint8 (H, W) predicted classes (argmax of ``probabilities``).
    angle_valid : whether the measurement gave a valid contact angle.

    Returns
    -------
    float in [0, 1]: the expected mIoU, halved without a valid angle.
    """
    iou = expected_iou(probabilities, labels).tolist()
    present = [v for v in iou if not math.isnan(v)]
    if len(iou) < 8:
        # np.nanmean of fewer than 8 values, without its per-call cost: NaN read as 0.0,
        # summed in order (numpy sums short arrays sequentially), divided by the count.
        total = 0.0
        for i, v in enumerate(iou):
            value = 0.0 if math.isnan(v) else v
            total = value if i == 0 else total + value
        miou = total / len(present) if present else 0.0
    else:
        miou = float(np.nanmean(iou)) if present else 0.0
    return min(max(miou, 0.0), 1.0) * (1.0 if angle_valid else INVALID_ANGLE_FACTOR)


def cap_confidence(probabilities: np.ndarray, labels: np.ndarray, ceiling: float,
                   band_px: int = BAND_PX) -> np.ndarray:
    """float32 (C, H, W) ``probabilities`` with every pixel's two most likely classes moved
    towards an even split, just enough that :func:`band_margin` of the result is at most
    ``ceiling``; unchanged when it already is.

    Each pixel becomes ``k * p + (1 - k) * q``, ``q`` half on each of its two most likely
    classes: every margin is scaled by ``k``, the argmax (``labels``, uint8 (H, W)) is kept,
    and so is which side of 0.5 every class probability lies on (the measurement contours
    the droplet at 0.5). Used where a frame's softmax is put together from two passes: its
    confidence must not exceed that of either pass.
    """
    current = band_margin(probabilities, labels, band_px)
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
