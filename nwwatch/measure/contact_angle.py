"""Contact angle of a droplet on a nanowire's top facet from a label image.

Pipeline: pick the wire and its droplet (``components``); fit the facet line to the
wire/droplet interface itself, orientation free (``interface``; perpendicular to the wire
axis only as a prior when the interface is too short to orient itself); take the droplet's
sub-pixel boundary (``edges``: the 0.5 iso-line of the droplet probability when given, else
pixel-edge midpoints of the mask), keep its free surface (``arc``: beyond the facet line,
away from the wire and the image border, so frame-cut droplets work), fit a geometric circle
(``circle``) and get ``cos(theta) = -s / R`` from the signed distance ``s`` of the circle
centre from the facet line (positive on the droplet side), valid on both sides of 90 degrees.
The facet is read as flat or as half an ellipse (``tilt``); the triple points are where the
line meets the circle. Given the raw frame, a flat facet line is moved onto the frame's
wire/droplet intensity step where that step is clear (``refine``). The 1-sigma comes from
``uncertainty`` and ``capcheck`` (labels that are not the measured cap). The wire's axis
and width (``wire``) are reported but the angle does not use them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE, UNLABELED
from nwwatch.measure import capcheck
from nwwatch.measure import result as R
from nwwatch.measure.arc import (
    MIN_POINTS,
    SideFit,
    arc_position_rad,
    arc_span_deg,
    contact_outline_in_frame,
    free_surface,
    on_border,
    side_fits,
)
from nwwatch.measure.circle import (
    CircleFit,
    envelope_depth_px,
    refine_on_pixel_edges,
    robust_fit,
    with_quantisation_floor,
)
from nwwatch.measure.components import Selection, select_components
from nwwatch.measure.facet import Facet, fit_facet, place_facet, signed_deg
from nwwatch.measure.interface import FacetLine
from nwwatch.measure.notes import result_notes
from nwwatch.measure.outlines import PairOutlines, pair_outlines
from nwwatch.measure.result import ContactAngleResult, MeasurementPoints, Refused, refuse
from nwwatch.measure.uncertainty import (
    CALIBRATION,
    choice_sigma_deg,
    combine_deg,
    correlation_factor,
    edge_sigma_deg,
    envelope_sigma_deg,
    gap_variance,
    statistical_variances,
    uncertain_reason,
)

MIN_ARC_SPAN_DEG = 30.0
#: Residual RMS of the circle fit above which the outline is not a circle arc: relative to R
#: (a wrong shape grows with size) with a floor for the 1-3 px wiggles of drawn boundaries.
MAX_RESIDUAL_RMS_PX = 3.0
MAX_RESIDUAL_RMS_FRACTION = 0.03
#: A 1-sigma uncertainty above this means the visible arc cannot fix the angle. On a change
#: (a measurement version bump), add the versions that refused with the old value to
#: :data:`EARLIER_MAX_UNCERTAINTY_DEG`.
MAX_UNCERTAINTY_DEG = 1.5
#: The cut of earlier measurement versions, as (first version, last version, cut in deg),
#: both versions included, from the project's history: 1.0.0 refused above 2.0 deg (as
#: status ``fit_failed``: reason codes came with 2.0.0), 2.0.0 to 2.2.20 above 1.5 deg.
EARLIER_MAX_UNCERTAINTY_DEG = (((1, 0, 0), (1, 0, 0), 2.0), ((2, 0, 0), (2, 2, 20), 1.5))


def max_uncertainty_deg_of(version: str | None) -> float | None:
    """The refusal cut on the angle's 1 sigma (deg) of rows of measurement ``version``:
    :data:`MAX_UNCERTAINTY_DEG` for this nwwatch's version, else that of
    :data:`EARLIER_MAX_UNCERTAINTY_DEG`; None for a version neither names (a later one,
    none, or not a version)."""
    if version == R.MEASUREMENT_VERSION:
        return MAX_UNCERTAINTY_DEG
    number = R.measurement_version_tuple(str(version))
    if not number:
        return None
    return next((cut for first, last, cut in EARLIER_MAX_UNCERTAINTY_DEG
                 if first <= number <= last), None)
#: Interface scatter allowed, as its cost in degrees at the droplet's size: a scatter of
#: ``d`` px about the facet line is ``d / a`` rad of angle if it were all systematic.
MAX_SCATTER_COST_DEG = 6.0
#: The interface must span at least this share of the droplet's base (circle x line).
MIN_BASE_COVERAGE = 0.25


#: Rounding a softmax may leave a probability a little outside [0, 1].
_PROBABILITY_SLACK = 1e-3


def _check_inputs(
    labels: np.ndarray, droplet_probability: np.ndarray | None, pixel_size_nm: float | None,
    image: np.ndarray | None = None,
) -> None:
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError(
            f"labels must be a 2-D (H, W) numpy array, got {getattr(labels, 'shape', type(labels))}"
        )
    if labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8 (0 background, 1 wire, 2 droplet), "
                         f"got dtype {labels.dtype}")
    if labels.size and labels.max() > DROPLET:
        # 255 (unlabeled) or a fourth class would be measured as background without a word
        extra = np.setdiff1d(np.unique(labels), (BACKGROUND, NANOWIRE, DROPLET))
        unlabeled = " (255: unlabeled pixels; every pixel needs a class)" if UNLABELED in extra \
            else ""
        raise ValueError(f"labels must hold only 0 background, 1 wire, 2 droplet, found "
                         f"{extra[:5].tolist()}{unlabeled}")
    if droplet_probability is not None:
        p = droplet_probability
        if not isinstance(p, np.ndarray) or p.shape != labels.shape:
            raise ValueError(
                f"droplet_probability must have the labels' shape {labels.shape}, "
                f"got {getattr(p, 'shape', type(p))}"
            )
        if not np.issubdtype(p.dtype, np.floating):
            raise ValueError(f"droplet_probability must be floating point, got {p.dtype}")
        # a map on a 0-255 or percent scale moved the free surface's fit by degrees, 'ok';
        # NaN fails both comparisons (~0.03 ms at 512²)
        if p.size and not (p.min() >= -_PROBABILITY_SLACK and p.max() <= 1 + _PROBABILITY_SLACK):
            finite = p[np.isfinite(p)]
            held = (f"values from {float(finite.min()):g} to {float(finite.max()):g}"
                    if finite.size else "no finite value")
            odd = [name for name, found in (("NaN", np.isnan(p).any()),
                                             ("inf", np.isposinf(p).any()),
                                             ("-inf", np.isneginf(p).any())) if found]
            raise ValueError(f"droplet_probability must hold probabilities in [0, 1], got "
                             f"{held}{''.join(f' and {name}' for name in odd)}")
    if image is not None:
        if not isinstance(image, np.ndarray) or image.shape != labels.shape:
            raise ValueError(f"image must have the labels' shape {labels.shape}, "
                             f"got {getattr(image, 'shape', type(image))}")
        if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype,
                                                                       np.integer)):
            raise ValueError(f"image must be numeric, got {image.dtype}")
    if pixel_size_nm is not None and (
            isinstance(pixel_size_nm, bool) or not isinstance(pixel_size_nm, numbers.Real)
            or not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0)):
        raise ValueError(f"pixel_size_nm must be a positive finite number, got "
                         f"{pixel_size_nm!r} ({type(pixel_size_nm).__name__})")


def measure_contact_angle(
    labels: np.ndarray,
    droplet_probability: np.ndarray | None = None,
    pixel_size_nm: float | None = None,
    image: np.ndarray | None = None,
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
    image : float or integer (H, W), optional
        The frame the labels were drawn from, raw (not normalised: the normalisation clips
        the darkest pixels, often the droplet, which moves the step). When given, a flat
        facet line is moved onto the image's wire/droplet intensity step where that step is
        clear (:func:`nwwatch.measure.refine.refine_facet_line`; ``facet_edge`` says what was
        done), and the disagreement between labels and image enters the uncertainty. Without
        it the labels alone are measured.

    Returns
    -------
    ContactAngleResult
        Always a value: bad geometry gives a failure ``status``, a ``reason_code`` and a
        ``reason``. Raises ``ValueError`` only for malformed arguments (ndim, dtype, shape,
        label values other than 0, 1, 2).
    """
    _check_inputs(labels, droplet_probability, pixel_size_nm, image)
    if pixel_size_nm is not None:
        # a Python float: numpy's int16 wrapped, and float16 overflowed, in the nm columns'
        # powers of it; a Fraction could not be written to Parquet
        pixel_size_nm = float(pixel_size_nm)
    if image is not None and image.dtype.kind == "f" and image.dtype not in (np.float32,
                                                                             np.float64):
        # scipy's interpolation reads float32 and float64 only: float16 widens exactly (and
        # keeps a float's resolution near its own), long double narrows
        image = image.astype(np.float32 if image.dtype.itemsize < 4 else np.float64)
    try:
        return _measure(labels, droplet_probability, pixel_size_nm, image)
    except Refused as refused:
        return refused.result
    except np.linalg.LinAlgError as exc:
        # Degenerate point sets can still defeat a solver; a service must get a value back.
        return ContactAngleResult(
            R.FIT_FAILED, f"numerical failure in the geometry fit ({exc})", "numerical_failure",
            pixel_size_nm=pixel_size_nm)


