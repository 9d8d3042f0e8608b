"""The droplet's free surface and the angle its circle makes with the facet line.

Coordinates are (row, col) pixels of the crop, integer indices at pixel centres. The free
surface is the droplet's outline beyond the facet line, away from the wire and the image
border (so frame-cut droplets are fitted on what is visible); ``cos(theta) = -s / R`` with
``s`` the signed distance of the circle centre from the facet line (positive on the droplet
side), valid on both sides of 90 degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.measure.circle import CircleFit, geometric_fit
from nwwatch.measure.edges import BoundaryPoints
from nwwatch.measure.interface import GAP_PX, FacetLine
from nwwatch.measure.kernels import disc

#: Free-surface points closer than this to the facet line are not fitted (px).
FACET_MARGIN_PX = 1.5
#: Fewest outline points a circle (or one side's circle) is fitted to.
MIN_POINTS = 12
#: Each side's circle needs this much arc (degrees).
MIN_SIDE_SPAN_DEG = 20.0
_NEAR = disc(2)
#: Droplet edge points between the interface's ends and nearer the facet line than
#: FACET_MARGIN_PX + GAP_PX (+ half a bridged gap) face the wire across a background gap
#: (labels drawn as separate polygons): they are not the free surface. "Between the ends"
#: leaves this margin plus a 45-degree cone at each end, so that a surface leaving the
#: triple points at any angle above 45 degrees keeps all its points.
GAP_END_MARGIN_PX = 2.0
#: Droplet outline facing the background farther than this on the wire's side of the facet
#: line (px): the line is not the facet (:func:`wire_side_outline`).
WIRE_SIDE_DEPTH_PX = 6.0


def arc_span_deg(points: np.ndarray, center: np.ndarray) -> float:
    """Angular extent (degrees) of ``points`` (N, 2) seen from ``center`` (2,): 360 minus
    the largest empty gap."""
    ang = np.sort(np.arctan2(points[:, 0] - center[0], points[:, 1] - center[1]))
    gaps = np.diff(np.concatenate([ang, ang[:1] + 2 * np.pi]))
    return float(np.degrees(2 * np.pi - gaps.max()))


def arc_position_rad(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(N,) angle (radians, 0 to 2 pi) of each of ``points`` (N, 2) seen from ``center``
    (2,), counted from the end of the largest empty gap: the points' order along their own
    arc, wherever the arc lies (the angle from ``arctan2`` jumps at -col, and would splice
    an arc crossing it out of order)."""
    ang = np.arctan2(points[:, 0] - center[0], points[:, 1] - center[1])
    if ang.size < 2:
        return np.zeros_like(ang)
    srt = np.sort(ang)
    gaps = np.diff(np.concatenate([srt, srt[:1] + 2 * np.pi]))
    start = srt[(int(np.argmax(gaps)) + 1) % srt.size]
    return np.mod(ang - start, 2 * np.pi)


def angle_deg(fit: CircleFit, line: FacetLine, shift_px: float = 0.0) -> float:
    """Contact angle (degrees) of circle ``fit`` on ``line`` moved ``shift_px`` into the
    droplet."""
    s = float(line.offset(fit.center[None, :])[0]) - shift_px
    return math.degrees(math.acos(min(max(-s / fit.radius, -1.0), 1.0)))


@dataclass(frozen=True)
class SideFit:
    """One half of the arc's own circle: ``fit`` to its ``points`` (N, 2) and the angle it
    makes with the facet line, ``angle_deg``."""

    angle_deg: float
    fit: CircleFit
    points: np.ndarray


#: Arc step (px) at which the circle between a triple point and its side's outline is
#: checked against the frame: finer than a pixel, so that a crossing of the border is seen.
_ARC_STEP_PX = 0.25


def contact_outline_in_frame(
    pts: np.ndarray, fit: CircleFit, line: FacetLine, foot: np.ndarray, half_chord_px: float,
    lower: np.ndarray, upper: np.ndarray,
) -> tuple[bool, bool]:
    """(left, right): whether the circle ``fit`` from each triple point (``foot`` (2,) +-
    ``half_chord_px`` along ``line.direction``; left: +) up to the nearest point of ``pts``
    (N, 2, the free surface) on that side lies inside the frame, ``lower`` < (row, col) <
    ``upper`` (each (2,), crop coordinates): the outline next to the contact was in view.
    False where the triple point itself lies outside, or where the circle leaves the frame
    on the way (above 90 degrees the surface leaves the contact outwards, and a border a
    pixel or two beyond the triple point cuts it off: the side's points then start where the
    arc comes back into the frame, and its circle would be read at a contact whose outline
    no one saw), or where that side has no point."""
    lat = (pts - foot) @ line.direction
    out: list[bool] = []
    for sign, side in ((1.0, lat > 0), (-1.0, lat < 0)):
        triple = foot + sign * half_chord_px * line.direction
        rel = triple - fit.center
        start = math.atan2(rel[0], rel[1])
        # the way round from the triple point that passes the apex (the droplet side)
        apex = math.atan2(line.normal[0], line.normal[1])
        way = 1.0 if math.remainder(apex - start, 2 * math.pi) > 0 else -1.0
        sub = pts[side] - fit.center
        if not len(sub) or not np.isfinite(rel).all():
            out.append(False)
            continue
        reach = float(np.min(np.mod(way * (np.arctan2(sub[:, 0], sub[:, 1]) - start),
                                    2 * math.pi)))
        n = max(int(math.ceil(reach * fit.radius / _ARC_STEP_PX)), 1)
        phi = start + way * np.linspace(0.0, reach, n + 1)
        arc = fit.center + fit.radius * np.column_stack([np.sin(phi), np.cos(phi)])
        out.append(bool(((arc > lower) & (arc < upper)).all()))
    return out[0], out[1]


