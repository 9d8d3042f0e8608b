"""Order statistics and tiny linear systems without numpy's per-call overhead.

A measurement makes a few hundred such calls on arrays of 10-1000 elements, where
``np.median`` / ``np.percentile`` (~30-70 us) and ``np.linalg.solve`` / ``lstsq`` on 2x2 or
3x3 systems (~30-80 us) cost far more than the arithmetic. These give the same values:
medians and percentiles by partial sorting (numpy's linear interpolation), 2x2 and 3x3
systems by the adjugate in Python floats.
"""

from __future__ import annotations

import math

import numpy as np


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of a non-empty 1-D array."""
    n = values.size
    k = (n - 1) * (q / 100.0)
    lo = int(k)
    if lo >= n - 1:
        return float(np.partition(values, n - 1)[n - 1])
    part = np.partition(values, (lo, lo + 1))
    return float(part[lo] + (k - lo) * (part[lo + 1] - part[lo]))


def median(values: np.ndarray) -> float:
    """``np.median`` of a non-empty 1-D array."""
    n = values.size
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    part = np.partition(values, (half - 1, half))
    return float(0.5 * (part[half - 1] + part[half]))


def _adjugate(matrix: np.ndarray) -> tuple[list[list[float]], float]:
    """Adjugate and determinant of a 1x1, 2x2 or 3x3 matrix, in Python floats."""
    return _adjugate_lists(np.asarray(matrix, dtype=np.float64).tolist())


def _adjugate_lists(m: list[list[float]]) -> tuple[list[list[float]], float]:
    n = len(m)
    if n == 1:
        return [[1.0]], m[0][0]
    if n == 2:
        (p, q), (r, t) = m
        return [[t, -q], [-r, p]], p * t - q * r
    if n != 3:
        raise ValueError(f"smallmath handles up to 3x3 systems, got {n}x{n}")
    (a, b, c), (d, e, f), (g, h, i) = m
    adj = [[e * i - f * h, c * h - b * i, b * f - c * e],
           [f * g - d * i, a * i - c * g, c * d - a * f],
           [d * h - e * g, b * g - a * h, a * e - b * d]]
    return adj, a * adj[0][0] + b * adj[1][0] + c * adj[2][0]


def solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solution of the square system ``matrix @ x = rhs`` (n <= 3) by the adjugate, float64.

    Raises ``np.linalg.LinAlgError`` for a singular matrix, as ``np.linalg.solve`` does. Meant
    for the well-conditioned normal equations of the fits here (damped or centred).
    """
    return solve_lists(np.asarray(matrix, dtype=np.float64).tolist(),
                       np.asarray(rhs, dtype=np.float64).tolist())


def solve_lists(matrix: list[list[float]], rhs: list[float]) -> np.ndarray:
    """:func:`solve` of a matrix and right-hand side given as nested lists of floats."""
    adj, det = _adjugate_lists(matrix)
    if not det:
        raise np.linalg.LinAlgError("singular matrix")
    return np.array(adj, dtype=np.float64) @ np.array(rhs) / det


def inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a square matrix (n <= 3); ``np.linalg.LinAlgError`` if singular."""
    adj, det = _adjugate(matrix)
    if not det:
        raise np.linalg.LinAlgError("singular matrix")
    return np.array(adj) / det


def lstsq(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``design`` (N, k <= 3) for ``target`` (N,) from the
    normal equations (callers centre their columns, so they are well conditioned)."""
    return solve(design.T @ design, design.T @ target)



def symmetric_eig2(matrix: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Eigenvalues (low, high) and unit eigenvectors (2,) of a symmetric 2x2 matrix, as
    ``np.linalg.eigh`` gives them (eigenvector signs arbitrary)."""
    (a, b), (_, c) = np.asarray(matrix, dtype=np.float64).tolist()
    mid, rad = 0.5 * (a + c), math.hypot(0.5 * (a - c), b)
    low, high = mid - rad, mid + rad
    if rad == 0.0:  # isotropic: every direction is an eigenvector
        return low, high, np.array([1.0, 0.0]), np.array([0.0, 1.0])
    # (b, l - a) and (l - c, b) both solve (M - l) v = 0; take the longer for accuracy.
    x, y = (b, high - a) if abs(high - a) >= abs(high - c) else (high - c, b)
    norm = math.hypot(x, y)
    v_high = np.array([x / norm, y / norm])
    return low, high, np.array([-v_high[1], v_high[0]]), v_high


def smallest_eigenvector(scatter: np.ndarray) -> np.ndarray:
    """Unit eigenvector (2,) of the smallest eigenvalue of a symmetric 2x2 matrix (the normal
    of a total-least-squares line through points with that scatter matrix); sign arbitrary."""
    return symmetric_eig2(scatter)[2]
