"""Exact 3D Euclidean distance transform in numpy (and OpenCV for the in-plane part).

The squared EDT is separable (Saito & Toriwaki 1994; Felzenszwalb & Huttenlocher 2012): after
the exact 2D squared distance of every (Y, X) slice, one pass along Z takes, for each column,
the lower envelope of the parabolas ``(w (z - q))^2 + f(q)``. That pass is vectorised over all
(y, x) columns at once, so Python loops only over the Z positions.

Distances are between voxel centres (the scikit-image / scipy convention): a foreground voxel's
value is the distance to the centre of the nearest background voxel, background voxels are 0.
"""

from __future__ import annotations

import cv2
import numpy as np

# Columns without any feature carry this finite stand-in for +inf through the envelope pass
# (inf - inf would give NaN); anything at or above _FAR / 2 becomes +inf on output.
_FAR = 1e30
# Longest Z reach for which the brute-force window beats the envelope pass.
_MAX_WINDOW = 24


def _as_sampling(sampling: float | tuple[float, float, float] | None) -> tuple[float, ...]:
    if sampling is None:
        return (1.0, 1.0, 1.0)
    if np.ndim(sampling) == 0:
        value = float(sampling)  # type: ignore[arg-type]
        values: tuple[float, ...] = (value, value, value)
    else:
        values = tuple(float(v) for v in sampling)  # type: ignore[union-attr]
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"sampling must be one positive number or (z, y, x), got {sampling}")
    return values


def _line_distance_sq(feature_free: np.ndarray, weight: float) -> np.ndarray:
    """Squared distance along axis 0 to the nearest zero of ``feature_free`` (bool (n, M))."""
    n = feature_free.shape[0]
    index = np.arange(n, dtype=np.float64)[:, None]
    last = np.where(feature_free, -np.inf, index)
    np.maximum.accumulate(last, axis=0, out=last)
    following = np.where(feature_free, np.inf, index)[::-1]
    np.minimum.accumulate(following, axis=0, out=following)
    following = following[::-1]
    gap = np.minimum(index - last, following - index)
    out = (gap * weight) ** 2
    out[~np.isfinite(out)] = _FAR
    return out


def _envelope_pass(f: np.ndarray, weight: float) -> np.ndarray:
    """Exact squared distance along axis 0 given squared distances ``f`` (n, M) float64.

    Felzenszwalb-Huttenlocher lower envelope of parabolas, run on all M columns together;
    arrays are indexed flat (row * M + column), which numpy gathers much faster than pairs.
    """
    n, m = f.shape
    if n == 1:
        return f.copy()
    w2 = weight * weight
    positions = np.arange(n, dtype=np.float64)
    g = (f + (w2 * positions * positions)[:, None]).ravel()  # f(q) + (w q)^2
    cols = np.arange(m, dtype=np.int64)
    v = np.zeros(n * m, dtype=np.int64)  # per column, the stack of parabola apexes (rows)
    z = np.empty((n + 1) * m, dtype=np.float64)  # left boundary of each stacked parabola
    z[:m] = -np.inf
    z[m:2 * m] = np.inf
    k = np.zeros(m, dtype=np.int64)
    s = np.empty(m, dtype=np.float64)
    for q in range(1, n):
        gq = g[q * m:(q + 1) * m]
        active = cols
        ka = k
        while active.size:
            vk = v[ka * m + active]
            sa = (gq[active] - g[vk * m + active]) / (2.0 * w2 * (q - vk))
            s[active] = sa
            pop = sa <= z[ka * m + active]
            if not pop.any():
                break
            active = active[pop]
            ka = k[active] - 1
            k[active] = ka
        k += 1
        flat = k * m + cols
        v[flat] = q
        z[flat] = s
        z[flat + m] = np.inf
    out = np.empty_like(f)
    flat_f = f.ravel()
    k[:] = 0
    for q in range(n):
        active = cols
        while active.size:
            move = z[(k[active] + 1) * m + active] < q
            if not move.any():
                break
            active = active[move]
            k[active] += 1
        vk = v[k * m + cols]
        out[q] = w2 * (q - vk) ** 2 + flat_f[vk * m + cols]
    return out


def _window_pass(f: np.ndarray, weight: float, reach: int) -> np.ndarray:
    """Squared distance along axis 0 looking at most ``reach`` rows away (brute force).

    Exact whenever every true nearest feature lies within ``reach`` rows, e.g. when
    ``reach * weight`` is at least the largest finite value of ``sqrt(f)``.
    """
    out = f.copy()
    n = f.shape[0]
    for step in range(1, min(reach, n - 1) + 1):
        cost = (weight * step) ** 2
        np.minimum(out[step:], f[:-step] + cost, out=out[step:])
        np.minimum(out[:-step], f[step:] + cost, out=out[:-step])
    return out


