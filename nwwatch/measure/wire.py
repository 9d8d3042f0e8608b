"""The wire's in-plane axis and width, reported next to the angle but never used by it.

Coordinates are (row, col) pixels of the crop, integer indices at pixel centres. The axis is
the principal direction of the wire mask when the visible wire is elongated (it serves as
the facet-orientation prior for interfaces too short to orient themselves). The width is
the separation of straight-line fits to the two side edges in a band below the facet, when
both edges are visible there (not outside the frame, as for a wire filling a corner).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.measure import smallmath
from nwwatch.measure.edges import BoundaryPoints

#: Wire status values.
MEASURED, AXIS_ONLY, NOT_MEASURED = "measured", "axis_only", "not_measured"
#: A side edge runs at most this steeply against the mask's long direction (flared walls
#: reach about 27 deg, plus the long direction's own error); a steeper "edge" is part of the
#: facet, a step or the frame's cut, and gives no width.
MAX_EDGE_SLOPE = math.tan(math.radians(35.0))
#: Side edges spanning less than this along the axis (px) give no direction: their width is
#: taken only when they bound at least MIN_EDGE_EXTENT_SHARE of the wire's extent across the
#: band (else they are the two sides of a step or a corner).
MIN_EDGE_SPAN_PX = 8.0
MIN_EDGE_EXTENT_SHARE = 0.8


@dataclass(frozen=True)
class WireGeometry:
    """``axis`` unit (2,) growth direction (towards the droplet) or None; ``width_px`` or
    None; ``status`` one of ``measured``, ``axis_only``, ``not_measured``; ``note`` why a
    part is missing."""

    axis: np.ndarray | None
    width_px: float | None
    status: str
    note: str = ""


def _moments_axis(mom: dict) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(centroid, principal direction, elongation = eigenvalue ratio) from ``cv2.moments``."""
    if mom["m00"] < 6:
        return None
    centre = np.array([mom["m01"], mom["m10"]]) / mom["m00"]  # (row, col)
    cov = np.array([[mom["mu02"], mom["mu11"]], [mom["mu11"], mom["mu20"]]]) / mom["m00"]
    low, high, _, major = smallmath.symmetric_eig2(cov)
    return centre, major, float(high / max(low, 1e-9))


def _robust_line(t: np.ndarray, lat: np.ndarray) -> tuple[float, float]:
    """lat = c + m t with points beyond max(0.75 px, 3 robust sigma) dropped: (c, m)."""
    keep = np.ones(t.size, dtype=bool)
    c = m = 0.0
    for _ in range(3):
        design = np.column_stack([np.ones(int(np.count_nonzero(keep))), t[keep]])
        if np.ptp(t[keep]) > 0:
            c, m = smallmath.lstsq(design, lat[keep]).tolist()
        else:  # all points at one position along the edge: the minimum-norm solution
            (c, m), *_ = np.linalg.lstsq(design, lat[keep], rcond=None)
        res = lat - (c + m * t)
        new = np.abs(res) <= max(0.75, 3.0 * 1.4826 * smallmath.median(np.abs(res[keep])))
        if np.count_nonzero(new) < 3 or np.array_equal(new, keep):
            break
        keep = new
    return float(c), float(m)


