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
iterated from the label's line: a blurred step, and a step with Fresnel fringes
antisymmetric about it, are located at their centre, where the largest gradient of an
underfocused edge is not. The image must be the raw frame: a normalisation that clips the
darkest pixels (often the droplet) cuts one side of the step and moves it. The shift is
accepted only when

* the plateaus on either side differ by ``MIN_SNR`` times the mean profile's noise (from the
  spread across positions) and ``MIN_ROUGH_RATIO`` times the plateaus' roughness (lattice
  fringes parallel to the facet survive the averaging);
* the step is one-sided: the smoothed derivative against the step's sign holds less than
  ``MAX_REVERSE_FRACTION`` of its area (no fringe, halo or second edge as strong);
* the step is straight: the edge found in three stretches along the line agrees within
  ``MAX_SEGMENT_SPREAD_PX`` and within their bootstrap noise;
* it lies within ``MAX_SHIFT_PX`` of the labels.

Its 1-sigma: a bootstrap over the positions, and ``METHOD_FRACTION`` of the step's RMS
width for the locator itself. A facet the labels show as an ellipse (a wire tilted out of
the image plane) has no single step; :func:`nwwatch.measure.measure_contact_angle` does not
refine it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, map_coordinates

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
#: Contrast of the step over the plateaus' roughness (texture the averaging left, e.g. lattice
#: fringes parallel to the facet) needed to accept it.
MIN_ROUGH_RATIO = 3.0
#: Share of the derivative's area against the step's sign above which the step is not clear.
MAX_REVERSE_FRACTION = 0.35
#: The edge in three stretches along the line must agree within this (px) and within their
#: noise (chi-square of the three about their mean, 2 degrees of freedom, 1 % tail).
MAX_SEGMENT_SPREAD_PX = 2.0
MAX_SEGMENT_CHI2 = 9.2
#: Bootstrap resamples of the positions for the step's statistical 1-sigma.
BOOTSTRAP = 24
#: Systematic 1-sigma of the step locator: this share of the step's RMS width (the smoothed
#: derivative's), at least MIN_METHOD_SIGMA_PX. On the growth video of
#: bench/bench_model_angles.py (Fresnel fringes, 1.5 px blur: widths of about 3 px) the
#: refined line lies within about 0.4 px (RMS) of the line the true labels give.
METHOD_FRACTION = 0.15
MIN_METHOD_SIGMA_PX = 0.1

