"""Training frames brought into a working scale, as the runtime brings frames to a model.

A fine-tune (``nwwatch train --init``) starts from weights that learned objects at their
model's working scale (:mod:`nwwatch.segment.scale`): the runtime scales a frame whose long
side exceeds ``frame_px`` down to it, and one below ``min_frame_px`` up to it. Trained on its
frames at their own size, a few epochs cannot move the weights to another object scale (on
256 px frames the droplet was lost: the runtime had run the starting model at 384 px). So the
fine-tune's frames and labels are brought into that scale by the same rule (step 1 of the
runtime), and the fine-tuned model records the same working scale.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

from nwwatch.segment.scale import WorkingScale, resize_images, working_shape
from training.data import TrainingData


def _resized_label(label: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Nearest-neighbour: class ids (and 255, unlabeled) stay class ids."""
    return cv2.resize(label, (cols, rows), interpolation=cv2.INTER_NEAREST)


def _resized_image(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """As the runtime resizes a normalised frame (area averaging down, bilinear up)."""
    return resize_images(image[None].astype(np.float32, copy=False), rows, cols)[0]


def to_working_scale(data: TrainingData, scale: dict[str, Any]) -> tuple[TrainingData, str]:
    """``data`` (in-situ) with every image and label resized by the runtime's size factor of
    ``scale`` (an ``extra.working_scale`` dict), and a line saying what was resized ("" when
    nothing was)."""
    working = WorkingScale.from_metadata("insitu", {"working_scale": scale})
    factors: list[float] = []

    def shape(image: np.ndarray) -> tuple[int, int]:
        factor = working.size_factor(*image.shape)
        if factor != 1.0:
            factors.append(factor)
        return working_shape(*image.shape, factor)

    labeled = []
    for item in data.labeled:
        rows, cols = shape(item.image)
        if (rows, cols) != item.image.shape:
            item = dataclasses.replace(item, image=_resized_image(item.image, rows, cols),
                                       label=_resized_label(item.label, rows, cols))
        labeled.append(item)
    unlabeled = []
    for image in data.unlabeled:
        rows, cols = shape(image)
        unlabeled.append(image if (rows, cols) == image.shape
                         else _resized_image(image, rows, cols))
    if not factors:
        return data, ""
    # labeled (validation included) and unlabeled alike: not "training images", which read
    # as the training split
    what = (f"{len(data.labeled)} labeled and {len(data.unlabeled)} unlabeled images"
            if data.unlabeled else f"{len(data.labeled)} labeled images")
    note = (f"{len(factors)} of the {what} "
            f"scaled by {min(factors):.3g}" + (f"-{max(factors):.3g}" if max(factors)
                                               != min(factors) else "")
            + f" into the starting model's working scale (frames of "
              f"{working.min_frame_px or working.frame_px}-{working.frame_px} px), as the "
              "runtime runs them")
    return dataclasses.replace(data, labeled=labeled, unlabeled=unlabeled), note