@dataclass(frozen=True)
class _Cap:
    """The droplet's circle: ``pts`` the inlier free-surface points (crop coordinates),
    ``span_deg`` their arc, ``s_px`` the centre's signed distance from the facet line,
    ``fields`` the result's columns so far, ``envelope_px`` how far the radius may be short
    (:func:`nwwatch.measure.circle.envelope_depth_px`; 0 for a probability map's outline)."""

    fit: CircleFit
    pts: np.ndarray
    span_deg: float
    s_px: float
    fields: dict
    envelope_px: float = 0.0


def _measure(
    labels: np.ndarray, droplet_probability: np.ndarray | None, pixel_size_nm: float | None,
    image: np.ndarray | None,
) -> ContactAngleResult:
    sel = select_components(labels)
    if sel.status is not None:
        return ContactAngleResult(sel.status, sel.reason, sel.reason_code,
                                  n_droplets=sel.n_droplets, pixel_size_nm=pixel_size_nm)
    base = dict(n_droplets=sel.n_droplets, droplet_cut=sel.droplet_cut,
                droplet_area_px2=sel.droplet_area_px2, pixel_size_nm=pixel_size_nm)
    # Each stage raises Refused, with the failure as its result, when its check fails.
    outlines = pair_outlines(sel, droplet_probability)
    facet = fit_facet(sel, outlines, labels.shape, base)
    cap = _circle(sel, outlines, facet, labels.shape)
    return _angle(sel, facet, cap, labels, image)


