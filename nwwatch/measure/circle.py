"""Geometric circle fit: algebraic (Kasa) start, Levenberg-Marquardt on orthogonal distances.

The geometric fit minimises sum (|p_i - c| - R)^2, which is unbiased for points scattered
around an arc; the algebraic fit alone is biased towards small radii on short arcs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from nwwatch.measure import smallmath


@dataclass(frozen=True)
class CircleFit:
    """Fitted circle: ``center`` (row, col), ``radius`` (px), ``covariance`` (3, 3) of
    (row, col, radius) from the residual variance, ``rms_px`` orthogonal residual RMS,
    ``n_points`` used, ``converged``. A failed fit is still a value: ``converged`` is False
    and ``reason`` says why (empty for a converged fit); its numbers are the last iterate."""

    center: np.ndarray
    radius: float
    covariance: np.ndarray
    rms_px: float
    n_points: int
    converged: bool
    reason: str = ""


def kasa_fit(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Algebraic circle through ``points`` (N, 2): least squares on x^2+y^2 + D x + E y + F."""
    mean = points.mean(axis=0)
    p = points - mean  # centring keeps the normal equations well conditioned
    a = np.column_stack([p, np.ones(len(p))])
    b = -(p**2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    center = -0.5 * sol[:2]
    r2 = center @ center - sol[2]
    return center + mean, float(np.sqrt(max(r2, 0.0)))


def geometric_fit(
    points: np.ndarray,
    center0: np.ndarray | None = None,
    radius0: float | None = None,
    max_iter: int = 50,
) -> CircleFit:
    """Levenberg-Marquardt fit of a circle to ``points`` (N >= 3, 2) (row, col) in pixels.

    Degenerate points (coincident or collinear: no circle through them, the covariance is
    singular) or a fit that does not converge in ``max_iter`` steps give ``converged=False``
    with a ``reason``. Raises ``ValueError`` only for malformed points (fewer than 3, not
    finite).
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if n < 3:
        raise ValueError(f"need at least 3 points for a circle, got {n}")
    if not np.isfinite(pts).all():  # the method: np.all's wrapper costs more than the test
        raise ValueError("circle points must be finite")
    if center0 is None or radius0 is None:
        center0, radius0 = kasa_fit(pts)
    c = np.asarray(center0, dtype=np.float64).copy()
    r = float(radius0)
    lam = 1e-3
    converged = False
    coords = np.ascontiguousarray(pts.T)  # (2, N): one pass per coordinate
    # Rows of the Jacobian of the residuals |p - c| - R with respect to (c_row, c_col, R).
    jac = np.empty((3, n))
    jac[2] = -1.0

    # Work arrays reused by every evaluation (the same arithmetic as fresh ones).
    d, sq, scale = np.empty((2, n)), np.empty((2, n)), np.empty(n)

    def residuals(cc: np.ndarray, rr: float, out: np.ndarray) -> np.ndarray:
        np.subtract(coords, cc[:, None], out=d)
        np.multiply(d, d, out=sq)
        dist = np.sqrt(sq[0] + sq[1])
        np.maximum(dist, 1e-12, out=scale)
        np.negative(scale, out=scale)
        np.divide(d, scale, out=out[:2])
        return dist - rr

    res = residuals(c, r, jac)
    cost = float(res @ res)
    trial = np.empty((3, n))
    trial[2] = -1.0
    for _ in range(max_iter):
        # The damped normal equations in Python floats: jtj + lam * diag(diag(jtj) + 1e-12),
        # the same sums as the array expression without its per-call cost.
        (a11, a12, a13), (a21, a22, a23), (a31, a32, a33) = (jac @ jac.T).tolist()
        minus_grad = (-(jac @ res)).tolist()
        d1, d2, d3 = a11 + 1e-12, a22 + 1e-12, a33 + 1e-12
        improved = False
        for _ in range(10):
            off = lam * 0.0  # the zeros of lam * diag(...) (NaN if lam overflowed)
            lhs = [[a11 + lam * d1, a12 + off, a13 + off],
                   [a21 + off, a22 + lam * d2, a23 + off],
                   [a31 + off, a32 + off, a33 + lam * d3]]
            try:
                step = smallmath.solve_lists(lhs, minus_grad)
            except np.linalg.LinAlgError:  # degenerate points (e.g. all identical)
                lam *= 10.0
                continue
            c_new, r_new = c + step[:2], r + step[2]
            res_new = residuals(c_new, r_new, trial)
            cost_new = float(res_new @ res_new)
            if cost_new <= cost:
                c, r, res, lam = c_new, r_new, res_new, lam * 0.3
                jac, trial = trial, jac
                improved = True
                prev_cost, cost = cost, cost_new
                break
            lam *= 10.0
        if not improved:  # no step lowers the cost any more: at the minimum
            converged = bool(np.isfinite(cost))
            break
        # An accepted step is not NaN (its cost would be NaN): Python's max of the three
        # is numpy's.
        if (prev_cost - cost <= 1e-12 * max(cost, 1e-12)
                or max(abs(v) for v in step.tolist()) < 1e-6):
            converged = True
            break
    dof = max(n - 3, 1)
    sigma2 = float(res @ res) / dof
    try:
        cov = smallmath.inverse(jac @ jac.T) * sigma2
    except np.linalg.LinAlgError:
        cov = np.full((3, 3), np.inf)
    reason = _degenerate(pts)
    if not reason and not (math.isfinite(r) and math.isfinite(cost)):
        reason = "the fit diverged (radius or residuals not finite)"
    elif not reason and not converged:
        reason = f"did not converge in {max_iter} iterations"
    elif not reason and not np.isfinite(cov).all():
        reason = "singular covariance (degenerate points)"
    return CircleFit(
        center=c,
        radius=abs(r),
        covariance=cov,
        rms_px=math.sqrt(cost / n),
        n_points=n,
        converged=not reason,
        reason=reason,
    )


#: Points whose scatter across their main direction is below this fraction of the scatter
#: along it (variance ratio; a sagitta of 1e-6 of the chord) are taken as collinear.
COLLINEAR_RATIO = 1e-12


def _degenerate(pts: np.ndarray) -> str:
    """Why no circle passes through ``pts`` (N, 2), or "" when they span a plane."""
    d = pts - pts.mean(axis=0)
    low, high, _, _ = smallmath.symmetric_eig2(d.T @ d)
    if not high > 0.0:
        return f"the {len(pts)} points coincide"
    if low <= COLLINEAR_RATIO * high:
        return f"the {len(pts)} points are collinear"
    return ""


def robust_fit(points: np.ndarray, min_threshold_px: float = 1.0) -> tuple[CircleFit, np.ndarray]:
    """Geometric fit that drops outliers (|residual| > max(3.5 robust sigma, threshold)).

    Returns the fit and the boolean mask of the points kept.
    """
    pts = np.asarray(points, dtype=np.float64)
    keep = np.ones(len(pts), dtype=bool)
    fit = geometric_fit(pts)
    for _ in range(3):
        d = np.hypot(*(pts - fit.center).T) - fit.radius
        dk = d[keep]
        mad = smallmath.median(np.abs(dk - smallmath.median(dk))) * 1.4826
        new_keep = np.abs(d) <= max(3.5 * mad, min_threshold_px)
        if np.count_nonzero(new_keep) < 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        fit = geometric_fit(pts[keep], fit.center, fit.radius)
    return fit, keep


def refine_on_pixel_edges(
    points: np.ndarray,
    outward: np.ndarray,
    fit: CircleFit,
    shrink: float = 0.7,
    weight_mid: float = 0.005,
    max_iter: int = 40,
) -> CircleFit:
    """Refine a circle fitted to pixel-edge midpoints of a binary mask.

    A midpoint only says that the true outline crosses the segment between the two pixel
    centres, i.e. lies within ``0.5 |cos(phi)|`` of the midpoint along the normal (``phi``: angle
    between the segment, ``outward`` (N, 2), and the normal). Minimises the squared excess
    over ``shrink`` times that half-width (which centres the circle in the set of circles the
    mask allows) plus ``weight_mid`` times the plain midpoint residuals (which keeps the problem
    well posed). About halves the centre error of the midpoint fit at R = 30 px. The covariance
    and residual RMS of ``fit`` are kept (conservative).
    """
    coords = np.ascontiguousarray(np.asarray(points, dtype=np.float64).T)  # (2, N)
    n = coords.shape[1]
    # Pixel-edge steps are axis-aligned: |outward . unit| is |unit| along the step's axis.
    along_col = np.abs(np.asarray(outward)[:, 1]) > 0.5
    c = fit.center.copy()
    r = float(fit.radius)
    jac = np.empty((3, n))
    jac[2] = -1.0
    reg = 1e-9 * np.eye(3)
    for _ in range(max_iter):
        d = coords - c[:, None]
        dist = np.sqrt(d[0] * d[0] + d[1] * d[1])
        np.divide(d, -np.maximum(dist, 1e-12), out=jac[:2])
        tol = (0.5 * shrink) * np.abs(np.where(along_col, jac[1], jac[0]))
        res = dist - r
        active = np.abs(res) > tol
        excess = np.where(active, res - np.copysign(tol, res), 0.0)
        w = active + weight_mid
        try:
            step = smallmath.solve((jac * w) @ jac.T + reg, -(jac @ (excess + weight_mid * res)))
        except np.linalg.LinAlgError:
            return fit
        c, r = c + step[:2], r + step[2]
        if not np.isfinite(step).all():
            return fit
        if np.abs(step).max() < 1e-5:
            break
    if np.hypot(*(c - fit.center)) > 1.0 or abs(r - fit.radius) > 1.0:
        return fit  # a refinement never moves this far on a clean outline: keep the plain fit
    return CircleFit(c, abs(r), fit.covariance, fit.rms_px, fit.n_points, fit.converged,
                     fit.reason)


def with_quantisation_floor(fit: CircleFit, points: np.ndarray, outward: np.ndarray
                            ) -> CircleFit:
    """``fit`` with its covariance raised, where its residuals are smaller, to what the
    pixel-edge midpoints ``points`` (N, 2) (row, col) in px of a binary mask allow at best.

    Each midpoint places the outline only within ``0.5 |cos(phi)|`` along the normal (see
    :func:`refine_on_pixel_edges`; ``outward`` (N, 2) the unit pixel steps): a variance of
    ``(0.5 cos(phi))^2 / 3`` per point, (0.24 px)^2 averaged over a whole circle. An outline
    that runs along the pixel axes (the straight sides of a rectangle near a circle's
    equator) fits with residuals far below that, and its covariance would claim a precision
    the mask cannot hold. The centre and radius are kept; with fewer than 3 points, or a
    covariance that is not finite, ``fit`` is returned as it is."""
    n = len(points)
    if n < 3 or not np.isfinite(fit.covariance).all():
        return fit
    radial = np.asarray(points, dtype=np.float64) - fit.center
    radial /= np.maximum(np.hypot(radial[:, 0], radial[:, 1]), 1e-12)[:, None]
    cos_phi = np.abs(np.einsum("ij,ij->i", radial, np.asarray(outward, dtype=np.float64)))
    floor_var = float(np.mean((0.5 * cos_phi) ** 2) / 3.0)
    # the residual variance the covariance was scaled by; three points leave no residual
    fit_var = fit.rms_px**2 * n / (n - 3) if n > 3 else 0.0
    if fit_var >= floor_var:
        return fit
    if fit_var > 0.0:
        covariance = fit.covariance * (floor_var / fit_var)
    else:
        # three points, or points exactly on the circle (a small symmetric outline): the
        # fitted covariance is zero, with no shape left to scale, so it is formed from the
        # fit's Jacobian
        jac = np.column_stack([-radial, -np.ones(n)])
        try:
            covariance = smallmath.inverse(jac.T @ jac) * floor_var
        except np.linalg.LinAlgError:
            covariance = np.full((3, 3), np.inf)
    return CircleFit(fit.center, fit.radius, covariance, fit.rms_px, fit.n_points,
                     fit.converged, fit.reason)


#: Outline envelope (:func:`envelope_depth_px`): residuals are smoothed over this many points
#: (about as many px: pixel-edge midpoints lie 0.7-1 px apart), which averages out the single
#: pixel steps, and their peaks over this many are the first vertices (a drawn polygon's
#: vertices lie 6-30 px apart: closer ones are found by splitting the stretches, below).
ENVELOPE_SMOOTH_POINTS = 7
ENVELOPE_WINDOW_POINTS = 31
#: The outline between two vertices is a drawn chord when its pixel-edge midpoints scatter
#: about the straight line between them by at most this RMS (px): a digital line's midpoints
#: by about 0.25 px, a wiggled outline by its wiggles. A stretch that is not straight is split
#: at its point furthest beyond that line where that lies beyond it by more than this (a
#: vertex the peaks skipped).
CHORD_STRAIGHT_RMS_PX = 0.4
#: A stretch is split only where both parts keep at least this many points.
ENVELOPE_MIN_PIECE_POINTS = 3
#: Consecutive outline points further apart than this (px) belong to separate runs (a frame
#: or the wire cut the outline between them).
ENVELOPE_GAP_PX = 2.5


def _disk_edge_points(center: np.ndarray, radius_px: float,
                      box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """(M, 2) midpoints of the pixel edges around the disk ``|p - center| <= radius_px``
    filled by pixel centres (integer coordinates), as a mask of the exact circle is; with
    ``box`` (row min, row max, column min, column max), only those inside it (the cost is
    then bounded by the box, however large the radius)."""
    cy, cx = float(center[0]), float(center[1])
    if box is None:
        box = (-math.inf, math.inf, -math.inf, math.inf)
    parts = []
    for c_near, c_across, near_box, across_box, swap in ((cy, cx, box[:2], box[2:], False),
                                                         (cx, cy, box[2:], box[:2], True)):
        lines = np.arange(max(math.ceil(c_near - radius_px), math.ceil(near_box[0])),
                          min(math.floor(c_near + radius_px), math.floor(near_box[1])) + 1,
                          dtype=np.float64)
        half = np.sqrt(np.maximum(radius_px * radius_px - (lines - c_near) ** 2, 0.0))
        lo, hi = np.ceil(c_across - half), np.floor(c_across + half)
        filled = lo <= hi
        lines = np.concatenate([lines[filled], lines[filled]])
        across = np.concatenate([lo[filled] - 0.5, hi[filled] + 0.5])
        inside = (across >= across_box[0]) & (across <= across_box[1])
        lines, across = lines[inside], across[inside]
        parts.append(np.column_stack([across, lines] if swap else [lines, across]))
    return np.concatenate(parts)


def _chord_dips_px(points: np.ndarray, res: np.ndarray, first: np.ndarray, stop: np.ndarray,
                   start_px: np.ndarray, unit: np.ndarray, length_px: np.ndarray) -> np.ndarray:
    """Dip ``A`` (px) of each stretch ``points[first[k]:stop[k]]`` whose residuals ``res``
    are fitted by ``a + b t - A 4t(1 - t)``, t from 0 to 1 along its chord (from
    ``start_px[k]``, direction ``unit[k]``, ``length_px[k]`` long); 0 under 4 points."""
    count = stop - first
    dips = np.zeros(len(first))
    use = count >= 4
    if not use.any():
        return dips
    first, count = first[use], count[use]
    seg = np.repeat(np.arange(len(first)), count)
    idx = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count) + first[seg]
    start_px, unit, length_px = start_px[use], unit[use], length_px[use]
    t = np.einsum("ij,ij->i", points[idx] - start_px[seg], unit[seg]) / length_px[seg]
    r = res[idx]
    # quadratic fit 1, t, t^2 (the same span): A = c2 / 4
    starts = np.cumsum(count) - count
    t2 = t * t
    moments = np.add.reduceat(np.column_stack([np.ones_like(t), t, t2, t2 * t, t2 * t2,
                                               r, r * t, r * t2]), starts, axis=0)
    powers, rhs = moments[:, :5], moments[:, 5:]
    normal = powers[:, np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]])]
    solvable = np.abs(np.linalg.det(normal)) > 1e-12
    coef = np.zeros((len(first), 3))
    if solvable.any():
        coef[solvable] = np.linalg.solve(normal[solvable], rhs[solvable][:, :, None])[:, :, 0]
    dips[np.nonzero(use)[0]] = coef[:, 2] / 4.0
    return dips


def _stretch_shapes(pts: np.ndarray, outward: np.ndarray, res: np.ndarray, ij: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For each stretch ``pts[i:j + 1]`` (``ij`` (K, 2), j - i >= 2; ``res`` the points'
    radial residuals): whether it is straight (its inner points within
    ``CHORD_STRAIGHT_RMS_PX`` RMS of the line from ``pts[i]`` to ``pts[j]``), and where to
    split one that is not (its point furthest beyond the line, away from the centre, when
    that lies beyond it by more than ``CHORD_STRAIGHT_RMS_PX`` with
    ``ENVELOPE_MIN_PIECE_POINTS`` on each side; else 0)."""
    i, j = ij[:, 0], ij[:, 1]
    chord = pts[j] - pts[i]
    d = np.maximum(np.hypot(chord[:, 0], chord[:, 1]), 1e-12)
    normal = np.column_stack([chord[:, 1], -chord[:, 0]]) / d[:, None]
    normal *= np.where(np.einsum("ij,ij->i", normal, outward[i]) < 0.0, -1.0, 1.0)[:, None]
    count = j - i - 1
    seg = np.repeat(np.arange(len(ij)), count)
    starts = np.cumsum(count) - count
    idx = np.arange(int(count.sum())) - starts[seg] + i[seg] + 1
    beyond = np.einsum("ij,ij->i", pts[idx] - pts[i][seg], normal[seg])
    rms = np.sqrt(np.add.reduceat(beyond * beyond, starts) / count)
    straight = rms <= CHORD_STRAIGHT_RMS_PX
    peak = np.maximum.reduceat(beyond, starts)
    # of the points at the peak (to rounding), the one nearest the stretch's middle, and of
    # two as near, the one further from the centre: the same point whichever way the outline
    # runs (a frame turned or mirrored; a 45 deg chord has such pairs)
    off_middle = np.where(beyond >= peak[seg] - 1e-9, np.abs(2 * idx - (i + j)[seg]), len(pts))
    candidate = off_middle == np.minimum.reduceat(off_middle, starts)[seg]
    radius = np.where(candidate, res[idx], -np.inf)
    candidate &= radius >= np.maximum.reduceat(radius, starts)[seg] - 1e-9
    first_peak = np.minimum.reduceat(np.where(candidate, idx, len(pts)), starts)
    split_at = np.where(~straight & (peak > CHORD_STRAIGHT_RMS_PX)
                        & (first_peak - i >= ENVELOPE_MIN_PIECE_POINTS)
                        & (j - first_peak >= ENVELOPE_MIN_PIECE_POINTS), first_peak, 0)
    return straight, split_at


def envelope_depth_px(points: np.ndarray, order: np.ndarray, fit: CircleFit) -> float:
    """How far (px) the circle fitted to a binary mask's outline may be short because the
    outline is drawn as straight chords between points on the circle (about 0 for an exact
    circle's mask).

    A droplet drawn as a polygon with its vertices on the circle (as annotators click one)
    has straight chords inside it by up to the sagitta ``d^2 / 8R``, ``d^2 / 12R`` on average
    along them, so the circle fitted to its outline is short by that much, and a smooth
    outline's small residuals do not show it. The residuals of ``points`` (N, 2), in the
    order ``order`` along the outline, are smoothed over ``ENVELOPE_SMOOTH_POINTS`` and their
    peaks (maxima over ``ENVELOPE_WINDOW_POINTS``) taken as vertices; a stretch between two
    that is not straight (``CHORD_STRAIGHT_RMS_PX``) is split at its point furthest beyond
    the line between them (a vertex between the peaks), until each part is straight or
    cannot be split. Along each straight stretch, not a pixel row or column, the residuals
    are fitted by ``a + b t - A 4t(1 - t)`` (t from 0 to 1 along it): a chord between points
    on the circle dips by its sagitta, ``A = d^2 / 8R``. The vertices are peaks of the
    residuals, so an exact circle's pixel steps dip between them too (about 0.13 px of
    depth): the same fit along the same stretch of the fitted circle's own mask (filled by
    pixel centres) is subtracted, which removes them where the outline is the circle's mask
    and leaves a chord's dip, whose ends are not the circle mask's peaks. The length-weighted
    mean of ``2/3`` of the difference (0 for stretches that are not straight: a wiggle is no
    chord) is the depth."""
    pts = np.asarray(points, dtype=np.float64)[np.argsort(order)]
    if len(pts) < ENVELOPE_WINDOW_POINTS or not np.isfinite(fit.center).all():
        return 0.0
    outward = pts - fit.center
    res = np.hypot(outward[:, 0], outward[:, 1]) - fit.radius
    steps = np.hypot(*np.diff(pts, axis=0).T)
    pairs = []
    for run in np.split(np.arange(len(pts)), np.nonzero(steps > ENVELOPE_GAP_PX)[0] + 1):
        if len(run) < ENVELOPE_WINDOW_POINTS:
            continue  # too short to hold a vertex on each side of a chord
        smooth = uniform_filter1d(res[run], ENVELOPE_SMOOTH_POINTS, mode="nearest")
        envelope = maximum_filter1d(smooth, ENVELOPE_WINDOW_POINTS, mode="nearest")
        peaks = run[np.nonzero(smooth >= envelope)[0]]
        pairs.append(np.column_stack([peaks[:-1], peaks[1:]]))
    ij = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    ij = ij[ij[:, 1] - ij[:, 0] >= 2]
    done = []
    while len(ij):
        # all stretches at once; those bent outwards at a vertex the peaks skipped
        # (vertices closer than the window) are split there, and their parts looked at again
        straight, split_at = _stretch_shapes(pts, outward, res, ij)
        split = split_at > 0
        done.append((ij[~split], straight[~split]))
        ij = np.concatenate([np.column_stack([ij[split, 0], split_at[split]]),
                             np.column_stack([split_at[split], ij[split, 1]])])
    if not done:
        return 0.0
    ij = np.concatenate([pair for pair, _ in done])
    straight = np.concatenate([flag for _, flag in done])
    start, end = pts[ij[:, 0]], pts[ij[:, 1]]
    chord = end - start
    d = np.hypot(chord[:, 0], chord[:, 1])
    length_px = float(d.sum())
    # a run along a pixel row or column is a staircase's tread (a mask resized by nearest
    # neighbour), as far outside the circle at its corners as inside: no chord
    charged = straight & (np.abs(chord).min(axis=1) >= 1.0) & (d > 0.0)
    if not charged.any() or length_px <= 0.0:
        return 0.0
    ij, start, d = ij[charged], start[charged], d[charged]
    unit = chord[charged] / d[:, None]
    # the same stretches of the fitted circle's own mask, found by their angle from the centre
    angle = np.unwrap(np.arctan2(outward[:, 0], outward[:, 1]))
    # only the mask's points near the charged stretches: each lies within the stretch's
    # residual (and half a pixel) of the outline's points at its angle, which lie at most
    # ENVELOPE_GAP_PX apart; so the cost is the outline's, however large the radius
    in_stretch = np.cumsum(np.bincount(ij[:, 0], minlength=len(pts) + 1)
                           - np.bincount(ij[:, 1] + 1, minlength=len(pts) + 1))[:-1] > 0
    near = pts[in_stretch]
    margin_px = float(np.abs(res[in_stretch]).max()) + ENVELOPE_GAP_PX + 1.0
    lo_px, hi_px = near.min(axis=0) - margin_px, near.max(axis=0) + margin_px
    disk = _disk_edge_points(fit.center, fit.radius, (lo_px[0], hi_px[0], lo_px[1], hi_px[1]))
    disk_out = disk - fit.center
    disk_angle = np.mod(np.arctan2(disk_out[:, 0], disk_out[:, 1]), 2.0 * np.pi)
    by_angle = np.argsort(disk_angle, kind="stable")
    disk, disk_angle = disk[by_angle], disk_angle[by_angle]
    disk_res = np.hypot(*(disk - fit.center).T) - fit.radius
    # a stretch's angles may run past 2 pi (a closed outline, or one whose start is not at
    # angle 0): the mask's points are laid out three times, a turn apart, and each stretch
    # takes those from its start angle (taken in [0, 2 pi)) to as far beyond as it spans
    m = len(disk)
    disk = np.tile(disk, (3, 1))
    disk_res = np.tile(disk_res, 3)
    disk_angle = np.concatenate([disk_angle - 2.0 * np.pi, disk_angle, disk_angle + 2.0 * np.pi])
    a0 = np.minimum(angle[ij[:, 0]], angle[ij[:, 1]])
    span = np.abs(angle[ij[:, 1]] - angle[ij[:, 0]])
    a0 = np.mod(a0, 2.0 * np.pi)
    # the disk's points at the stretch's ends are the outline's own where the two coincide:
    # kept to rounding, whichever way round the angles were computed
    first = np.searchsorted(disk_angle, a0 - 1e-9, side="left")
    stop = np.minimum(np.searchsorted(disk_angle, a0 + span + 1e-9, side="right"), first + m)
    # both outlines' stretches in one batch: the outline's first, then the disk's
    n = len(ij)
    dips = _chord_dips_px(np.concatenate([pts, disk]), np.concatenate([res, disk_res]),
                          np.concatenate([ij[:, 0], first + len(pts)]),
                          np.concatenate([ij[:, 1] + 1, stop + len(pts)]),
                          np.tile(start, (2, 1)), np.tile(unit, (2, 1)), np.tile(d, 2))
    # a stretch too short to fit on either outline (under 4 points) is charged nothing on
    # both, so a dip on one alone is not charged
    fitted = (ij[:, 1] + 1 - ij[:, 0] >= 4) & (stop - first >= 4)
    dips = np.where(np.tile(fitted, 2), dips, 0.0)
    return max(float(d @ (dips[:n] - dips[n:])) * (2.0 / 3.0) / length_px, 0.0)
