"""Parameters of one synthetic in-situ frame, their random sampling, and growth videos.

Randomness: frame k of seed S draws from ``SeedSequence(S, spawn_key=(stream, k, part))``,
so frame k is the same whatever the number of frames generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from nwwatch.synth.appearance import Appearance, sample_appearance
from nwwatch.synth.geometry import (
    SphereSpec,
    WireSpec,
    axis_vectors,
    droplet_geometry,
    project_scene,
)
from nwwatch.synth.optics import WAVELENGTH_200KV_NM, fringe_width_to_defocus_nm
from nwwatch.synth.texture import GAAS_111_SPACING_NM

#: acquired_at of frame 0 (synthetic clock), timezone-aware UTC.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

_FRAMES_STREAM = 0
_VIDEO_STREAM = 1


@dataclass(frozen=True)
class FrameParams:
    """Everything that defines a synthetic frame except its noise realisation.

    Lengths in pixels unless the name says ``_nm``. ``wire`` is the measured wire with its
    droplet; ``distractors`` are extra wires/droplets. Optical contrast: the exit wave has
    amplitude ``exp(-t/(2 mfp))`` (so ``I = I0 exp(-sum t/mfp)``) and phase ``phase * t``.
    """

    size: int
    supersample: int
    pixel_size_nm: float
    wire: WireSpec
    distractors: tuple[WireSpec | SphereSpec, ...] = ()
    defocus_nm: float = -300.0
    wavelength_nm: float = WAVELENGTH_200KV_NM
    phase_wire_rad_per_nm: float = 0.08
    phase_liquid_rad_per_nm: float = 0.1
    mfp_wire_nm: float = 300.0
    mfp_liquid_nm: float = 150.0
    film_phase_rad: float = 0.2
    film_correlation_px: float = 1.0
    liquid_texture_rad: float = 0.1
    film_thickness_variation: float = 0.02
    film_variation_correlation_px: float = 60.0
    lattice_period_px: float = 0.0
    lattice_amplitude: float = 0.0
    fringe_angle_deg: float = 0.0
    stacking_mean_px: float = 50.0
    stacking_contrast: float = 0.02
    illumination_gradient: float = 0.2
    illumination_direction_deg: float = 0.0
    vignette: float = 0.05
    dose_e_per_px: float = 50.0
    blur_px: float = 0.7
    gain_adu_per_e: float = 4.0
    offset_adu: float = 400.0
    read_noise_adu: float = 3.0
    n_hot_pixels: int = 5
    scale_bar: bool = False
    appearance: Appearance = Appearance()
    texture_seed: int = 0
    texture_shift_px: tuple[float, float] = (0.0, 0.0)
    growth_px: float = 0.0
    placement: str = "centred"
    frame_index: int = 0
    time_s: float = 0.0
    acquired_at: datetime = field(default=EPOCH)


def frame_rng(
    seed: int, frame_index: int, part: int, *, video: bool = False
) -> np.random.Generator:
    """Generator for one purpose (``part``) of one frame; independent of the frame count."""
    stream = _VIDEO_STREAM if video else _FRAMES_STREAM
    sequence = np.random.SeedSequence(seed, spawn_key=(stream, frame_index, part))
    return np.random.default_rng(sequence)


def supersample_for(size: int) -> int:
    """Supersampling factor: 4 for small frames, 3 up to 320 px, 2 above (speed)."""
    return 4 if size <= 192 else 3 if size <= 320 else 2


def _sample_theta(rng: np.random.Generator) -> float:
    if rng.random() < 0.8:
        return float(rng.uniform(95.0, 140.0))
    return float(rng.uniform(80.0, 155.0))


def _visible_wire_length(fr: float, fc: float, d_row: float, d_col: float, size: int) -> float:
    """Distance from the facet centre back along the axis to the frame border (px)."""
    lengths = []
    for pos, d in ((fr, -d_row), (fc, -d_col)):
        if d > 1e-9:
            lengths.append((size - 1 - pos) / d)
        elif d < -1e-9:
            lengths.append(pos / -d)
    return max(0.0, min(lengths)) if lengths else 0.0


#: Where the main wire is put: ``centred`` (droplet well inside the frame, long wire behind),
#: ``corner`` (a wide wire coming out of a frame corner, its side edges outside the frame
#: within about one radius of the facet), ``stub`` (0.2-1 radius of wire visible behind the
#: facet before the frame cuts it).
PLACEMENTS = ("centred", "corner", "stub")


def _side_lengths(wire: WireSpec, size: int) -> tuple[float, float]:
    """Visible lengths (px) of the wire's two side edges behind the facet."""
    (d_row, d_col), (l_row, l_col) = axis_vectors(wire.axis_deg)
    r = wire.radius_px
    out = []
    for sign in (1.0, -1.0):
        sr, sc = wire.facet_row + sign * r * l_row, wire.facet_col + sign * r * l_col
        inside = 0.0 <= sr <= size - 1 and 0.0 <= sc <= size - 1
        out.append(_visible_wire_length(sr, sc, d_row, d_col, size) if inside else 0.0)
    return out[0], out[1]


