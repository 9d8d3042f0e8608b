"""The facet line of the measured pair: fitted to the wire/droplet interface with its
orientation free (the wire's axis only as a prior where the interface cannot orient
itself), read as flat or as a tilted wire's ellipse (``tilt``), and, given the raw frame,
moved onto the frame's wire/droplet intensity step where that step is clear (``refine``).
Coordinates are those of the selection's crop (``Selection.box``), (row, col).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from nwwatch.measure.arc import free_surface, free_surface_cut, on_border, wire_side_outline
from nwwatch.measure.circle import CircleFit
from nwwatch.measure.components import Selection
from nwwatch.measure.interface import FacetLine, InterfacePoints, fit_facet_line, interface_points
from nwwatch.measure.outlines import PairOutlines
from nwwatch.measure.refine import EdgeRefinement, refine_facet_line
from nwwatch.measure.result import refuse
from nwwatch.measure.tilt import FacetShape, facet_shape
from nwwatch.measure.wire import NOT_MEASURED, WireGeometry, measure_wire

#: The interface orients the facet when it is at least this long with this many inliers
#: and its orientation is known to this 1-sigma; otherwise the wire-axis prior is used.
MIN_INTERFACE_LENGTH_PX = 6.0
MIN_INTERFACE_POINTS = 6
MAX_FREE_ANGLE_SIGMA_DEG = 3.0
#: Less than this share of the interface points on one line: not a line (several pieces).
MIN_INLIER_FRACTION = 0.5
#: Share of the interface (about its middle) whose image profiles place the facet line.
EDGE_SPAN = 0.6
#: A wire axis further than this from the facet normal is not the wire's (real facets are
#: inclined up to about 30 deg): the mask's long direction runs along the facet, as for a
#: stub wider than it is long, a corner, or a droplet on the side wall.
MAX_AXIS_TO_FACET_NORMAL_DEG = 45.0
#: Droplet outline facing the background on the wire's side of the line
#: (arc.wire_side_outline), at least this many points and more than this share of the free
#: surface's: the line is not the facet (the droplet continues beyond it; over a wire's
#: chamfered corner a droplet wets at most ~6 % of that on the benchmark).
MIN_WIRE_SIDE_POINTS = 3
WIRE_SIDE_OUTLINE_FRACTION = 0.25


def _centroid(mom: dict) -> np.ndarray:
    """(row, col) centroid from ``cv2.moments``."""
    return np.array([mom["m01"], mom["m10"]]) / max(mom["m00"], 1e-12)


def _half_open_deg(radians: float) -> float:
    """``radians`` in degrees in (-180, 180]: atan2 of a -0.0 component gave -180 for the
    direction another row gave as 180."""
    degrees = math.degrees(radians) + 0.0  # no -0.0
    return degrees + 360.0 if degrees <= -180.0 else degrees


def signed_deg(vector: np.ndarray, axis: np.ndarray) -> float:
    """Angle from ``axis`` to ``vector`` counter-clockwise on screen (degrees)."""
    left = np.array([-axis[1], axis[0]])
    return math.degrees(math.atan2(float(vector @ left), float(vector @ axis)))


@dataclass(frozen=True)
class Facet:
    """The facet line fitted to the interface (crop coordinates) and what it rests on:
    ``free_line`` the interface's own line when ``line`` was oriented by a prior
    (``source``), else None; ``fields`` the result's geometry columns so far."""

    iface: InterfacePoints
    line: FacetLine
    free_line: FacetLine | None
    source: str
    wire: WireGeometry
    fields: dict


