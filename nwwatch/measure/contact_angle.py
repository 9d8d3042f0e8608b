"""Contact angle of a droplet on a nanowire's top facet from a label image (REFERENCE section 3).

Pipeline: pick the wire and its droplet (``components``), locate the wire axis, width and
facet line (``facet``), take the droplet's sub-pixel boundary (``edges``: the 0.5 iso-line
of the droplet probability when given, else pixel-edge midpoints of the mask), keep its free
surface only (away from the facet, the wire and the image border, so frame-cut droplets
work), fit a geometric circle (``circle``) and get ``cos(theta) = -s / R`` from the signed
distance ``s`` of the circle centre from the facet (positive on the droplet side), valid on
both sides of 90 degrees. Left and right angles come from circles fitted to each half of the
arc. Nothing depends on how the wire is oriented in the image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from nwwatch.measure import result as R
from nwwatch.measure.circle import CircleFit, geometric_fit, refine_on_pixel_edges, robust_fit
from nwwatch.measure.components import select_components
from nwwatch.measure.edges import BoundaryPoints, iso_boundary_points, mask_boundary_points
from nwwatch.measure.facet import Facet, FacetError, locate_facet
from nwwatch.measure.result import ContactAngleResult

#: Free-surface points closer than this to the facet line are not fitted (px).
FACET_MARGIN_PX = 1.5
MIN_POINTS = 12
MIN_ARC_SPAN_DEG = 30.0
MAX_RESIDUAL_RMS_PX = 1.5
#: A 1-sigma uncertainty above this means the visible arc cannot fix the angle (fit_failed).
MAX_UNCERTAINTY_DEG = 2.0
_NEAR = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def _check_inputs(
    labels: np.ndarray, droplet_probability: np.ndarray | None, pixel_size_nm: float | None
) -> None:
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError(
            f"labels must be a 2-D (H, W) numpy array, got {getattr(labels, 'shape', type(labels))}"
        )
    if labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8 (0 background, 1 wire, 2 droplet), "
                         f"got dtype {labels.dtype}")
    if droplet_probability is not None:
        p = droplet_probability
        if not isinstance(p, np.ndarray) or p.shape != labels.shape:
            raise ValueError(
                f"droplet_probability must have the labels' shape {labels.shape}, "
                f"got {getattr(p, 'shape', type(p))}"
            )
        if not np.issubdtype(p.dtype, np.floating):
            raise ValueError(f"droplet_probability must be floating point, got {p.dtype}")
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be a positive finite number, got {pixel_size_nm}")


def _arc_span_deg(points: np.ndarray, center: np.ndarray) -> float:
    ang = np.sort(np.arctan2(points[:, 0] - center[0], points[:, 1] - center[1]))
    gaps = np.diff(np.concatenate([ang, ang[:1] + 2 * np.pi]))
    return float(np.degrees(2 * np.pi - gaps.max()))


def _angle_deg(fit: CircleFit, facet: Facet) -> float:
    s = float((fit.center - facet.point) @ facet.u)
    return math.degrees(math.acos(float(np.clip(-s / fit.radius, -1.0, 1.0))))


def _side_angles(
    pts: np.ndarray, outward: np.ndarray | None, fit: CircleFit, facet: Facet, foot: np.ndarray
) -> tuple[float | None, float | None]:
    """Angles from circles fitted to each half of the arc (left: +n side); ``outward`` given
    for binary-mask points (pixel-edge refinement)."""
    lat = (pts - foot) @ facet.n
    out: list[float | None] = []
    for side in (lat > 0, lat < 0):
        sub = pts[side]
        if len(sub) < MIN_POINTS or _arc_span_deg(sub, fit.center) < 20.0:
            out.append(None)
            continue
        side_fit = geometric_fit(sub, fit.center, fit.radius)
        if outward is not None and side_fit.converged:
            side_fit = refine_on_pixel_edges(sub, outward[side], side_fit)
        ok = side_fit.converged and np.isfinite(side_fit.radius)
        out.append(_angle_deg(side_fit, facet) if ok else None)
    return out[0], out[1]


def _free_surface(
    pts: BoundaryPoints, facet: Facet, wire: np.ndarray, shape: tuple[int, int],
    offset: tuple[int, int],
) -> np.ndarray:
    """Mask of droplet boundary points on the free surface (crop coordinates in ``pts``)."""
    keep = (pts.points - facet.point) @ facet.u > FACET_MARGIN_PX
    near_wire = cv2.dilate(wire.view(np.uint8), _NEAR).astype(bool)
    keep &= ~near_wire[pts.outside[:, 0], pts.outside[:, 1]]
    keep &= ~near_wire[pts.inside[:, 0], pts.inside[:, 1]]
    for px in (pts.inside, pts.outside):
        rows, cols = px[:, 0] + offset[0], px[:, 1] + offset[1]
        keep &= (rows > 0) & (rows < shape[0] - 1) & (cols > 0) & (cols < shape[1] - 1)
    return keep


def measure_contact_angle(
    labels: np.ndarray,
    droplet_probability: np.ndarray | None = None,
    pixel_size_nm: float | None = None,
) -> ContactAngleResult:
    """Measure the droplet's contact angle on the nanowire's top facet.

    Parameters
    ----------
    labels : uint8 (H, W)
        0 background, 1 nanowire, 2 droplet; (row, col), integer pixel centres.
    droplet_probability : float (H, W) in [0, 1], optional
        Droplet probability; when given, the droplet is contoured at its 0.5 iso-line.
    pixel_size_nm : float, optional
        Pixel size; fills the ``*_nm`` fields.

    Returns
    -------
    ContactAngleResult
        Always a value: bad geometry gives a failure ``status`` and a ``reason``. Raises
        ``ValueError`` only for malformed arguments (ndim, dtype, shape).
    """
    _check_inputs(labels, droplet_probability, pixel_size_nm)
    try:
        return _measure(labels, droplet_probability, pixel_size_nm)
    except np.linalg.LinAlgError as exc:
        # Degenerate point sets can still defeat a solver; a service must get a value back.
        return ContactAngleResult(
            R.FIT_FAILED, f"numerical failure in the geometry fit ({exc})",
            pixel_size_nm=pixel_size_nm)


def _measure(
    labels: np.ndarray, droplet_probability: np.ndarray | None, pixel_size_nm: float | None
) -> ContactAngleResult:
    shape = labels.shape
    sel = select_components(labels)
    if sel.status is not None:
        return ContactAngleResult(sel.status, sel.reason, pixel_size_nm=pixel_size_nm)
    base = dict(
        n_droplets=sel.n_droplets,
        droplet_cut=sel.droplet_cut,
        droplet_area_px2=sel.droplet_area_px2,
        pixel_size_nm=pixel_size_nm,
    )
    r0, c0, r1, c1 = sel.box
    offset = (r0, c0)
    wire_pts = mask_boundary_points(sel.wire)
    drop_pts = mask_boundary_points(sel.droplet)
    fine = None
    if droplet_probability is not None:
        iso = iso_boundary_points(droplet_probability[r0:r1, c0:c1])
        # Only the iso-line around the chosen droplet's outline (not other blobs or holes).
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        d8 = sel.droplet.view(np.uint8)
        ring = cv2.dilate(d8, kernel).astype(bool) & ~cv2.erode(d8, kernel).astype(bool)
        near = ring[iso.inside[:, 0], iso.inside[:, 1]] | ring[iso.outside[:, 0], iso.outside[:, 1]]
        fine = iso.subset(near)
        if len(fine) < MIN_POINTS:
            fine = None
    try:
        facet = locate_facet(sel.wire, sel.droplet, wire_pts, drop_pts, fine)
    except FacetError as exc:
        return ContactAngleResult(exc.status, exc.reason, **base)
    off = np.asarray(offset, dtype=float)
    axis_deg = math.degrees(math.atan2(-facet.u[0], facet.u[1]))
    facet_deg = math.degrees(math.atan2(-facet.n[0], facet.n[1]))
    geometry = dict(
        base,
        facet_row=float(facet.point[0] + off[0]),
        facet_col=float(facet.point[1] + off[1]),
        facet_angle_deg=facet_deg,
        facet_gap_px=facet.gap_px,
        wire_axis_deg=axis_deg,
        wire_tilt_deg=facet.tilt_deg,
        wire_width_px=2.0 * facet.half_width_px,
        base_half_width_px=facet.half_width_px,
    )
    contour = fine if fine is not None else drop_pts
    keep = _free_surface(contour, facet, sel.wire, shape, offset)
    pts = contour.points[keep]
    if len(pts) < MIN_POINTS:
        return ContactAngleResult(
            R.FIT_FAILED, f"only {len(pts)} droplet edge points on the free surface "
            f"(need {MIN_POINTS})", n_contour_points=len(pts), **geometry)
    fit, inliers = robust_fit(pts)
    pts = pts[inliers]
    outward = contour.outward[keep][inliers] if fine is None else None
    if outward is not None and fit.converged:  # binary mask: use what each pixel edge allows
        fit = refine_on_pixel_edges(pts, outward, fit)
    span = _arc_span_deg(pts, fit.center)
    radius = fit.radius
    fitted = dict(
        geometry,
        droplet_radius_px=radius,
        circle_center_row=float(fit.center[0] + off[0]),
        circle_center_col=float(fit.center[1] + off[1]),
        fit_residual_rms_px=fit.rms_px,
        arc_span_deg=span,
        n_contour_points=len(pts),
    )
    problem = None
    if not fit.converged or not np.isfinite(radius):
        problem = "the circle fit did not converge"
    elif span < MIN_ARC_SPAN_DEG:
        problem = f"the visible arc spans {span:.0f} deg (need {MIN_ARC_SPAN_DEG:.0f})"
    elif fit.rms_px > MAX_RESIDUAL_RMS_PX:
        problem = (f"the droplet outline is not a circle arc (residual RMS {fit.rms_px:.2f} px "
                   f"> {MAX_RESIDUAL_RMS_PX} px)")
    s = float((fit.center - facet.point) @ facet.u)
    ratio = -s / radius
    if problem is None and abs(ratio) > 1.0 + 2.0 / radius:
        problem = (f"the fitted circle (R = {radius:.1f} px) does not reach the facet line "
                   f"(centre {s:.1f} px from it)")
    if problem is not None:
        return ContactAngleResult(R.FIT_FAILED, problem, **fitted)
    theta = math.acos(float(np.clip(ratio, -1.0, 1.0)))
    foot = fit.center - s * facet.u
    half_chord = math.sqrt(max(radius**2 - s**2, 0.0))
    left = foot + half_chord * facet.n + off
    right = foot - half_chord * facet.n + off
    theta_left, theta_right = _side_angles(pts, outward, fit, facet, foot)
    # Uncertainty: fit covariance of (centre, R) and the facet position, propagated to theta.
    cov = fit.covariance
    grad = np.array([facet.u[0], facet.u[1], -s / radius]) / max(radius * math.sin(theta), 0.5)
    var = float(grad @ cov @ grad) + (facet.sigma_px / max(radius * math.sin(theta), 0.5)) ** 2
    theta_deg = math.degrees(theta)
    sigma_deg = math.degrees(math.sqrt(max(var, 0.0)))
    volume = math.pi * radius**3 / 3.0 * (2.0 - 3.0 * math.cos(theta) + math.cos(theta) ** 3)
    notes = []
    if sel.n_droplets > 1:
        notes.append(f"{sel.n_droplets} droplets; measured the one on the main wire")
    if sel.droplet_cut:
        notes.append("droplet cut by the frame")
    if facet.tilt_deg > 0:
        notes.append(f"facet seen as an ellipse: wire tilted ~{facet.tilt_deg:.0f} deg out of "
                     "the image plane (apparent angle)")
    if facet.gap_px > 0.5:
        notes.append(f"{facet.gap_px:.1f} px gap between droplet and wire")
    a = facet.half_width_px
    if abs(half_chord - a) > max(3.0, 0.25 * a):
        return ContactAngleResult(
            R.FIT_FAILED,
            f"the droplet's base ({2 * half_chord:.1f} px) does not match the wire width "
            f"({2 * a:.1f} px): the droplet does not wet the whole facet or the masks are wrong",
            contact_angle_deg=theta_deg, **fitted)
    if sigma_deg > MAX_UNCERTAINTY_DEG:
        return ContactAngleResult(
            R.FIT_FAILED,
            f"the angle is uncertain by +-{sigma_deg:.1f} deg (> {MAX_UNCERTAINTY_DEG:g}): "
            f"too little of the droplet outline is visible ({len(pts)} points, "
            f"{span:.0f} deg of arc)",
            contact_angle_deg=theta_deg, contact_angle_uncertainty_deg=sigma_deg, **fitted)
    lo, hi = R.PHYSICAL_RANGE_DEG
    if not lo <= theta_deg <= hi:
        status = R.OUT_OF_RANGE
        notes.insert(0, f"{theta_deg:.1f} deg is outside the physical range [{lo:g}, {hi:g}]")
    elif sel.n_droplets > 1:
        status = R.SEVERAL_DROPLETS
    else:
        status = R.OK
    return ContactAngleResult(
        status,
        "; ".join(notes),
        contact_angle_deg=theta_deg,
        contact_angle_left_deg=theta_left,
        contact_angle_right_deg=theta_right,
        contact_angle_uncertainty_deg=sigma_deg,
        cap_height_px=radius + s,
        triple_left_row=float(left[0]),
        triple_left_col=float(left[1]),
        triple_right_row=float(right[0]),
        triple_right_col=float(right[1]),
        droplet_volume_px3=volume,
        **fitted,
    )