def measure_wire(
    wire: np.ndarray,
    wire_pts: BoundaryPoints,
    towards_droplet: np.ndarray,
    facet_point: np.ndarray | None,
    on_border: np.ndarray,
    facet_normal: np.ndarray | None = None,
    moments: dict | None = None,
    droplet: np.ndarray | None = None,
) -> WireGeometry:
    """Axis and width of ``wire`` (bool crop mask).

    ``wire_pts`` its boundary points; ``towards_droplet`` (2,) orients the axis;
    ``facet_point`` (2,) and ``facet_normal`` (2,, into the droplet; default the axis) place
    the facet line (the band of side edges starts 2 px below it) or None;
    ``on_border`` (N,) True for boundary points on the image border (not side edges);
    ``moments`` the wire's ``cv2.moments`` when already known (else from ``wire``);
    ``droplet`` (bool crop mask of ``wire``'s shape): boundary points with droplet outside
    are the interface, left out of the side edges' line fits (an interface that bows into
    the wire reaches below the facet line, and its steps face sideways).
    """
    if moments is None:
        moments = cv2.moments(wire.view(np.uint8), binaryImage=True)
    mom = _moments_axis(moments)
    if mom is None:
        return WireGeometry(None, None, NOT_MEASURED, "the wire region is too small")
    centre, axis, elongation = mom
    if elongation < 2.0:  # length < 1.4x width: no axis to read (a corner, a stub)
        return WireGeometry(None, None, NOT_MEASURED,
                            "the visible wire is not elongated (no axis)")
    if axis @ towards_droplet < 0:
        axis = -axis
    if facet_point is None:
        return WireGeometry(axis, None, AXIS_ONLY, "no facet to measure the width at")
    left_n = np.array([-axis[1], axis[0]])
    rel = wire_pts.points - facet_point
    t, lat = rel @ axis, rel @ left_n
    depth = -(rel @ (axis if facet_normal is None else facet_normal))
    near = (depth > 2.0) & (depth < 12.0)
    half = 0.5 * float(np.ptp(lat[near])) if near.any() else 5.0
    band = float(np.clip(4.0 * half, 10.0, 120.0))
    in_band = (depth > 2.0) & (depth < 2.0 + band) & ~on_border
    side_out = np.abs(wire_pts.outward @ left_n) > 0.3
    # Split at the middle of the band's lateral extent (a median leans to the longer edge).
    lat_band = lat[in_band]
    lc = (0.5 * (smallmath.percentile(lat_band, 2) + smallmath.percentile(lat_band, 98))
          if lat_band.size else 0.0)
    left = in_band & side_out & (lat > lc)
    right = in_band & side_out & (lat < lc)
    if np.count_nonzero(left) < 6 or np.count_nonzero(right) < 6:
        return WireGeometry(axis, None, AXIS_ONLY,
                            "a side edge of the wire is not visible below the facet")
    if min(float(np.ptp(t[left])), float(np.ptp(t[right]))) < MIN_EDGE_SPAN_PX:
        # Too short to give a direction: the width across the mask's long direction, when the
        # two edges bound the wire's extent there (not the two sides of a step)
        width = smallmath.median(lat[left]) - smallmath.median(lat[right])
        extent = smallmath.percentile(lat_band, 98) - smallmath.percentile(lat_band, 2)
        if width < MIN_EDGE_EXTENT_SHARE * extent:
            # no axis either: the visible wire is no straight piece of it then, whose mask's
            # long direction would be its axis (a corner, a wide wire cut by the frame)
            return WireGeometry(None, None, NOT_MEASURED,
                                "the side edges found below the facet are too short to be the "
                                "wire's (a step, or a corner of the wire)")
        return WireGeometry(axis, float(width), MEASURED)
    if droplet is not None:
        # the edges' lines without the interface's points. Which edges exist (the counts and
        # the short-edge branch above) is judged with them, as before they were left out: a
        # wedge of wire the frame cuts, whose other side is interface alone, stays without an
        # axis there, where its mask's long direction is not the wire's
        # (tests/data/measure_reference_rows.json, seed304/2).
        out_r, out_c = wire_pts.outside.T
        left &= ~droplet[out_r, out_c]
        right &= ~droplet[out_r, out_c]
        if np.count_nonzero(left) < 6 or np.count_nonzero(right) < 6:
            return WireGeometry(axis, None, AXIS_ONLY,
                                "a side edge of the wire is not visible below the facet")
    cl, ml = _robust_line(t[left], lat[left])
    cr, mr = _robust_line(t[right], lat[right])
    if max(abs(ml), abs(mr)) > MAX_EDGE_SLOPE:
        # no axis either, as above
        return WireGeometry(None, None, NOT_MEASURED,
                            "a side edge found below the facet runs across the wire (part of "
                            "the facet, a step, or where the frame cuts the wire)")
    width = cl - cr
    if width <= 1.0:
        return WireGeometry(axis, None, AXIS_ONLY, "the side edges cross")
    # The edges' mean slope corrects the axis (a flared wire's moments lean).
    slope = 0.5 * (ml + mr)
    axis = axis + slope * left_n
    axis /= np.hypot(*axis)
    # The separation is taken across the initial axis: project it on the edges' normal.
    return WireGeometry(axis, float(width / np.hypot(1.0, slope)), MEASURED)
