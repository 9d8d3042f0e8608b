"""Statistics of a series of contact angles, shared by the live dashboard and the report.

Refused frames are named by their reason code: the ``reason_code`` column where the results
have one, else ``status`` (whose values are codes too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

#: Valid angles in the rolling median of the trend line.
TREND_WINDOW = 9


def reason_codes(status: Sequence[str | None], reason_code: Sequence[str | None] | None,
                 valid: np.ndarray) -> np.ndarray:
    """Per row: ``"ok"`` for a valid angle, else the row's reason code (``reason_code`` when
    the column exists and is set, else ``status``; ``"unknown"`` when neither is).

    Returns an object array (N,) of str.
    """

    def usable(values) -> tuple[np.ndarray, np.ndarray]:
        arr = np.array(values, dtype=object)
        ok = np.array([isinstance(v, str) and v not in ("", "ok") for v in arr], dtype=bool)
        return arr, ok

    out = np.full(len(valid), "unknown", dtype=object)
    st, st_ok = usable(status)
    out[st_ok] = st[st_ok]
    if reason_code is not None:
        rc, rc_ok = usable(reason_code)
        out[rc_ok] = rc[rc_ok]
    out[np.asarray(valid, dtype=bool)] = "ok"
    return out


def trend_frames(time_sources: Sequence[str | None], timed: np.ndarray) -> np.ndarray:
    """Per row, whether it belongs in the trend, by where its acquisition time comes from
    (``acquired_at_source``: ``"metadata"``, ``"mtime"``, or None where not recorded).

    Where an acquisition mixes times declared in metadata with files' modification times,
    the ``"mtime"`` rows are left out: a modification time is when the file was last
    written or copied, not when the frame was acquired, and put among declared times it
    lands anywhere in the series (all of one copy's second, before every real frame),
    pulling the trend of the frames around it. Where no row of ``timed`` (bool: the rows
    with an acquisition time) declares its time in metadata, every row is in (times of one
    kind, in their own order). Returns bool (N,).
    """
    sources = np.asarray(time_sources, dtype=object)
    timed = np.asarray(timed, dtype=bool)
    mtime = sources == "mtime"
    if not ((mtime & timed).any() and ((sources == "metadata") & timed).any()):
        return np.ones(len(sources), dtype=bool)
    return ~mtime


def time_pad_s(first_s: float, last_s: float) -> float:
    """Margin (s) each side of a time axis spanning ``first_s`` to ``last_s`` (epoch s): 2 %
    of the span, at least 1 s (the dashboard's page computes the same)."""
    return max(1.0, 0.02 * (last_s - first_s))


def outside_declared_span(t_s: np.ndarray, in_trend: np.ndarray) -> np.ndarray:
    """Per row, whether the charts leave it off their time axis: a row the trend leaves out
    (timed by its file's modification time among frames that declare their time,
    :func:`trend_frames`) whose time lies outside the declared times' span and its margin
    (:func:`time_pad_s`). Such a time lands anywhere (a copy's, 12 h before the frames; a
    file written now, after frames stamped earlier): let onto the axis it stretched the axis
    to reach it, and the real frames were squeezed into one column. ``t_s``: acquisition
    times (epoch s, NaN where none); ``in_trend``: bool. Returns bool (N,); all False where
    every row is in the trend."""
    t_s = np.asarray(t_s, dtype=np.float64)
    in_trend = np.asarray(in_trend, dtype=bool)
    declared = t_s[in_trend & np.isfinite(t_s)]
    if in_trend.all() or not len(declared):
        return np.zeros(len(t_s), dtype=bool)
    first, last = float(declared.min()), float(declared.max())
    pad = time_pad_s(first, last)
    with np.errstate(invalid="ignore"):
        return ~in_trend & ((t_s < first - pad) | (t_s > last + pad))


def rolling_median(values: np.ndarray, valid: np.ndarray, window: int = TREND_WINDOW,
                   centred: bool = False) -> np.ndarray:
    """Rolling median of the valid values; NaN at invalid indices.

    Causal (the default, the live dashboard's): at each valid index, the median of it and the
    up to ``window - 1`` valid values before it, so a point's trend never changes once drawn,
    but it lags a rising or falling series by about ``window // 2`` valid frames. Centred
    (``centred=True``, the report's, for finished acquisitions): the median of the valid values
    from ``window // 2`` before to ``window // 2`` after it, fewer at the ends; no lag.

    ``values``: float (N,), in time order; ``valid``: bool (N,). Returns float64 (N,). A median,
    not a mean, so one bad fit does not drag the trend.
    """
    values = np.asarray(values, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(values)
    out = np.full(values.shape, np.nan)
    idx = np.flatnonzero(valid)
    v = values[idx]
    if centred:
        half = window // 2
        for j in [*range(min(half, len(v))), *range(max(half, len(v) - half), len(v))]:
            out[idx[j]] = np.median(v[max(0, j - half):j + half + 1])  # shorter at the ends
        if len(v) > 2 * half:
            windows = np.lib.stride_tricks.sliding_window_view(v, 2 * half + 1)
            out[idx[half:len(v) - half]] = np.median(windows, axis=1)
        return out
    head = min(len(v), window - 1)
    for j in range(head):  # shorter windows at the start
        out[idx[j]] = np.median(v[:j + 1])
    if len(v) >= window:
        windows = np.lib.stride_tricks.sliding_window_view(v, window)
        out[idx[window - 1:]] = np.median(windows, axis=1)
    return out


def angle_statistics(angles_deg: np.ndarray, valid: np.ndarray,
                     codes: Sequence[str]) -> dict:
    """n, n valid, refused counts by reason code, and median, IQR (q25, q75), mean, sd of
    the valid angles (degrees; None when there is no valid angle; sd None below 2)."""
    angles = np.asarray(angles_deg, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool) & np.isfinite(angles)
    a = angles[ok]
    refused = Counter(c for c, good in zip(codes, ok, strict=True) if not good)
    stats: dict = {"n": int(len(angles)), "n_valid": int(ok.sum()),
                   "refused": dict(sorted(refused.items(), key=lambda kv: (-kv[1], kv[0]))),
                   "median_deg": None, "q25_deg": None, "q75_deg": None,
                   "mean_deg": None, "sd_deg": None}
    if len(a):
        q25, med, q75 = np.percentile(a, [25, 50, 75])
        stats.update(median_deg=float(med), q25_deg=float(q25), q75_deg=float(q75),
                     mean_deg=float(a.mean()),
                     sd_deg=float(a.std(ddof=1)) if len(a) > 1 else None)
    return stats
