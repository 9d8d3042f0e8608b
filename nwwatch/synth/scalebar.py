"""Burned-in scale bar: a white bar with its length written above it, in a free corner."""

from __future__ import annotations

import cv2
import numpy as np

from nwwatch.classes import BACKGROUND

_NICE_NM = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def burn_scale_bar(
    image: np.ndarray, labels: np.ndarray, pixel_size_nm: float, corner_seed: int
) -> bool:
    """Draw a scale bar into ``image`` (uint16 (H, W), modified in place) in a corner where
    ``labels`` is all background (with a margin), so that no object is hidden and the bar's
    pixels stay labelled background. ``corner_seed`` orders the corners tried, so the frames of
    a video keep their bar in place. Returns False (nothing drawn) when no corner is free."""
    h, w = image.shape
    target_nm = 0.18 * w * pixel_size_nm
    length_nm = min(_NICE_NM, key=lambda v: abs(np.log(v / target_nm)))
    bar_px = max(4, round(length_nm / pixel_size_nm))
    bar_h = max(2, round(h / 120))
    text = f"{length_nm:g} nm"
    scale = max(0.3, 0.9 * h / 512)
    thick = max(1, round(h / 300))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    box_w = max(bar_px, tw) + 4
    box_h = bar_h + th + base + 6
    margin = max(3, round(0.03 * w))
    if box_w + 2 * margin > w or box_h + 2 * margin > h:
        return False
    corners = [(h - margin - box_h, margin), (h - margin - box_h, w - margin - box_w),
               (margin, margin), (margin, w - margin - box_w)]
    order = np.random.default_rng(corner_seed).permutation(len(corners))
    white = int(min(65535, max(1.0, float(np.percentile(image, 99.5))) * 1.3))
    for i in order:
        top, left = corners[i]
        window = labels[max(0, top - 4): top + box_h + 4, max(0, left - 4): left + box_w + 4]
        if np.any(window != BACKGROUND):
            continue
        mask = np.zeros((h, w), np.uint8)
        mask[top + box_h - bar_h: top + box_h, left: left + bar_px] = 255
        cv2.putText(mask, text, (left, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, 255,
                    thick, cv2.LINE_AA)
        alpha = mask.astype(np.float32) / 255.0
        blended = image.astype(np.float32) * (1.0 - alpha) + white * alpha
        image[...] = np.rint(blended).astype(image.dtype)
        return True
    return False
