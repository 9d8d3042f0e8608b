"""Strokes are rasterised in their own bounding box: same pixels, a stroke's cost its area."""

from __future__ import annotations

import numpy as np

import nwwatch.label.raster as raster
from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE, UNLABELED
from nwwatch.label.geometry import Circle, LabelGeometry, Stroke
from nwwatch.synth.labels import coverage_labels


def _whole_frame_cover(stroke: Stroke, shape: tuple[int, int]) -> np.ndarray:
    """The stroke's coverage computed over the whole frame (the reference)."""
    fn, _, _ = raster._stroke_function(stroke)
    _, _, cover = coverage_labels(lambda r, c: (fn(r, c), raster._none(r, c)), shape,
                                  factor=raster.COARSE, fine=raster.FINE)
    return cover


def _strokes(rng: np.random.Generator, shape: tuple[int, int], n: int) -> tuple[Stroke, ...]:
    """Polygons and brush strokes anywhere, some across the frame's border or outside it."""
    classes = (BACKGROUND, NANOWIRE, DROPLET, UNLABELED)
    strokes = []
    for k in range(n):
        centre = rng.uniform(-10, np.asarray(shape) + 10)
        points = tuple(map(tuple, centre + rng.normal(0, 6, (int(rng.integers(3, 7)), 2))))
        brush = float(rng.uniform(0.6, 5)) if k % 2 else None
        strokes.append(Stroke(classes[k % 4], points[:2] if brush and k % 4 == 1 else points,
                              brush))
    return tuple(strokes)


def test_strokes_in_their_box_paint_the_pixels_of_the_whole_frame_rule():
    rng = np.random.default_rng(7)
    shape = (61, 83)
    base = LabelGeometry(shape, Circle((30.0, 40.0), 18.3),
                         ((40.0, -5.0), (40.0, 90.0), (70.0, 90.0), (70.0, -5.0)))
    strokes = _strokes(rng, shape, 40)
    expected = raster.rasterize(base)
    for stroke in strokes:
        expected[_whole_frame_cover(stroke, shape) >= 0.5] = stroke.class_id
    got = raster.rasterize(base.replace(strokes=strokes))
    assert np.array_equal(got, expected)


def test_a_stroke_is_rasterised_in_its_bounding_box_not_the_whole_frame(monkeypatch):
    # 2048 x 2048 frames with a few hundred strokes (a proposal's stray blobs, brush work)
    # took minutes per preview and per save when every stroke re-rasterised the frame.
    shapes = []

    def recording(members, shape, **kwargs):
        shapes.append(tuple(shape))
        return coverage_labels(members, shape, **kwargs)

    monkeypatch.setattr(raster, "coverage_labels", recording)
    shape = (2048, 2048)
    strokes = (Stroke(UNLABELED, ((100.0, 100.0), (100.0, 120.0), (118.0, 110.0))),
               Stroke(DROPLET, ((1500.0, 30.0), (1510.0, 45.0)), brush_px=3.0))
    labels = raster.rasterize(LabelGeometry(shape, strokes=strokes))
    assert shapes[0] == shape  # droplet and wire: one pass over the frame
    assert all(h * w < 40 * 40 for h, w in shapes[1:]) and len(shapes) == 3
    assert labels[105, 108] == UNLABELED and labels[1505, 38] == DROPLET
    assert np.count_nonzero(labels) < 600


