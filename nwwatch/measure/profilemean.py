"""Robust means of intensity profiles sampled across a line, and their bootstrap: what the
facet-line refinement (:mod:`nwwatch.measure.refine`, :mod:`nwwatch.measure.band`) reads the
image with."""

from __future__ import annotations

import numpy as np

#: Share of the profile values left out at either end of the robust mean: enough to drop a
#: stray pixel, little enough that the mean of an integer frame with noise below a count
#: moves smoothly (a median jumps by whole counts: a 1-count ramp reads as a step).
TRIM_FRACTION = 0.15


def robust_mean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean along ``axis`` without the highest and lowest ``TRIM_FRACTION`` of the values
    (as ``scipy.stats.trim_mean``, without its per-call overhead: it runs 25 times a frame)."""
    n = values.shape[axis]
    cut = int(TRIM_FRACTION * n)
    part = np.partition(values, (cut, n - cut - 1), axis=axis) if cut else values
    return np.take(part, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def median_rows(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)`` of finite (n, M) ``values``, from one partition (the
    same values: the middle one, or the mean of the middle two; without np.median's NaN
    check and its per-call overhead)."""
    n = values.shape[0]
    half = n // 2
    if n % 2:
        return np.partition(values, half, axis=0)[half]
    part = np.partition(values, (half - 1, half), axis=0)
    return (part[half - 1] + part[half]) / 2.0


def bootstrap_means(prof: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(B, M) the :func:`robust_mean` of each resample ``prof[draws[b]]`` of the rows of
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