def side_fits(
    pts: np.ndarray, fit: CircleFit, line: FacetLine, foot: np.ndarray, shift_px: float,
    contact_visible: tuple[bool, bool] = (True, True),
) -> tuple[SideFit | None, SideFit | None]:
    """(left, right) circles fitted to each half of the arc ``pts`` (N, 2), split at
    ``foot`` (2,), the foot of the circle centre on the line (left: +direction side); None
    for a half with too few points or too little arc, whose outline next to its contact
    point the frame cuts off (``contact_visible`` False, from
    :func:`contact_outline_in_frame`: its circle would be extrapolated over the part the
    frame hides), or whose circle does not reach the line (no angle to read there; the
    whole cap is refused for that as ``circle_misses_facet``)."""
    lat = (pts - foot) @ line.direction
    out: list[SideFit | None] = []
    for side, visible in zip((lat > 0, lat < 0), contact_visible, strict=True):
        sub = pts[side]
        if not visible or len(sub) < MIN_POINTS or \
                arc_span_deg(sub, fit.center) < MIN_SIDE_SPAN_DEG:
            out.append(None)
            continue
        side_fit = geometric_fit(sub, fit.center, fit.radius, max_iter=20)
        ok = side_fit.converged and np.isfinite(side_fit.radius)
        s = float(line.offset(side_fit.center[None, :])[0]) - shift_px
        out.append(SideFit(angle_deg(side_fit, line, shift_px), side_fit, sub)
                   if ok and abs(s) <= side_fit.radius else None)
    return out[0], out[1]


def on_border(pts: BoundaryPoints, shape: tuple[int, int], offset: tuple[int, int],
              inside_only: bool = False) -> np.ndarray:
    """(N,) True where either pixel of a boundary point (crop coordinates, the crop at
    ``offset`` in an image of ``shape``) lies on the image border (``inside_only``: its
    inside pixel)."""
    border = np.zeros(len(pts), dtype=bool)
    for px in ((pts.inside,) if inside_only else (pts.inside, pts.outside)):
        rows, cols = px[:, 0] + offset[0], px[:, 1] + offset[1]
        border |= (rows <= 0) | (rows >= shape[0] - 1) | (cols <= 0) | (cols >= shape[1] - 1)
    return border


def free_surface_cut(pts: BoundaryPoints, line: FacetLine, border: np.ndarray) -> bool:
    """Whether the frame cuts the droplet's free surface: a boundary point of ``pts`` on the
    image ``border`` ((N,) bool) lies beyond the facet line as far as :func:`free_surface`
    asks of its points. Droplet labels that reach the border only on the wire's side of the
    line (a label leaking through the wire) leave the cap whole."""
    beyond = line.offset(pts.points[border]) > FACET_MARGIN_PX + 0.5 * line.gap_px
    return bool(beyond.any())


def free_surface(
    pts: BoundaryPoints, line: FacetLine, wire: np.ndarray, border: np.ndarray,
    interface_along_px: tuple[float, float] | None = None,
) -> np.ndarray:
    """(N,) mask of droplet boundary points ``pts`` on the free surface: more than
    FACET_MARGIN_PX (+ half the gap) beyond the facet line, not within 2 px of ``wire``
    (bool crop mask), not on the image ``border`` ((N,) bool), and, given the interface's
    extent along the line (``interface_along_px``, coordinates along ``line.direction``
    from ``line.point``), not a gap's side between its ends (``GAP_END_MARGIN_PX``)."""
    offset = line.offset(pts.points)
    keep = offset > FACET_MARGIN_PX + 0.5 * line.gap_px
    if interface_along_px is not None:
        lo, hi = interface_along_px
        along = line.along(pts.points)
        inner = GAP_END_MARGIN_PX + np.maximum(offset, 0.0)
        keep &= ~((along > lo + inner) & (along < hi - inner)
                  & (offset < FACET_MARGIN_PX + 0.5 * line.gap_px + GAP_PX))
    near_wire = cv2.dilate(wire.view(np.uint8), _NEAR).view(bool)  # 0 or 1: no copy
    keep &= ~near_wire[pts.outside[:, 0], pts.outside[:, 1]]
    keep &= ~near_wire[pts.inside[:, 0], pts.inside[:, 1]]
    return keep & ~border


def wire_side_outline(
    pts: BoundaryPoints, line: FacetLine, wire: np.ndarray, border: np.ndarray,
) -> np.ndarray:
    """(N,) mask of droplet boundary points ``pts`` that face the background more than
    WIRE_SIDE_DEPTH_PX (+ half the gap) on the wire's side of the facet ``line``: not within
    2 px of ``wire`` (bool crop mask), not on the image ``border`` ((N,) bool). A cap on the
    facet has few (where it wets a chamfered corner); a line fitted along a wire's side wall,
    with the droplet over the corner on the wire's end, has the cap's far side there."""
    beyond = line.offset(pts.points) < -(WIRE_SIDE_DEPTH_PX + 0.5 * line.gap_px)
    if not beyond.any():  # a cap's outline: no dilation
        return beyond
    near_wire = cv2.dilate(wire.view(np.uint8), _NEAR).view(bool)
    beyond &= ~near_wire[pts.outside[:, 0], pts.outside[:, 1]]
    beyond &= ~near_wire[pts.inside[:, 0], pts.inside[:, 1]]
    return beyond & ~border
