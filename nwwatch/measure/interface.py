"""The facet line, fitted to the wire/droplet interface itself with its orientation free.

Coordinates are (row, col) pixels of the crop, integer indices at pixel centres. The line is
``(p - point) . normal = 0``; ``normal`` points into the droplet and ``direction`` is the
normal turned 90 degrees counter-clockwise on screen (towards the left triple point, as seen
looking from the wire into the droplet).

Interface points are the midpoints between 4-neighbour wire and droplet pixels (the pixel
edge they share; with a probability map, the droplet's 0.5 iso-line crossing there). Where a
thin background gap separates the two along part of the interface (wire and droplet drawn as
separate polygons that overlap in places and miss each other in others), both sides of the gap
are interface points too: the shared edges alone are where the class drawn on top reaches
deepest, a line through them is biased towards the class underneath. When a thin gap separates
the two all along, the wire's top edge and the droplet's bottom edge are used as two parallel
lines and the facet is midway. The fit is a total-least-squares line
with outliers beyond max(0.75 px, 3 robust sigma) dropped: wiggles of the boundary and the
corners (truncated facets, side walls next to a gap) do not move it. A line with the droplet
on both of its sides (a droplet label running through the wire, both its sides on the line)
is fitted again from the points that cross the interface's net wire-to-droplet step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.measure import smallmath
from nwwatch.measure.edges import BoundaryPoints, nonzero_2d
from nwwatch.measure.kernels import disc

#: Largest background gap (px) between wire and droplet bridged by the two-line fit.
GAP_PX = 4
#: Outliers: farther from the line than max(this, 3 robust sigma).
MIN_OUTLIER_PX = 0.75
#: 1-sigma of a probability iso-line's position: the linear 0.5 crossing between a partly
#: covered pixel and a saturated one errs by up to ~0.15 px on a straight edge.
ISO_SIGMA_PX = 0.1
#: Shared wire|droplet pixel edges needed before the gap (two-line) fit is skipped.
MIN_SHARED_POINTS = 6
#: A gap wider than a thin one's (GAP_PX - 1 px) along more than this many times the shared
#: edges is a band bridged in a few places, read as a band: the shared edges then cover less
#: than a third of the interface. Below it the shared edges place the facet (a polygon that
#: falls 3-4 px short of the other over part of the interface: the other's edge is the facet).
BRIDGED_BAND_RATIO = 2.0
#: More than this share of a line's inliers with the droplet on its wire side: the line runs
#: along a droplet label through the wire, not along the facet (there none has).
MAX_FACING_AWAY_FRACTION = 0.25


@dataclass(frozen=True)
class InterfacePoints:
    """Points on the interface: ``points`` (N, 2) float64; ``group`` (N,) int (0: shared
    edge or wire top, 1: droplet bottom across a gap); ``wire_side``/``drop_side`` (N, 2)
    int64 the pixel centres on either side (shared edges only, else -1); ``gap_step``
    (N, 2) float64, for a side of a partial gap (:func:`gap_sides`) the unit pixel step
    across it, else 0 (None: no such points)."""

    points: np.ndarray
    group: np.ndarray
    wire_side: np.ndarray
    drop_side: np.ndarray
    iso: bool = False
    gap_step: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass(frozen=True)
class FacetLine:
    """A fitted facet line and what it rests on.

    ``point`` (2,) the centroid of the inlier points projected on the line; ``normal``,
    ``direction`` unit (2,); ``sigma_offset_px`` 1-sigma of the line's position at ``point``
    along ``normal``; ``sigma_angle_rad`` 1-sigma of its orientation; ``scatter_px`` robust
    scatter of the inliers about it; ``quantisation_px`` the half-width term of a binary
    mask's feasible band (or of the iso-line's interpolation); ``gap_px`` background gap
    bridged; ``inliers`` boolean mask over the input points; ``length_px`` extent of the
    inliers along the line.
    """

    point: np.ndarray
    normal: np.ndarray
    direction: np.ndarray
    sigma_offset_px: float
    sigma_angle_rad: float
    scatter_px: float
    quantisation_px: float
    gap_px: float
    inliers: np.ndarray
    length_px: float

    def offset(self, pts: np.ndarray) -> np.ndarray:
        """Signed distances (px) of ``pts`` (N, 2) from the line, positive on the droplet side."""
        return (pts - self.point) @ self.normal

    def along(self, pts: np.ndarray) -> np.ndarray:
        """Coordinates (px) of ``pts`` along the line from ``point``."""
        return (pts - self.point) @ self.direction


def _n_shared_edges(a: np.ndarray, b: np.ndarray) -> int:
    """How many pixel edges lie between ``a`` and ``b`` pixels: ``len`` of
    :func:`_shared_edges`'s points, without making them."""
    return (np.count_nonzero((a[:-1] & b[1:]) | (b[:-1] & a[1:]))
            + np.count_nonzero((a[:, :-1] & b[:, 1:]) | (b[:, :-1] & a[:, 1:])))


