"""Wire axis, half-width and top-facet line, at sub-pixel precision and in any orientation.

Coordinates: ``t`` along the growth direction ``u`` (towards the droplet), ``l`` along the
left normal ``n`` (``u`` turned 90 degrees counter-clockwise on screen). Nothing here assumes
the wire is aligned with the pixel grid.

1. Initial axis: principal axis of the wire mask (image moments), or the wire-to-droplet
   centroid direction when the visible wire is not elongated; oriented towards the droplet.
2. Side edges: boundary points of the wire in a band just below the facet, one straight line
   per side; their mean slope refines the axis, their separation at the facet gives ``a``.
3. Facet: mean ``t`` of the wire's top boundary and of the droplet's bottom boundary (central
   part of the width only); the facet is midway, which is the shared boundary when they touch
   and the middle of the gap when a thin background gap separates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.measure.edges import BoundaryPoints

#: Boundary points closer than this to the wire's side edges are left out of the facet.
CORNER_MARGIN_PX = 1.5
#: Passes of (side edges -> width and axis correction -> facet level).
PASSES = 2
_NEAR_DROPLET = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))


@dataclass(frozen=True)
class Facet:
    """The facet line and the wire below it, in image (row, col) pixel coordinates.

    ``point`` is the facet's midpoint (on the wire's centre line), ``u`` the unit growth
    direction, ``n`` the unit left normal, ``half_width_px`` the wire half-width ``a`` at the
    facet, ``sigma_px`` the 1-sigma uncertainty of the facet position along ``u``, ``gap_px``
    the background gap between wire top and droplet bottom (0 when they touch).
    """

    point: np.ndarray
    u: np.ndarray
    n: np.ndarray
    half_width_px: float
    sigma_px: float
    gap_px: float
    tilt_deg: float = 0.0


class FacetError(Exception):
    """The facet cannot be located; ``status`` and the message say why."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _is(mask: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``mask`` at integer (row, col) ``pixels`` (N, 2)."""
    return mask[pixels[:, 0], pixels[:, 1]]


def _robust_mean(values: np.ndarray) -> tuple[float, float, int]:
    """Mean after clipping at max(1 px, 3 robust sigma) from the median; (mean, sd, n)."""
    med = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - med)))
    keep = np.abs(values - med) <= max(1.0, 3.0 * mad)
    v = values[keep]
    return float(v.mean()), float(v.std()), int(v.size)


