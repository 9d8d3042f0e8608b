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
-> background; the falling parts left out) within +-``WINDOW_PX``, iterated from the label
outline: a short window and only the rise, so that the halo's fall beyond its peak and the
fringes further out do not pull it. A sector counts when its plateaus differ by ``MIN_SNR``
times the mean profile's noise and its edge lies within ``MAX_SHIFT_PX`` of the outline.
When enough of the arc counts, every outline point used by the fit is moved along its normal
by the sector offsets interpolated along the arc (flat beyond the outermost sectors) **less
their median**, and the circle is fitted again.

Only the unevenness is taken from the frame, not the mean offset. The edge of a projected
sphere is not a step: its thickness falls to zero at the outline, so an intensity locator
reads it inside by an amount that depends on the optics (blur, defocus, absorption): 0.3-0.4
px on the generator's frames, more on a purely absorbing, blurred one. That amount is the
same all along the free surface of an untilted cap (the facet plane is seen edge-on, so no
beam path is cut by it), so it cancels from the shape and the labels' mean radius is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nwwatch.classes import DROPLET
from nwwatch.measure.circle import CircleFit, robust_fit
from nwwatch.measure.refine import TRIM_FRACTION

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

#: ``droplet_edge`` values: what was done with the droplet's circle.
CIRCLE_EDGE_STATUSES: dict[str, str] = {
    "refined": "the outline's unevenness was read on the frame's droplet edge and the "
               "circle refitted to the corrected outline",
    "labels": "no image given (or no circle): the label outline is used",
    "too_few_points": "too few outline points with droplet inside and background outside "
                      "to sample the frame: the label outline is kept",
    "weak_edge": "too little of the arc shows a clear droplet edge in the frame: the label "
                 "outline is kept",
    "out_of_reach": "the frame's edge lies too far from the label outline: the label "
                    "outline is kept",
    "not_a_circle": "the moved outline does not fit a circle close to the labels': the label "
                    "outline is kept",
}


@dataclass(frozen=True)
class CircleRefinement:
    """Outcome of :func:`refine_droplet_circle`.

    ``status`` one of :data:`CIRCLE_EDGE_STATUSES`; when ``refined``, ``fit`` is the circle
    refitted to ``points`` (the moved outline, (N, 2) float64, in the coordinates the
    outline was given in) and ``move_px`` the RMS of the moves applied to the outline
    points; ``offset_px`` the median distance of the frame's edge from the label outline
    over the accepted sectors (positive outwards; None when none was located: what the
    locator read, not applied); ``snr`` the median contrast over noise of the accepted
    sectors; ``n_sectors`` how many were accepted.
    """

    status: str
    fit: CircleFit | None = None
    points: np.ndarray | None = None
    move_px: float | None = None
    offset_px: float | None = None
    snr: float | None = None
    n_sectors: int = 0

    @property
    def refined(self) -> bool:
        return self.status == "refined"


def _edge_centroids(profiles: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(K,) centroids of the rising derivative of ``profiles`` (K, M) within +-WINDOW_PX,
    iterated from 0 (the label outline); NaN where the window holds no rise."""
    grad = np.clip(np.gradient(profiles, offsets, axis=1), 0.0, None)
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


def _bilinear(img: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``img`` (H, W) at the (row, col) coordinates ``where`` (..., 2), bilinear, float64;
    coordinates beyond the border take the border's values (as ``mode="nearest"``)."""
    h, w = img.shape
    r = np.clip(where[..., 0], 0.0, h - 1.0)
    c = np.clip(where[..., 1], 0.0, w - 1.0)
    r0 = np.minimum(r.astype(np.int64), h - 2) if h > 1 else np.zeros(r.shape, np.int64)
    c0 = np.minimum(c.astype(np.int64), w - 2) if w > 1 else np.zeros(c.shape, np.int64)
    fr, fc = r - r0, c - c0
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    top = img[r0, c0] * (1.0 - fc) + img[r0, c1] * fc
    bottom = img[r1, c0] * (1.0 - fc) + img[r1, c1] * fc
    return (top * (1.0 - fr) + bottom * fr).astype(np.float64, copy=False)


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
    prof = _bilinear(img, where)
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
    centres = np.median(angle[idx[: k * m]].reshape(k, m), axis=1)[near]
    shifts, snrs = shift[near], snr[near]
    # Only the outline's unevenness along the arc is taken from the frame, not its mean
    # offset: every sector of a sphere's edge reads inside by the same amount (see the
    # module doc), so the labels' mean radius is kept and only the shape is corrected.
    move = np.interp(angle, centres, shifts)
    move -= float(np.median(move))
    moved = pts + move[:, None] * normal
    new, keep = robust_fit(moved)
    if (not new.converged or abs(new.radius - radius) > MAX_SHIFT_PX + 0.5
            or float(np.hypot(*(new.center - center))) > MAX_SHIFT_PX + 0.5):
        return CircleRefinement("not_a_circle", offset_px=float(np.median(shifts)),
                                snr=float(np.median(snrs)), n_sectors=int(near.sum()))
    return CircleRefinement("refined", fit=new, points=moved[keep],
                            move_px=float(np.sqrt(np.mean(move**2))),
                            offset_px=float(np.median(shifts)), snr=float(np.median(snrs)),
                            n_sectors=int(near.sum()))
