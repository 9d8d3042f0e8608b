"""A frame or label image read at sub-pixel points (row, col), integer indices at pixel
centres: scipy.ndimage.map_coordinates' values, by array indexing where every point's
neighbours are inside the array (a fraction of scipy's per-point cost), by scipy elsewhere.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates


def nearest(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``labels`` (H, W) at the pixels nearest (``rows``, ``cols``) (same shape, ``labels``'
    dtype), 0 outside: ``map_coordinates(order=0, mode="constant", cval=0)``. Where every
    point lies within the array's pixel centres that is the pixel at ``floor(x + 0.5)``
    (scipy's order-0 rule), read by indexing at a fifth of the cost; otherwise (no points
    included: min and max have nothing to read) scipy reads them."""
    if (rows.size and rows.min() >= 0.0 and cols.min() >= 0.0
            and rows.max() <= labels.shape[0] - 1 and cols.max() <= labels.shape[1] - 1):
        return labels[np.floor(rows + 0.5).astype(np.intp), np.floor(cols + 0.5).astype(np.intp)]
    return map_coordinates(labels, [rows.ravel(), cols.ravel()], order=0, mode="constant",
                           cval=0).reshape(rows.shape)


def bilinear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float64 ``image`` (H, W) at (``rows``, ``cols``) (same shape) by linear interpolation:
    ``map_coordinates(order=1, mode="nearest", output=np.float64)``. Where every point has
    its four neighbours inside a C-contiguous array this is scipy's own arithmetic, done by
    array operations at about half its cost: per point, the weights ``1 - f`` and
    ``1 - (1 - f)`` of the fractional part ``f`` on either axis, each neighbour's value times
    its row weight times its column weight, summed from 0 in scipy's order (equal to the last
    bit: tests/test_measure_refine.py and tests/test_measure_sample.py compare them);
    otherwise (another layout, dtype or byte order, a point near or past the border, NaN, no
    points at all) scipy reads them, and refuses what it refuses (float16)."""
    height, width = image.shape
    if not (rows.size and image.flags.c_contiguous and image.dtype.isnative
            and (image.dtype.kind in "biu" or image.dtype in (np.float32, np.float64))
            and rows.min() >= 0.0 and cols.min() >= 0.0
            and rows.max() < height - 1 and cols.max() < width - 1):
        return map_coordinates(image, [rows.ravel(), cols.ravel()], output=np.float64,
                               order=1, mode="nearest").reshape(rows.shape)
    r0, c0 = np.floor(rows), np.floor(cols)
    w_r0 = 1.0 - (rows - r0)
    w_c0 = 1.0 - (cols - c0)
    w_r1, w_c1 = 1.0 - w_r0, 1.0 - w_c0
    index = r0.astype(np.intp)
    index *= width
    index += c0.astype(np.intp)
    flat = image.ravel()
    total = flat.take(index) * w_r0
    total *= w_c0
    total += 0.0  # scipy's sum starts at +0.0: a -0.0 term becomes +0.0
    # The other three neighbours: (r0, c0 + 1), (r0 + 1, c0), (r0 + 1, c0 + 1).
    for step, w_r, w_c in ((1, w_r0, w_c1), (width - 1, w_r1, w_c0), (1, w_r1, w_c1)):
        index += step
        term = flat.take(index) * w_r
        term *= w_c
        total += term
    return total