def _shared_edges(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Midpoints of the pixel edges between ``a`` and ``b`` pixels (4-neighbours) with the
    pixel centres on either side: (points, a_side, b_side)."""
    out_p, out_a, out_b = [], [], []
    for step in (np.array([1, 0]), np.array([0, 1])):
        lo = (slice(None, -1), slice(None)) if step[0] else (slice(None), slice(None, -1))
        hi = (slice(1, None), slice(None)) if step[0] else (slice(None), slice(1, None))
        a_first = a[lo] & b[hi]
        idx = np.stack(nonzero_2d(a_first | (b[lo] & a[hi])), axis=1)
        if idx.size == 0:
            continue
        first_is_a = a_first[idx[:, 0], idx[:, 1]][:, None]
        out_p.append(idx + 0.5 * step)
        out_a.append(np.where(first_is_a, idx, idx + step))
        out_b.append(np.where(first_is_a, idx + step, idx))
    if not out_p:
        empty = np.zeros((0, 2))
        return empty, empty.astype(np.int64), empty.astype(np.int64)
    return (np.concatenate(out_p).astype(np.float64), np.concatenate(out_a),
            np.concatenate(out_b))


def gap_sides(drop_pts: BoundaryPoints, classes: np.ndarray, max_gap_px: int = GAP_PX - 1,
              origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sides of thin background gaps between droplet and wire.

    ``classes`` uint8: 0 background, 1 wire, 2 droplet, its pixel (0, 0) at ``origin`` of
    the points' coordinates; it must hold every pixel within ``max_gap_px + 1`` of the
    droplet's points (beyond it counts as the image's edge). A droplet boundary point of
    ``drop_pts`` faces the wire across a gap when the pixel outside it is background and,
    stepping on in the same direction, a wire pixel comes within ``max_gap_px`` pixels, before
    any droplet pixel or the edge; the wire's side of that gap is the pixel edge before that
    wire pixel. Returns the (N,) mask over ``drop_pts``, the wire's side points (M, 2) (row,
    col) and the unit step (M, 2) across each gap.
    """
    n = len(drop_pts)
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros((0, 2)), np.zeros((0, 2))
    pad = max_gap_px
    # A border that stops every ray: one gather per ray, no bounds checks.
    padded = cv2.copyMakeBorder(classes, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
    width = padded.shape[1]
    out = drop_pts.outside - np.asarray(origin)
    step = drop_pts.outward.astype(np.int64)
    flat = (out[:, 0] + pad) * width + (out[:, 1] + pad)
    along = step[:, 0] * width + step[:, 1]
    vals = padded.ravel()[flat[:, None] + along[:, None] * np.arange(max_gap_px + 1)]
    ahead = vals[:, 1:]
    first = np.argmax(ahead != 0, axis=1)  # the first pixel beyond that is not background
    facing = (vals[:, 0] == 0) & (ahead[np.arange(n), first] == 1)
    steps = drop_pts.outward[facing]
    wire_side = drop_pts.outside[facing] + (first[facing] + 0.5)[:, None] * steps
    return facing, wire_side, steps


def _gap_rays(wire: np.ndarray, droplet: np.ndarray, drop_pts: BoundaryPoints,
              drop_rect: tuple[int, int, int, int], reach_px: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`gap_sides` of ``drop_pts`` within ``reach_px``, on the classes of the droplet's
    bounding box (``drop_rect`` (x, y, w, h) in the masks' crop) grown by the reach."""
    x, y, w, h = drop_rect
    g0, h0 = max(y - reach_px - 1, 0), max(x - reach_px - 1, 0)
    g1, h1 = y + h + reach_px + 1, x + w + reach_px + 1
    classes = (wire[g0:g1, h0:h1].view(np.uint8)
               | (droplet[g0:g1, h0:h1].view(np.uint8) << 1))
    return gap_sides(drop_pts, classes, reach_px, origin=(g0, h0))


def _two_edges(wire_edge: np.ndarray, drop_edge: np.ndarray) -> InterfacePoints:
    """The two edges of a background band, (M, 2) points each: groups 0 and 1."""
    m = len(wire_edge)
    none = -np.ones((2 * m, 2), np.int64)
    return InterfacePoints(np.concatenate([wire_edge, drop_edge]),
                           np.repeat(np.array([0, 1], np.int64), m), none, none)


def interface_points(
    wire: np.ndarray,
    droplet: np.ndarray,
    wire_pts: BoundaryPoints,
    drop_pts: BoundaryPoints,
    drop_fine: BoundaryPoints | None = None,
    max_gap_px: int | None = None,
) -> InterfacePoints:
    """Points of the wire/droplet interface from the masks (bool, same crop) and their
    boundary points; ``drop_fine`` (probability iso-line) replaces the pixel edges.
    Where a gap runs all along the interface, ``max_gap_px`` is how far across it the
    droplet's edge may face the wire; None: a thin gap (up to ``GAP_PX``) beside the
    iso-line."""
    # Shared edges lie next to the droplet: search only its bounding box (+1 px).
    x, y, w, h = cv2.boundingRect(droplet.view(np.uint8))
    r0, c0 = max(y - 1, 0), max(x - 1, 0)
    r1, c1 = y + h + 1, x + w + 1
    wire_box, drop_box = wire[r0:r1, c0:c1], droplet[r0:r1, c0:c1]
    # With the iso-line, the shared edges are only counted (their points are not used).
    if drop_fine is not None and _n_shared_edges(wire_box, drop_box) >= MIN_SHARED_POINTS:
        # Crossings between a droplet pixel and a wire pixel: the interface itself (not the
        # free surface next to the triple points).
        on = wire[drop_fine.outside[:, 0], drop_fine.outside[:, 1]]
        if np.count_nonzero(on) >= MIN_SHARED_POINTS:
            n = int(np.count_nonzero(on))
            return InterfacePoints(drop_fine.points[on], np.zeros(n, np.int64),
                                   -np.ones((n, 2), np.int64), -np.ones((n, 2), np.int64),
                                   iso=True)
    pts, w_side, d_side = _shared_edges(wire_box, drop_box)
    corner = np.array([r0, c0])
    pts, w_side, d_side = pts + corner, w_side + corner, d_side + corner
    if len(pts) >= MIN_SHARED_POINTS:
        # Both sides of the stretches where a thin gap opens: the shared edges alone follow
        # whichever class was drawn on top where the two overlap. (A binary mask only: an
        # iso-line's droplet side is not on the pixel lattice the wire's is.)
        if drop_fine is not None:
            return InterfacePoints(pts, np.zeros(len(pts), np.int64), w_side, d_side)
        reach = max(GAP_PX - 1, max_gap_px or 0)
        d_gap, w_gap_pts, steps = _gap_rays(wire, droplet, drop_pts, (x, y, w, h), reach)
        # Background pixels crossed by each ray: more than a thin polygon gap's is a band.
        crossed = np.einsum("ij,ij->i", w_gap_pts - drop_pts.points[d_gap], steps)
        wide = crossed > GAP_PX - 0.5
        if np.count_nonzero(wide) > BRIDGED_BAND_RATIO * len(pts):
            # A band left unlabeled with a few bridges across it: the band's two edges as
            # two parallel lines, the facet midway (the bridges' few shared edges dropped).
            return _two_edges(w_gap_pts, drop_pts.points[d_gap])
        # Both sides of the stretches where a thin gap opens.
        keep = np.flatnonzero(d_gap)[~wide]
        d_gap = np.zeros_like(d_gap)
        d_gap[keep] = True
        w_gap_pts, steps = w_gap_pts[~wide], steps[~wide]
        n_gap = 2 * len(steps)
        if n_gap == 0:
            return InterfacePoints(pts, np.zeros(len(pts), np.int64), w_side, d_side)
        none = -np.ones((n_gap, 2), np.int64)
        gap_step = np.zeros((len(pts) + n_gap, 2))
        gap_step[len(pts):] = np.concatenate([steps, steps])
        return InterfacePoints(
            np.concatenate([pts, w_gap_pts, drop_pts.points[d_gap]]),
            np.zeros(len(pts) + n_gap, np.int64), np.concatenate([w_side, none]),
            np.concatenate([d_side, none]), gap_step=gap_step)
    if max_gap_px is not None:
        # A gap all along (labels alone, or a pair found only across a wide gap): the
        # droplet's edge points whose outward pixel step meets the wire within
        # ``max_gap_px``, and the wire's edge where each such ray lands. (Dilating by the gap
        # would also take in the free surface next to the triple points, and a fixed reach
        # would see only the parts of a wider, uneven gap that come within it.)
        d_gap, w_gap_pts, _ = _gap_rays(wire, droplet, drop_pts, (x, y, w, h), max_gap_px)
        if len(w_gap_pts) < len(pts):
            # no gap after all: a short interface (a wire a few pixels wide) shares fewer
            # edges than the gap fit needs; they are its points, not none
            return InterfacePoints(pts, np.zeros(len(pts), np.int64), w_side, d_side)
        return _two_edges(w_gap_pts, drop_pts.points[d_gap])
    # A thin background gap beside the iso-line: the wire's edge facing the droplet and the
    # droplet's facing the wire.
    kernel = disc(GAP_PX)
    near_drop = cv2.dilate(droplet.view(np.uint8), kernel).view(bool)
    near_wire = cv2.dilate(wire.view(np.uint8), kernel).view(bool)
    fine = drop_fine if drop_fine is not None else drop_pts
    w_on = near_drop[wire_pts.outside[:, 0], wire_pts.outside[:, 1]]
    d_on = near_wire[fine.outside[:, 0], fine.outside[:, 1]]
    points = np.concatenate([wire_pts.points[w_on], fine.points[d_on]])
    group = np.concatenate([np.zeros(np.count_nonzero(w_on), np.int64),
                            np.ones(np.count_nonzero(d_on), np.int64)])
    none = -np.ones((len(points), 2), np.int64)
    return InterfacePoints(points, group, none, none)


def _grouped_tls(pts: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Common normal of parallel lines (one per group) through ``pts``: (normal, offsets)."""
    means = np.zeros((2, 2))
    if not group.any():  # one line: no per-group bookkeeping
        means[0] = pts.mean(axis=0)
        centred = pts - means[0]
    else:
        for g in (0, 1):
            sel = group == g
            if sel.any():
                means[g] = pts[sel].mean(axis=0)
        # Each point less its group's mean (the same differences as subtracting in place
        # group by group).
        centred = pts - means[group]
    return smallmath.smallest_eigenvector(centred.T @ centred), means


def into_droplet_steps(iface: InterfacePoints) -> np.ndarray:
    """(N, 2) float64 unit pixel step across the interface at each point of ``iface``, from
    the wire's side to the droplet's (shared edges and a partial gap's sides); 0 where there
    is none (a thin gap all along, an iso-line)."""
    step = np.where((iface.wire_side[:, 0] >= 0)[:, None],
                    (iface.drop_side - iface.wire_side).astype(np.float64), 0.0)
    if iface.gap_step is not None:
        # a gap's step runs outward from the droplet, towards the wire
        on_gap = iface.gap_step.any(axis=1)
        step = np.where(on_gap[:, None], -iface.gap_step, step)
    return step


def _facing_counts(into: np.ndarray, normal: np.ndarray) -> tuple[int, int]:
    """How many of the steps ``into`` (M, 2) (:func:`into_droplet_steps`) cross a line of
    ``normal`` towards its positive side and how many towards its negative side (steps
    along the line, a corner's, count for neither)."""
    across = into @ normal
    return int(np.count_nonzero(across >= 0.3)), int(np.count_nonzero(across <= -0.3))


def _robust_line(
    pts: np.ndarray, group: np.ndarray, two: bool, keep: np.ndarray,
    prior_normal: np.ndarray | None, crossing: np.ndarray | None, max_iter: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The iterated total-least-squares line from the points ``keep``: (normal, per-group
    means (2, 2), inliers). ``crossing`` (N, 2) the points' steps across the interface
    (all zero rows: none), or None when no point has one."""
    on_drop = group == 1
    unstepped = None if crossing is None else ~crossing.any(axis=1)
    for _ in range(max_iter):
        if prior_normal is not None:
            normal = prior_normal / np.hypot(*prior_normal)
            means = np.array([pts[keep & (group == g)].mean(axis=0) if (keep & (group == g)).any()
                              else pts[keep].mean(axis=0) for g in (0, 1)])
        else:
            normal, means = _grouped_tls(pts[keep], group[keep])
            if not two:
                means[1] = means[0]
        res = np.where(on_drop, (pts - means[1]) @ normal, (pts - means[0]) @ normal)
        scale = 1.4826 * smallmath.median(np.abs(res[keep]))
        new = np.abs(res) <= max(MIN_OUTLIER_PX, 3.0 * scale)
        if crossing is not None:
            # A pixel pair side by side along the line (a corner step) does not cross it,
            # nor does a gap's side whose step runs along the line.
            new &= unstepped | (np.abs(crossing @ normal) >= 0.3)
        if np.count_nonzero(new) < 3 or np.array_equal(new, keep):
            break
        keep = new
    return normal, means, keep


def fit_facet_line(
    iface: InterfacePoints,
    towards_droplet: np.ndarray,
    prior_normal: np.ndarray | None = None,
    max_iter: int = 6,
) -> FacetLine | None:
    """Robust line through the interface points.

    ``towards_droplet`` (2,) any vector from the wire into the droplet (orients the normal).
    ``prior_normal`` (2,) fixes the orientation (a prior, e.g. the wire axis); only the
    offset is then fitted. Returns None for fewer than 3 points.
    """
    pts, group = iface.points, iface.group
    n = len(pts)
    if n < 3:
        return None
    on_drop = group == 1
    two = bool(on_drop.any() and (group == 0).any())
    into = into_droplet_steps(iface)
    stepped = into.any(axis=1)
    # Without such points (an iso-line's interface) the step test keeps every point.
    crossing = into if stepped.any() else None
    keep = np.ones(n, dtype=bool)
    normal, means, keep = _robust_line(pts, group, two, keep, prior_normal, crossing,
                                       max_iter)
    if crossing is not None and prior_normal is None:
        toward, away = _facing_counts(into[keep], normal)
        if min(toward, away) > MAX_FACING_AWAY_FRACTION * (toward + away):
            # Droplet on both sides of the line: it runs along a droplet label through the
            # wire (a leak), not along a facet. The interface's net step, wire to droplet,
            # is perpendicular to the chord between its ends whatever path it takes (the
            # leak's two sides cancel): start again from the points it crosses.
            net = into[stepped].sum(axis=0)
            if np.hypot(*net) > 0.0:
                start = ~stepped | (into @ (net / np.hypot(*net)) >= 0.3)
                if np.count_nonzero(start) >= 3:
                    normal, means, keep = _robust_line(pts, group, two, start, prior_normal,
                                                       crossing, max_iter)
    if normal @ towards_droplet < 0:
        normal = -normal
    if two:
        gap = max(float((means[1] - means[0]) @ normal), 0.0)
        point = 0.5 * (means[0] + means[1])
    else:
        gap, point = 0.0, means[0]
    direction = np.array([-normal[1], normal[0]])
    inl = pts[keep]
    res = np.where(on_drop, (pts - means[1]) @ normal, (pts - means[0]) @ normal)[keep]
    t = (inl - point) @ direction
    t_mean = float(t.mean())
    point = point + t_mean * direction  # centre of the inliers along the line
    t = t - t_mean
    m = int(np.count_nonzero(keep))
    scatter = 1.4826 * smallmath.median(np.abs(res))
    sd = float(np.sqrt(np.mean(res**2)))
    spread = float(np.sqrt(np.mean(t**2)))
    sigma_angle = 0.0 if prior_normal is not None else sd / max(spread * math.sqrt(m), 1e-9)
    return FacetLine(
        point=point,
        normal=normal,
        direction=direction,
        sigma_offset_px=sd / math.sqrt(m),
        sigma_angle_rad=sigma_angle,
        scatter_px=scatter,
        quantisation_px=_quantisation(iface, keep, point, normal),
        gap_px=gap,
        inliers=keep,
        length_px=float(t.max() - t.min()) if m else 0.0,
    )


def _quantisation(
    iface: InterfacePoints, keep: np.ndarray, point: np.ndarray, normal: np.ndarray
) -> float:
    """1-sigma of where a binary mask lets the line lie: every wire pixel centre of a shared
    edge is below it and every droplet centre above, so its offset is only known within
    [max below, min above] - up to 1 px wide when the facet runs along a pixel axis, or
    another low-order lattice direction. 0 when unknown (iso-line, gap) or inconsistent."""
    if iface.iso:
        return ISO_SIGMA_PX
    sel = keep & (iface.wire_side[:, 0] >= 0)
    if np.count_nonzero(sel) < 3:
        return 0.0
    # Percentiles, not extremes: a corner step of a pixel must not close the band.
    below = smallmath.percentile((iface.wire_side[sel] - point) @ normal, 95)
    above = smallmath.percentile((iface.drop_side[sel] - point) @ normal, 5)
    width = above - below
    return width / math.sqrt(12.0) if 0.0 < width <= 1.0 + 1e-9 else 0.0


@dataclass(frozen=True)
class RimFit:
    """A facet outline fitted as half an ellipse: ``offset_px`` of the rim from the flat
    line (positive into the droplet), bulge ``k_px`` (> 0 into the wire) with standard errors
    (independent residuals), and the ``residuals`` about the ellipse with their positions
    ``along`` the line (for the correlation inflation); ``reach`` how far towards the rim the
    points go on their shorter side, as a fraction of the half chord (0 .. 0.95)."""

    offset_px: float
    k_px: float
    se_offset_px: float
    se_k_px: float
    residuals: np.ndarray
    along: np.ndarray
    reach: float


def rim_shift(
    line: FacetLine, iface: InterfacePoints, foot_along: float, half_chord: float,
) -> RimFit | None:
    """Bulge of the interface as half an ellipse (a wire tilted out of the image plane).

    A tilted facet disc projects to an ellipse and the interface is half of it:
    ``offset = c - k sqrt(1 - (l / a)^2)`` with ``l`` along the line from the base centre
    ``foot_along`` and ``a`` the ``half_chord``; the triple points sit at the rim ``c``.
    None when there are fewer than 8 inliers inside the base.
    """
    pts = iface.points[line.inliers]
    grp = iface.group[line.inliers]
    if half_chord < 3.0 or len(pts) < 8:
        return None
    along = line.along(pts)
    lat = (along - foot_along) / half_chord
    inside = np.abs(lat) < 0.95
    if np.count_nonzero(inside) < 8:
        return None
    g = np.sqrt(np.clip(1.0 - lat[inside] ** 2, 0.0, 1.0))
    y = line.offset(pts[inside])
    cols = [grp[inside] == 0]
    if (grp[inside] == 1).any():
        cols.append(grp[inside] == 1)
    design = np.column_stack([*cols, -g]).astype(np.float64)
    try:
        normal_eq = design.T @ design
        coef = smallmath.solve(normal_eq, design.T @ y)
        res = y - design @ coef
        dof = max(len(y) - design.shape[1], 1)
        cov = smallmath.inverse(normal_eq) * float(res @ res) / dof
    except np.linalg.LinAlgError:
        return None
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    reach = min(max(float(lat[inside].max()), 0.0), max(-float(lat[inside].min()), 0.0))
    return RimFit(offset_px=float(np.mean(coef[:-1])), k_px=float(coef[-1]),
                  se_offset_px=float(np.mean(se[:-1])), se_k_px=float(se[-1]),
                  residuals=res, along=along[inside], reach=reach)
