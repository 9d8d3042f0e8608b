"""Flat or elliptical facet: a wire tilted out of the image plane shows its facet as half an
ellipse, and the triple points sit at the ellipse's rim, not on the flat line.

The interface is fitted as half an ellipse (:func:`nwwatch.measure.interface.rim_shift`); a
bulge into the wire of at least ``MIN_BULGE_PX`` and 4 standard errors (inflated for
correlated residuals), below half the chord, is read as tilt and the facet line moves to the
rim. Otherwise the facet is read as flat, with the flat-versus-rim difference as a
systematic uncertainty (the facet may be a shallow ellipse).

A segmentation network can draw a bulge that the frame does not show. Given the raw frame,
:func:`image_bulge` traces the image's wire/droplet step along the labels' half ellipse
(:func:`nwwatch.measure.refine.trace_step`) and applies the same bulge test to the traced
positions: the bulge is confirmed, or the image rejects it (the image's own bulge fails the
test and the labels' lies well above it), or the image cannot decide.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from nwwatch.measure.arc import angle_deg
from nwwatch.measure.circle import CircleFit
from nwwatch.measure.interface import FacetLine, InterfacePoints, RimFit, rim_shift
from nwwatch.measure.refine import trace_step
from nwwatch.measure.uncertainty import correlation_factor

#: A bulge of the facet outline above this (and 4 standard errors) is read as tilt.
MIN_BULGE_PX = 1.0
#: Below this half chord (px) the bulge is not fitted (too few interface points). At a
#: 10-15 px a 6-10 deg tilt bulges the facet by 1.5-2.5 px and read as flat errs by 4-8 deg.
MIN_BULGE_HALF_CHORD_PX = 10.0
#: A facet read as flat may be a shallow ellipse with the triple points at its rim: the
#: flat-versus-rim angle difference, times this, is its systematic 1-sigma. The full
#: difference, because on a pixel staircase the ellipse fit underestimates a bulge of about a
#: pixel (wires tilted 1-4 deg at a = 15-30 px: the flat reading errs by ~1.3x the
#: difference; bench/bench_contact_angle.py, tilted wires).
FLAT_SYSTEMATIC_FRACTION = 1.0
#: The bulge is read at this many standard errors.
BULGE_SIGMAS = 4.0
#: The image rejects the labels' bulge when it lies this many standard errors of the image's
#: traced bulge above it.
REJECT_SIGMAS = 3.0


@dataclass(frozen=True)
class FacetShape:
    """``shift_px``: the facet level (rim) beyond the flat line, into the droplet (0: flat);
    ``tilt_deg`` out-of-plane tilt read from the ellipse (0: flat); ``systematic_deg`` the
    flat-versus-ellipse model term; ``line`` the facet line with the offset error of the
    model used; ``line_factor`` the correlation inflation of that model's residuals. Read
    as tilt, ``rim`` is the ellipse fit, ``rim_half_chord_px`` its half-axis, ``foot_along_px``
    the base centre along the line, and ``flat`` the reading as flat (with its systematic
    term), used when the image rejects the bulge."""

    shift_px: float
    tilt_deg: float
    systematic_deg: float
    line: FacetLine
    line_factor: float
    rim: RimFit | None = None
    rim_half_chord_px: float = 0.0
    foot_along_px: float = 0.0
    flat: FacetShape | None = None


def _inflated_se_k(rim: RimFit) -> float:
    """The bulge's standard error, inflated for correlated residuals (wiggles: fewer
    independent points)."""
    return rim.se_k_px * math.sqrt(correlation_factor(rim.residuals, rim.along))


def reads_tilt(rim: RimFit, half_chord_px: float) -> bool:
    """The bulge test: ``k`` into the wire of at least ``MIN_BULGE_PX`` and ``BULGE_SIGMAS``
    standard errors, below half the chord."""
    return (rim.k_px >= max(MIN_BULGE_PX, BULGE_SIGMAS * _inflated_se_k(rim))
            and rim.k_px < 0.5 * half_chord_px)


def facet_shape(
    fit: CircleFit, line: FacetLine, iface: InterfacePoints, s_px: float, half_chord_px: float,
) -> FacetShape:
    """Read the facet as flat or as half an ellipse.

    ``s_px`` signed distance of the circle centre from the flat ``line``; ``half_chord_px``
    half the chord of the circle on it.
    """
    radius = fit.radius
    foot = fit.center - s_px * line.normal
    foot_along = float(line.along(foot[None, :])[0])
    rim, axis = None, half_chord_px
    if half_chord_px >= MIN_BULGE_HALF_CHORD_PX:
        rim = rim_shift(line, iface, foot_along, half_chord_px)
        if rim is not None and rim.k_px > 0:
            # The ellipse's half-axis is the chord at the rim, not at the flat line: refit.
            chord_rim = math.sqrt(max(radius**2 - (s_px - rim.offset_px) ** 2, 0.0))
            refit = rim_shift(line, iface, foot_along, chord_rim)
            if refit is not None:
                rim, axis = refit, chord_rim
    inl_pts = iface.points[line.inliers]
    line_factor = correlation_factor(line.offset(inl_pts), line.along(inl_pts))
    flat = FacetShape(0.0, 0.0, 0.0, line, line_factor)
    if rim is None or rim.k_px <= 0:
        return flat
    # Read as flat, though the facet may be a shallow ellipse.
    diff = abs(angle_deg(fit, line, rim.offset_px) - angle_deg(fit, line))
    flat = dataclasses.replace(flat, systematic_deg=FLAT_SYSTEMATIC_FRACTION * diff)
    if reads_tilt(rim, half_chord_px):
        # Read as tilt: the rim level is extrapolated from the ellipse fit, whose residuals
        # (not the flat line's) measure the interface's noise.
        tilt = math.degrees(math.asin(min(rim.k_px / half_chord_px, 1.0)))
        return FacetShape(rim.offset_px, tilt, 0.0,
                          dataclasses.replace(line, sigma_offset_px=rim.se_offset_px),
                          correlation_factor(rim.residuals, rim.along), rim=rim,
                          rim_half_chord_px=axis, foot_along_px=foot_along, flat=flat)
    return flat


def _traced_rim(
    image: np.ndarray, labels: np.ndarray, line: FacetLine, foot: float, half_chord: float,
    centre_px,
) -> RimFit | None:
    """The image's step traced along ``line`` (about ``centre_px``) and fitted as half an
    ellipse; None when no clear step or too few stretches."""
    trace = trace_step(image, labels, line, (foot - half_chord, foot + half_chord), centre_px)
    n = len(trace.points)
    if trace.status != "traced" or n < 8:
        return None
    pts = InterfacePoints(trace.points, np.zeros(n, dtype=np.int64),
                          np.full((n, 2), -1, dtype=np.int64), np.full((n, 2), -1, dtype=np.int64))
    return rim_shift(dataclasses.replace(line, inliers=np.ones(n, dtype=bool)), pts, foot,
                     half_chord)


def image_bulge(
    image: np.ndarray, labels: np.ndarray, facet: FacetShape, line_offset: np.ndarray,
) -> str:
    """Check an elliptical reading (``facet.rim`` not None) on the raw frame.

    The image's step is traced along the facet (:func:`nwwatch.measure.refine.trace_step`,
    over the ellipse's base) and fitted as half an ellipse the same way as the labels
    (:func:`nwwatch.measure.interface.rim_shift`). The tracer leans towards the curve it
    samples about, so each verdict needs the evidence that survives that lean: the bulge is
    ``"confirmed"`` when the step traced about the flat line still passes
    :func:`reads_tilt`; the facet is ``"flat"`` when the step traced about the labels' own
    half ellipse fails it and the labels' bulge lies more than ``REJECT_SIGMAS`` of its
    standard errors above the traced one; otherwise (no clear step, too few stretches, or a
    trace too uncertain to tell) ``"undecided"``. ``image`` float or integer (H, W), the raw
    frame; ``labels`` uint8 (H, W), same (row, col) frame; ``line_offset`` (2,) the
    (row, col) of the facet line's frame in the image.
    """
    rim, half_chord, foot = facet.rim, facet.rim_half_chord_px, facet.foot_along_px
    line = dataclasses.replace(facet.line, point=facet.line.point + line_offset)

    def ellipse(along: np.ndarray) -> np.ndarray:
        # The labels' half ellipse about the flat line (the rim fit's model), flat beyond
        # the base.
        lat = np.clip((along - foot) / half_chord, -1.0, 1.0)
        return rim.offset_px - rim.k_px * np.sqrt(1.0 - lat**2)

    about_line = _traced_rim(image, labels, line, foot, half_chord, None)
    if about_line is not None and reads_tilt(about_line, half_chord):
        return "confirmed"
    about_labels = _traced_rim(image, labels, line, foot, half_chord, ellipse)
    if (about_labels is not None and not reads_tilt(about_labels, half_chord)
            and rim.k_px - about_labels.k_px > REJECT_SIGMAS * _inflated_se_k(about_labels)):
        return "flat"
    return "undecided"
