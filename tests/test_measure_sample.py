"""nwwatch.measure.sample reads what scipy.ndimage.map_coordinates reads, bit for bit, for
every dtype and layout its fast paths accept, and hands the rest to scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from nwwatch.measure.sample import bilinear, bilinear_grid, nearest, nearest_grid


def _points(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rows = rng.uniform(0.0, height - 1.001, (50, 9))
    cols = rng.uniform(0.0, width - 1.001, (50, 9))
    rows[:10], cols[:20] = np.round(rows[:10]), np.round(cols[:20] * 2) / 2  # centres, halves
    return rows, cols


def _scipy_bilinear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return map_coordinates(image, [rows.ravel(), cols.ravel()], output=np.float64, order=1,
                           mode="nearest").reshape(rows.shape)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.int32, np.uint32,
                                   np.int64, np.uint64])
def test_bilinear_equals_scipy_for_the_other_integer_dtypes(dtype) -> None:
    # tests/test_measure_refine.py covers (u)int16 and float32/64; the fast path takes every
    # integer kind and bool, including 64-bit values float64 cannot hold exactly.
    rng = np.random.default_rng(11)
    if dtype is np.bool_:
        image = rng.random((20, 24)) < 0.5
    else:
        info = np.iinfo(dtype)
        image = rng.integers(info.min, info.max, (20, 24), endpoint=True, dtype=dtype)
    rows, cols = _points(rng, *image.shape)
    got, want = bilinear(image, rows, cols), _scipy_bilinear(image, rows, cols)
    assert got.dtype == np.float64
    assert np.array_equal(got.view(np.int64), want.view(np.int64))


def test_bilinear_hands_swapped_bytes_borders_and_empty_inputs_to_scipy() -> None:
    rng = np.random.default_rng(12)
    image = rng.normal(0.0, 1e3, (20, 24))
    rows, cols = _points(rng, *image.shape)
    swapped = image.astype(image.dtype.newbyteorder())
    assert np.array_equal(bilinear(swapped, rows, cols), _scipy_bilinear(image, rows, cols))
    edge_rows, edge_cols = rows.copy(), cols.copy()
    edge_rows[0, 0], edge_cols[1, 1], edge_rows[2, 2] = 19.0, -0.3, 25.0  # last row, outside
    assert np.array_equal(bilinear(image, edge_rows, edge_cols),
                          _scipy_bilinear(image, edge_rows, edge_cols))
    nan_rows = rows.copy()
    nan_rows[3, 3] = np.nan  # min/max read NaN: scipy's path, whatever it returns there
    assert np.array_equal(bilinear(image, nan_rows, cols), _scipy_bilinear(image, nan_rows, cols),
                          equal_nan=True)
    empty = np.empty((0, 9))
    assert bilinear(image, empty, empty).shape == (0, 9)
    with pytest.raises(RuntimeError):  # scipy's refusal of float16 stands
        bilinear(image.astype(np.float16), rows, cols)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_nearest_equals_scipys_order_zero_inside_and_out(dtype) -> None:
    rng = np.random.default_rng(13)
    labels = rng.integers(0, 4, (20, 24)).astype(dtype)
    rows, cols = _points(rng, *labels.shape)
    rows[4, :3], cols[4, :3] = (0.5, 18.5, 19.0), (22.5, 0.5, 23.0)  # halves and the last pixel
    for r, c in ((rows, cols), (rows - 0.7, cols), (rows, cols + 1.6)):  # inside, then outside
        want = map_coordinates(labels, [r.ravel(), c.ravel()], order=0, mode="constant",
                               cval=0).reshape(r.shape)
        got = nearest(labels, r, c)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    empty = np.empty((0, 3))
    assert nearest(labels, empty, empty).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_grids_read_what_the_points_read_inside_across_and_outside_the_border(dtype) -> None:
    # The grid versions take their bounds from the parts (the extremes of a sum of two
    # parts are the sums of their extremes): the same path and the same values as the
    # points, for grids inside, on the last pixel centre, just past the border, with NaN
    # and with no points.
    rng = np.random.default_rng(17)
    image = rng.integers(0, 200, (30, 40)).astype(dtype)
    base_r, base_c = rng.uniform(12.0, 17.0, 25), rng.uniform(15.0, 25.0, 25)
    across = np.arange(-12.0, 12.0 + 1e-9, 0.25)
    cases = [(base_r, base_c, across * 0.6, across * -0.8),
             (base_r, base_c, across * 1.4, across * 0.3),  # rows reach 28.8: past 28
             (base_r, base_c, across * 1.2, across * 0.2),  # rows reach 28.4
             (base_r - 12.0, base_c, across * 0.01, across),  # rows from -0.12
             (np.array([29.0 - 0.96]), base_c[:1], np.array([0.0, 0.96]), across[:2]),
             (base_r, base_c, np.where(across == 0.0, np.nan, across), across),
             (base_r[:0], base_c[:0], across, across)]
    for rows0, cols0, rows1, cols1 in cases:
        rows, cols = rows0[:, None] + rows1, cols0[:, None] + cols1
        got = bilinear_grid(image, (rows0, rows1), (cols0, cols1))
        want = bilinear(image, rows, cols)
        assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True)
        if not np.isnan(rows).any():
            got = nearest_grid(image, (rows0, rows1), (cols0, cols1))
            want = nearest(image, rows, cols)
            assert got.dtype == want.dtype and np.array_equal(got, want)
    strided = image[:, ::2]  # not C-contiguous: indexed by (row, col), or read by scipy
    rows0, cols0, rows1, cols1 = cases[0]
    assert np.array_equal(nearest_grid(strided, (rows0, rows1), (cols0 / 2, cols1 / 2)),
                          nearest(strided, rows0[:, None] + rows1, (cols0[:, None] + cols1) / 2))
