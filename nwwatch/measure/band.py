"""The facet line placed on a narrow dark or bright line of the image at the interface.

Where the frame shows the wire/droplet interface not as an intensity step but as a thin
line darker (or brighter) than both sides — a Fresnel fringe of the defocused interface, as
in the real frame of docs/measurement.md ("Real crops") and the generator's frames — the
step locator (:mod:`nwwatch.measure.refine`) finds no step, or a "step" whose centroid the
line drags away. This module reads the same mean profile across the labels' line and, when
such a band is clear, gives its centre.

Method (offsets in px along the line's normal, positive into the droplet): the mean profile,
smoothed over half a pixel, has its extremum within ``MAX_SHIFT_PX`` of the labels' line;
the band's depth is how far it goes beyond the nearer of the two plateaus (the wire's and the
droplet's, far from the line: below both for a dark band, above both for a bright one). The
band is accepted when

* its depth is ``MIN_SNR`` times the mean profile's noise and ``MIN_ROUGH_RATIO`` times the
  plateaus' roughness (the step locator's own thresholds);
* it is narrow: the run of offsets about the extremum beyond half its depth is at most
  ``MAX_BAND_WIDTH_PX`` wide and lies within the profile;
* it is straight: its centre in three stretches along the line agrees within
  ``MAX_SEGMENT_SPREAD_PX``.

Its centre is the centroid of the depth over that run; its 1-sigma a bootstrap over the
positions, and ``METHOD_FRACTION`` of the run's width for the locator.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter1d

from nwwatch.measure.profilemean import bootstrap_means, robust_mean

#: The thresholds shared with the step locator (nwwatch.measure.refine).
MAX_SHIFT_PX = 4.0
MIN_SNR = 8.0
MIN_ROUGH_RATIO = 3.0
MAX_SEGMENT_SPREAD_PX = 2.0
BOOTSTRAP = 24
METHOD_FRACTION = 0.15
MIN_METHOD_SIGMA_PX = 0.1
#: Widest band (px, at half its depth) read as a line at the interface; wider dips are the
#: shading of a thick droplet or wire, not the interface.
MAX_BAND_WIDTH_PX = 6.0


def _run_about(mask: np.ndarray, index: int) -> tuple[int, int]:
    """[start, stop) of the run of True in ``mask`` (M,) that holds ``index``."""
    start, stop = index, index + 1
    while start > 0 and mask[start - 1]:
        start -= 1
    while stop < mask.size and mask[stop]:
        stop += 1
    return start, stop


def _centres(profiles: np.ndarray, offsets: np.ndarray, reference: float,
             sign: float) -> np.ndarray:
    """(B,) centroid of ``sign * (profile - reference)`` clipped at 0 over ``offsets`` for
    each of ``profiles`` (B, M); NaN where nothing is beyond the reference."""
    weight = np.clip(sign * (profiles - reference), 0.0, None)
    total = weight.sum(axis=1)
    out = np.full(len(profiles), np.nan)
    ok = total > 0
    out[ok] = (weight[ok] @ offsets) / total[ok]
    return out


def locate_band(prof: np.ndarray, mean: np.ndarray, offsets: np.ndarray, noise: float,
                plateaus: tuple[float, float], rough: float):
    """The centre of a narrow dark or bright line near the labels' facet line.

    Parameters
    ----------
    prof : float (n, M) intensity profiles across the line, one per position along it.
    mean : float (M,) their robust mean (:func:`nwwatch.measure.profilemean.robust_mean`).
    offsets : float (M,) px along the line's normal (positive into the droplet), evenly
        spaced.
    noise : the mean profile's noise (same units as the image).
    plateaus : (wire, droplet) levels of the mean profile far from the line.
    rough : the plateaus' roughness.

    Returns
    -------
    ``EdgeRefinement`` with ``status == "band"``, ``shift_px`` (the band's centre) and
    ``sigma_px``; or None when no band is clear.
    """
    from nwwatch.measure.refine import EdgeRefinement

    n = prof.shape[0]
    step_px = float(offsets[1] - offsets[0])
    smooth = gaussian_filter1d(mean, 0.5 / step_px)
    near = np.abs(offsets) <= MAX_SHIFT_PX
    best = None
    for sign in (-1.0, 1.0):  # a dark band, then a bright one
        reference = min(plateaus) if sign < 0 else max(plateaus)
        excess = sign * (smooth - reference)
        index = int(np.argmax(np.where(near, excess, -np.inf)))
        depth = float(excess[index])
        if best is None or depth > best[0]:
            best = (depth, sign, reference, index, excess)
    depth, sign, reference, index, excess = best
    snr = depth / noise if noise > 0 else 0.0
    if snr < MIN_SNR or depth < MIN_ROUGH_RATIO * rough:
        return None
    start, stop = _run_about(excess >= 0.5 * depth, index)
    width = (stop - start) * step_px
    if width > MAX_BAND_WIDTH_PX or start == 0 or stop == offsets.size:
        return None
    run = slice(start, stop)
    # The centre: the depth's centroid over the run, measured from half the depth so that
    # the plateaus' small differences do not weigh in.
    level = reference + sign * 0.5 * depth
    shift = float(_centres(mean[None, run], offsets[run], level, sign)[0])
    if not math.isfinite(shift) or abs(shift) > MAX_SHIFT_PX:
        return None
    thirds = np.stack([robust_mean(part[:, run]) for part in np.array_split(prof, 3)])
    parts = _centres(thirds, offsets[run], level, sign)
    if not np.isfinite(parts).all() or float(np.ptp(parts)) > MAX_SEGMENT_SPREAD_PX:
        return None
    rng = np.random.default_rng(0)
    boot = _centres(bootstrap_means(prof[:, run], rng.integers(0, n, (BOOTSTRAP, n))),
                    offsets[run], level, sign)
    boot = boot[np.isfinite(boot)]
    if boot.size < BOOTSTRAP // 2:
        return None
    sigma = math.hypot(float(np.std(boot, ddof=1)),
                       max(METHOD_FRACTION * width, MIN_METHOD_SIGMA_PX))
    return EdgeRefinement("band", shift_px=shift, sigma_px=sigma, snr=snr, n_positions=n)