def fit_facet(sel: Selection, outlines: PairOutlines, shape: tuple[int, int],
              base: dict) -> Facet:
    """The facet line of the pair ``sel`` (found) in an image of ``shape`` from the
    wire/droplet interface, orientation free; the wire's axis as a prior only where the
    interface cannot orient itself. ``base``: the result's columns so far. Raises
    :class:`nwwatch.measure.result.Refused` when there is no interface or it is not a line."""
    towards = _centroid(sel.droplet_moments) - _centroid(sel.wire_moments)
    if not np.hypot(*towards) > 1e-6:
        raise refuse("droplet_not_on_wire", "wire and droplet have the same centroid", **base)
    towards /= np.hypot(*towards)
    # A network's labels (an iso-line) keep the fixed thin-gap reach unless the pair was
    # found only across a wider gap.
    reach = sel.max_gap_px if outlines.fine is None or sel.wide_gap else None
    iface = interface_points(sel.wire, sel.droplet, outlines.wire, outlines.droplet,
                             outlines.fine, reach)
    if len(iface) < 3:
        raise refuse("interface_missing", f"only {len(iface)} wire/droplet interface points "
                     "(the droplet does not sit on the wire's end, or the frame hides where "
                     "it does)", **base)
    line = fit_facet_line(iface, towards)
    wire_border = on_border(outlines.wire, shape, sel.box[:2])
    wire_geo = measure_wire(sel.wire, outlines.wire, towards, line.point, wire_border,
                            line.normal, sel.wire_moments, sel.droplet)
    source = "interface"
    n_inl = int(np.count_nonzero(line.inliers))
    if (line.length_px < MIN_INTERFACE_LENGTH_PX or n_inl < MIN_INTERFACE_POINTS
            or math.degrees(line.sigma_angle_rad) > MAX_FREE_ANGLE_SIGMA_DEG):
        free_line = line
        source = "wire_axis" if wire_geo.axis is not None else "centroids"
        prior = wire_geo.axis if wire_geo.axis is not None else towards
        line = fit_facet_line(iface, towards, prior_normal=prior)
    else:
        free_line = None
        if (wire_geo.axis is not None and abs(float(wire_geo.axis @ line.normal))
                < math.cos(math.radians(MAX_AXIS_TO_FACET_NORMAL_DEG))):
            # The axis serves only as a prior here, and this one is not the wire's: its
            # width and inclination would be read across the wrong direction.
            wire_geo = WireGeometry(None, None, NOT_MEASURED,
                                    "its long direction runs along the facet (a stub, a "
                                    "corner, or a droplet on the side wall)")
    inlier_fraction = float(line.inliers.mean())
    axis_deg = (_half_open_deg(math.atan2(-wire_geo.axis[0], wire_geo.axis[1]))
                if wire_geo.axis is not None else None)
    contour = outlines.fine if outlines.fine is not None else outlines.droplet
    border = on_border(contour, shape, sel.box[:2], inside_only=True)
    geometry = dict(
        base,
        # cut by the frame where the droplet's free surface reaches the border, not where
        # its label does only on the wire's side of the line (leaking through the wire)
        droplet_cut=free_surface_cut(contour, line, border),
        facet_angle_deg=_half_open_deg(math.atan2(-line.direction[0], line.direction[1])),
        # a point of the line (here the interface's centre on it; the foot of the circle
        # centre once there is a circle), so a refused row's overlay draws the line too
        facet_row=float(line.point[0] + sel.box[0]),
        facet_col=float(line.point[1] + sel.box[1]),
        facet_gap_px=line.gap_px,
        facet_source=source,
        # perpendicular to the axis by construction when the axis oriented it (not 1e-17)
        facet_inclination_deg=(0.0 if source == "wire_axis"
                               else signed_deg(line.normal, wire_geo.axis)
                               if wire_geo.axis is not None else None),
        facet_scatter_px=line.scatter_px,
        n_facet_points=int(np.count_nonzero(line.inliers)),
        wire_status=wire_geo.status,
        wire_axis_deg=axis_deg,
        wire_width_px=wire_geo.width_px,
    )
    if inlier_fraction < MIN_INLIER_FRACTION:
        raise refuse("interface_not_line", f"only {100 * inlier_fraction:.0f} % of the "
                     "wire/droplet interface lies on one line (curved or in several pieces)",
                     **geometry)
    beyond = wire_side_outline(contour, line, sel.wire, border)
    n_beyond = int(np.count_nonzero(beyond))
    if n_beyond >= MIN_WIRE_SIDE_POINTS and n_beyond > WIRE_SIDE_OUTLINE_FRACTION * (
            np.count_nonzero(free_surface(contour, line, sel.wire, border))):
        depth = float(-line.offset(contour.points[beyond]).min())
        # Not a facet, so nothing says where the free surface starts: cut where the label's
        # bounding box touches the border, as for a row refused before its line is found.
        raise refuse("interface_not_line", f"the droplet's outline lies {depth:.0f} px beyond "
                     "the interface's line on the wire's side (the interface turns a corner "
                     "of the wire: a droplet label over the wire's end and down its side, or "
                     "through the wire): the line is not the facet",
                     **dict(geometry, droplet_cut=base["droplet_cut"]))
    return Facet(iface, line, free_line, source, wire_geo, geometry)


@dataclass(frozen=True)
class Placement:
    """Where :func:`place_facet` put the facet: its ``shape`` (flat or elliptical), the
    facet ``line`` and the interface's own ``free_line`` (None unless ``line`` was oriented
    by a prior), both moved with the image's step; ``s_px`` the circle centre's signed
    distance from ``line``; ``edge`` what the image refinement did."""

    shape: FacetShape
    line: FacetLine
    free_line: FacetLine | None
    s_px: float
    edge: EdgeRefinement


def place_facet(
    facet: Facet, fit: CircleFit, s_px: float, labels: np.ndarray, image: np.ndarray | None,
    offset: np.ndarray,
) -> Placement:
    """The facet of ``facet`` read as flat or elliptical against the droplet's circle
    ``fit`` (its centre ``s_px`` from the facet line), then, given the raw frame ``image``
    (H, W) of ``labels`` uint8 (H, W), a flat facet line moved onto the frame's intensity
    step where that step is clear. ``offset`` float (2,): the crop's (row, col) in the
    image."""
    s = s_px
    half_chord = math.sqrt(max(fit.radius**2 - s**2, 0.0))
    # Flat or elliptical (tilted) facet: the triple points sit at the ellipse's rim.
    shape = facet_shape(fit, facet.line, facet.iface, s, half_chord,
                        network_labels=image is not None)
    line, free_line = shape.line, facet.free_line
    s -= shape.shift_px
    edge = EdgeRefinement("labels")
    if image is not None and shape.tilt_deg > 0:
        # An elliptical facet (a wire tilted out of the image plane) has no single step: the
        # beam crosses wire and droplet over the whole ellipse, in proportions that depend
        # on the materials. The labels' rim is kept.
        edge = EdgeRefinement("elliptical")
    elif image is not None:
        # Over the middle of the interface: towards the triple points the droplet thins and
        # its contrast with the wire fades, which moves the step's centre.
        along = line.along(facet.iface.points[line.inliers])
        mid, half = 0.5 * (along.max() + along.min()), 0.5 * (along.max() - along.min())
        in_image = dataclasses.replace(line, point=line.point + offset)
        edge = refine_facet_line(image, labels, in_image, (float(mid - EDGE_SPAN * half),
                                                           float(mid + EDGE_SPAN * half)))
        if edge.refined:
            delta = edge.shift_px * line.normal
            line = dataclasses.replace(line, point=line.point + delta, quantisation_px=0.0)
            if free_line is not None:
                free_line = dataclasses.replace(free_line, point=free_line.point + delta)
            s -= edge.shift_px
    return Placement(shape, line, free_line, s, edge)
