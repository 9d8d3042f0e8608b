"""Which line stands for the facet: the one fitted from all interface points, or the one
of the interface's longest straight stretch.

A network (or a hand) may label part of the wire/droplet interface off the facet — e.g. the
annotation text burned into a frame drawn as wire. When that part is large, the fit from
all points (:func:`nwwatch.measure.interface.fit_facet_line`) tilts towards it and scatters;
the fit started from the consensus (``start="consensus"``) follows the longest straight
stretch instead. The stretch is used only where it is unambiguous (the rules below); the
gentle curve of an elliptical facet and wiggles about one line keep the fit from all points.
Coordinates: (row, col) px of the crop, integer pixel centres.
"""

from __future__ import annotations

import math

import numpy as np

from nwwatch.measure.interface import FacetLine, InterfacePoints, fit_facet_line

#: Interface scatter allowed, as its cost in degrees at the droplet's size: a scatter of
#: ``d`` px about the facet line is ``d / a`` rad of angle if it were all systematic.
MAX_SCATTER_COST_DEG = 6.0
#: Less than this share of the interface points on one line (fitted from all points):
#: not a line (curved, several pieces).
MIN_INLIER_FRACTION = 0.5
#: A line from the interface's longest straight stretch (the consensus fit) stands in for
#: one that is not a line when the stretch holds at least this share of the interface's
#: length. Length, not points: a stretch that wanders off the line as a staircase carries up
#: to two points per pixel of length, a straight stretch along a pixel axis one.
MIN_LINE_EXTENT_FRACTION = 0.5
#: ... and when no second straight piece among the rejected points is at least this long
#: relative to it: several pieces (a notch, a step) or a curve, not one line with a stretch
#: that wanders off it.
MAX_RIVAL_FRACTION = 0.6
#: Over a fit from all points that is itself a line, only a stretch without a second
#: straight piece of more than this share of its length (a kinked interface: neither piece
#: is known to be the facet, and the fit from all points at least averages them).
MAX_RIVAL_OVERRIDE = 0.25
#: ... and when the interface leaves it on one side only: a stretch with more than this
#: share of the interface's length beyond both of its ends is the middle of a curve.
MAX_FLANK_FRACTION = 0.05
#: The fit from all points is kept when it lies within this distance (px) of the straight
#: stretch's line over the stretch (0.5 px costs 0.8 deg at a = 35 px) ...
MAX_STRETCH_DISAGREEMENT_PX = 0.5
#: ... or when its robust scatter is at most this (and half the points are on it) ...
CLEAN_SCATTER_PX = 0.5
#: ... or less than this many times the stretch's (at least ``CLEAN_SCATTER_PX``): the
#: gentle curve of an elliptical facet or wiggles about the line scatter up to ~2x more
#: than their straightest stretch, a stretch wandering pixels off it several times more.
MIN_SCATTER_RATIO = 4.0
#: A stretch needs at least this many points.
MIN_STRETCH_POINTS = 6


def scatter_cost_deg(line: FacetLine) -> float:
    """The line's scatter as degrees over half its length (about the droplet's half base,
    before the circle is known)."""
    return math.degrees(line.scatter_px / max(0.5 * line.length_px, 1.0))


def is_straight_stretch(line: FacetLine) -> bool:
    """Whether a line fitted from the consensus (``start="consensus"``) may stand in for
    the interface: long enough, without a rival piece, not the middle of a curve."""
    return (line.extent_fraction >= MIN_LINE_EXTENT_FRACTION
            and line.rival_fraction <= MAX_RIVAL_FRACTION * line.extent_fraction
            and line.flank_fraction <= MAX_FLANK_FRACTION
            and line.inliers.sum() >= MIN_STRETCH_POINTS)


def _disagreement_px(line: FacetLine, stretch: FacetLine) -> float:
    """How far ``line`` lies from ``stretch`` over the stretch's extent (px): the larger
    distance at its two ends."""
    ends = stretch.point + np.outer([-0.5, 0.5], stretch.direction) * stretch.length_px
    return float(np.max(np.abs(line.offset(ends))))


def facet_line(iface: InterfacePoints, towards: np.ndarray) -> FacetLine:
    """The facet line through the interface points ``iface`` (at least 3); ``towards`` (2,)
    any vector from the wire into the droplet. (row, col) px of the crop.

    The line fitted from all points, unless the line of the longest straight stretch
    (:func:`nwwatch.measure.interface.consensus`) is a line by itself
    (:func:`is_straight_stretch`) and either the fit from all points is no line (fewer than
    ``MIN_INLIER_FRACTION`` of the points on it, or a scatter costing more than
    ``MAX_SCATTER_COST_DEG`` over half its length) or it leaves the stretch by more than
    ``MAX_STRETCH_DISAGREEMENT_PX``, scatters ``MIN_SCATTER_RATIO`` times more, and the
    stretch has no second straight piece over ``MAX_RIVAL_OVERRIDE`` of its length. So a
    stretch that wanders far off the facet (a label drawn over annotation text) is rejected
    rather than tilting the line, while the gentle curve of an elliptical facet (the tilt is
    read from all of it) and wiggles about one line (they average out) keep all points.
    """
    line = fit_facet_line(iface, towards)
    if line.scatter_px <= CLEAN_SCATTER_PX and line.inliers.mean() >= MIN_INLIER_FRACTION:
        # Its outlier distance (3 robust sigma) is then <= 2.2 px: whatever wanders farther
        # is rejected already, and a stretch could not win (it must scatter 4x less).
        return line
    stretch = fit_facet_line(iface, towards, start="consensus")
    if (stretch is None or not is_straight_stretch(stretch)
            or scatter_cost_deg(stretch) > MAX_SCATTER_COST_DEG):
        return line
    line_like = (line.inliers.mean() >= MIN_INLIER_FRACTION
                 and scatter_cost_deg(line) <= MAX_SCATTER_COST_DEG)
    if line_like and (
            _disagreement_px(line, stretch) <= MAX_STRETCH_DISAGREEMENT_PX
            or line.scatter_px < MIN_SCATTER_RATIO * max(stretch.scatter_px, CLEAN_SCATTER_PX)
            or stretch.rival_fraction > MAX_RIVAL_OVERRIDE * stretch.extent_fraction):
        return line
    return stretch
