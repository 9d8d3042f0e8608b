"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, Dice, pixel accuracy,
and the displacement of a predicted interface (:func:`interface_offsets_px`).

Numpy and OpenCV only (runtime-safe); training imports it for validation. Pixels whose truth is
:data:`nwwatch.classes.UNLABELED` (255) are ignored everywhere. Dataset-level figures are
computed from the confusion matrix summed over all images (pixel-weighted), not averaged
per image, so that small images do not weigh as much as large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE, UNLABELED, UNSURE_BAND_MAX_REACH_PX


def confusion_matrix(truth: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """Count (truth, predicted) class pairs.

    Parameters
    ----------
    truth : integer array, any shape; values in [0, num_classes) or 255 (ignored).
    prediction : integer array, same shape as ``truth``; values in [0, num_classes).
    num_classes : number of classes C.

    Returns
    -------
    int64 (C, C): ``out[t, p]`` = number of pixels of true class t predicted as p.

    Raises
    ------
    ValueError : shapes differ, or a value is out of range.
    """
    truth = np.asarray(truth)
    prediction = np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth shape {truth.shape} != prediction shape {prediction.shape}")
    keep = truth != UNLABELED
    t = truth[keep].astype(np.int64, copy=False)
    p = prediction[keep].astype(np.int64, copy=False)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"truth has class ids outside [0, {num_classes}) other than 255")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"prediction has class ids outside [0, {num_classes})")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores in [0, 1]. Per-class values are NaN for a class absent from truth and prediction.

    Means (``mean_iou``, ``mean_dice``) are over the classes that are not NaN.
    """

    iou: tuple[float, ...]
    dice: tuple[float, ...]
    mean_iou: float
    mean_dice: float
    pixel_accuracy: float
    pixels: int

    def as_dict(self, class_names: tuple[str, ...] | None = None) -> dict[str, float]:
        """Flat ``{name: value}`` for logs and model metadata (NaN classes left out)."""
        names = class_names or tuple(str(i) for i in range(len(self.iou)))
        out = {
            "mean_iou": self.mean_iou,
            "mean_dice": self.mean_dice,
            "pixel_accuracy": self.pixel_accuracy,
        }
        for name, iou, dice in zip(names, self.iou, self.dice, strict=True):
            if not np.isnan(iou):
                out[f"iou_{name}"] = iou
                out[f"dice_{name}"] = dice
        return out


def metrics_from_confusion(confusion: np.ndarray) -> SegmentationMetrics:
    """Per-class IoU and Dice, their means, and pixel accuracy from a (C, C) confusion matrix.

    IoU_c = TP / (TP + FP + FN), Dice_c = 2 TP / (2 TP + FP + FN).
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(union > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = cm.sum()
    present = ~np.isnan(iou)
    return SegmentationMetrics(
        iou=tuple(float(v) for v in iou),
        dice=tuple(float(v) for v in dice),
        mean_iou=float(iou[present].mean()) if present.any() else float("nan"),
        mean_dice=float(dice[present].mean()) if present.any() else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total > 0 else float("nan"),
        pixels=int(total),
    )


def segmentation_metrics(
    truth: np.ndarray, prediction: np.ndarray, num_classes: int
) -> SegmentationMetrics:
    """Metrics of one label image or a stack; see :func:`metrics_from_confusion`."""
    return metrics_from_confusion(confusion_matrix(truth, prediction, num_classes))


def interface_offsets_px(truth: np.ndarray, prediction: np.ndarray, *, wire: int = NANOWIRE,
                         droplet: int = DROPLET, max_px: float = 20.0) -> np.ndarray:
    """Signed distances (px) of the predicted wire/droplet interface from the true one.

    Parameters
    ----------
    truth, prediction : integer (H, W) label images ((row, col), pixel centres); truth may
        hold 255 (unlabeled): such pixels up to ``UNSURE_BAND_MAX_REACH_PX`` from a labeled
        one take the class of the nearest labeled pixel (an unsure band's boundary midway,
        as ``nwwatch measure`` fills it), farther ones are left out.
    wire, droplet : the two classes whose interface is compared.
    max_px : predicted interface pixels farther than this from the true other class are
        left out (they belong to a spurious interface, not to a displaced one).

    Returns
    -------
    float64 (N,): one value per predicted interface pixel (a predicted droplet pixel with a
    predicted wire 4-neighbour) that lies on true wire or droplet. Positive: the predicted
    interface lies that far inside the true wire (the droplet drawn too large); negative:
    inside the true droplet. A prediction equal to the truth gives zeros. Euclidean
    distances to the nearest true pixel of the other class, so about one pixel per pixel of
    shift perpendicular to the interface.
    """
    truth = np.asarray(truth)
    unlabeled = truth == UNLABELED
    if unlabeled.any() and not unlabeled.all():
        # The band a human leaves along the interface is not the interface's distance: with
        # 255 left out, every offset would grow by the band's width and the pixels inside it
        # (a perfect prediction's) would drop out.
        from scipy.ndimage import distance_transform_edt

        reach, (near_rows, near_cols) = distance_transform_edt(unlabeled, return_indices=True)
        truth = np.where(reach <= UNSURE_BAND_MAX_REACH_PX, truth[near_rows, near_cols],
                         UNLABELED)
    pred_drop = np.asarray(prediction) == droplet
    pred_wire = np.asarray(prediction) == wire
    near_wire = np.zeros_like(pred_wire)
    near_wire[1:] |= pred_wire[:-1]
    near_wire[:-1] |= pred_wire[1:]
    near_wire[:, 1:] |= pred_wire[:, :-1]
    near_wire[:, :-1] |= pred_wire[:, 1:]
    rows, cols = np.nonzero(pred_drop & near_wire)
    if rows.size == 0:
        return np.zeros(0)
    true_drop = truth == droplet
    true_wire = truth == wire
    if not true_wire.any() or not true_drop.any():
        return np.zeros(0)
    # Distance of every pixel to the nearest true droplet / wire pixel.
    to_drop = cv2.distanceTransform((~true_drop).astype(np.uint8), cv2.DIST_L2,
                                    cv2.DIST_MASK_PRECISE)
    to_wire = cv2.distanceTransform((~true_wire).astype(np.uint8), cv2.DIST_L2,
                                    cv2.DIST_MASK_PRECISE)
    t = truth[rows, cols]
    offsets = np.where(t == wire, to_drop[rows, cols], -(to_wire[rows, cols] - 1.0))
    keep = ((t == wire) | (t == droplet)) & (np.abs(offsets) <= max_px)
    return offsets[keep].astype(np.float64)


@dataclass(frozen=True)
class InterfaceOffsets:
    """Displacement (px) of the predicted wire/droplet interface over a set of frames
    (:func:`interface_offsets_px`; positive = into the true wire).

    ``frames``: frames with a predicted and a true interface; ``bias_px``: mean of the
    per-frame means; ``rms_px``: root mean square of the per-frame means; ``mean_abs_px``:
    mean |offset| over all interface pixels (a ragged interface raises it, a shift too).
    """

    frames: int
    bias_px: float
    rms_px: float
    mean_abs_px: float

    @classmethod
    def from_frames(cls, per_frame: list[np.ndarray]) -> InterfaceOffsets:
        kept = [o for o in per_frame if o.size]
        if not kept:
            nan = float("nan")
            return cls(0, nan, nan, nan)
        means = np.array([o.mean() for o in kept])
        return cls(len(kept), float(means.mean()), float(np.sqrt(np.mean(means**2))),
                   float(np.abs(np.concatenate(kept)).mean()))