def _circle(sel: Selection, outlines: PairOutlines, facet: Facet,
            shape: tuple[int, int]) -> _Cap:
    """The circle fitted to the droplet's free surface, and the checks that it and the facet
    line make a measurable cap."""
    line, iface = facet.line, facet.iface
    off = np.asarray(sel.box[:2], dtype=float)
    contour = outlines.fine if outlines.fine is not None else outlines.droplet
    border = on_border(contour, shape, sel.box[:2])
    ends = line.along(iface.points[line.inliers])
    keep = free_surface(contour, line, sel.wire, border,
                        (float(ends.min()), float(ends.max())) if ends.size else None)
    all_pts = contour.points[keep]
    if len(all_pts) < MIN_POINTS:
        raise refuse("free_surface_too_small", f"only {len(all_pts)} droplet edge points on "
                     f"the free surface (need {MIN_POINTS})", n_contour_points=len(all_pts),
                     **facet.fields)
    fit, inliers = robust_fit(all_pts)
    pts = all_pts[inliers]
    outward = contour.outward[keep][inliers] if outlines.fine is None else None
    envelope_px = 0.0
    if outward is not None and fit.converged:  # binary mask: use what each pixel edge allows
        fit = with_quantisation_floor(refine_on_pixel_edges(pts, outward, fit), pts, outward)
        # a drawn polygon's chords: only a binary mask is drawn so (a probability map's
        # contour is smooth)
        envelope_px = envelope_depth_px(pts, arc_position_rad(pts, fit.center), fit)
    span = arc_span_deg(pts, fit.center)
    radius = fit.radius
    points = MeasurementPoints(
        circle=pts + off, circle_rejected=all_pts[~inliers] + off,
        facet=iface.points[line.inliers] + off, facet_rejected=iface.points[~line.inliers] + off)
    centre_s = float(line.offset(fit.center[None, :])[0])
    foot = (fit.center - centre_s * line.normal + off if np.isfinite(fit.center).all()
            else None)
    fitted = dict(
        facet.fields,
        **({} if foot is None else {"facet_row": float(foot[0]),
                                    "facet_col": float(foot[1])}),
        droplet_radius_px=radius,
        circle_center_row=float(fit.center[0] + off[0]),
        circle_center_col=float(fit.center[1] + off[1]),
        fit_residual_rms_px=fit.rms_px,
        arc_span_deg=span,
        n_contour_points=len(pts),
        points=points,
    )
    if not fit.converged:
        raise refuse("not_a_circle", f"the circle fit failed: {fit.reason}", **fitted)
    if span < MIN_ARC_SPAN_DEG:
        raise refuse("arc_too_short", f"the visible arc spans {span:.0f} deg "
                     f"(need {MIN_ARC_SPAN_DEG:.0f})", **fitted)
    max_rms = max(MAX_RESIDUAL_RMS_PX, MAX_RESIDUAL_RMS_FRACTION * radius)
    if fit.rms_px > max_rms:
        raise refuse("not_a_circle", f"the droplet outline is not a circle arc (residual RMS "
                     f"{fit.rms_px:.2f} px > {max_rms:.1f} px)", **fitted)
    s = centre_s
    # Scatter judged by its cost in degrees at this size: d px about the line is up to
    # d / a rad of angle (a: half the chord, or R when the circle misses the line).
    scale = math.sqrt(max(radius**2 - s**2, 0.0)) if abs(s) < radius else radius
    cost_deg = math.degrees(line.scatter_px / max(scale, 1.0))
    if cost_deg > MAX_SCATTER_COST_DEG:
        raise refuse("interface_not_line", f"the wire/droplet interface scatters "
                     f"{line.scatter_px:.1f} px about its line, {cost_deg:.1f} deg at this "
                     f"droplet size (> {MAX_SCATTER_COST_DEG:g} deg)", **fitted)
    if abs(s / radius) > 1.0 + 2.0 / radius:
        raise refuse("circle_misses_facet", f"the fitted circle (R = {radius:.1f} px) does "
                     f"not reach the facet line (centre {s:.1f} px from it)", **fitted)
    half_chord = math.sqrt(max(radius**2 - s**2, 0.0))
    if line.length_px < MIN_BASE_COVERAGE * 2.0 * half_chord:
        # Where the base's ends lie outside the image the frame hides the contact, which is
        # another fault than a droplet beside the wire's end.
        foot = fit.center - s * line.normal + off
        ends = foot + np.outer((-half_chord, half_chord), line.direction)
        outside = ((ends < -0.5) | (ends > np.array(shape) - 0.5)).any()
        # under a quarter of the base: a droplet beside the wire's end, or one on the end
        # of a wire far narrower than its base (the interface then fixes the line poorly)
        why = ("the frame cuts the droplet's base (an end of it lies outside the image)"
               if outside else f"the interface covers under {MIN_BASE_COVERAGE:.0%} of the "
               "base (a droplet beside the wire's end, or a wire far narrower than the base)")
        raise refuse("interface_missing", f"the droplet meets the wire over "
                     f"{line.length_px:.0f} px only, but its base would be "
                     f"{2 * half_chord:.0f} px wide: {why}", **fitted)
    return _Cap(fit, pts, span, s, fitted, envelope_px)


