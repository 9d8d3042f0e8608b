"""1-sigma uncertainty of the contact angle from the circle and facet-line fits.

``cos(theta) = -s / R`` with ``s`` the signed distance of the circle centre from the facet
line, so ``d theta = (ds + cos(theta) dR) / (R sin(theta))`` and ``R sin(theta)`` is the half
chord ``a`` between the triple points. The statistical part propagates the circle's
covariance and the line's offset (at the foot of the centre: offset and orientation errors
with their lever arm) and the binary mask's quantisation band; both are inflated for
residuals that are correlated along the outline (ragged boundaries wiggle over several
pixels, so they average out less than independent points would). Systematic terms are added
in quadrature where the method had to choose between models.
"""

from __future__ import annotations

import math

import numpy as np

from nwwatch.measure.circle import CircleFit
from nwwatch.measure.interface import FacetLine

#: Scale of the statistical 1-sigma, set on the benchmark's exact and degraded labels
#: (bench/bench_contact_angle.py) so that |error| <= 2 sigma on >= 95 % of valid frames: the
#: correlation inflation does not fully capture smooth boundary wiggles.
CALIBRATION = 1.3
#: Orientation spread assumed for a facet oriented by a prior (facets incline up to ~30 deg).
PRIOR_ANGLE_SIGMA_RAD = math.radians(15.0)


