"""Structuring elements that reach equally far in every direction of the pixel grid.

OpenCV's ``MORPH_ELLIPSE`` of an odd square size reaches the pixel offsets (+-1, +-r) but not
(+-r, +-1), so a label image turned by 90 degrees or transposed would be dilated differently
and measured differently. :func:`disc` is that ellipse joined with its transpose: the same
under every turn and mirror of the grid.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np


@functools.lru_cache(maxsize=32)
def disc(radius_px: int) -> np.ndarray:
    """uint8 (2r + 1, 2r + 1) structuring element of radius ``radius_px`` (>= 0): OpenCV's
    ellipse of that size or its transpose, 1 inside. Read-only (cached and shared)."""
    size = 2 * int(radius_px) + 1
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    kernel = np.maximum(ellipse, ellipse.T)
    kernel.flags.writeable = False
    return kernel
