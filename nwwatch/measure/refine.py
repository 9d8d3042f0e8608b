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
are averaged robustly (mean per offset with the highest and lowest 15 % left out, which
stays smooth on integer frames where a median jumps by whole counts; positions with NaN
pixels are left out). The step's position is the centroid of the
mean profile's derivative in a window of +-``WINDOW_PX`` about the current estimate,
iterated from the label's line: a blurred step, and a step with Fresnel fringes
antisymmetric about it, are located at their centre, where the largest gradient of an
underfocused edge is not. The image must be the raw frame: a normalisation that clips the
darkest pixels (often the droplet) cuts one side of the step and moves it. The shift is
accepted only when

* the plateaus on either side differ by ``MIN_SNR`` times the mean profile's noise (from the
  spread across positions, at least the frame's quantisation: 1/sqrt(12) of a count for
  integer frames, of the float's resolution otherwise) and ``MIN_ROUGH_RATIO`` times the
  plateaus' roughness (lattice fringes parallel to the facet survive the averaging);
* it is a step, not a ramp: lines fitted to the profile on either side, beyond
  ``STEP_SIDE_PX`` of the step, are apart at the step by ``MIN_STEP_SHARE`` of the contrast
  and ``MIN_SNR`` times the noise (a gradual ramp, from uneven illumination or thickness, has
  no step to locate: its derivative's centroid stays where it started);
* the step is one-sided: the smoothed derivative against the step's sign holds less than
  ``MAX_REVERSE_FRACTION`` of its area (no fringe, halo or second edge as strong);
* the step is straight: the edge found in three stretches along the line agrees within
  ``MAX_SEGMENT_SPREAD_PX`` and within their bootstrap noise;
* it lies within ``MAX_SHIFT_PX`` of the labels.

Its 1-sigma: a bootstrap over the positions, ``METHOD_FRACTION`` of the step's RMS width
for the locator itself, and the bias a droplet thickening away from the facet gives the
centroid (:func:`ramp_bias_px`). A facet the labels show as an ellipse (a wire tilted out of
the image plane) has no single step; :func:`nwwatch.measure.measure_contact_angle` does not
refine it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import smallmath
from nwwatch.measure.interface import FacetLine
from nwwatch.measure.sample import bilinear_grid, nearest_grid

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
#: The lines fitted to the profile on either side of the step, beyond STEP_SIDE_PX of it,
#: must meet the step's position apart by this share of the plateaus' contrast (a ramp: 0;
#: the steps of the bench's synthetic frames, with fringes and a droplet thickening away from
#: the facet: 0.6-0.9 for nine in ten).
MIN_STEP_SHARE = 0.6
STEP_SIDE_PX = 4.0
#: Share of the profile values left out at either end of the robust mean: enough to drop a
#: stray pixel, little enough that the mean of an integer frame with noise below a count
#: moves smoothly (a median jumps by whole counts: a 1-count ramp reads as a step).
TRIM_FRACTION = 0.15
#: The derivative's sum against the step's sign, as a share of its sum along it, above which
#: the step is not clear.
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
    "no_data": "the image has no data (NaN or infinite pixels) across the interface at too "
               "many positions: the label boundary is kept",
    "weak_step": "the intensity step is not above the noise: the label boundary is kept",
    "not_a_step": "the profile is not one sharp step (a gradual ramp, fringes, halo or a "
                  "second edge as strong): the label boundary is kept",
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


def _robust_mean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean along ``axis`` without the highest and lowest ``TRIM_FRACTION`` of the values
    (as ``scipy.stats.trim_mean``, without its per-call overhead: it runs 25 times a frame)."""
    n = values.shape[axis]
    cut = int(TRIM_FRACTION * n)
    part = np.partition(values, (cut, n - cut - 1), axis=axis) if cut else values
    # Rows of a C-contiguous array (the callers' are copies made by boolean indexing) slice
    # into np.take's copy's values and layout: the mean sums in its order (an F-ordered
    # array's slice would not, and its mean differs in the last bits).
    if axis == 0:  # the mean's own sum and division, without its per-call overhead
        return part[cut:n - cut].sum(axis=0) / (n - 2 * cut)
    return np.take(part, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def _median_rows(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)`` of finite (n, M) ``values``, from one partition (the
    same values: the middle one, or the mean of the middle two; without np.median's NaN
    check and its per-call overhead)."""
    n = values.shape[0]
    half = n // 2
    if n % 2:
        return np.partition(values, half, axis=0)[half]
    part = np.partition(values, (half - 1, half), axis=0)
    return (part[half - 1] + part[half]) / 2.0


def _bootstrap_means(prof: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(B, M) the :func:`_robust_mean` of each resample ``prof[draws[b]]`` of the rows of
    ``prof`` (n, M), with ``draws`` (B, n) row indices.

    Each column is sorted once; a resample is then its rows' counts, and its trimmed mean the
    sorted values weighted by how many of each one's copies fall between the cut ranks. The
    same values as trimming every resample (B partitions of n x M values, four times the
    time), summed in another order: equal to within rounding (about 1e-15 relative)."""
    n = prof.shape[0]
    cut = int(TRIM_FRACTION * n)
    small = np.int16 if n < np.iinfo(np.int16).max else np.int32
    order = np.argsort(prof, axis=0)
    ranked = np.take_along_axis(prof, order, axis=0).T  # (M, n), each column ascending
    counts = np.bincount((draws + n * np.arange(len(draws))[:, None]).ravel(),
                         minlength=draws.size).reshape(draws.shape).astype(small)
    runs = counts[:, order.T]  # (B, M, n): copies of each ranked value in each resample
    upper = np.cumsum(runs, axis=-1, dtype=small)  # rank just past each value's copies
    lower = upper - runs
    np.maximum(lower, cut, out=lower)
    np.minimum(upper, n - cut, out=upper)
    upper -= lower
    np.maximum(upper, 0, out=upper)  # copies kept by the trim
    kept = upper.astype(np.float64).transpose(1, 0, 2)  # (M, B, n)
    return np.matmul(kept, ranked[:, :, None])[..., 0].T / (n - 2 * cut)


def _line_at(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """``np.polyval(np.polyfit(x, y, 1), at)`` of float64 (N >= 2,) ``x`` and ``y``: the same
    arithmetic (the Vandermonde columns scaled to unit norm, ``np.linalg.lstsq`` with
    polyfit's ``rcond``, the coefficients scaled back, Horner's rule from 0) without
    polyfit's and polyval's per-call checks (a third of their time)."""
    lhs = np.empty((x.size, 2))
    lhs[:, 0] = x
    lhs[:, 1] = 1.0
    scale = np.sqrt((lhs * lhs).sum(axis=0))
    lhs /= scale
    coef = np.linalg.lstsq(lhs, y, x.size * _EPS64)[0] / scale
    return float((0.0 * at + coef[0]) * at + coef[1])


def _gradient(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``np.gradient(values, offsets)`` of float64 (M >= 2,) ``values``: where ``offsets``
    are evenly spaced (the profiles' are: multiples of PROFILE_STEP_PX, exact in binary),
    numpy's uniform-spacing arithmetic (central differences over twice the spacing,
    one-sided ones at the ends) without its per-call checks; numpy's otherwise."""
    spacing = offsets[1] - offsets[0]
    if not (np.diff(offsets) == spacing).all():
        return np.gradient(values, offsets)
    out = np.empty_like(values)
    out[1:-1] = (values[2:] - values[:-2]) / (2.0 * spacing)
    out[0] = (values[1] - values[0]) / spacing
    out[-1] = (values[-1] - values[-2]) / spacing
    return out


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """``(values.mean(), values.std())`` of a float64 1-D array, by numpy's arithmetic (the
    sum over the count; the root of the mean squared deviation from it) with one sum
    shared and without the methods' per-call overhead."""
    n = values.size
    mean = values.sum() / n
    dev = values - mean
    return float(mean), math.sqrt(float((dev * dev).sum() / n))


_EPS64 = float(np.finfo(np.float64).eps)


@functools.lru_cache(maxsize=64)
def _draws(n: int) -> np.ndarray:
    """(BOOTSTRAP, n) resampled row indices, from a generator seeded 0 for every call (the
    same draws for the same ``n``): made once per ``n`` (a new generator costs more than the
    draws). Read-only: callers share it."""
    draws = np.random.default_rng(0).integers(0, n, (BOOTSTRAP, n))
    draws.flags.writeable = False
    return draws


def _step_centroid(profile: np.ndarray, offsets: np.ndarray, start: float,
                   sign: float) -> float:
    """Centroid of the derivative (in the step's direction ``sign``) within +-WINDOW_PX of
    the estimate, iterated from ``start``: ``x1 - integral(f) / (f(x1) - f(x0))`` over the
    window [x0, x1], unbiased for zero-mean noise (the derivative is not clipped) and for
    fringes antisymmetric about the step; NaN when the window holds no step."""
    x = start
    # Slices of these whole-profile arrays hold each window's values: np.diff of its
    # offsets, its profile times ``sign``, and the sums of neighbours the trapezoids take.
    spacing = offsets[1:] - offsets[:-1]
    signed = profile * sign
    pairs = signed[1:] + signed[:-1]
    # Each estimate is a function of the previous one alone: once one comes back, the rest
    # of the twelve repeats that cycle (its steps were all checked on the first pass), and
    # the twelfth is read from it (nine frames in ten of the growth video cycle).
    seen: dict[float, int] = {x: 0}
    trail = [x]
    for step in range(12):
        # The window |offsets - x| <= WINDOW_PX is a run of samples (offsets increase, and
        # so does offsets - x): its ends by bisection, and slices instead of a boolean mask
        # and gathers (the same values; this loop runs ten times a frame).
        deviation = offsets - x
        lo = int(deviation.searchsorted(-WINDOW_PX, "left"))
        hi = int(deviation.searchsorted(WINDOW_PX, "right"))
        if hi - lo < 2:
            return math.nan
        f0 = signed[lo]
        rise = float(signed[hi - 1] - f0)
        if rise <= 0.0:
            return math.nan
        area = float((0.5 * (pairs[lo:hi - 1] - 2.0 * f0) * spacing[lo:hi - 1]).sum())
        new = float(offsets[hi - 1] - area / rise)
        new = min(max(new, -MAX_SHIFT_PX - 1.0), MAX_SHIFT_PX + 1.0)
        if abs(new - x) < 0.01:
            return new
        x = new
        first = seen.setdefault(x, step + 1)
        if first <= step:
            return trail[first + (12 - first) % (step + 1 - first)]
        trail.append(x)
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
        The raw frame (any intensity scale and dtype; not a normalisation that clips, which
        cuts one side of the step). NaN pixels are left out of the profiles.
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
    # Sample (row, col) = line.point + position * direction + offset * normal, one coordinate
    # at a time and only where read (the same sums as one (P, M, 2) array, a fifth of the time).
    along_r = line.point[0] + positions * line.direction[0]
    along_c = line.point[1] + positions * line.direction[1]
    across_r, across_c = offsets * line.normal[0], offsets * line.normal[1]
    # Positions whose labels read wire, then droplet, across the whole profile (outside the
    # reach of a possible shift): the step between them is the interface, nothing else.
    # Only the offsets beyond a possible shift are read, and the image only at the positions
    # that pass (each sample is computed alone: the same values as reading them all).
    below = offsets < -MAX_SHIFT_PX
    above = offsets > MAX_SHIFT_PX
    outside = below | above
    lab = nearest_grid(labels, (along_r, across_r[outside]), (along_c, across_c[outside]))
    n_below = int(np.count_nonzero(below))
    ok = (lab[:, :n_below] == NANOWIRE).all(axis=1) & (lab[:, n_below:] == DROPLET).all(axis=1)
    if np.count_nonzero(ok) < MIN_POSITIONS:
        return EdgeRefinement("too_short", n_positions=int(np.count_nonzero(ok)))
    img = np.asarray(image)
    with np.errstate(invalid="ignore"):  # an infinite pixel's zero weight: NaN, left out
        prof = bilinear_grid(img, (along_r[ok], across_r), (along_c[ok], across_c))
    if img.dtype.kind not in "biu":  # NaN pixels: leave those positions out
        prof = prof[np.isfinite(prof).all(axis=1)]
    n = prof.shape[0]
    if n < MIN_POSITIONS:
        return EdgeRefinement("no_data", n_positions=n)
    mean = _robust_mean(prof)
    plateau_w = offsets <= -REACH_PX + PLATEAU_PX
    plateau_d = offsets >= REACH_PX - PLATEAU_PX
    (level_w, rough_w), (level_d, rough_d) = _mean_std(mean[plateau_w]), _mean_std(
        mean[plateau_d])
    contrast = level_d - level_w
    rough = max(rough_w, rough_d)
    # Noise of the mean profile: spread across positions / sqrt(n), the spread at least the
    # frame's quantisation (q / sqrt(12): the spread of integer frames can read 0).
    if img.dtype.kind in "biu":
        quantum = 1.0
    else:
        eps = float(np.finfo(img.dtype).eps) if img.dtype.kind == "f" else float(
            np.finfo(np.float64).eps)
        quantum = eps * max(abs(level_w), abs(level_d))
    deviation = prof - _median_rows(prof)
    spread = math.sqrt(math.pi / 2.0) * (np.abs(deviation, out=deviation).sum(axis=0) / n)
    noise = 1.1 * max(smallmath.median(spread), quantum / math.sqrt(12.0)) / math.sqrt(n)
    snr = abs(contrast) / noise if noise > 0 else 0.0
    if snr < MIN_SNR or abs(contrast) < MIN_ROUGH_RATIO * rough:
        return EdgeRefinement("weak_step", snr=snr, n_positions=n)
    sign = 1.0 if contrast > 0 else -1.0
    shift = _step_centroid(mean, offsets, 0.0, sign)
    if not math.isfinite(shift):
        return EdgeRefinement("out_of_reach", snr=snr, n_positions=n)
    if abs(shift) > MAX_SHIFT_PX:
        return EdgeRefinement("out_of_reach", shift_px=shift, snr=snr, n_positions=n)
    # One step, not a ramp: the lines fitted to the profile on either side (beyond
    # STEP_SIDE_PX of it) meet the step's position apart by most of the contrast, and by more
    # than the noise. A ramp's two sides continue one line.
    side_w, side_d = offsets <= shift - STEP_SIDE_PX, offsets >= shift + STEP_SIDE_PX
    jump = sign * (_line_at(offsets[side_d], mean[side_d], shift)
                   - _line_at(offsets[side_w], mean[side_w], shift))
    if jump < MIN_STEP_SHARE * abs(contrast) or jump < MIN_SNR * noise:
        return EdgeRefinement("not_a_step", shift_px=shift, snr=snr, n_positions=n)
    # ... and the derivative against the step's sign is small within the window (on the
    # profile smoothed over a pixel, so that the noise left in the mean does not count).
    grad = _gradient(gaussian_filter1d(mean, 1.0 / PROFILE_STEP_PX), offsets) * sign
    win = np.abs(offsets - shift) <= WINDOW_PX
    forward = float(np.clip(grad[win], 0.0, None).sum())
    reverse = float(np.clip(-grad[win], 0.0, None).sum())
    if reverse > MAX_REVERSE_FRACTION * forward:
        return EdgeRefinement("not_a_step", shift_px=shift, snr=snr, n_positions=n)
    # Straight: the step at the same place in three stretches along the line (the positions
    # are in order along it), within MAX_SEGMENT_SPREAD_PX (checked first: it needs no
    # bootstrap) and within their noise (each has a third of the positions).
    third = round(n / 3)  # thirds of n - 2k, k, k are the same read from either end
    thirds = (prof[:third], prof[third:n - third], prof[n - third:])
    parts = _centroids_at(np.stack([_robust_mean(part[:, win]) for part in thirds]),
                          offsets[win], shift, sign)
    if not np.isfinite(parts).all() or float(np.ptp(parts)) > MAX_SEGMENT_SPREAD_PX:
        return EdgeRefinement("not_straight", shift_px=shift, snr=snr, n_positions=n)
    # Statistical 1-sigma of the step's position: a bootstrap over the positions, of the
    # profile within the window (all the centroid reads). The profiles are resampled in an
    # order of their own values (their sums; ties by their ends), not of their positions
    # along the line: the same frame mirrored or turned, whose line runs the other way,
    # draws the same resamples. Ordered with the step's sign, so that the frame's negative
    # (the step the other way) draws them too.
    rows = prof[:, win]
    key = rows * sign
    rows = rows[np.lexsort((key[:, -1], key[:, 0], key.sum(axis=1)))]
    boot = _centroids_at(_bootstrap_means(rows, _draws(n)), offsets[win], shift, sign)
    boot = boot[np.isfinite(boot)]
    sigma_stat = float(np.std(boot, ddof=1)) if boot.size >= BOOTSTRAP // 2 else math.inf
    sigma_part = max(sigma_stat * math.sqrt(3.0), 0.1)
    if math.isfinite(sigma_stat):
        chi2 = float(np.sum(((parts - parts.mean()) / sigma_part) ** 2))
        spread_px = float(np.ptp(parts))
    else:
        chi2 = spread_px = math.inf
    if chi2 > MAX_SEGMENT_CHI2 or spread_px > MAX_SEGMENT_SPREAD_PX:
        return EdgeRefinement("not_straight", shift_px=shift, snr=snr, n_positions=n)
    # Systematic: a share of the step's RMS width (a sharp step is placed to a fraction of a
    # pixel; a wide one, blurred or with fringes, less well).
    weight = np.clip(grad[win], 0.0, None)
    total = float(weight.sum())
    width = (math.sqrt(float(np.sum(weight * (offsets[win] - shift) ** 2)) / total)
             if total > 0 else 0.0)
    sigma = math.hypot(sigma_stat, max(METHOD_FRACTION * width, MIN_METHOD_SIGMA_PX))
    sigma = math.hypot(sigma, ramp_bias_px(offsets[side_d], mean[side_d], sign, jump))
    return EdgeRefinement("refined", shift_px=shift, sigma_px=sigma, snr=snr, n_positions=n)


def ramp_bias_px(offsets: np.ndarray, profile: np.ndarray, sign: float, jump: float) -> float:
    """The bias (px, into the droplet) that a ramp on the droplet's side gives the step's
    centroid. A step of height J followed by a line of slope b: the derivative's centroid
    over the window +-W (``WINDOW_PX``) about an estimate c is b (c + W)^2 / (2 (J + b (c + W))),
    and :func:`_step_centroid` iterates it to its fixed point c = W (sqrt(1 + r^2) - 1) / r,
    r = b W / J (the first step alone gives W r / (2 (1 + r)), less). ``jump`` is measured at
    the biased position, J + b c = sqrt(J^2 + (b W)^2), so c = b W^2 / (jump + sqrt(jump^2 -
    (b W)^2)); W where the ramp over the window is as large as the jump.
    ``offsets`` and ``profile`` (float64 (M,)) are the profile beyond ``STEP_SIDE_PX`` on the
    droplet's side; only a ramp that goes on in the step's direction ``sign`` counts (the
    droplet thickening away from the facet: steep caps, droplets narrower than their wire).
    Added to the refined line's 1-sigma: the bias itself is not removed
    (docs/measurement.md, Limits)."""
    centred = offsets - offsets.mean()
    slope = max(0.0, sign * float((centred * (profile - profile.mean())).sum()
                                  / (centred * centred).sum()))
    if slope == 0.0 or jump <= 0.0:
        return 0.0
    ramp_px = slope * WINDOW_PX  # the ramp's rise over the window
    if ramp_px >= jump:
        return WINDOW_PX
    return slope * WINDOW_PX**2 / (jump + math.sqrt(jump * jump - ramp_px * ramp_px))
