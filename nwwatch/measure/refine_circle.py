"""The droplet's circle corrected for an uneven label outline, read on the frame.

A segmentation network's droplet outline can lie unevenly about the droplet: a fraction of
a pixel further inside near the wire than at the apex, say. The circle fitted to it then
moves its centre across the facet; at a base half-width ``a`` a centre error ``ds`` across
the facet and a radius error ``dR`` cost ``(ds + cos(theta) dR) / a`` rad, about a degree at
``a`` = 30 px for 0.4 px. The frame shows the droplet's edge as the rise from the droplet's
dark interior to the bright background (with a bright Fresnel fringe or halo just outside,
a dark fringe in overfocus).

Method (coordinates (row, col), integer indices at pixel centres): the raw frame is sampled
along the circle's normal at each outline point used by the circle fit, from ``-REACH_PX``
to ``+REACH_PX`` every ``PROFILE_STEP_PX``, keeping the points whose *labels* read droplet
from ``INNER_PX`` inwards and background from ``OUTER_PX`` outwards (the wire, another
droplet and the frame's border are never sampled). The kept points, in order along the arc,
are grouped into at most ``MAX_SECTORS`` sectors of at least ``MIN_SECTOR_POINTS``; each
sector's profiles are averaged (mean without the highest and lowest 15 %, as for the facet
line) and its edge placed at the centroid of the mean profile's rising derivative (droplet
-> background; the falling parts left out; the derivative's mean over the plateaus, an
illumination gradient's share, subtracted) within +-``WINDOW_PX``, iterated from the label
outline: a short window and only the rise, so that the halo's fall beyond its peak and the
fringes further out do not pull it. A sector counts when its plateaus differ by ``MIN_SNR``
times the mean profile's noise and its edge lies within ``MAX_SHIFT_PX`` of the outline; its
1-sigma is a bootstrap over its profiles. The sector offsets are fitted (weighted least
squares) as a constant plus a translation ``t`` of the circle (``offset = c + t . normal``),
the residual scatter beyond the bootstrap's scaling the covariance. Only when ``t`` lowers
the chi^2 of a constant offset by more than ``CHI2_SIGNIFICANT`` (two degrees of freedom,
after that scaling) is it applied: the given circle (for a binary mask already refined on its
pixel edges) moves by ``t`` and keeps its radius; otherwise it is kept as ``even``.

Only the unevenness is taken from the frame, not the mean offset. The edge of a projected
sphere is not a step: its thickness falls to zero at the outline, so an intensity locator
reads it inside by an amount that depends on the optics (blur, defocus, absorption): 0.3-0.4
px on the generator's frames, more on a purely absorbing, blurred one. That amount is the
same all along the free surface of an untilted cap (the facet plane is seen edge-on, so no
beam path is cut by it), so it cancels from the shape and the labels' mean radius is kept.
Of the shape only the translation is read: it is what moves the centre, and a frame of the
true droplet still shows sector-to-sector differences of a few tenths of a pixel (film
texture, fringes) that a finer shape would follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from nwwatch.classes import DROPLET
from nwwatch.measure.circle import CircleFit
from nwwatch.measure.refine import TRIM_FRACTION, _bootstrap_means

#: Sampling step of the profiles along the normal (px).
PROFILE_STEP_PX = 0.25
#: The profiles reach this far inside and outside the label outline (px).
REACH_PX = 8.0
#: Labels must read droplet from INNER_PX inside the outline inwards and background from
#: OUTER_PX outside it outwards, up to REACH_PX.
INNER_PX = 3.0
OUTER_PX = 3.0
#: Plateaus for the sector's contrast: offsets beyond PLATEAU_PX on either side (px).
PLATEAU_PX = 5.0
#: Half-width of the window of the derivative's centroid about the current estimate (px).
WINDOW_PX = 3.0
#: Largest accepted distance between the label outline and the frame's edge (px).
MAX_SHIFT_PX = 2.0
#: Most outline points sampled (evenly along the outline).
MAX_PROFILES = 192
#: Fewest outline points per sector, and most sectors.
MIN_SECTOR_POINTS = 8
MAX_SECTORS = 12
#: Fewest accepted sectors, and the share of the sampled points they must hold.
MIN_SECTORS = 3
MIN_ACCEPTED_SHARE = 0.6
#: Share of the outline points used by the fit that must be sampled at all.
MIN_SAMPLED_SHARE = 0.5
#: Contrast of a sector's edge over its mean profile's noise needed to accept it.
MIN_SNR = 8.0
#: Bootstrap resamples of a sector's profiles for its edge's 1-sigma, and that 1-sigma's
#: floor (px): frames of the true droplet show sector-to-sector differences beyond their
#: bootstrap (film texture, contamination); with 0.15 px the test statistic on exact labels
#: of generator frames follows chi^2 with 2 degrees of freedom up to its 95th percentile.
BOOTSTRAP = 48
MIN_SECTOR_SIGMA_PX = 0.15
#: Drop in the weighted chi^2 (2 degrees of freedom) a translation of the circle must bring
#: over a constant offset to be applied (0.1 % false alarm for Gaussian sector errors).
CHI2_SIGNIFICANT = 13.8

#: ``droplet_edge`` values: what was done with the droplet's circle.
CIRCLE_EDGE_STATUSES: dict[str, str] = {
    "refined": "the outline's unevenness was read on the frame's droplet edge and the "
               "circle refitted to the corrected outline",
    "labels": "no image given (or no circle): the label outline is used",
    "too_few_points": "too few outline points with droplet inside and background outside "
                      "to sample the frame: the label outline is kept",
    "weak_edge": "too little of the arc shows a clear droplet edge in the frame: the label "
                 "outline is kept",
    "out_of_reach": "the frame's edge lies too far from the label outline, or would move "
                    "the circle's centre by more than MAX_SHIFT_PX: the label outline is kept",
    "even": "the frame's edge lies at the same distance from the label outline all along "
            "the arc, within its noise: the labels' circle is kept",
}


@dataclass(frozen=True)
class CircleRefinement:
    """Outcome of :func:`refine_droplet_circle`.

    ``status`` one of :data:`CIRCLE_EDGE_STATUSES`; when ``refined``, ``fit`` is the given
    circle moved by ``center_move`` (radius kept), ``points`` the outline moved along its
    normals by the same translation ((N, 2) float64, in the coordinates the outline was
    given in) and ``move_px`` the RMS of those moves; ``offset_px`` the frame's edge's
    distance from the label outline (the fitted constant, or the median over the accepted
    sectors when no fit was made; positive outwards; None when none was located: what the
    locator read, not applied); ``snr`` the median contrast over noise of the accepted
    sectors; ``n_sectors`` how many were used; ``center_move`` ((2,) px, (row, col)) and
    ``center_move_cov`` ((2, 2) px^2) the fitted translation and its covariance, also for
    ``even`` and ``out_of_reach`` after the fit (None before it).
    """

    status: str
    fit: CircleFit | None = None
    points: np.ndarray | None = None
    move_px: float | None = None
    offset_px: float | None = None
    snr: float | None = None
    n_sectors: int = 0
    center_move: np.ndarray | None = None
    center_move_cov: np.ndarray | None = None

    @property
    def refined(self) -> bool:
        return self.status == "refined"


def _edge_centroids(profiles: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(K,) centroids of the rising derivative of ``profiles`` (K, M) within +-WINDOW_PX,
    iterated from 0 (the label outline); NaN where the window holds no rise.

    The derivative's mean over both plateaus (beyond PLATEAU_PX) is subtracted first: an
    illumination gradient across the droplet tilts every profile by its component along
    the normal, which would otherwise shift each sector's centroid by a different amount
    (a translation of the whole outline, read as unevenness)."""
    grad = np.gradient(profiles, offsets, axis=1)
    plateaus = np.abs(offsets) >= PLATEAU_PX
    grad = np.clip(grad - grad[:, plateaus].mean(axis=1, keepdims=True), 0.0, None)
    x = np.zeros(len(profiles))
    for _ in range(8):
        w = grad * (np.abs(offsets[None, :] - x[:, None]) <= WINDOW_PX)
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            new = np.clip((w * offsets).sum(axis=1) / total, -MAX_SHIFT_PX - 1.0,
                          MAX_SHIFT_PX + 1.0)
        new[~(total > 0)] = np.nan
        done = np.all(~np.isfinite(new) | (np.abs(new - x) < 0.01))
        x = new
        if done:
            break
    return x


