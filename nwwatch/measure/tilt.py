"""Flat or elliptical facet: a wire tilted out of the image plane shows its facet as half an
ellipse, and the triple points sit at the ellipse's rim, not on the flat line.

The interface is fitted as half an ellipse (:func:`nwwatch.measure.interface.rim_shift`); a
bulge into the wire of at least ``MIN_BULGE_PX`` and 4 standard errors (inflated for
correlated residuals), below half the chord, of an interface that reaches ``MIN_RIM_REACH``
of the half chord on both sides, is read as tilt and the facet line moves to the rim.
Otherwise the facet is read as flat, with the flat-versus-rim difference as a
systematic uncertainty (the facet may be a shallow ellipse).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from nwwatch.measure.arc import angle_deg
from nwwatch.measure.circle import CircleFit
from nwwatch.measure.interface import FacetLine, InterfacePoints, rim_shift
from nwwatch.measure.uncertainty import correlation_factor

#: A bulge of the facet outline above this (and 4 standard errors) is read as tilt.
MIN_BULGE_PX = 1.0
#: Below this half chord (px) the bulge is not fitted (too few interface points). At a
#: 10-15 px a 6-10 deg tilt bulges the facet by 1.5-2.5 px and read as flat errs by 4-8 deg.
MIN_BULGE_HALF_CHORD_PX = 10.0
#: A bulge is read as tilt only where the interface reaches this fraction of the half chord
#: at the rim (the ellipse's half axis) on both sides of the base's centre. Over a droplet
#: base wider than the facet the points lie where the ellipse is nearly flat, its level and
#: bulge are nearly the same unknown, and one phase step of a pixel staircase read as a 1-2 px
#: bulge (exact labels of flat facets: 'ok' 1-2 deg off at 3-4.5 sigma;
#: bench/bench_false_tilt.py). Such a facet is read as flat, with the flat-versus-rim
#: difference in sigma.
MIN_RIM_REACH = 0.75
#: A facet read as flat may be a shallow ellipse with the triple points at its rim: the
#: flat-versus-rim angle difference, times this, is its systematic 1-sigma. The full
#: difference, because on a pixel staircase the ellipse fit underestimates a bulge of about a
#: pixel (wires tilted 1-4 deg at a = 15-30 px: the flat reading errs by ~1.3x the
#: difference; bench/bench_contact_angle.py, tilted wires).
FLAT_SYSTEMATIC_FRACTION = 1.0
#: A facet read as an ellipse on a network's labels (the measurement was given the raw frame,
#: so the labels are a network's) may be flat with the bulge the network's: half the
#: flat-versus-rim difference is its systematic 1-sigma (half, as for the other choices the
#: data cannot make; bench/results/elliptical_systematic_rule.txt). Labels measured alone
#: (human masks, label images) keep the rim reading without it.
ELLIPTICAL_SYSTEMATIC_FRACTION = 0.5


@dataclass(frozen=True)
class FacetShape:
    """``shift_px``: the facet level (rim) beyond the flat line, into the droplet (0: flat);
    ``tilt_deg`` out-of-plane tilt read from the ellipse (0: flat); ``systematic_deg`` the
    flat-versus-ellipse model term; ``line`` the facet line with the offset error of the
    model used; ``line_factor`` the correlation inflation of that model's residuals."""

    shift_px: float
    tilt_deg: float
    systematic_deg: float
    line: FacetLine
    line_factor: float


def facet_shape(
    fit: CircleFit, line: FacetLine, iface: InterfacePoints, s_px: float, half_chord_px: float,
    network_labels: bool = False,
) -> FacetShape:
    """Read the facet as flat or as half an ellipse.

    ``s_px`` signed distance of the circle centre from the flat ``line``; ``half_chord_px``
    half the chord of the circle on it; ``network_labels``: the labels are a network's (an
    elliptical reading then carries ELLIPTICAL_SYSTEMATIC_FRACTION of the flat-versus-rim
    difference).
    """
    radius = fit.radius
    foot = fit.center - s_px * line.normal
    foot_along = float(line.along(foot[None, :])[0])
    rim = None
    if half_chord_px >= MIN_BULGE_HALF_CHORD_PX:
        rim = rim_shift(line, iface, foot_along, half_chord_px)
        if rim is not None and rim.k_px > 0:
            # The ellipse's half-axis is the chord at the rim, not at the flat line: refit.
            chord_rim = math.sqrt(max(radius**2 - (s_px - rim.offset_px) ** 2, 0.0))
            rim = rim_shift(line, iface, foot_along, chord_rim) or rim
    inl_pts = iface.points[line.inliers]
    line_factor = correlation_factor(line.offset(inl_pts), line.along(inl_pts))
    flat = FacetShape(0.0, 0.0, 0.0, line, line_factor)
    if rim is None or rim.k_px <= 0:
        return flat
    rim_factor = correlation_factor(rim.residuals, rim.along)
    se_k = rim.se_k_px * math.sqrt(rim_factor)  # wiggles: fewer independent points
    if (rim.k_px >= max(MIN_BULGE_PX, 4.0 * se_k) and rim.k_px < 0.5 * half_chord_px
            and rim.reach >= MIN_RIM_REACH):
        # Read as tilt: the rim level is extrapolated from the ellipse fit, whose residuals
        # (not the flat line's) measure the interface's noise.
        tilt = math.degrees(math.asin(min(rim.k_px / half_chord_px, 1.0)))
        systematic = (ELLIPTICAL_SYSTEMATIC_FRACTION
                      * abs(angle_deg(fit, line, rim.offset_px) - angle_deg(fit, line))
                      if network_labels else 0.0)
        return FacetShape(rim.offset_px, tilt, systematic,
                          dataclasses.replace(line, sigma_offset_px=rim.se_offset_px),
                          rim_factor)
    # Read as flat, though the facet may be a shallow ellipse.
    diff = abs(angle_deg(fit, line, rim.offset_px) - angle_deg(fit, line))
    return dataclasses.replace(flat, systematic_deg=FLAT_SYSTEMATIC_FRACTION * diff)


