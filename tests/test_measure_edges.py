"""nwwatch.measure.edges: the outline points of a mask and of a probability map's iso-line,
as the plain arithmetic gives them (the faster forms keep every bit)."""

from __future__ import annotations

import numpy as np
import pytest

from nwwatch.measure.edges import BoundaryPoints, iso_boundary_points, mask_boundary_points


def _same(a: BoundaryPoints, b: BoundaryPoints) -> None:
    for name in ("points", "outward", "inside", "outside"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name  # bit for bit, -0.0 included


def _map(rng: np.random.Generator, dtype) -> np.ndarray:
    p = rng.random((30, 40)).astype(dtype)
    p[5:8, 5:9] = 0.5  # values on the level
    p[10, 10:14] = np.nextafter(np.float32(0.5), np.float32(1.0))  # just above it in float32
    p[12, 3] = np.nan
    return p


@pytest.mark.parametrize("offset", [(0, 0), (7, -3)])
def test_a_float32_map_gives_the_points_of_its_float64_copy(offset) -> None:
    # A float32 map is compared with a level float32 holds in float32, and only the crossings'
    # values are converted: the points, steps and pixels of the whole map converted first.
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float16, np.uint8):
        p = _map(rng, dtype) if dtype != np.uint8 else rng.integers(0, 3, (30, 40), np.uint8)
        for level in (0.5, 0.3, 1.0, float(np.float32(0.3))):
            _same(iso_boundary_points(p, level, offset),
                  iso_boundary_points(p.astype(np.float64), level, offset))


@pytest.mark.parametrize("offset", [(0, 0), (7, -3)])
def test_mask_points_are_the_pixel_edge_midpoints(offset) -> None:
    # The mask's points by column (+0.5 along each pair's step) equal the general
    # interpolation's at a crossing halfway (a 0/1 map at level 0.5), and each outside pixel
    # is its inside pixel plus the outward step.
    rng = np.random.default_rng(6)
    mask = rng.random((30, 40)) < 0.4
    got = mask_boundary_points(mask, offset)
    _same(got, iso_boundary_points(mask.astype(np.float64), 0.5, offset))
    assert len(got) > 100
    assert np.array_equal(got.outside, got.inside + got.outward.astype(np.int64))
    assert np.array_equal(np.abs(got.outward).sum(axis=1), np.ones(len(got)))