#: ``facet_edge`` values: what was done with the facet line.
EDGE_STATUSES: dict[str, str] = {
    "refined": "moved onto the image's intensity step",
    "labels": "no image given: the label boundary is used",
    "elliptical": "the labels show an elliptical facet (a wire tilted out of the image "
                  "plane), which has no single step in the image: the labels' rim is kept",
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
    the estimate, iterated from ``start``: ``x1 - integral(f) / (f(x1) - f(x0))`` over the
    window [x0, x1], unbiased for zero-mean noise (the derivative is not clipped) and for
    fringes antisymmetric about the step; NaN when the window holds no step."""
    x = start
    for _ in range(12):
        sel = np.abs(offsets - x) <= WINDOW_PX
        if sel.sum() < 2:
            return math.nan
        f, u = profile[sel] * sign, offsets[sel]
        rise = float(f[-1] - f[0])
        if rise <= 0.0:
            return math.nan
        area = float(np.sum(0.5 * (f[1:] + f[:-1] - 2.0 * f[0]) * np.diff(u)))
        new = float(u[-1] - area / rise)
        new = min(max(new, -MAX_SHIFT_PX - 1.0), MAX_SHIFT_PX + 1.0)
        if abs(new - x) < 0.01:
            return new
        x = new
    return x


def _centroids_at(profiles: np.ndarray, offsets: np.ndarray, x: float,
                  sign: float) -> np.ndarray:
    """(B,) the derivative centroids of ``profiles`` (B, M) in the window about ``x`` (one
    step of :func:`_step_centroid`: exact for a step that lies inside the window); NaN where
    the window holds no rise."""
    sel = np.abs(offsets - x) <= WINDOW_PX
    f, u = profiles[:, sel] * sign, offsets[sel]
    rise = f[:, -1] - f[:, 0]
    area = np.sum(0.5 * (f[:, 1:] + f[:, :-1] - 2.0 * f[:, :1]) * np.diff(u), axis=1)
    out = np.full(len(profiles), np.nan)
    ok = rise > 0
    out[ok] = u[-1] - area[ok] / rise[ok]
    return out


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
    snr = abs(contrast) / max(noise, 1e-12)
    if not math.isfinite(snr) or not math.isfinite(rough):  # NaN pixels under the profiles
        return EdgeRefinement("weak_step", n_positions=n)
    if snr < MIN_SNR or abs(contrast) < MIN_ROUGH_RATIO * rough:
        return EdgeRefinement("weak_step", snr=snr, n_positions=n)
    sign = 1.0 if contrast > 0 else -1.0
    shift = _step_centroid(mean, offsets, 0.0, sign)
    if not math.isfinite(shift) or abs(shift) > MAX_SHIFT_PX:
        return EdgeRefinement("out_of_reach", shift_px=None if not math.isfinite(shift)
                              else shift, snr=snr, n_positions=n)
    # One step: the derivative against the step's sign is small within the window (on the
    # profile smoothed over a pixel, so that the noise left in the mean does not count).
    grad = np.gradient(gaussian_filter1d(mean, 1.0 / PROFILE_STEP_PX), offsets) * sign
    win = np.abs(offsets - shift) <= WINDOW_PX
    forward = float(np.clip(grad[win], 0.0, None).sum())
    reverse = float(np.clip(-grad[win], 0.0, None).sum())
    if reverse > MAX_REVERSE_FRACTION * forward:
        return EdgeRefinement("not_a_step", shift_px=shift, snr=snr, n_positions=n)
    # Statistical 1-sigma of the step's position: a bootstrap over the positions.
    rng = np.random.default_rng(0)
    boot = _centroids_at(np.median(prof[rng.integers(0, n, (BOOTSTRAP, n))], axis=1), offsets,
                         shift, sign)
    boot = boot[np.isfinite(boot)]
    sigma_stat = float(np.std(boot, ddof=1)) if boot.size >= BOOTSTRAP // 2 else math.inf
    # Straight: the step at the same place in three stretches along the line, within their
    # noise (each has a third of the positions) and within MAX_SEGMENT_SPREAD_PX.
    thirds = np.array_split(np.argsort(kept), 3)
    parts = _centroids_at(np.stack([np.median(prof[idx], axis=0) for idx in thirds]),
                          offsets, shift, sign)
    sigma_part = max(sigma_stat * math.sqrt(3.0), 0.1)
    chi2 = float(np.sum(((parts - parts.mean()) / sigma_part) ** 2)) if np.isfinite(
        parts).all() else math.inf
    if (not math.isfinite(sigma_stat) or chi2 > MAX_SEGMENT_CHI2
            or float(np.ptp(parts)) > MAX_SEGMENT_SPREAD_PX):
        return EdgeRefinement("not_straight", shift_px=shift, snr=snr, n_positions=n)
    # Systematic: a share of the step's RMS width (a sharp step is placed to a fraction of a
    # pixel; a wide one, blurred or with fringes, less well).
    sel = np.abs(offsets - shift) <= WINDOW_PX
    weight = np.clip(grad[sel], 0.0, None)
    width = math.sqrt(float(np.sum(weight * (offsets[sel] - shift) ** 2))
                      / max(float(weight.sum()), 1e-12))
    sigma = math.hypot(sigma_stat, max(METHOD_FRACTION * width, MIN_METHOD_SIGMA_PX))
    return EdgeRefinement("refined", shift_px=shift, sigma_px=sigma, snr=snr, n_positions=n)