def _robust_scale(values: np.ndarray) -> float:
    """1.4826 x median absolute deviation (the standard deviation for Gaussian scatter)."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _robust_line(t: np.ndarray, lat: np.ndarray) -> tuple[float, float, int]:
    """Fit lat = c + m t, dropping points farther than max(0.75 px, 3 robust sigma); (c, m, n)."""
    keep = np.ones(t.size, dtype=bool)
    c = m = 0.0
    for _ in range(3):
        design = np.column_stack([np.ones(int(keep.sum())), t[keep]])
        (c, m), *_ = np.linalg.lstsq(design, lat[keep], rcond=None)
        res = lat - (c + m * t)
        mad = 1.4826 * float(np.median(np.abs(res[keep])))
        new = np.abs(res) <= max(0.75, 3.0 * mad)
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    return float(c), float(m), int(keep.sum())


#: A facet outline bulging by more than this (and 4 standard errors) is fitted as an ellipse.
MIN_BULGE_PX = 1.0
#: Narrower facets have too few boundary points to tell a bulge from pixel steps.
MIN_BULGE_HALF_WIDTH_PX = 15.0
#: Robust scatter of the wire/droplet interface points about the fitted facet (flat line or
#: half ellipse) above which the facet cannot be placed. Label images rendered from a model
#: scatter 0.2-0.6 px; the ragged interfaces of an uncertain network, 1.5-4 px, bulge at
#: random and were read as 10-25 deg tilts with wrong angles marked ok.
MAX_INTERFACE_SCATTER_PX = 1.0


def _facet_bulge(
    t_wire: np.ndarray, l_wire: np.ndarray, t_drop: np.ndarray, l_drop: np.ndarray, a: float,
    min_bulge_px: float = 1.0,
) -> tuple[float, float, float] | None:
    """Rim levels of a facet seen as half an ellipse (a wire tilted out of the image plane).

    A tilted facet disc projects to an ellipse; the label boundary between wire and droplet is
    half of it: ``t = t_rim - k sqrt(1 - (l/a)^2)``. Fits one ``k`` shared by the wire-top and
    droplet-bottom points and one rim level each; returns (t_rim_wire, t_rim_drop, k) when the
    bulge ``k`` is significant (above ``min_bulge_px`` and 4 standard errors), else None (a
    flat facet: the plain means are more precise).
    """
    n_w, n_d = t_wire.size, t_drop.size
    if n_w + n_d < 8:
        return None
    l_all = np.concatenate([l_wire, l_drop]) / a
    g = np.sqrt(np.clip(1.0 - l_all**2, 0.0, 1.0))
    design = np.zeros((n_w + n_d, 3))
    design[:n_w, 0] = 1.0
    design[n_w:, 1] = 1.0
    design[:, 2] = -g
    t_all = np.concatenate([t_wire, t_drop])
    coef, *_ = np.linalg.lstsq(design, t_all, rcond=None)
    res = t_all - design @ coef
    keep = np.abs(res) <= max(1.0, 3.0 * 1.4826 * float(np.median(np.abs(res))))
    coef, *_ = np.linalg.lstsq(design[keep], t_all[keep], rcond=None)
    res = t_all[keep] - design[keep] @ coef
    dof = max(int(keep.sum()) - 3, 1)
    try:
        cov = np.linalg.inv(design[keep].T @ design[keep]) * float(res @ res) / dof
    except np.linalg.LinAlgError:
        return None
    k, se_k = float(coef[2]), math.sqrt(max(cov[2, 2], 0.0))
    if 1.4826 * float(np.median(np.abs(res))) > MAX_INTERFACE_SCATTER_PX:
        return None  # not an ellipse: a ragged outline, judged on the flat path
    # Only a bulge into the wire is a tilt (the droplet's projection covers the whole base
    # ellipse); the opposite sign is what a truncated facet corner looks like.
    if k < max(min_bulge_px, 4.0 * se_k):
        return None
    return float(coef[0]), float(coef[1]), k


def _facet_normal(points: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Unit normal of the robust principal line through ``points``, on the side of ``u``."""
    keep = np.ones(len(points), dtype=bool)
    normal = u
    for _ in range(3):
        p = points[keep] - points[keep].mean(axis=0)
        evals, evecs = np.linalg.eigh(p.T @ p)
        if evals[1] < 4.0 * max(evals[0], 1e-9):  # no clear line: keep the current axis
            return u
        normal = evecs[:, 0] if evecs[:, 0] @ u > 0 else -evecs[:, 0]
        dist = (points - points[keep].mean(axis=0)) @ normal
        new = np.abs(dist) <= max(1.5, 3.0 * 1.4826 * float(np.median(np.abs(dist[keep]))))
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    return normal