def _numpy_block_mean(mask: np.ndarray, factor: int) -> np.ndarray:
    h, w = mask.shape[0] // factor, mask.shape[1] // factor
    blocks = mask[: h * factor, : w * factor].reshape(h, factor, w, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _broadcast_inside_polygon(poly: np.ndarray, rows: np.ndarray,
                              cols: np.ndarray) -> np.ndarray:
    """The even-odd test with every edge evaluated on every point (the reference)."""
    inside = np.zeros(np.broadcast_shapes(np.shape(rows), np.shape(cols)), dtype=bool)
    r0, c0 = poly[:, 0], poly[:, 1]
    for a_r, a_c, b_r, b_c in zip(r0, c0, np.roll(r0, -1), np.roll(c0, -1), strict=True):
        if a_r != b_r:
            col_at = a_c + (rows - a_r) * ((b_c - a_c) / (b_r - a_r))
            inside ^= ((a_r > rows) != (b_r > rows)) & (cols < col_at)
    return inside


def test_block_means_and_polygon_grids_are_those_of_the_reference():
    from nwwatch.label.geometry import inside_polygon
    from nwwatch.synth.labels import block_mean

    rng = np.random.default_rng(11)
    for factor in (1, 2, 3, 4, 12, 16):
        for _ in range(10):
            h, w = (int(v) for v in rng.integers(1, 30, 2))
            mask = rng.random((h * factor + int(rng.integers(0, factor)),
                               w * factor + int(rng.integers(0, factor)))) < rng.random()
            np.testing.assert_array_equal(block_mean(mask, factor),
                                          _numpy_block_mean(mask, factor))
            np.testing.assert_array_equal(block_mean(mask[:, ::-1], factor),
                                          _numpy_block_mean(mask[:, ::-1], factor))
    for _ in range(40):
        poly = rng.uniform(-5, 45, (int(rng.integers(3, 12)), 2))
        poly[1, 0] = poly[0, 0]  # a horizontal edge
        rows = (np.arange(-2, 43)[:, None] + rng.uniform(-0.5, 0.5, 4)).reshape(-1, 1)
        cols = np.round(rng.uniform(-2, 43, (1, 90)), 1)
        expected = _broadcast_inside_polygon(poly, rows, cols)
        np.testing.assert_array_equal(inside_polygon(poly, rows, cols), expected)
        flat_r, flat_c = np.broadcast_arrays(rows, cols)
        np.testing.assert_array_equal(
            inside_polygon(poly, flat_r.ravel(), flat_c.ravel()), expected.ravel())


def test_the_coarse_pass_of_a_2048_frame_is_the_reference_grid():
    """The coarse pass evaluates each polygon edge only on the grid rows it crosses, and the
    block means come from OpenCV (the labelling page's preview and save of a 4096² frame took
    6.7 s and 5.7 s evaluating every edge on every sub-sample: docs/labelling.md): the same
    grid and fractions as the reference on a 2048² frame."""
    from nwwatch.label.geometry import inside_polygon
    from nwwatch.synth.labels import block_mean

    offsets = (np.arange(raster.COARSE) + 0.5) / raster.COARSE - 0.5
    rows = (np.arange(2048)[:, None] + offsets).reshape(-1, 1)
    cols = (np.arange(2048)[:, None] + offsets).reshape(1, -1)
    wire = np.array([[600.0, -0.5], [1400.0, -0.5], [1380.0, 900.0], [1250.0, 1100.0],
                     [700.0, 1080.0], [620.0, 850.0]])
    grid = inside_polygon(wire, rows, cols)
    np.testing.assert_array_equal(grid, _broadcast_inside_polygon(wire, rows, cols))
    np.testing.assert_array_equal(block_mean(grid, raster.COARSE),
                                  _numpy_block_mean(grid, raster.COARSE))


def _every_segment_everywhere(path: np.ndarray, radius: float, rows: np.ndarray,
                              cols: np.ndarray) -> np.ndarray:
    """Points within ``radius`` of the polyline, every segment measured at every point."""
    best = np.full(np.broadcast_shapes(np.shape(rows), np.shape(cols)), np.inf)
    for a, b in zip(path[:-1], path[1:], strict=True) if len(path) > 1 else [(path[0],) * 2]:
        d = b - a
        dd = float(d @ d)
        t = 0.0 if dd == 0 else np.clip(((rows - a[0]) * d[0] + (cols - a[1]) * d[1]) / dd,
                                         0.0, 1.0)
        best = np.minimum(best, (rows - a[0] - t * d[0]) ** 2 + (cols - a[1] - t * d[1]) ** 2)
    return best <= radius * radius


def test_a_long_brush_stroke_paints_the_pixels_of_every_segment_measured_everywhere():
    # A one-second brush drag across a 4096 x 4096 frame (60 points, a 1950 px box) took
    # 170 s and 3.7 GB to preview, and as long to save, when every segment was measured at
    # every sub-sample of the stroke's box. Here: the same pixels as that rule, and a
    # 60-point stroke across a 1024 x 1024 frame in less memory than that rule's 0.69 GB
    # (and 30 s; each segment in its own box: 0.2 GB, 0.8 s).
    import tracemalloc

    rng = np.random.default_rng(11)
    shape = (97, 131)
    path = np.cumsum(rng.normal(0, 4, (40, 2)), axis=0) + (50.0, 60.0)  # a scribble
    strokes = (Stroke(UNLABELED, tuple(map(tuple, path)), brush_px=2.7),
               Stroke(DROPLET, ((10.0, -3.0), (10.0, 140.0)), brush_px=1.5),
               Stroke(NANOWIRE, ((90.5, 20.0),), brush_px=3.0))
    got = raster.rasterize(LabelGeometry(shape, strokes=strokes))
    expected = np.zeros(shape, np.uint8)
    for stroke in strokes:
        pts = np.asarray(stroke.points, dtype=np.float64)
        _, _, cover = coverage_labels(
            lambda r, c, pts=pts, s=stroke: (_every_segment_everywhere(pts, s.brush_px, r, c),
                                             raster._none(r, c)),
            shape, factor=raster.COARSE, fine=raster.FINE)
        expected[cover >= 0.5] = stroke.class_id
    assert np.array_equal(got, expected)
    assert np.count_nonzero(got == UNLABELED) > 500

    side = 1024
    diagonal = np.linspace(20.0, side - 20.0, 60)
    across = Stroke(UNLABELED, tuple(zip(diagonal, diagonal, strict=True)), brush_px=6.0)
    tracemalloc.start()
    try:
        labels = raster.rasterize(LabelGeometry((side, side), strokes=(across,)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels[side // 2, side // 2] == UNLABELED and labels[20, side - 20] == BACKGROUND
    assert peak < 400e6, peak
