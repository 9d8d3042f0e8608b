"""Parameters of one synthetic in-situ frame and their random sampling.

Where objects go: :mod:`nwwatch.synth.placement`; the real-geometry draws:
:mod:`nwwatch.synth.shape`; growth videos: :mod:`nwwatch.synth.video`.

Randomness: frame k of seed S draws from ``SeedSequence(S, spawn_key=(stream, k, part))``,
so frame k is the same whatever the number of frames generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from nwwatch.synth.appearance import Appearance, sample_appearance
from nwwatch.synth.geometry import SphereSpec, WireSpec, droplet_geometry
from nwwatch.synth.optics import WAVELENGTH_200KV_NM, fringe_width_to_defocus_nm
from nwwatch.synth.placement import place_distractors, place_wire
from nwwatch.synth.shape import draw_shape
from nwwatch.synth.texture import GAAS_111_SPACING_NM

#: acquired_at of frame 0 (synthetic clock), timezone-aware UTC.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

_FRAMES_STREAM = 0
#: Stream of growth videos in :func:`frame_rng` (their frames and their scene).
VIDEO_STREAM = 1


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
    stream = VIDEO_STREAM if video else _FRAMES_STREAM
    sequence = np.random.SeedSequence(seed, spawn_key=(stream, frame_index, part))
    return np.random.default_rng(sequence)


def supersample_for(size: int) -> int:
    """Supersampling factor: 4 for small frames, 3 up to 320 px, 2 above (speed)."""
    return 4 if size <= 192 else 3 if size <= 320 else 2


def _sample_theta(rng: np.random.Generator) -> float:
    if rng.random() < 0.8:
        return float(rng.uniform(95.0, 140.0))
    return float(rng.uniform(80.0, 155.0))


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
    same: ``placement`` (:data:`nwwatch.synth.placement.PLACEMENTS`; 50 % centred, 20 %
    corner with a wide wire, 15 % stub; another 15 % are centred high-magnification frames
    with a droplet radius of 0.25-0.49 ``size``), ``facet_incline_deg`` (55 % of frames have
    an untilted wire with a "real" facet: 70 % of those inclined by 3-30 deg either way),
    ``base_ratio`` (droplet base half-width / wire radius: 0.75-1.2 in 40 % of the
    real-facet frames, else 1), ``wire_profile`` (:data:`nwwatch.synth.shape.PROFILES`:
    straight 35 %, flared 30 %, tapered 15 %, stepped 20 %). An inclined facet or a base
    ratio other than 1 forces ``tilt_deg`` 0.
    """
    if size < 32:
        raise ValueError(f"sample_frame_params: size must be >= 32 px, got {size}")
    shape = draw_shape(rng.spawn(1)[0], size, placement=placement,
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