def place_wire(
    rng: np.random.Generator,
    size: int,
    *,
    theta_deg: float,
    axis_deg: float,
    a_px: float,
    tilt_deg: float,
    truncation_px: float,
    cut: bool,
    placement: str = "centred",
    shape: dict[str, float] | None = None,
) -> WireSpec:
    """Choose the facet position of the main wire: droplet fully inside the frame with a
    3 px margin (or cut by the frame edge when ``cut``), facet inside the frame, and the
    ``placement``'s view of the wire (see :data:`PLACEMENTS`) as well as a few random tries
    find. ``shape`` holds extra :class:`WireSpec` fields (facet inclination, profile, base)."""
    if placement not in PLACEMENTS:
        raise KeyError(f"unknown placement {placement!r}; choose one of {PLACEMENTS}")
    template = WireSpec(
        facet_row=0.0, facet_col=0.0, axis_deg=float(axis_deg), radius_px=float(a_px),
        tilt_deg=float(tilt_deg), truncation_px=float(truncation_px),
        theta_deg=float(theta_deg), **(shape or {}),
    )
    geo = droplet_geometry(template)
    radius = geo.radius_px
    (d_row, d_col), _ = axis_vectors(axis_deg)
    margin = 3.0
    best: tuple[float, float, float] | None = None
    for _ in range(200):
        if cut:
            lo, hi = -0.4 * radius, size - 1 + 0.4 * radius
        else:
            lo, hi = radius + margin, size - 1 - radius - margin
        if hi < lo:
            lo = hi = (size - 1) / 2.0
        if not cut and placement == "centred":
            # Operators centre the droplet: draw from the middle 60 % of the allowed range.
            mid, half = (lo + hi) / 2.0, 0.3 * (hi - lo)
            lo, hi = mid - half, mid + half
        pr, pc = rng.uniform(lo, hi, 2)
        fr, fc = pr - geo.centre[0], pc - geo.centre[1]
        inner = (a_px * 0.5, size - 1 - a_px * 0.5)
        if not (inner[0] <= fr <= inner[1] and inner[0] <= fc <= inner[1]):
            continue
        if cut:
            border = min(pr, pc, size - 1 - pr, size - 1 - pc)
            if border > radius - 3.0:
                continue
        visible = _visible_wire_length(fr, fc, d_row, d_col, size)
        if placement == "centred":
            score, done = visible, visible >= max(1.5 * a_px, 0.3 * size)
        elif placement == "stub":
            miss = max(0.2 * a_px - visible, visible - a_px, 0.0)
            score, done = -miss, miss == 0.0
        else:
            sides = _side_lengths(replace(template, facet_row=fr, facet_col=fc), size)
            score = -max(sides) if visible > 0.2 * a_px else -math.inf
            done = max(sides) <= 1.2 * a_px and visible > 0.2 * a_px
        if best is None or score > best[2]:
            best = (fr, fc, score)
        if done:
            break
    if best is None:
        best = ((size - 1) / 2.0, (size - 1) / 2.0, 0.0)
    return replace(template, facet_row=float(best[0]), facet_col=float(best[1]))


