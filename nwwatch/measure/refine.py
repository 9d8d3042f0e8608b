"""The facet line placed on the image's intensity step instead of the label boundary.

A segmentation network can draw the droplet's outline right and still put the
wire/droplet interface a few pixels into the wire; the angle error is about
``shift / (R sin theta)`` rad. The frame itself shows the interface as an intensity step
(the droplet and the wire absorb differently), so the label's facet line is moved along its
normal onto that step when the step is clear, and left where it is, with the reason, when
it is not.

Method (coordinates (row, col), integer indices at pixel centres): the image is sampled
along the line's normal (every ``PROFILE_STEP_PX`` from ``-REACH_PX`` to ``+REACH_PX``) at
positions along the line spaced 1 px, keeping only the positions whose *labels* read wire
up to ``MAX_SHIFT_PX`` before the line and droplet from ``MAX_SHIFT_PX`` beyond it (so the
triple points, the wire's side walls and the background are never sampled). The profiles
are averaged robustly (median per offset). The step's position is the centroid of the
mean profile's derivative in a window of +-``WINDOW_PX`` about the current estimate,
iterated from the label's line: a blurred step, and a step with Fresnel fringes on both
sides, are located at their centre, where the largest gradient of an underfocused edge
is not. The shift is accepted only when

* the plateaus on either side differ by ``MIN_SNR`` times the mean profile's noise
  (estimated from the spread across positions, or from the plateau roughness when that is
  larger: lattice fringes parallel to the facet survive the averaging);
* the step is one-sided: the derivative against the step's sign holds less than
  ``MAX_REVERSE_FRACTION`` of its area (no fringe, halo or second edge as strong as the step);
* the step is straight: the edge found in three stretches along the line agrees within
  ``MAX_SEGMENT_SPREAD_PX`` (a facet seen as an ellipse, on a wire tilted out of the image
  plane, has no single step: there the labels are kept);
* it lies within ``MAX_SHIFT_PX`` of the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure.interface import FacetLine

#: Sampling step of the profiles along the normal (px).
PROFILE_STEP_PX = 0.25
#: Largest accepted distance between the label's line and the image's step (px).
MAX_SHIFT_PX = 4.0
#: Half-width of the window over which the derivative's centroid is taken (px).
WINDOW_PX = 6.0
#: The profiles reach this far from the label's line on either side (px).
REACH_PX = MAX_SHIFT_PX + WINDOW_PX + 2.0
#: Plateau length beyond the window used for the step's contrast (px).
PLATEAU_PX = 2.0
#: Fewest profile positions (1 px apart) along the line.
MIN_POSITIONS = 12
#: Contrast of the step over the mean profile's noise needed to accept it.
MIN_SNR = 8.0
#: Share of the derivative's area against the step's sign above which the step is not clear.
MAX_REVERSE_FRACTION = 0.35
#: The edge in three stretches along the line must agree within this (px).
MAX_SEGMENT_SPREAD_PX = 1.0
#: 1-sigma of the step locator itself on a clear step (px): fringes and blur that are not
#: symmetric about the interface move the centroid by a few tenths of a pixel (set on the
#: synthetic sets of bench/bench_model_angles.py).
METHOD_SIGMA_PX = 0.35

#: ``facet_edge`` values: what was done with the facet line.
EDGE_STATUSES: dict[str, str] = {
    "refined": "moved onto the image's intensity step",
    "labels": "no image given: the label boundary is used",
    "too_short": "too few positions along the line with wire and droplet on either side",
    "weak_step": "the intensity step is not above the noise: the label boundary is kept",
    "not_a_step": "the profile is not one step (fringes, halo or a second edge as strong): "
                  "the label boundary is kept",
    "not_straight": "the step is not at one place along the line (e.g. an elliptical "
                    "facet of a tilted wire): the label boundary is kept",
    "out_of_reach": "no step within reach of the label boundary: the label boundary is kept",
}


@dataclass(frozen=True)
class EdgeRefinement:
    """Outcome of :func:`refine_facet_line`.

    ``status`` one of :data:`EDGE_STATUSES`; ``shift_px`` where the image's step lies from
    the label's line along its normal (positive into the droplet; None when no step was
    located); ``sigma_px`` its 1-sigma (None unless refined); ``snr`` the step's contrast over
    the mean profile's noise; ``n_positions`` profile positions used.
    """

    status: str
    shift_px: float | None = None
    sigma_px: float | None = None
    snr: float | None = None
    n_positions: int = 0

    @property
    def refined(self) -> bool:
        return self.status == "refined"


def _step_centroid(profile: np.ndarray, offsets: np.ndarray, start: float,
                   sign: float) -> float:
    """Centroid of the derivative (in the step's direction ``sign``) within +-WINDOW_PX of
    the estimate, iterated from ``start``; NaN when the window holds no step."""
    grad = np.gradient(profile, offsets) * sign
    x = start
    for _ in range(12):
        sel = np.abs(offsets - x) <= WINDOW_PX
        weight = np.clip(grad[sel], 0.0, None)
        total = float(weight.sum())
        if total <= 0.0:
            return math.nan
        new = float((offsets[sel] * weight).sum() / total)
        new = min(max(new, -MAX_SHIFT_PX - 1.0), MAX_SHIFT_PX + 1.0)
        if abs(new - x) < 0.01:
            return new
        x = new
    return x


def refine_facet_line(
    image: np.ndarray,
    labels: np.ndarray,
    line: FacetLine,
    along_range_px: tuple[float, float],
) -> EdgeRefinement:
    """Locate the image's wire/droplet intensity step near a facet line.

    Parameters
    ----------
    image : float (H, W)
        The frame (any intensity scale, e.g. the normalised frame the labels came from).
    labels : uint8 (H, W)
        0 background, 1 nanowire, 2 droplet; same (row, col) frame as ``image``.
    line : FacetLine
        The facet line in image coordinates (``normal`` into the droplet).
    along_range_px : (float, float)
        Stretch of the line to sample, as coordinates along ``line.direction`` from
        ``line.point`` (e.g. the interface points' extent).

    Returns
    -------
    EdgeRefinement
        ``status == "refined"`` with ``shift_px`` (the step's offset from ``line`` along its
        normal, positive into the droplet) and ``sigma_px``, or another status saying why the
        labels' line is kept. Never raises for a missing or unclear step.
    """
    lo, hi = along_range_px
    positions = np.arange(math.ceil(lo), math.floor(hi) + 1, 1.0)
    if positions.size < MIN_POSITIONS:
        return EdgeRefinement("too_short", n_positions=int(positions.size))
    offsets = np.arange(-REACH_PX, REACH_PX + 1e-9, PROFILE_STEP_PX)
    pts = (line.point[None, None, :] + positions[:, None, None] * line.direction
           + offsets[None, :, None] * line.normal)
    coords = [pts[..., 0].ravel(), pts[..., 1].ravel()]
    shape = (positions.size, offsets.size)
    # Positions whose labels read wire, then droplet, across the whole profile (outside the
    # reach of a possible shift): the step between them is the interface, nothing else.
    lab = map_coordinates(labels, coords, order=0, mode="constant", cval=0).reshape(shape)
    below = offsets < -MAX_SHIFT_PX
    above = offsets > MAX_SHIFT_PX
    ok = (lab[:, below] == NANOWIRE).all(axis=1) & (lab[:, above] == DROPLET).all(axis=1)
    if ok.sum() < MIN_POSITIONS:
        return EdgeRefinement("too_short", n_positions=int(ok.sum()))
    prof = map_coordinates(np.asarray(image, dtype=np.float64), coords, order=1,
                           mode="nearest").reshape(shape)[ok]
    kept = positions[ok]
    n = prof.shape[0]
    mean = np.median(prof, axis=0)
    # Noise of the median profile: spread across positions / sqrt(n) (x 1.25 for a median).
    spread = 1.4826 * np.median(np.abs(prof - mean), axis=0)
    noise = 1.25 * float(np.median(spread)) / math.sqrt(n)
    plateau_w = offsets <= -REACH_PX + PLATEAU_PX
    plateau_d = offsets >= REACH_PX - PLATEAU_PX
    contrast = float(mean[plateau_d].mean() - mean[plateau_w].mean())
    rough = max(float(mean[plateau_w].std()), float(mean[plateau_d].std()))
    snr = abs(contrast) / max(noise, rough, 1e-12)
    if snr < MIN_SNR:
        return EdgeRefinement("weak_step", snr=snr, n_positions=n)
    sign = 1.0 if contrast > 0 else -1.0
    shift = _step_centroid(mean, offsets, 0.0, sign)
    if not math.isfinite(shift) or abs(shift) > MAX_SHIFT_PX:
        return EdgeRefinement("out_of_reach", shift_px=None if not math.isfinite(shift)
                              else shift, snr=snr, n_positions=n)
    # One step: the derivative against the step's sign is small within the window.
    grad = np.gradient(mean, offsets) * sign
    win = np.abs(offsets - shift) <= WINDOW_PX
    forward = float(np.clip(grad[win], 0.0, None).sum())
    reverse = float(np.clip(-grad[win], 0.0, None).sum())
    if reverse > MAX_REVERSE_FRACTION * forward:
        return EdgeRefinement("not_a_step", shift_px=shift, snr=snr, n_positions=n)
    # Straight: the step at the same place in three stretches along the line.
    thirds = np.array_split(np.argsort(kept), 3)
    parts = np.array([_step_centroid(np.median(prof[idx], axis=0), offsets, shift, sign)
                      for idx in thirds])
    if not np.isfinite(parts).all() or float(np.ptp(parts)) > MAX_SEGMENT_SPREAD_PX:
        return EdgeRefinement("not_straight", shift_px=shift, snr=snr, n_positions=n)
    # 1-sigma: the stretches' scatter (standard error of their mean) and the locator's own.
    sigma = math.hypot(float(np.std(parts, ddof=1)) / math.sqrt(3.0), METHOD_SIGMA_PX)
    return EdgeRefinement("refined", shift_px=shift, sigma_px=sigma, snr=snr, n_positions=n)