def correlation_factor(residuals: np.ndarray, order: np.ndarray) -> float:
    """Variance inflation for residuals correlated along the outline: the integrated
    autocorrelation time ``1 + 2 sum rho_k`` of the residuals sorted by ``order`` (their
    position along it), summed up to the first negative lag; 1 for independent residuals,
    at most N/2 (no fewer than two independent samples)."""
    n = residuals.size
    if n < 8:
        return 1.0
    r = residuals[np.argsort(order)]
    r = r - r.mean()
    denom = float(r @ r)
    if denom <= 0:
        return 1.0
    size = 1 << int(2 * n - 1).bit_length()
    spec = np.fft.rfft(r, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[: n // 2] / denom
    neg = np.nonzero(acf[1:] <= 0)[0]
    last = int(neg[0]) if neg.size else acf.size - 1
    tau = 1.0 + 2.0 * float(acf[1 : last + 1].sum())
    return float(min(max(tau, 1.0), n / 2.0))


def statistical_variances(
    fit: CircleFit,
    line: FacetLine,
    theta_rad: float,
    lever_px: float,
    circle_factor: float = 1.0,
    line_factor: float = 1.0,
) -> tuple[float, float]:
    """The two parts (rad^2) of the statistical variance of theta: the circle's (outline
    scatter) and the facet line's (offset, orientation x lever, quantisation, gap).

    ``lever_px`` is the distance along the line from the line's ``point`` (where its offset
    is known best) to the foot of the circle centre; the ``*_factor`` inflate the variances
    for correlated residuals (:func:`correlation_factor`)."""
    half_chord = max(fit.radius * math.sin(theta_rad), 0.5)
    grad = np.array([line.normal[0], line.normal[1], math.cos(theta_rad)]) / half_chord
    circle_var = float(grad @ fit.covariance @ grad) * circle_factor
    offset_var = (line.sigma_offset_px**2 + (lever_px * line.sigma_angle_rad) ** 2) * line_factor
    offset_var += line.quantisation_px**2
    return circle_var, offset_var / half_chord**2 + gap_variance(line, half_chord)


def gap_variance(line: FacetLine, half_chord_px: float) -> float:
    """Variance (rad^2) of theta from where the facet lies in a background gap between the
    droplet and wire labels (``line.gap_px`` wide, the line in its middle): uniform across
    the gap, gap / sqrt(12) of offset over the half chord (part of the facet line's
    variance in :func:`statistical_variances`)."""
    return (line.gap_px / (2.0 * math.sqrt(3.0)) / max(half_chord_px, 0.5)) ** 2


#: The radius deficit an outline's envelope implies (:func:`envelope_sigma_deg`) is charged
#: as this many 1-sigma: on polygon-drawn caps (vertices on the circle 12-30 px apart) the
#: envelope's depth is 55-80 % of the deficit (the fewer points a chord has, the less of its
#: dip is seen), and varies with the vertices' jitter.
ENVELOPE_SIGMAS = 1.5


def envelope_sigma_deg(depth_px: float, radius_px: float, theta_rad: float) -> float:
    """Systematic 1-sigma (degrees) of a circle whose radius may be short by ``depth_px``
    (:func:`nwwatch.measure.circle.envelope_depth_px`: an outline of straight chords inside
    the circle, as a polygon-drawn droplet's). With the centre's distance from the facet line
    fixed, ``d theta = cos(theta) dR / (R sin(theta))``: none at 90 deg, and above it a short
    radius reads the angle high."""
    half_chord = max(radius_px * math.sin(theta_rad), 0.5)
    return math.degrees(ENVELOPE_SIGMAS * depth_px * abs(math.cos(theta_rad)) / half_chord)


def combine_deg(statistical_deg: float, *systematic_deg: float) -> float:
    """Quadrature sum of a statistical 1-sigma and systematic terms (degrees)."""
    return math.sqrt(statistical_deg**2 + sum(t * t for t in systematic_deg))


def choice_sigma_deg(
    fit: CircleFit,
    line: FacetLine,
    free_line: FacetLine | None,
    shift_px: float,
    theta_rad: float,
    lever_px: float,
    half_chord_px: float,
    inclination_rad: float | None,
) -> float:
    """Systematic 1-sigma (degrees) of the facet orientation the method chose.

    ``free_line`` is the interface's own (weakly oriented) line when ``line`` was oriented
    by a prior, else None; ``shift_px`` the facet level beyond the line (tilt);
    ``inclination_rad`` the facet normal's angle to the wire axis (None: no axis).
    """
    chord = max(half_chord_px, 0.5)
    if free_line is not None:
        # Oriented by a prior: the facet may be inclined to it (lever arm x angle spread),
        # and the interface's own weak orientation is an alternative.
        s_free = float(free_line.offset(fit.center[None, :])[0]) - shift_px
        alt = abs(theta_rad - math.acos(min(max(-s_free / fit.radius, -1.0), 1.0)))
        return math.hypot(math.degrees(abs(lever_px) * PRIOR_ANGLE_SIGMA_RAD / chord),
                          math.degrees(alt))
    if inclination_rad is not None and abs(inclination_rad) < 3.0 * line.sigma_angle_rad:
        # Free orientation the data cannot tell from "perpendicular to the axis": half the
        # difference between the two. Turning the line by the inclination about its
        # best-known point moves the foot of the centre by lever x angle.
        return 0.5 * math.degrees(abs(lever_px) * abs(inclination_rad) / chord)
    return 0.0


#: A facet line moved onto the image's step keeps this share of the distance it was moved
#: as a systematic 1-sigma: where the labels and the image disagree, either may be off.
EDGE_DISAGREEMENT_FRACTION = 0.25
#: With an image whose step could not be located, the labels' line may be off by this
#: much (1-sigma, px): a network's wire/droplet boundary errs by 1-2 px on average on the
#: synthetic sets of bench/bench_model_angles.py.
UNRESOLVED_EDGE_SIGMA_PX = 1.0


def edge_sigma_deg(
    status: str, shift_px: float | None, sigma_px: float | None, half_chord_px: float,
) -> float:
    """Systematic 1-sigma (degrees) of where the facet line lies, from the image refinement
    (:func:`nwwatch.measure.refine.refine_facet_line`): 0 for labels alone (nothing is known
    about their bias), and 0 for an elliptical facet (the image is not read: the rim's own
    standard error is in the facet's terms); for a refined line its locator's 1-sigma and a
    share of the shift; for an image whose step was not accepted, the larger of
    ``UNRESOLVED_EDGE_SIGMA_PX`` and the disagreement found. A shift ``d`` of the line costs
    ``d / a`` rad."""
    if status in ("labels", "elliptical"):
        return 0.0
    if status == "refined" and shift_px is not None and sigma_px is not None:
        px = math.hypot(sigma_px, EDGE_DISAGREEMENT_FRACTION * shift_px)
    else:
        px = max(UNRESOLVED_EDGE_SIGMA_PX, abs(shift_px) if shift_px is not None else 0.0)
    return math.degrees(px / max(half_chord_px, 0.5))


#: The terms of sigma, as the reason of a refused angle names them.
SIGMA_TERMS = {
    "outline": "the droplet outline's scatter about its circle",
    "outline_envelope": "the droplet outline's straight runs inside its circle (a polygon "
                        "drawn through points on the circle: the fitted radius is short)",
    "facet_line": "where the facet line lies on the labels' wire/droplet interface (its "
                  "points' scatter, or a binary mask's pixel steps)",
    "facet_gap": "the background gap between the droplet and wire labels: the facet line is "
                 "taken in its middle, and may lie anywhere across it",
    "facet_orientation": "the facet's orientation, which the interface does not fix",
    "facet_shape": "the facet's shape: its interface bows like the shallow ellipse of a wire "
                   "tilted out of plane, too little to be read as one (flat and elliptical "
                   "readings differ)",
    "facet_tilt": "the facet's tilt: the network's interface bows like a tilted wire's ellipse "
                  "and was read as one, but the bulge may be the network's and the facet flat "
                  "(flat and elliptical readings differ)",
    "facet_edge": "where the facet line lies on the image",
    "droplet_shape": "droplet labels beyond the fitted cap: the labelled droplet is not the "
                     "cap of this circle and facet line (e.g. wire labelled droplet near the "
                     "contact line, or a circle that misses part of the droplet)",
    "triple_points": "triple points inside the wire and droplet: where the facet line meets "
                     "the circle is not on their outline, as when the facet line lies too deep",
}


#: from this many degrees up, an uncertainty is written in scientific notation: a degenerate
#: fit's sigma of a million degrees says only that the angle is unknown, and its digits ran
#: off the overlay's caption
ABSURD_SIGMA_DEG = 1000.0


def sigma_text(sigma_deg: float, decimals: int = 2) -> str:
    """``sigma_deg`` (degrees) as text: with ``decimals`` decimals, or, where that reads
    :data:`ABSURD_SIGMA_DEG` or more, in scientific notation (``1.2e+06``)."""
    # the threshold is on the rounded value: 999.97 at one decimal reads "1000.0"
    if abs(round(sigma_deg, decimals)) >= ABSURD_SIGMA_DEG:
        return f"{sigma_deg:.1e}"
    return f"{sigma_deg:.{decimals}f}"


def uncertain_reason(
    sigma_deg: float, limit_deg: float, terms_deg: dict[str, float],
    details: dict[str, str] | None = None,
) -> str:
    """Reason of an angle refused as uncertain: ``sigma_deg`` against ``limit_deg``, naming the
    largest of ``terms_deg`` (1-sigma in degrees, keyed as :data:`SIGMA_TERMS`, whose
    quadrature sum is ``sigma_deg``) with its ``details`` entry, then the other non-zero terms."""
    ranked = sorted(terms_deg.items(), key=lambda kv: -kv[1])
    top, top_deg = ranked[0]
    detail = (details or {}).get(top, "")
    # rounded up to two decimals: a sigma just above the limit never reads as the limit
    # ("1.5 > 1.5", "1.50 > 1.5")
    shown = round(sigma_deg, 2)
    if shown <= limit_deg < sigma_deg:
        shown = limit_deg + 0.01
    text = (f"the angle is uncertain by +-{sigma_text(shown)} deg (> {limit_deg:g}), mostly "
            f"from {SIGMA_TERMS[top]}: +-{sigma_text(top_deg, 1)} deg"
            + (f" ({detail})" if detail else ""))
    others = [f"{name.replace('_', ' ')} +-{sigma_text(deg, 1)}" for name, deg in ranked[1:]
              if deg >= 0.05]
    return text + (f"; other terms: {', '.join(others)} deg" if others else "")