def _pixel_centres_mask(objects: tuple, size: int) -> np.ndarray:
    centres = np.arange(size, dtype=np.float32)
    proj = project_scene(objects, centres[:, None], centres[None, :])
    return (proj.wire | proj.droplet).astype(np.uint8)


def place_distractors(
    rng: np.random.Generator, size: int, main: WireSpec, count: int
) -> tuple[WireSpec | SphereSpec, ...]:
    """Up to ``count`` extra wires (some with droplets) and free droplets, smaller than the
    main ones and at least 4 px away from every other object."""
    placed: list[WireSpec | SphereSpec] = []
    radius = main.radius_px / math.sin(math.radians(main.theta_deg or 90.0))
    occupied = _pixel_centres_mask((main,), size)
    kernel = np.ones((9, 9), np.uint8)
    for _ in range(count):
        for _try in range(30):
            if rng.random() < 0.5:
                cand: WireSpec | SphereSpec = SphereSpec(
                    row=float(rng.uniform(0, size - 1)), col=float(rng.uniform(0, size - 1)),
                    radius_px=float(rng.uniform(max(3.0, 0.1 * radius), max(4.0, 0.5 * radius))),
                )
            else:
                cand = WireSpec(
                    facet_row=float(rng.uniform(0, size - 1)),
                    facet_col=float(rng.uniform(0, size - 1)),
                    axis_deg=float(rng.uniform(-180, 180)),
                    radius_px=float(max(3.0, rng.uniform(0.3, 0.7) * main.radius_px)),
                    tilt_deg=float(rng.uniform(0, 10)),
                    theta_deg=float(rng.uniform(90, 140)) if rng.random() < 0.6 else None,
                )
            mask = _pixel_centres_mask((cand,), size)
            if mask.sum() < 9:
                continue
            if np.any(mask & cv2.dilate(occupied, kernel)):
                continue
            placed.append(cand)
            occupied |= mask
            break
    return tuple(placed)


#: Side-wall profiles of the main wire.
PROFILES = ("straight", "flared", "tapered", "stepped")


@dataclass(frozen=True)
class ShapeDraw:
    """Real-geometry choices of one frame (see :func:`sample_frame_params`)."""

    placement: str
    real_facet: bool
    incline_deg: float
    base_ratio: float
    profile: str
    flare: float
    step_fraction: float
    step_depth_fraction: float
    large_radius_fraction: float
    corner_axis_deg: float
    corner_radius_fraction: float

    def wire_fields(self, a_px: float, incline_deg: float, ratio: float) -> dict[str, float]:
        """Extra :class:`WireSpec` fields for a wire of radius ``a_px``."""
        fields: dict[str, float] = {"facet_incline_deg": float(incline_deg)}
        if ratio != 1.0:
            fields["droplet_base_px"] = float(ratio * a_px)
        if self.profile in ("flared", "tapered"):
            fields["flare"] = float(self.flare)
        elif self.profile == "stepped":
            fields["step_px"] = float(self.step_fraction * a_px)
            fields["step_depth_px"] = float(self.step_depth_fraction * a_px)
        return fields


