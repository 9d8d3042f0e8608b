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
    return _nearest(labels, rows, cols, *_bounds(rows, cols))


def nearest_grid(labels: np.ndarray, rows: tuple[np.ndarray, np.ndarray],
                 cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """:func:`nearest` at the (P, M) points ``rows[0][:, None] + rows[1]``, ``cols[0][:, None]
    + cols[1]`` of float64 (P,) and (M,) parts: their extremes are those of the parts'
    extremes added (rounding is monotonic), without a pass over the grid."""
    return _nearest(labels, rows[0][:, None] + rows[1], cols[0][:, None] + cols[1],
                    *_grid_bounds(rows, cols))


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
    return _bilinear(image, rows, cols, *_bounds(rows, cols))


def bilinear_grid(image: np.ndarray, rows: tuple[np.ndarray, np.ndarray],
                  cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """:func:`bilinear` at the grid of :func:`nearest_grid`."""
    return _bilinear(image, rows[0][:, None] + rows[1], cols[0][:, None] + cols[1],
                     *_grid_bounds(rows, cols))


_NO_BOUNDS = (np.nan, np.nan, np.nan, np.nan)  # compares False: scipy reads the points


def _bounds(rows: np.ndarray, cols: np.ndarray) -> tuple[float, float, float, float]:
    """(min row, max row, min col, max col); NaN for no points or where one is NaN."""
    if not rows.size:
        return _NO_BOUNDS
    return rows.min(), rows.max(), cols.min(), cols.max()


def _grid_bounds(rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[float, float, float, float]:
    """:func:`_bounds` of the grid ``parts[0][:, None] + parts[1]``: ``min a + min b`` is
    the smallest sum (a rounded sum never falls below that of smaller terms), likewise the
    largest; NaN propagates through min and max."""
    if not (rows[0].size and rows[1].size):
        return _NO_BOUNDS
    return (rows[0].min() + rows[1].min(), rows[0].max() + rows[1].max(),
            cols[0].min() + cols[1].min(), cols[0].max() + cols[1].max())


def _nearest(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, row_min: float,
             row_max: float, col_min: float, col_max: float) -> np.ndarray:
    if (row_min >= 0.0 and col_min >= 0.0
            and row_max <= labels.shape[0] - 1 and col_max <= labels.shape[1] - 1):
        if not labels.flags.c_contiguous:
            return labels[np.floor(rows + 0.5).astype(np.intp),
                          np.floor(cols + 0.5).astype(np.intp)]
        # One flat index and np.take: the same pixels as indexing by (row, col) arrays.
        rows, cols = rows + 0.5, cols + 0.5
        index = np.floor(rows, out=rows).astype(np.intp)
        index *= labels.shape[1]
        index += np.floor(cols, out=cols).astype(np.intp)
        return labels.ravel().take(index)
    return map_coordinates(labels, [rows.ravel(), cols.ravel()], order=0, mode="constant",
                           cval=0).reshape(rows.shape)


def _bilinear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, row_min: float,
              row_max: float, col_min: float, col_max: float) -> np.ndarray:
    height, width = image.shape
    if not (image.flags.c_contiguous and image.dtype.isnative
            and (image.dtype.kind in "biu" or image.dtype in (np.float32, np.float64))
            and row_min >= 0.0 and col_min >= 0.0
            and row_max < height - 1 and col_max < width - 1):
        return map_coordinates(image, [rows.ravel(), cols.ravel()], output=np.float64,
                               order=1, mode="nearest").reshape(rows.shape)
    r0, c0 = np.floor(rows), np.floor(cols)
    index = r0.astype(np.intp)
    index *= width
    index += c0.astype(np.intp)
    # The weights 1 - (x - floor(x)) in the floors' arrays, then 1 - those.
    w_r0 = np.subtract(1.0, np.subtract(rows, r0, out=r0), out=r0)
    w_c0 = np.subtract(1.0, np.subtract(cols, c0, out=c0), out=c0)
    w_r1, w_c1 = 1.0 - w_r0, 1.0 - w_c0
    flat = image.ravel()
    total = flat.take(index) * w_r0
    total *= w_c0
    total += 0.0  # scipy's sum starts at +0.0: a -0.0 term becomes +0.0
    # The other three neighbours: (r0, c0 + 1), (r0 + 1, c0), (r0 + 1, c0 + 1).
    term = np.empty_like(total)
    for step, w_r, w_c in ((1, w_r0, w_c1), (width - 1, w_r1, w_c0), (1, w_r1, w_c1)):
        index += step
        np.multiply(flat.take(index), w_r, out=term)
        term *= w_c
        total += term
    return total
