"""Geometry -> label image, by the synthetic labels' 50 %-area-coverage rule.

:func:`rasterize` evaluates the shapes of a :class:`~nwwatch.label.geometry.LabelGeometry`
at sub-pixel points and classifies every pixel with
:func:`nwwatch.synth.labels.coverage_labels` - the rasteriser that makes the synthetic
frames' labels - so a geometry that matches a synthetic frame's truth gives back its label
image (tested on synthetic frames). Rules, in order:

1. droplet (disk on the droplet's side of the facet line) over wire (polygon): a pixel is
   droplet when at least half its area is droplet, else nanowire when at least half is wire
   not covered by droplet, else the larger of the two when both together cover half, else
   background;
2. each stroke in order sets its class on the pixels it covers at least half.

Coverage is exact to about 1/288 of a pixel area (12 x 12 sub-samples near every boundary).
"""

from __future__ import annotations

import numpy as np

from nwwatch.label.geometry import (
    Inside,
    LabelGeometry,
    Stroke,
    droplet_inside,
    inside_polygon,
)
from nwwatch.synth.labels import coverage_labels, subsample_offsets

#: Sub-samples per pixel side of the first (coarse) pass; boundaries get 12 x 12.
COARSE = 4
FINE = 12


def _near_path(path: np.ndarray, radius: float, rows: np.ndarray,
               cols: np.ndarray) -> np.ndarray:
    """Points within ``radius`` of the open polyline ``path`` (N >= 1, 2).

    Each segment is measured at the points of its own box (``radius`` + 1 px round it) only:
    a brush stroke is hundreds of short segments spread over a large box (a one-second drag
    across a 4096 x 4096 frame: 60 segments in a 1950 px box), and measuring every segment at
    every point of the stroke's box took minutes and gigabytes per preview and per save."""
    rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    near = np.zeros(np.broadcast_shapes(rows.shape, cols.shape), dtype=bool)
    segments = zip(path[:-1], path[1:], strict=True) if len(path) > 1 else [(path[0], path[0])]
    pad = radius + 1.0  # beyond rounding: a point outside the box is farther than radius
    grid = (rows.ndim == 2 and cols.ndim == 2 and rows.shape[1] == 1 and cols.shape[0] == 1)
    if grid:  # rows (R, 1) x cols (1, C): the coarse pass, a sub-grid per segment
        row_values, col_values = rows[:, 0], cols[0]
    else:  # the fine pass: any points, found per segment by their sorted rows
        flat_rows, flat_cols = (a.reshape(-1) for a in np.broadcast_arrays(rows, cols))
        order = np.argsort(flat_rows, kind="stable")
        sorted_rows = flat_rows[order]
        near_flat = near.reshape(-1)
    for a, b in segments:
        lo = np.minimum(a, b) - pad
        hi = np.maximum(a, b) + pad
        if grid:
            r_idx = np.flatnonzero((row_values >= lo[0]) & (row_values <= hi[0]))
            c_idx = np.flatnonzero((col_values >= lo[1]) & (col_values <= hi[1]))
            if r_idx.size and c_idx.size:
                block = np.ix_(r_idx, c_idx)
                near[block] |= _near_segment(a, b, radius, row_values[r_idx][:, None],
                                             col_values[c_idx][None, :])
        else:
            start = np.searchsorted(sorted_rows, lo[0], side="left")
            stop = np.searchsorted(sorted_rows, hi[0], side="right")
            idx = order[start:stop]
            idx = idx[(flat_cols[idx] >= lo[1]) & (flat_cols[idx] <= hi[1])]
            if idx.size:
                near_flat[idx] |= _near_segment(a, b, radius, flat_rows[idx], flat_cols[idx])
    return near


def _near_segment(a: np.ndarray, b: np.ndarray, radius: float, rows: np.ndarray,
                  cols: np.ndarray) -> np.ndarray:
    """Points within ``radius`` of the segment from ``a`` to ``b``."""
    d = b - a
    dd = float(d @ d)
    if dd == 0:
        t = 0.0
    else:
        t = np.clip(((rows - a[0]) * d[0] + (cols - a[1]) * d[1]) / dd, 0.0, 1.0)
    dist2 = (rows - a[0] - t * d[0]) ** 2 + (cols - a[1] - t * d[1]) ** 2
    return dist2 <= radius * radius


