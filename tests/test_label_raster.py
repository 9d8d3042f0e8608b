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
