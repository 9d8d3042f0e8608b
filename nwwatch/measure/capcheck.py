"""Does the labelled droplet have the shape of the cap that was measured?

The angle comes from a circle fitted to the droplet's free surface and a facet line fitted to
the wire/droplet interface. Both can agree with the labels while the labels' droplet is not a
cap: a network that calls a stretch of wire "droplet" draws its interface far into the wire,
and the circle, fitted to the true free surface with the straight wire edges rejected as
outliers, still meets that line. The droplet mask then reaches beyond the circle near the
contact line, where a cap has nothing. On exact labels of every geometry of the benchmark no
droplet pixel lies beyond the cap.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Droplet pixels closer than this to the circle or the facet line are not counted: a binary
#: mask's pixel centres lie within half a diagonal of the true outline.
MIN_TOLERANCE_PX = 1.5
#: ... nor those within this many times the circle fit's residual RMS: drawn or predicted
#: outlines that wiggle already enter sigma through the outline's scatter.
TOLERANCE_RMS = 3.0
#: Fractional bits of the coordinates handed to OpenCV's rasteriser.
_SHIFT = 4


#: How far inside the pixel-centre test OpenCV's rasterised circle and half plane are drawn
#: (px): they leave pixel centres up to about half a pixel (0.8 px on a circle of R = 1000 px,
#: drawn as a polygon) on the wrong side.
_RASTER_MARGIN_PX = 1.0


def cap_excess_px(
    droplet: np.ndarray,
    offset: tuple[int, int],
    center: np.ndarray,
    radius_px: float,
    point: np.ndarray,
    normal: np.ndarray,
    half_chord_px: float,
    residual_rms_px: float,
) -> float:
    """Mean thickness (px) of the labelled droplet beyond the measured cap, along its base.

    ``droplet`` bool (h, w): the measured droplet's filled mask, whose pixel (0, 0) is the
    image's pixel ``offset`` (row, col). ``center`` (2,) (row, col) of the fitted circle and
    ``point`` (2,) on the facet line, in the same image coordinates, ``normal`` (2,) the
    facet's unit normal pointing into the droplet; ``radius_px``, ``half_chord_px`` (a) and the
    circle fit's ``residual_rms_px`` in pixels. Integer pixel centres.

    Counts the droplet pixels on the droplet's side of the facet line and outside the circle,
    both by more than max(:data:`MIN_TOLERANCE_PX`, :data:`TOLERANCE_RMS` x residual RMS),
    tested on the pixel centres (OpenCV's rasterised circle and half plane, 1 px inside the
    test's, only pass the few pixels to test: drawn alone they decided pixels 0.15-0.3 px
    beyond the test's circle one way as the frame was drawn and the other way turned or
    mirrored), and divides by the chord 2a (at least 1 px: a circle that only touches the
    line still gives a count). Below
    the line nothing is counted: a wire tilted out of the image plane shows droplet there,
    under its elliptical facet.
    """
    tol = max(MIN_TOLERANCE_PX, TOLERANCE_RMS * residual_rms_px)
    beyond = droplet.astype(np.uint8)  # a copy: the cap is erased from it
    h, w = beyond.shape
    scale = 1 << _SHIFT
    # Erase the circle grown by the tolerance less a pixel, then the half plane up to that
    # far above the facet line: OpenCV rasterises both at 1/16 px (its ``shift``), in C,
    # within a pixel of the pixel centres' test, so what is left holds every pixel beyond
    # and few others; those are tested on their centres.
    inner = _RASTER_MARGIN_PX
    cx, cy = float(center[1] - offset[1]), float(center[0] - offset[0])
    cv2.circle(beyond, (round(cx * scale), round(cy * scale)),
               max(round((radius_px + tol - inner) * scale), 0),
               0, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)
    n = np.asarray(normal, dtype=float)
    d = np.array([-n[1], n[0]])
    far = 2.0 * (h + w)
    base = np.array([point[0] - offset[0], point[1] - offset[1]]) + (tol - inner) * n
    corners = [base + far * d, base - far * d, base - far * d - far * n, base + far * d - far * n]
    poly = np.array([[round(q[1] * scale), round(q[0] * scale)] for q in corners], np.int32)
    cv2.fillConvexPoly(beyond, poly, 0, lineType=cv2.LINE_8, shift=_SHIFT)
    rows, cols = np.nonzero(beyond)
    if rows.size == 0:
        return 0.0
    r = rows + float(offset[0])
    c = cols + float(offset[1])
    outside = np.hypot(r - float(center[0]), c - float(center[1])) > radius_px + tol
    above = (r - float(point[0])) * n[0] + (c - float(point[1])) * n[1] > tol
    return float(np.count_nonzero(outside & above)) / max(2.0 * half_chord_px, 1.0)


def cap_excess_sigma_deg(excess_px: float, half_chord_px: float) -> float:
    """Systematic 1-sigma (degrees) for droplet labels beyond the cap: ``excess_px`` of mean
    thickness along the base, taken as that much doubt about where the facet line lies (a
    shift ``d`` of the line costs ``d / a`` rad). It is a lower bound: the labels beyond the
    cap are a thin sliver of what a misplaced line leaves out."""
    return math.degrees(excess_px / max(half_chord_px, 0.5))


#: Triple points nearer background than this are on the outline (true labels: at most 2.2 px,
#: the distance transform counts to the nearest pixel centre).
TRIPLE_TOLERANCE_PX = 2.5
#: Depths are read up to this (px): deeper, the term refuses the angle at any size below
#: a = 500 px anyway.
TRIPLE_WINDOW_PX = 32


def _union_window(wire: np.ndarray, droplet: np.ndarray, i0: int, j0: int, i1: int,
                  j1: int) -> np.ndarray:
    """uint8 rows ``i0:i1``, columns ``j0:j1`` of ``wire | droplet`` (bool (h, w)) with one
    pixel of background around it (index 0 is that pixel), built for the window alone.
    Where the crop meets the frame's border that pixel lies outside the frame, farther than
    the border: :func:`triple_point_depth_px` leaves such a depth out."""
    window = np.zeros((i1 - i0, j1 - j0), np.uint8)
    ci0, cj0 = max(i0 - 1, 0), max(j0 - 1, 0)
    ci1, cj1 = min(i1 - 1, wire.shape[0]), min(j1 - 1, wire.shape[1])
    if ci1 > ci0 and cj1 > cj0:
        np.bitwise_or(wire[ci0:ci1, cj0:cj1], droplet[ci0:ci1, cj0:cj1],
                      out=window[ci0 + 1 - i0 : ci1 + 1 - i0, cj0 + 1 - j0 : cj1 + 1 - j0]
                      .view(bool))
    return window


def triple_point_depth_px(
    wire: np.ndarray,
    droplet: np.ndarray,
    offset: tuple[int, int],
    frame_shape: tuple[int, int],
    triple_points: tuple[np.ndarray, np.ndarray],
) -> float | None:
    """How deep (px) the triple points lie inside the measured wire and droplet.

    A triple point is where the droplet's outline, the wire's edge and the background meet, so
    it lies on the outline of the union of the two. ``wire``, ``droplet`` bool (h, w): the
    measured components' filled masks, whose pixel (0, 0) is the image's pixel ``offset``
    (row, col), the frame being ``frame_shape`` (H, W); ``triple_points`` two (row, col)
    points in image coordinates. For each triple point inside the frame: the distance from
    the pixel centre nearest to it (of two halfway, the shallower) to the nearest background
    pixel centre (the exact
    Euclidean distance transform's value there, searched in a window of
    :data:`TRIPLE_WINDOW_PX` about it; deeper reads as that much); the
    frame's border counts as unknown, not background, and a point nearer the border than to
    any background is left out (a point in the frame beyond the crop lies in background: 0).
    Returns the smaller of the decidable distances, or None.
    """
    r0, c0 = offset
    depths = []
    for point in triple_points:
        row, col = float(point[0]), float(point[1])
        border = min(row, frame_shape[0] - 1 - row, col, frame_shape[1] - 1 - col)
        if border < 0:
            continue
        # The nearest pixel centre; a point halfway between two (a facet on a pixel edge)
        # reads the shallower of them, the same whichever way the frame is turned.
        depth = min(_depth_at(wire, droplet, i - r0 + 1, j - c0 + 1)
                    for i in _nearest_centres(row) for j in _nearest_centres(col))
        if depth < border:
            depths.append(depth)
    return min(depths) if depths else None


def _nearest_centres(x: float) -> tuple[int, ...]:
    """The pixel index nearest to coordinate ``x``, or both when it lies halfway between two
    (within 1e-6 px: a point computed on a pixel edge)."""
    below = math.floor(x)
    if abs(x - below - 0.5) < 1e-6:
        return below, below + 1
    return (math.floor(x + 0.5),)


def _depth_at(wire: np.ndarray, droplet: np.ndarray, i: int, j: int) -> float:
    """Distance (px) from pixel (i, j) of the union of ``wire`` and ``droplet`` padded by one
    pixel of background to its nearest background pixel centre, at most
    :data:`TRIPLE_WINDOW_PX`; 0 outside the padded crop (background)."""
    h, w = wire.shape
    k = TRIPLE_WINDOW_PX
    if not (0 <= i < h + 2 and 0 <= j < w + 2):
        return 0.0  # in the frame beyond the crop: background
    # Any background nearer than k lies in this window (the disc fits in the square).
    wi0, wj0 = max(i - k, 0), max(j - k, 0)
    window = _union_window(wire, droplet, wi0, wj0, min(i + k + 1, h + 2),
                           min(j + k + 1, w + 2))
    if window.all():
        return float(k)
    # The exact (precise) distance transform's value at the point: the root of the squared
    # distance to the nearest background pixel centre of the window, rounded once to
    # float32; found among the window's background pixels directly (a fifth of
    # cv2.distanceTransform's time for the one pixel read).
    rows, cols = np.divmod(np.flatnonzero(window == 0), window.shape[1])
    squared = int(((rows - (i - wi0)) ** 2 + (cols - (j - wj0)) ** 2).min())
    return min(float(np.sqrt(np.float32(squared))), float(k))


def triple_depth_sigma_deg(depth_px: float | None, half_chord_px: float) -> float:
    """Systematic 1-sigma (degrees) for triple points inside the wire and droplet: the depth
    beyond :data:`TRIPLE_TOLERANCE_PX`, taken as that much doubt about where the facet line
    lies (``d / a`` rad)."""
    if depth_px is None:
        return 0.0
    return math.degrees(max(depth_px - TRIPLE_TOLERANCE_PX, 0.0) / max(half_chord_px, 0.5))