def _quantum(img: np.ndarray, level: float) -> float:
    if img.dtype.kind in "biu":
        return 1.0
    eps = float(np.finfo(img.dtype).eps) if img.dtype.kind == "f" else float(
        np.finfo(np.float64).eps)
    return eps * abs(level)


def refine_droplet_circle(
    image: np.ndarray,
    labels: np.ndarray,
    fit: CircleFit,
    points: np.ndarray,
    offset: tuple[float, float] = (0.0, 0.0),
) -> CircleRefinement:
    """Correct the droplet outline's unevenness on the frame's droplet edge; refit its circle.

    Parameters
    ----------
    image : float or integer (H, W)
        The raw frame (any intensity scale; not a normalisation that clips). Profiles with a
        NaN pixel are left out.
    labels : uint8 (H, W)
        0 background, 1 nanowire, 2 droplet; same (row, col) frame as ``image``.
    fit : CircleFit
        The circle fitted to ``points``.
    points : float (N, 2)
        The outline points the circle was fitted to, (row, col) in pixels, in the same
        coordinates as ``fit``; image coordinates are these plus ``offset``.
    offset : (float, float)
        (row, col) of the points' origin in the image.

    Returns
    -------
    CircleRefinement
        ``refined`` with the new circle and the moved points (in the points' coordinates),
        or another status saying why the label outline is kept. Never raises for an unclear
        edge.
    """
    pts = np.asarray(points, dtype=np.float64)
    center = np.asarray(fit.center, dtype=np.float64)
    radius = float(fit.radius)
    if len(pts) < MIN_SECTORS * MIN_SECTOR_POINTS or not (fit.converged and radius > 0):
        return CircleRefinement("too_few_points")
    off = np.asarray(offset, dtype=np.float64)
    rel = pts - center
    normal = rel / np.maximum(np.hypot(rel[:, 0], rel[:, 1]), 1e-9)[:, None]
    # Angle along the arc, about the arc's mean direction (the arc is contiguous: the wire
    # interrupts it, so no sector straddles the seam at +-pi).
    mid = normal.mean(axis=0)
    mid_angle = math.atan2(mid[0], mid[1])
    angle = np.angle(np.exp(1j * (np.arctan2(normal[:, 0], normal[:, 1]) - mid_angle)))
    offsets = np.arange(-REACH_PX, REACH_PX + 1e-9, PROFILE_STEP_PX)
    base = center + off  # circle centre in image coordinates
    # At most MAX_PROFILES outline points are sampled, evenly along the outline: a sector's
    # mean needs a few dozen profiles, and every point is moved by interpolation anyway.
    sample = np.arange(0, len(pts), max(1, math.ceil(len(pts) / MAX_PROFILES)))
    # The labels, read every pixel beyond INNER_PX / OUTER_PX (nearest pixel).
    checks = np.concatenate([np.arange(-REACH_PX, -INNER_PX + 1e-9, 1.0),
                             np.arange(OUTER_PX, REACH_PX + 1e-9, 1.0)])
    probe = np.rint(base[None, None, :] + (radius + checks)[None, :, None]
                    * normal[sample, None, :]).astype(np.int64)
    h, w = labels.shape
    inside = ((probe[..., 0] >= 0) & (probe[..., 0] < h) & (probe[..., 1] >= 0)
              & (probe[..., 1] < w)).all(axis=1)
    lab = np.full(probe.shape[:2], 255, dtype=np.uint8)
    lab[inside] = labels[probe[inside, :, 0], probe[inside, :, 1]]
    n_in = int((checks < 0).sum())
    ok = inside & (lab[:, :n_in] == DROPLET).all(axis=1) & (lab[:, n_in:] == 0).all(axis=1)
    if ok.sum() < max(MIN_SECTORS * MIN_SECTOR_POINTS, MIN_SAMPLED_SHARE * len(sample)):
        return CircleRefinement("too_few_points")
    img = np.asarray(image)
    idx = sample[ok]
    where = base[None, None, :] + (radius + offsets)[None, :, None] * normal[idx, None, :]
    prof = map_coordinates(img, [where[..., 0].ravel(), where[..., 1].ravel()],
                           output=np.float64, order=1, mode="nearest").reshape(len(idx), -1)
    finite = np.isfinite(prof).all(axis=1)
    idx, prof = idx[finite], prof[finite]
    if len(idx) < MIN_SECTORS * MIN_SECTOR_POINTS:
        return CircleRefinement("too_few_points")
    order = np.argsort(angle[idx])
    idx, prof = idx[order], prof[order]
    # Sectors of equal size along the arc (the last few points, fewer than a sector, only
    # follow by interpolation), all handled at once: (K, m, M).
    k = min(MAX_SECTORS, len(idx) // MIN_SECTOR_POINTS)
    m = len(idx) // k
    ranked = np.sort(prof[: k * m].reshape(k, m, -1), axis=1)
    cut = int(TRIM_FRACTION * m)
    mean = ranked[:, cut : m - cut].mean(axis=1)  # (K, M) trimmed means
    median = 0.5 * (ranked[:, (m - 1) // 2] + ranked[:, m // 2])
    plateau_in, plateau_out = offsets <= -PLATEAU_PX, offsets >= PLATEAU_PX
    level_in = mean[:, plateau_in].mean(axis=1)
    contrast = mean[:, plateau_out].mean(axis=1) - level_in
    spread = math.sqrt(math.pi / 2.0) * np.abs(ranked - median[:, None, :]).mean(axis=1)
    floor = np.array([_quantum(img, float(v)) for v in level_in]) / math.sqrt(12.0)
    noise = 1.1 * np.maximum(np.median(spread, axis=1), floor) / math.sqrt(m)
    snr = np.abs(contrast) / np.where(noise > 0, noise, np.inf)
    shift = _edge_centroids(mean * np.where(contrast < 0, -1.0, 1.0)[:, None], offsets)
    clear = snr >= MIN_SNR
    near = clear & np.isfinite(shift) & (np.abs(shift) <= MAX_SHIFT_PX)
    far = int((clear & ~near).sum())
    held = int(near.sum()) * m
    if near.sum() < MIN_SECTORS or held < MIN_ACCEPTED_SHARE * len(idx):
        status = "out_of_reach" if far > near.sum() else "weak_edge"
        return CircleRefinement(status,
                                offset_px=float(np.median(shift[near])) if near.any() else None,
                                snr=float(np.median(snr[clear])) if clear.any() else None,
                                n_sectors=int(near.sum()))
    shifts, snrs = shift[near], snr[near]
    # Each accepted sector's 1-sigma: a bootstrap over its profiles (within the window the
    # centroid reads), floored at MIN_SECTOR_SIGMA_PX.
    rng = np.random.default_rng(0)
    groups = prof[: k * m].reshape(k, m, -1) * np.where(contrast < 0, -1.0, 1.0)[:, None, None]
    sigma = np.empty(int(near.sum()))
    for j, s in enumerate(np.flatnonzero(near)):
        boot = _edge_centroids(_bootstrap_means(groups[s], rng.integers(0, m, (BOOTSTRAP, m))),
                               offsets)
        boot = boot[np.isfinite(boot)]
        sigma[j] = (max(float(np.std(boot, ddof=1)), MIN_SECTOR_SIGMA_PX)
                    if boot.size >= BOOTSTRAP // 2 else math.inf)
    usable = np.isfinite(sigma)
    if usable.sum() < MIN_SECTORS + 1:
        return CircleRefinement("weak_edge", offset_px=float(np.median(shifts)),
                                snr=float(np.median(snrs)), n_sectors=int(usable.sum()))
    shifts, snrs, sigma = shifts[usable], snrs[usable], sigma[usable]
    # Sector directions: the mean normal of its points.
    dirs = normal[idx[: k * m]].reshape(k, m, 2).mean(axis=1)[near][usable]
    dirs /= np.hypot(dirs[:, 0], dirs[:, 1])[:, None]
    # Only the outline's unevenness that moves the circle is taken from the frame, not its
    # mean offset: every sector of a sphere's edge reads inside by the same amount (see the
    # module doc). Offset = c + t . normal is a constant plus a translation t of the circle;
    # weighted least squares, and t applied only when it beats a constant by CHI2_SIGNIFICANT
    # (2 degrees of freedom), with the residual scatter beyond the bootstrap's scaling both.
    design = np.column_stack([np.ones(len(shifts)), dirs])
    wts = 1.0 / sigma**2
    normal_eq = (design * wts[:, None]).T @ design
    try:
        cov = np.linalg.inv(normal_eq)
    except np.linalg.LinAlgError:
        return CircleRefinement("weak_edge", offset_px=float(np.median(shifts)),
                                snr=float(np.median(snrs)), n_sectors=len(shifts))
    beta = cov @ ((design * wts[:, None]).T @ shifts)
    chi2_full = float(np.sum(wts * (shifts - design @ beta) ** 2))
    const = float(np.sum(wts * shifts) / np.sum(wts))
    chi2_const = float(np.sum(wts * (shifts - const) ** 2))
    dof = len(shifts) - 3
    scale = max(1.0, chi2_full / dof) if dof > 0 else math.inf
    t = beta[1:]
    t_cov = cov[1:, 1:] * scale
    common = dict(offset_px=const, snr=float(np.median(snrs)), n_sectors=len(shifts),
                  center_move=t, center_move_cov=t_cov)
    if not (chi2_const - chi2_full) / scale > CHI2_SIGNIFICANT:
        return CircleRefinement("even", **common)
    if float(np.hypot(*t)) > MAX_SHIFT_PX:
        return CircleRefinement("out_of_reach", **common)
    # The circle keeps its radius and moves by t (the labels' own fit, refined on pixel edges
    # for a binary mask, is kept otherwise); each outline point by its share along its normal.
    move = normal @ t
    new = CircleFit(center + t, radius, fit.covariance, fit.rms_px, fit.n_points, fit.converged)
    return CircleRefinement("refined", fit=new, points=pts + move[:, None] * normal,
                            move_px=float(np.sqrt(np.mean(move**2))), **common)