def _draw_shape(
    geo: np.random.Generator, size: int, *, placement: str | None,
    facet_incline_deg: float | None, wire_profile: str | None, base_ratio: float | None,
) -> ShapeDraw:
    # Every value is drawn whether used or not, so fixing one keeps the others.
    kind = str(geo.choice(["centred", "large", "corner", "stub"], p=[0.5, 0.15, 0.2, 0.15]))
    real_facet = bool(geo.random() < 0.55)
    inclined = bool(geo.random() < 0.7)
    incline = float(geo.uniform(3.0, 30.0)) * (1.0 if geo.random() < 0.5 else -1.0)
    other_base = bool(geo.random() < 0.4)
    ratio = float(geo.uniform(0.75, 1.2))
    profile = str(geo.choice(PROFILES, p=[0.35, 0.3, 0.15, 0.2]))
    flare_up, flare_down = float(geo.uniform(0.05, 0.5)), -float(geo.uniform(0.02, 0.15))
    step = float(geo.uniform(0.1, 0.4)) * (1.0 if geo.random() < 0.6 else -1.0)
    step_depth = float(geo.uniform(0.3, 2.0))
    large = float(geo.uniform(0.25, 0.49))
    corner = int(geo.integers(4))
    corner_jitter = float(geo.uniform(-20.0, 20.0))
    corner_radius = float(geo.uniform(0.15, 0.3))
    if placement is None:
        placement = "centred" if kind == "large" else kind
    elif placement not in PLACEMENTS:
        raise KeyError(f"unknown placement {placement!r}; choose one of {PLACEMENTS}")
    if wire_profile is None:
        wire_profile = profile
    elif wire_profile not in PROFILES:
        raise KeyError(f"unknown wire_profile {wire_profile!r}; choose one of {PROFILES}")
    incline = (incline if real_facet and inclined else 0.0) if facet_incline_deg is None \
        else float(facet_incline_deg)
    ratio = (ratio if real_facet and other_base else 1.0) if base_ratio is None \
        else float(base_ratio)
    if not ratio > 0:
        raise ValueError(f"sample_frame_params: base_ratio must be > 0, got {ratio}")
    # Growth direction from the corner (row, col) = (corner // 2, corner % 2) * size inwards.
    d_row, d_col = (-1.0 if corner // 2 else 1.0), (-1.0 if corner % 2 else 1.0)
    corner_axis = math.degrees(math.atan2(-d_row, d_col)) + corner_jitter
    return ShapeDraw(
        placement=placement,
        real_facet=real_facet or incline != 0.0 or ratio != 1.0,
        incline_deg=incline,
        base_ratio=ratio,
        profile=wire_profile,
        flare=flare_up if wire_profile == "flared" else flare_down,
        step_fraction=step,
        step_depth_fraction=step_depth,
        large_radius_fraction=large if kind == "large" and placement == "centred" else 0.0,
        corner_axis_deg=corner_axis,
        corner_radius_fraction=corner_radius,
    )



def sample_frame_params(
    rng: np.random.Generator,
    size: int = 512,
    *,
    theta_deg: float | None = None,
    axis_deg: float | None = None,
    a_px: float | None = None,
    tilt_deg: float | None = None,
    truncation_px: float | None = None,
    droplet_cut: bool | None = None,
    n_distractors: int | None = None,
    scale_bar: bool | None = None,
    dose_e_per_px: float | None = None,
    frame_index: int = 0,
    time_s: float | None = None,
    placement: str | None = None,
    facet_incline_deg: float | None = None,
    wire_profile: str | None = None,
    base_ratio: float | None = None,
) -> FrameParams:
    """Draw the parameters of one frame (ranges: docs/synthetic-insitu.md); keyword arguments fix a
    value instead of drawing it, so benchmarks can render chosen geometries.

    ``a_px`` is the wire radius (= droplet base half-width) in pixels; by default log-uniform
    in [max(10, 0.03 size), min(0.3 size, 0.42 size sin(theta))] so the droplet fits (40 % of
    frames from [0.15 size, ...]: high magnification); pixel size log-uniform within
    0.1-1 nm/px such that the wire radius is 10-50 nm.

    Real geometry, drawn from a child generator (``rng.spawn``) so the draws above stay the
    same: ``placement`` (:data:`PLACEMENTS`; 50 % centred, 20 % corner with a wide wire,
    15 % stub; another 15 % are centred high-magnification frames with a droplet radius of
    0.25-0.49 ``size``), ``facet_incline_deg`` (55 % of frames have an untilted wire with a
    "real" facet: 70 % of those inclined by 3-30 deg either way), ``base_ratio`` (droplet
    base half-width / wire radius: 0.75-1.2 in 40 % of the real-facet frames, else 1),
    ``wire_profile`` (:data:`PROFILES`: straight 35 %, flared 30 %, tapered 15 %,
    stepped 20 %). An inclined facet or a base ratio other than 1 forces ``tilt_deg`` 0.
    """
    if size < 32:
        raise ValueError(f"sample_frame_params: size must be >= 32 px, got {size}")
    shape = _draw_shape(rng.spawn(1)[0], size, placement=placement,
                        facet_incline_deg=facet_incline_deg, wire_profile=wire_profile,
                        base_ratio=base_ratio)
    theta = _sample_theta(rng) if theta_deg is None else float(theta_deg)
    if not 0.0 < theta < 180.0:
        raise ValueError(f"sample_frame_params: theta_deg must be in (0, 180), got {theta}")
    axis = float(rng.uniform(-180.0, 180.0)) if axis_deg is None else float(axis_deg)
    if axis_deg is None and shape.placement == "corner":
        axis = shape.corner_axis_deg
    tilt = (0.0 if rng.random() < 0.4 else float(rng.uniform(0.0, 10.0))) if tilt_deg is None \
        else float(tilt_deg)
    if shape.real_facet and tilt_deg is None:
        tilt = 0.0
    incline, ratio = (shape.incline_deg, shape.base_ratio) if tilt == 0.0 else (0.0, 1.0)
    sin_t = math.sin(math.radians(theta))
    if a_px is None:
        a_min = max(10.0, 0.03 * size)
        a_max = max(a_min, min(0.3 * size, 0.42 * size * sin_t))
        # 40 % high-magnification frames (wide wire, resolved lattice) like the paper's.
        lo = max(a_min, min(a_max, 0.15 * size)) if rng.random() < 0.4 else a_min
        a = float(math.exp(rng.uniform(math.log(lo), math.log(a_max))))
        if shape.large_radius_fraction > 0:
            a = shape.large_radius_fraction * size * sin_t / ratio
        elif shape.placement == "corner":
            a = min(shape.corner_radius_fraction * size, 0.42 * size * sin_t / ratio)
        else:
            a = min(a, 0.42 * size * sin_t / ratio)
    else:
        a = float(a_px)
    # Physical scale: wire radius 10-50 nm at 0.1-1 nm/px (log-uniform pixel size).
    ps_lo, ps_hi = max(0.1, 10.0 / a), min(1.0, 50.0 / a)
    pixel_size_nm = float(math.exp(rng.uniform(math.log(ps_lo), math.log(ps_hi)))) \
        if ps_hi > ps_lo else float(min(1.0, max(0.1, ps_lo)))
    r_nm = a * pixel_size_nm
    if truncation_px is None:
        truncation_px = float(rng.uniform(0.05, 0.2) * a) if rng.random() < 0.3 else 0.0
    cut = bool(rng.random() < 0.15) if droplet_cut is None else bool(droplet_cut)
    wire_shape = shape.wire_fields(a, incline, ratio)
    wire = place_wire(rng, size, theta_deg=theta, axis_deg=axis, a_px=a, tilt_deg=tilt,
                      truncation_px=truncation_px, cut=cut, placement=shape.placement,
                      shape=wire_shape)
    if n_distractors is None:
        n_distractors = int(rng.choice([0, 1, 2], p=[0.7, 0.2, 0.1]))
    distractors = place_distractors(rng, size, wire, n_distractors)

    # First Fresnel fringe 1-6 px wide; mostly underfocus (bright fringe outside edges).
    fringe_px = float(rng.uniform(1.0, 6.0))
    focus_sign = -1.0 if rng.random() < 0.85 else 1.0
    t_wire_max = 2.0 * r_nm
    # Strong to weak contrast; weak (transmission 0.88-0.93) in about 15 % of frames.
    transmission_wire = float(rng.uniform(0.5, 0.88) if rng.random() < 0.85
                              else rng.uniform(0.88, 0.93))
    mfp_wire = t_wire_max / -math.log(transmission_wire)
    # Droplet usually darker per nm than the wire; sometimes a weak-contrast droplet; in 30 %
    # of frames lighter than the wire as a whole (its thickest chord 1.2-3x less absorbing
    # than the wire's): then darkness tells the network nothing about which is which.
    geo = droplet_geometry(wire)
    t_drop_px = 2.0 * geo.radius_px if geo.h_px >= geo.radius_px else 2.0 * geo.a_px
    look = rng.random()
    if look < 0.55:
        liquid_factor = float(rng.uniform(0.2, 1.0))
    elif look < 0.7:
        liquid_factor = float(rng.uniform(1.0, 2.5))
    else:
        liquid_factor = t_drop_px / (2.0 * a) * float(rng.uniform(1.2, 3.0))
    mfp_liquid = mfp_wire * liquid_factor
    period_px = GAAS_111_SPACING_NM / pixel_size_nm
    if period_px < 2.2 and rng.random() < 0.5:
        # Domain randomisation: resolved fringes at any scale (real frames are often shown
        # downsampled from a finer camera, or at magnifications this sampling misses).
        period_px = float(rng.uniform(2.2, 7.0))
    lattice_visible = period_px >= 2.2 and rng.random() < 0.85
    # Dose log-uniform in 5-500 e/px, but nobody films growth where the wire or droplet is
    # lost in the shot noise (the paper's frames all show both clearly): per-pixel
    # contrast * sqrt(dose) >= 1.5 where the 500 e/px cap allows (>= ~1.1 at the weakest).
    weakest = min(1.0 - transmission_wire,
                  1.0 - math.exp(-2.0 * a * pixel_size_nm / mfp_liquid))
    dose_min = min(500.0, max(5.0, (1.5 / max(weakest, 1e-3)) ** 2))
    dose = float(math.exp(rng.uniform(math.log(dose_min), math.log(500.0)))) \
        if dose_e_per_px is None else float(dose_e_per_px)
    gain = float(rng.uniform(1.0, 16.0))
    return FrameParams(
        size=int(size),
        supersample=supersample_for(size),
        pixel_size_nm=pixel_size_nm,
        wire=wire,
        distractors=distractors,
        defocus_nm=focus_sign * fringe_width_to_defocus_nm(fringe_px, pixel_size_nm,
                                                           WAVELENGTH_200KV_NM),
        phase_wire_rad_per_nm=float(rng.uniform(0.05, 0.12)),
        phase_liquid_rad_per_nm=float(rng.uniform(0.06, 0.14)),
        mfp_wire_nm=mfp_wire,
        mfp_liquid_nm=mfp_liquid,
        film_phase_rad=float(rng.uniform(0.02, 0.2)),
        film_correlation_px=float(np.clip(rng.uniform(0.2, 0.6) / pixel_size_nm, 0.35, 4.0)),
        liquid_texture_rad=float(rng.uniform(0.0, 0.15)),
        film_thickness_variation=float(rng.uniform(0.0, 0.04)),
        film_variation_correlation_px=float(rng.uniform(0.1, 0.3) * size),
        lattice_period_px=period_px if lattice_visible else 0.0,
        lattice_amplitude=float(rng.uniform(0.05, 0.5)) if lattice_visible else 0.0,
        fringe_angle_deg=0.0 if rng.random() < 0.6 else float(rng.uniform(-70.0, 70.0)),
        stacking_mean_px=float(rng.uniform(3.0, 40.0) / pixel_size_nm),
        stacking_contrast=float(rng.uniform(0.0, 0.08)),
        illumination_gradient=float(rng.uniform(0.0, 0.5)),
        illumination_direction_deg=float(rng.uniform(0.0, 360.0)),
        vignette=float(rng.uniform(0.0, 0.3)),
        dose_e_per_px=dose,
        blur_px=float(math.exp(rng.uniform(math.log(0.3), math.log(1.8)))),
        gain_adu_per_e=gain,
        offset_adu=float(rng.uniform(100.0, 2000.0)),
        read_noise_adu=float(rng.uniform(0.5, 3.0) * math.sqrt(gain)),
        n_hot_pixels=int(rng.poisson(size * size / 20000.0)),
        scale_bar=bool(rng.random() < 0.5) if scale_bar is None else bool(scale_bar),
        appearance=sample_appearance(rng, size),
        texture_seed=int(rng.integers(0, 2**63 - 1)),
        placement=shape.placement,
        frame_index=int(frame_index),
        time_s=float(frame_index) if time_s is None else float(time_s),
        acquired_at=EPOCH + timedelta(seconds=float(frame_index) if time_s is None else time_s),
    )


@dataclass(frozen=True)
class VideoScene:
    """Slowly varying quantities of a growth video (drawn once per seed)."""

    base: FrameParams
    frame_interval_s: float
    theta_mean_deg: float
    theta_amplitude_deg: float
    theta_period_frames: float
    theta_phase_rad: float
    theta_trend_deg_per_frame: float
    axis_wobble_deg: float
    axis_wobble_period_frames: float
    growth_px_per_frame: float
    drift_px_per_frame: float
    drift_direction_deg: float


def video_scene(
    seed: int,
    size: int = 512,
    *,
    droplet_radius_px: float | None = None,
    dose_e_per_px: float | None = None,
    facet_incline_deg: float | None = None,
) -> VideoScene:
    """Draw the scene of a growth video: one wire, no distractors, fixed imaging conditions;
    theta oscillates with the layer cycle between about 100 and 116 degrees.

    Keywords fix what is otherwise drawn: ``droplet_radius_px`` (at the mean angle),
    ``dose_e_per_px``, ``facet_incline_deg`` (an inclined facet; the wire is then untilted).
    The other draws stay the same.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_VIDEO_STREAM,)))
    theta_mean = float(rng.uniform(104.0, 112.0))
    a_max = 0.42 * size * math.sin(math.radians(theta_mean + 12.0)) * 0.8
    a_min = max(10.0, 0.04 * size)
    a = float(math.exp(rng.uniform(math.log(a_min), math.log(max(a_min, a_max)))))
    if droplet_radius_px is not None:
        a = float(droplet_radius_px) * math.sin(math.radians(theta_mean))
    tilt = float(rng.uniform(0.0, 4.0))
    base = sample_frame_params(rng, size, theta_deg=theta_mean, a_px=a, droplet_cut=False,
                               n_distractors=0,
                               tilt_deg=tilt if facet_incline_deg is None else 0.0,
                               placement="centred", dose_e_per_px=dose_e_per_px,
                               facet_incline_deg=facet_incline_deg)
    return VideoScene(
        base=base,
        frame_interval_s=float(rng.choice([0.1, 0.2, 0.5, 1.0])),
        theta_mean_deg=theta_mean,
        theta_amplitude_deg=float(rng.uniform(5.0, 8.0)),
        theta_period_frames=float(rng.uniform(20.0, 80.0)),
        theta_phase_rad=float(rng.uniform(0.0, 2.0 * math.pi)),
        theta_trend_deg_per_frame=float(rng.uniform(-0.005, 0.005)),
        axis_wobble_deg=float(rng.uniform(0.0, 2.0)),
        axis_wobble_period_frames=float(rng.uniform(200.0, 800.0)),
        growth_px_per_frame=float(rng.uniform(0.02, 0.15)),
        drift_px_per_frame=float(rng.uniform(0.2, 2.0)),
        drift_direction_deg=float(rng.uniform(0.0, 360.0)),
    )


def video_theta_deg(scene: VideoScene, k: int) -> float:
    """Contact angle of frame k: a skewed layer-cycle oscillation plus a slow trend."""
    phase = 2.0 * math.pi * k / scene.theta_period_frames + scene.theta_phase_rad
    # Slow rise while the droplet fills, faster drop when a layer nucleates (skewed wave).
    wave = math.sin(phase) - 0.25 * math.sin(2.0 * phase)
    theta = scene.theta_mean_deg + scene.theta_amplitude_deg * wave / 1.2
    return float(np.clip(theta + scene.theta_trend_deg_per_frame * k, 85.0, 150.0))


def video_frame_params(
    seed: int, size: int, n_frames: int, **scene_options: float | None
) -> list[FrameParams]:
    """Parameters of frames 0..n_frames-1 of the growth video of ``seed``; ``scene_options``
    go to :func:`video_scene`.

    The facet advances along the axis by the growth rate; the whole specimen drifts by
    0.2-2 px/frame in a slowly turning direction that bounces off the frame so the droplet
    stays inside. Frame k is the same whatever ``n_frames``.
    """
    scene = video_scene(seed, size, **scene_options)
    base = scene.base
    w0 = base.wire
    drift = np.zeros(2)
    growth = 0.0
    direction = math.radians(scene.drift_direction_deg)
    velocity = scene.drift_px_per_frame * np.array([-math.sin(direction), math.cos(direction)])
    out: list[FrameParams] = []
    for k in range(n_frames):
        if k > 0:
            turn = frame_rng(seed, k, 1, video=True).normal(0.0, math.radians(4.0))
            c, s = math.cos(turn), math.sin(turn)
            velocity = np.array([c * velocity[0] + s * velocity[1],
                                 -s * velocity[0] + c * velocity[1]])
            growth += scene.growth_px_per_frame
        axis = w0.axis_deg + scene.axis_wobble_deg * math.sin(
            2.0 * math.pi * k / scene.axis_wobble_period_frames)
        theta = video_theta_deg(scene, k)
        (d_row, d_col), _ = axis_vectors(axis)
        radius = w0.radius_px / math.sin(math.radians(theta))
        trial = drift + (velocity if k > 0 else 0.0)
        facet = np.array([w0.facet_row, w0.facet_col]) + trial + growth * np.array([d_row, d_col])
        geo = droplet_geometry(replace(w0, facet_row=float(facet[0]), facet_col=float(facet[1]),
                                       axis_deg=axis, theta_deg=theta))
        lo, hi = radius + 4.0, size - 1 - radius - 4.0
        for i in range(2):
            if (geo.centre[i] < lo and velocity[i] < 0) or (geo.centre[i] > hi and velocity[i] > 0):
                velocity[i] = -velocity[i]
            # Growth must not push the droplet out either: drift at least outruns it.
            if geo.centre[i] < lo:
                velocity[i] = max(abs(velocity[i]), scene.growth_px_per_frame + 0.2)
            elif geo.centre[i] > hi:
                velocity[i] = -max(abs(velocity[i]), scene.growth_px_per_frame + 0.2)
        if k > 0:
            drift = drift + velocity
        facet = np.array([w0.facet_row, w0.facet_col]) + drift + growth * np.array([d_row, d_col])
        wire = replace(w0, facet_row=float(facet[0]), facet_col=float(facet[1]), axis_deg=axis,
                       theta_deg=theta)
        t = k * scene.frame_interval_s
        out.append(replace(base, wire=wire, texture_shift_px=(float(drift[0]), float(drift[1])),
                           growth_px=growth, frame_index=k, time_s=t,
                           acquired_at=EPOCH + timedelta(seconds=t)))
    return out
