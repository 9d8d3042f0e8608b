"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, Dice, pixel accuracy.

Numpy only (runtime-safe); training imports it for validation. Pixels whose truth is
:data:`nwwatch.classes.UNLABELED` (255) are ignored everywhere. Dataset-level figures are
computed from the confusion matrix summed over all images (pixel-weighted), not averaged
per image, so that small images do not weigh as much as large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nwwatch.classes import UNLABELED


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