def _initial_axis(wire: np.ndarray, droplet: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    mw = cv2.moments(wire.view(np.uint8), binaryImage=True)
    md = cv2.moments(droplet.view(np.uint8), binaryImage=True)
    wc = np.array([mw["m01"], mw["m10"]]) / mw["m00"]  # (row, col)
    dc = np.array([md["m01"], md["m10"]]) / md["m00"]
    cov = np.array([[mw["mu02"], mw["mu11"]], [mw["mu11"], mw["mu20"]]]) / mw["m00"]
    evals, evecs = np.linalg.eigh(cov)
    towards = dc - wc
    if evals[1] > 4.0 * max(evals[0], 1e-9):  # elongated: length > 2x width
        u = evecs[:, 1]
        if u @ towards < 0:
            u = -u
        half_width = math.sqrt(3.0 * max(evals[0], 0.25))  # rectangle: var = w^2/12
    else:
        norm = float(np.hypot(*towards))
        if norm < 1e-6:
            raise FacetError("fit_failed", "wire and droplet have the same centroid")
        u = towards / norm
        half_width = 0.5 * math.sqrt(mw["m00"])
    return wc, u, half_width


def locate_facet(
    wire: np.ndarray,
    droplet: np.ndarray,
    wire_pts: BoundaryPoints,
    drop_pts: BoundaryPoints,
    drop_fine_pts: BoundaryPoints | None = None,
) -> Facet:
    """Locate the facet from the wire/droplet masks (bool, same crop) and their boundary points.

    ``wire_pts``/``drop_pts`` are binary-mask boundary points in crop coordinates;
    ``drop_fine_pts`` optional sub-pixel droplet points (probability iso-line), preferred for
    the droplet's bottom edge. Raises ``FacetError`` when the geometry does not allow it.
    """
    origin, u, a = _initial_axis(wire, droplet)
    fine = drop_fine_pts if drop_fine_pts is not None else drop_pts
    wp = wire_pts.points - origin
    fp = fine.points - origin
    # The wire's edge next to the droplet is the facet (plus a few px of the sides, which are
    # symmetric about it): its principal direction corrects a principal axis biased by a
    # frame-cut or short wire.
    near = cv2.dilate(droplet.view(np.uint8), _NEAR_DROPLET).astype(bool)
    at_top = near[wire_pts.outside[:, 0], wire_pts.outside[:, 1]]
    if at_top.sum() < 3:
        raise FacetError("droplet_not_on_wire", "the droplet does not touch the wire's end")
    u = _facet_normal(wp[at_top], u)
    t_f = float(np.mean(wp[at_top] @ u))
    lc = None
    sigma = gap = 0.0
    for it in range(PASSES):
        n = np.array([-u[1], u[0]])
        tw, lw = wp @ u, wp @ n
        # Side edges in a band just below the facet.
        band = float(np.clip(2.0 * a, 10.0, 60.0))
        in_band = (tw < t_f - 2.0) & (tw > t_f - 2.0 - band) & ~at_top
        if lc is None:  # first pass: the middle of the band's lateral extent
            if not in_band.any():
                raise FacetError("fit_failed", "the wire has no side edges below its top")
            lo, hi = np.percentile(lw[in_band], (2, 98))
            lc = 0.5 * (lo + hi)
        left = in_band & (lw > lc)
        right = in_band & (lw < lc)
        if left.sum() < 4 or right.sum() < 4:
            raise FacetError(
                "fit_failed",
                "too few wire side-edge points below the facet to measure its width "
                "(is a side of the wire outside the frame?)",
            )
        cl, ml, nl = _robust_line(tw[left] - t_f, lw[left])
        cr, mr, nr = _robust_line(tw[right] - t_f, lw[right])
        a = 0.5 * (cl - cr)
        if a < 1.0:
            raise FacetError("fit_failed", f"wire half-width {a:.2f} px is too small to measure")
        lc = 0.5 * (cl + cr)
        slope = (ml * nl + mr * nr) / (nl + nr)
        # Facet: top of the wire and bottom of the droplet, central part of the width.
        central = a - CORNER_MARGIN_PX
        top = ((wire_pts.outward @ u) > 0.3) & (np.abs(lw - lc) < central)
        top &= tw > t_f - max(4.0, 0.5 * a)
        if top.sum() < 2:
            raise FacetError("fit_failed", "the wire's top facet is not visible")
        t_wire, sd_wire, n_wire = _robust_mean(tw[top])
        tf_, lf_ = fp @ u, fp @ n
        bottom = ((fine.outward @ u) < -0.3) & (np.abs(lf_ - lc) < central)
        bottom &= tf_ < t_wire + 2.0 * 4 + 2.0
        if bottom.sum() < 2:
            raise FacetError(
                "droplet_not_on_wire",
                "the droplet does not sit on the wire's top facet (no droplet edge above it)",
            )
        t_drop, sd_drop, n_drop = _robust_mean(tf_[bottom])
        # A near grid-aligned facet is quantised to +-0.5 px from a binary mask: the staircase
        # along its length 2a has ~2a*|tan| steps to average over.
        ang = math.atan2(abs(u[0]), abs(u[1]))
        eps = min(ang, math.pi / 2 - ang)
        steps = 1.0 + 2.0 * a * math.tan(eps)
        bulge = None
        if it == PASSES - 1 and a >= MIN_BULGE_HALF_WIDTH_PX:
            # a one-step staircase can mimic a small bulge: demand more near the grid
            min_bulge = MIN_BULGE_PX if steps >= 3 else 1.5 * MIN_BULGE_PX
            bulge = _facet_bulge(tw[top], lw[top] - lc, tf_[bottom], lf_[bottom] - lc, a,
                                 min_bulge)
        if bulge is not None:  # tilted wire: the triple points sit at the rim's level
            t_wire, t_drop, bulge_px = bulge
        else:
            bulge_px = 0.0
            scatter = max(_robust_scale(tw[top]), _robust_scale(tf_[bottom]))
            if it == PASSES - 1 and scatter > MAX_INTERFACE_SCATTER_PX:
                raise FacetError(
                    "fit_failed",
                    f"the wire/droplet interface is ragged (scatter {scatter:.1f} px > "
                    f"{MAX_INTERFACE_SCATTER_PX:.0f} px): the facet line cannot be placed",
                )
        gap = max(t_drop - t_wire, 0.0)
        if drop_fine_pts is not None and gap <= 1.0:
            t_f, sd, nn = t_drop, sd_drop, n_drop  # the iso-line is the interface itself
        else:
            t_f = 0.5 * (t_wire + t_drop)
            sd, nn = math.hypot(sd_wire, sd_drop) / 2 ** 0.5, n_wire + n_drop
        if bulge is not None:
            sd *= 3.0  # the rim level is extrapolated from the ellipse fit
        quant = (0.05 if drop_fine_pts is not None else 0.29) / steps
        if drop_fine_pts is None and bulge is None and gap <= 0.5:
            # Binary mask, shared boundary: every wire pixel centre lies below the facet and
            # every droplet pixel centre across it above, so the facet level is only known
            # within [max below, min above] - wide at low-order directions (0, 45, 26.6 deg
            # ...), not only near the grid axes. On a clean mask that width sets the
            # quantisation term (the mean stays the estimate: the interval's ends are
            # sensitive to the axis direction on wide wires).
            shared = top & _is(droplet, wire_pts.outside)
            if shared.sum() >= 4:
                below = float(((wire_pts.inside[shared] - origin) @ u).max())
                above = float(((wire_pts.outside[shared] - origin) @ u).min())
                if 0.0 < above - below <= 1.0:
                    quant = (above - below) / math.sqrt(12.0)
        sigma = math.sqrt(sd**2 / max(nn, 1) + quant**2 + (gap / (2 * math.sqrt(3))) ** 2)
        if it < PASSES - 1:  # refine the axis with the side-edge slope for the next pass
            u = u + slope * n
            u /= np.hypot(*u)
    n = np.array([-u[1], u[0]])
    point = origin + t_f * u + lc * n
    tilt = math.degrees(math.asin(min(abs(bulge_px) / a, 1.0)))
    return Facet(point=point, u=u, n=n, half_width_px=float(a), sigma_px=sigma, gap_px=gap,
                 tilt_deg=tilt)