def _shape_functions(geometry: LabelGeometry) -> tuple[Inside | None, Inside | None]:
    wire_fn = None
    if geometry.wire is not None:
        poly = np.asarray(geometry.wire, dtype=np.float64)

        def wire_fn(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            return inside_polygon(poly, r, c)
    return wire_fn, droplet_inside(geometry)


def _bbox(points: np.ndarray, pad: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    lo = np.floor(points.min(axis=0) - pad - 1).astype(int)
    hi = np.ceil(points.max(axis=0) + pad + 2).astype(int)
    return (max(lo[0], 0), min(hi[0], shape[0]), max(lo[1], 0), min(hi[1], shape[1]))


def _coarse(fn: Inside | None, box: tuple[int, int, int, int] | None,
            shape: tuple[int, int],
            window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``fn`` on the coarse sub-sample grid of ``window`` (r0, r1, c0, c1; the frame of
    ``shape`` when None), evaluated inside ``box`` (frame coordinates) only."""
    w0, w1, v0, v1 = (0, shape[0], 0, shape[1]) if window is None else window
    out = np.zeros(((w1 - w0) * COARSE, (v1 - v0) * COARSE), dtype=bool)
    if fn is None or box is None:
        return out
    r0, r1 = max(box[0], w0), min(box[1], w1)
    c0, c1 = max(box[2], v0), min(box[3], v1)
    if r0 >= r1 or c0 >= c1:
        return out
    offsets = subsample_offsets(COARSE)
    rows = (np.arange(r0, r1)[:, None] + offsets[None, :]).reshape(-1, 1)
    cols = (np.arange(c0, c1)[:, None] + offsets[None, :]).reshape(1, -1)
    out[(r0 - w0) * COARSE:(r1 - w0) * COARSE, (c0 - v0) * COARSE:(c1 - v0) * COARSE] = \
        fn(rows, cols)
    return out


def _stroke_function(stroke: Stroke) -> tuple[Inside, np.ndarray, float]:
    pts = np.asarray(stroke.points, dtype=np.float64)
    if stroke.brush_px is None:
        return (lambda r, c: inside_polygon(pts, r, c)), pts, 0.0
    radius = stroke.brush_px
    return (lambda r, c: _near_path(pts, radius, r, c)), pts, radius


def _none(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.zeros(np.broadcast_shapes(np.shape(r), np.shape(c)), dtype=bool)


def rasterize(geometry: LabelGeometry) -> np.ndarray:
    """Label image of ``geometry`` (see the module docstring for the rules).

    Returns
    -------
    uint8 (H, W) with H, W = ``geometry.shape``: 0 background, 1 nanowire, 2 droplet,
    255 unlabeled.
    """
    labels = rasterize_shapes(geometry)
    for stroke in geometry.strokes:
        _paint_stroke(labels, stroke)
    return labels


def rasterize_shapes(geometry: LabelGeometry,
                     window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Label image of ``geometry``'s droplet and wire alone (rule 1, no strokes) in
    ``window`` (r0, r1, c0, c1, within the frame; the whole frame when None).

    A pixel's class depends on the frame only within 2 px of it (where the coverage is
    refined), so pixels at least 2 px inside the window's edges (or at the frame's) are those
    of the whole frame's label image: a few pixels' classes without rasterising the frame.
    """
    shape = geometry.shape
    if window is None:
        window = (0, shape[0], 0, shape[1])
    r0, r1, c0, c1 = window
    wire_fn, drop_fn = _shape_functions(geometry)
    wire_box = None if geometry.wire is None else _bbox(np.asarray(geometry.wire), 0.0, shape)
    drop_box = None
    if geometry.droplet is not None:
        d = geometry.droplet
        drop_box = _bbox(np.asarray([d.center]), d.radius_px, shape)

    def members(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (wire_fn or _none)(r, c), (drop_fn or _none)(r, c)

    coarse = (_coarse(wire_fn, wire_box, shape, window),
              _coarse(drop_fn, drop_box, shape, window))
    labels, _, _ = coverage_labels(members, (r1 - r0, c1 - c0), coarse=coarse,
                                   factor=COARSE, fine=FINE, origin=(r0, c0))
    return labels


def _paint_stroke(labels: np.ndarray, stroke: Stroke) -> None:
    """Set ``stroke.class_id`` on the pixels of ``labels`` the stroke covers at least half.

    Coverage is computed in the stroke's bounding box only (1 px margin: every pixel outside
    it has none), so a stroke costs its own area, not the frame's: hundreds of strokes (a
    proposal's stray blobs, a user's brush work) on a 2048 x 2048 frame took minutes per
    preview when each one re-rasterised the whole frame."""
    fn, pts, pad = _stroke_function(stroke)
    r0, r1, c0, c1 = _bbox(pts, pad, labels.shape)
    if r0 >= r1 or c0 >= c1:
        return  # entirely outside the frame

    def inside(r: np.ndarray, c: np.ndarray) -> np.ndarray:  # window -> frame coordinates
        return fn(r + r0, c + c0)

    window = (r1 - r0, c1 - c0)
    coarse = _coarse(inside, (0, window[0], 0, window[1]), window)
    _, _, cover = coverage_labels(lambda r, c: (inside(r, c), _none(r, c)), window,
                                  coarse=(coarse, np.zeros_like(coarse)),
                                  factor=COARSE, fine=FINE)
    labels[r0:r1, c0:c1][cover >= 0.5] = stroke.class_id