def _slice_distance_sq(foreground: np.ndarray, sampling_yx: tuple[float, float]) -> np.ndarray:
    """Exact squared 2D EDT of every (Y, X) slice; float64 (Z, Y, X), _FAR where no feature."""
    nz, ny, nx = foreground.shape
    wy, wx = sampling_yx
    if wy == wx:
        out = np.empty(foreground.shape, dtype=np.float64)
        has_feature = (~foreground).reshape(nz, -1).any(axis=1)
        for i in range(nz):
            if not has_feature[i]:
                out[i] = _FAR
                continue
            # DIST_MASK_PRECISE with DIST_L2 is OpenCV's exact (Felzenszwalb) transform; the
            # squared distances of unit-spaced centres are integers, so rounding removes the
            # float32 sqrt round trip.
            d = cv2.distanceTransform(foreground[i].view(np.uint8), cv2.DIST_L2,
                                      cv2.DIST_MASK_PRECISE)
            out[i] = np.rint(d.astype(np.float64) ** 2)
        if wy != 1.0:
            out[out < _FAR / 2] *= wy * wy
        return out
    along_x = _line_distance_sq(np.moveaxis(foreground, 2, 0).reshape(nx, -1), wx)
    along_x = np.moveaxis(along_x.reshape(nx, nz, ny), 0, 2)
    f = np.moveaxis(along_x, 1, 0).reshape(ny, -1)
    return np.moveaxis(_envelope_pass(f, wy).reshape(ny, nz, nx), 0, 1)


def distance_transform_edt_sq(
    foreground: np.ndarray,
    sampling: float | tuple[float, float, float] | None = None,
    *,
    max_distance: float | None = None,
) -> np.ndarray:
    """Exact squared Euclidean distance from each foreground voxel to the nearest background.

    Parameters
    ----------
    foreground : bool ndarray (Z, Y, X)
        Voxels whose distance is wanted; ``False`` voxels are the features (distance 0).
    sampling : float or (z, y, x) floats, optional
        Voxel spacing; distances come out in the same unit. Default 1 (voxels).
    max_distance : float, optional
        Only distances up to this value are computed exactly; larger ones are ``inf``. Much
        faster for morphology with a ball of that radius.

    Returns
    -------
    float64 ndarray (Z, Y, X) of squared distances; ``inf`` everywhere when there is no
    background voxel at all.
    """
    fg = np.ascontiguousarray(np.asarray(foreground, dtype=bool))
    if fg.ndim != 3:
        raise ValueError(f"foreground must be a 3D (Z, Y, X) array, got shape {fg.shape}")
    wz, wy, wx = _as_sampling(sampling)
    if fg.size == 0:
        return np.zeros(fg.shape, dtype=np.float64)
    if fg.all():
        return np.full(fg.shape, np.inf)
    nz, ny, nx = fg.shape
    f = _slice_distance_sq(fg, (wy, wx)).reshape(nz, ny * nx)
    if max_distance is not None:
        # Only distances up to max_distance are wanted: features further along Z can't matter.
        out = _window_pass(f, wz, int(np.floor(max_distance / wz)))
        out[out > max_distance * max_distance] = np.inf
        return out.reshape(nz, ny, nx)
    finite = f[f < _FAR / 2]
    # The 3D distance never exceeds the in-slice one, so a feature more than max(in-slice)
    # away along Z never wins: when that reach is short, the brute-force window is exact and
    # faster than the envelope pass.
    reach = int(np.ceil(np.sqrt(finite.max()) / wz)) if finite.size == f.size else nz
    if reach <= _MAX_WINDOW:
        out = _window_pass(f, wz, reach)
    else:
        out = _envelope_pass(f, wz)
    out = out.reshape(nz, ny, nx)
    out[out >= _FAR / 2] = np.inf
    return out


def distance_transform_edt(
    foreground: np.ndarray,
    sampling: float | tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Exact Euclidean distance transform; same as ``scipy.ndimage.distance_transform_edt``.

    Parameters
    ----------
    foreground : bool ndarray (Z, Y, X)
    sampling : float or (z, y, x) floats, optional (voxel spacing; default 1)

    Returns
    -------
    float64 ndarray (Z, Y, X): distance from each ``True`` voxel to the centre of the nearest
    ``False`` voxel, 0 on ``False`` voxels, ``inf`` everywhere if there is no ``False`` voxel.
    """
    return np.sqrt(distance_transform_edt_sq(foreground, sampling))