def _side_sigma_deg(side: SideFit, line: FacetLine, shift_px: float, line_factor: float,
                    systematic_deg: list[float]) -> float:
    """1-sigma (degrees) of one side's angle: its own circle's fit (inflated for correlated
    residuals) on the facet line, as the whole arc's, with the whole cap's systematic terms.
    Half an arc fixes its circle far less well than the whole: a short or wiggled half bends
    its circle by degrees where the whole cap's angle moves by tenths."""
    theta = math.radians(side.angle_deg)
    s = float(line.offset(side.fit.center[None, :])[0]) - shift_px
    foot = side.fit.center - s * line.normal
    res = np.hypot(*(side.points - side.fit.center).T) - side.fit.radius
    circle_var, line_var = statistical_variances(
        side.fit, line, theta, float(line.along(foot[None, :])[0]),
        correlation_factor(res, arc_position_rad(side.points, side.fit.center)), line_factor)
    return combine_deg(CALIBRATION * math.degrees(math.sqrt(max(circle_var + line_var, 0.0))),
                       *systematic_deg)


def _angle(sel: Selection, facet: Facet, cap: _Cap, labels: np.ndarray,
           image: np.ndarray | None) -> ContactAngleResult:
    """The angle, its triple points, side angles and 1-sigma; refused when that is above
    ``MAX_UNCERTAINTY_DEG``."""
    r0, c0 = sel.box[:2]
    off = np.asarray((r0, c0), dtype=float)
    fit, pts, radius = cap.fit, cap.pts, cap.fit.radius
    placed = place_facet(facet, fit, cap.s_px, labels, image, off)
    shape, line, free_line, s, edge = (placed.shape, placed.line, placed.free_line,
                                       placed.s_px, placed.edge)
    shift, tilt_deg = shape.shift_px, shape.tilt_deg
    theta = math.acos(float(np.clip(-s / radius, -1.0, 1.0)))
    theta_deg = math.degrees(theta)
    foot = fit.center - s * line.normal
    half_chord = math.sqrt(max(radius**2 - s**2, 0.0))
    left = foot + half_chord * line.direction + off
    right = foot - half_chord * line.direction + off
    upper = np.array(labels.shape) - 0.5
    visible = tuple(bool(((p > -0.5) & (p < upper)).all()) for p in (left, right))
    if facet.fields["droplet_cut"]:
        # a side is read only where the frame shows its outline down to the contact (a
        # droplet the frame leaves whole was seen all round, whatever its circle does)
        visible = contact_outline_in_frame(pts, fit, line, foot, half_chord, -0.5 - off,
                                           upper - off)
    sides = side_fits(pts, fit, line, foot, shift, visible)
    # Uncertainty: fits (inflated for correlated residuals) plus the model choices.
    res_c = np.hypot(*(pts - fit.center).T) - radius
    ang_c = arc_position_rad(pts, fit.center)
    lever = float(line.along(foot[None, :])[0])
    circle_var, line_var = statistical_variances(
        fit, line, theta, lever, correlation_factor(res_c, ang_c), shape.line_factor)
    stat = math.sqrt(max(circle_var + line_var, 0.0))
    wire_axis = facet.wire.axis
    incl = (math.radians(signed_deg(line.normal, wire_axis))
            if wire_axis is not None else None)
    excess_px = capcheck.cap_excess_px(sel.droplet, (r0, c0), fit.center + off, radius,
                                       foot + off, line.normal, half_chord, fit.rms_px)
    depth_px = capcheck.triple_point_depth_px(sel.wire, sel.droplet, (r0, c0), labels.shape,
                                              (left, right))
    gap_var = gap_variance(line, radius * math.sin(theta))
    terms_deg = {
        "outline": CALIBRATION * math.degrees(math.sqrt(max(circle_var, 0.0))),
        "outline_envelope": envelope_sigma_deg(cap.envelope_px, radius, theta),
        "facet_line": CALIBRATION * math.degrees(math.sqrt(max(line_var - gap_var, 0.0))),
        "facet_gap": CALIBRATION * math.degrees(math.sqrt(gap_var)),
        "facet_orientation": choice_sigma_deg(fit, line, free_line, shift, theta, lever,
                                              half_chord, incl),
        "facet_shape": shape.systematic_deg if tilt_deg == 0 else 0.0,
        "facet_tilt": shape.systematic_deg if tilt_deg > 0 else 0.0,
        "facet_edge": edge_sigma_deg(edge.status, edge.shift_px, edge.sigma_px, half_chord),
        "droplet_shape": capcheck.cap_excess_sigma_deg(excess_px, half_chord),
        "triple_points": capcheck.triple_depth_sigma_deg(depth_px, half_chord),
    }
    systematic = [v for k, v in terms_deg.items()
                  if k not in ("outline", "facet_line", "facet_gap")]
    sigma_deg = combine_deg(CALIBRATION * math.degrees(stat), *systematic)
    side_sigma = [None if side is None else
                  _side_sigma_deg(side, line, shift, shape.line_factor, systematic)
                  for side in sides]
    volume = math.pi * radius**3 / 3.0 * (2.0 - 3.0 * math.cos(theta) + math.cos(theta) ** 3)
    # also on a refused row: a lab's own cut on σ needs the whole cap, and its overlay shows
    # the triple points a refusal may be about
    fitted = dict(cap.fields, base_half_width_px=half_chord, wire_tilt_deg=tilt_deg,
                  facet_edge=edge.status, cap_excess_px=excess_px, triple_depth_px=depth_px,
                  facet_edge_snr=edge.snr, facet_edge_shift_px=edge.shift_px,
                  facet_row=float(foot[0] + off[0]), facet_col=float(foot[1] + off[1]),
                  contact_angle_deg=theta_deg,
                  contact_angle_left_deg=None if sides[0] is None else sides[0].angle_deg,
                  contact_angle_right_deg=None if sides[1] is None else sides[1].angle_deg,
                  contact_angle_uncertainty_deg=sigma_deg,
                  contact_angle_left_uncertainty_deg=side_sigma[0],
                  contact_angle_right_uncertainty_deg=side_sigma[1], cap_height_px=radius + s,
                  triple_left_row=float(left[0]), triple_left_col=float(left[1]),
                  triple_right_row=float(right[0]), triple_right_col=float(right[1]),
                  droplet_volume_px3=volume)
    notes, edge_note = result_notes(sel.n_droplets, facet.fields["droplet_cut"], facet.source,
                                    tilt_deg, line.gap_px, edge, facet.wire)
    if sigma_deg > MAX_UNCERTAINTY_DEG:
        details = {"outline": f"{len(pts)} points, {cap.span_deg:.0f} deg of arc",
                   "outline_envelope": f"{cap.envelope_px:.2f} px",
                   "facet_line": f"{int(np.count_nonzero(line.inliers))} interface points",
                   "facet_gap": f"{line.gap_px:.1f} px wide",
                   "facet_edge": edge_note,
                   "droplet_shape": f"{excess_px:.1f} px of mean thickness along the base",
                   "triple_points": f"{depth_px or 0.0:.1f} px from the background"}
        return ContactAngleResult(
            R.FIT_FAILED, uncertain_reason(sigma_deg, MAX_UNCERTAINTY_DEG, terms_deg, details),
            "angle_uncertain", **fitted)
    lo, hi = R.PHYSICAL_RANGE_DEG
    code = "ok"
    if not lo <= theta_deg <= hi:
        status, code = R.OUT_OF_RANGE, "out_of_physical_range"
        notes.insert(0, f"{theta_deg:.1f} deg is outside the physical range [{lo:g}, {hi:g}]")
    elif sel.n_droplets > 1:
        status = R.SEVERAL_DROPLETS
    else:
        status = R.OK
    return ContactAngleResult(status, "; ".join(notes), code, **fitted)
