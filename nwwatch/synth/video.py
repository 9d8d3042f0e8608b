"""Growth videos: one wire under fixed imaging conditions, its droplet's contact angle
oscillating with the layer cycle, the specimen drifting.

Frame k of a video depends only on the seed, the frame size, the scene options and k
(:func:`nwwatch.synth.params.frame_rng` with ``video=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np

from nwwatch.synth.geometry import axis_vectors, droplet_geometry
from nwwatch.synth.params import (
    EPOCH,
    VIDEO_STREAM,
    FrameParams,
    frame_rng,
    sample_frame_params,
)

#: Named scenes of a growth video: keyword arguments of :func:`video_scene`, the droplet
#: radius in pixels of a 512 px frame (:func:`scene_options` scales it to the frame size).
#: ``realistic`` looks like the real frames: a droplet of radius ~100 px at 512 px (60-150 px
#: is typical), a moderate dose, a facet inclined to the wire axis, and a droplet visibly
#: darker than the wire next to their interface: half the wire's mean free path puts
#: (droplet - wire) / (background - droplet) at about -0.46, inside the real crops' 0.32-0.70
#: in magnitude (bench/demo_look.py, bench/results/demo_look_rule.txt). ``drawn`` fixes
#: nothing: the whole scene is the seed's own draw. ``stress``: a small droplet at a very low
#: dose, the rest the seed's own draw.
VIDEO_SCENES: dict[str, dict[str, float]] = {
    "realistic": {"droplet_radius_px": 100.0, "dose_e_per_px": 60.0, "facet_incline_deg": 12.0,
                  "liquid_mfp_ratio": 0.5},
    "drawn": {},
    "stress": {"droplet_radius_px": 35.0, "dose_e_per_px": 35.0},
}


def scene_options(name: str, size: int = 512) -> dict[str, float]:
    """The ``video_scene`` keywords of the scene ``name`` of :data:`VIDEO_SCENES` for frames
    of ``size`` px: the droplet radius scaled by ``size / 512`` so the scene keeps its look."""
    if name not in VIDEO_SCENES:
        raise ValueError(f"scene_options: unknown scene {name!r}; "
                         f"choose one of {', '.join(VIDEO_SCENES)}")
    return {k: v * size / 512.0 if k == "droplet_radius_px" else v
            for k, v in VIDEO_SCENES[name].items()}


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
    liquid_mfp_ratio: float | None = None,
    liquid_phase_ratio: float | None = None,
) -> VideoScene:
    """Draw the scene of a growth video: one wire, no distractors, fixed imaging conditions;
    theta oscillates with the layer cycle between about 100 and 116 degrees.

    Keywords fix what is otherwise drawn: ``droplet_radius_px`` (at the mean angle),
    ``dose_e_per_px``, ``facet_incline_deg`` (an inclined facet; the wire is then untilted),
    and the droplet's optics relative to the wire's drawn ones: ``liquid_mfp_ratio`` =
    ``mfp_liquid_nm / mfp_wire_nm`` (how dark the droplet is next to the wire) and
    ``liquid_phase_ratio`` = ``phase_liquid_rad_per_nm / phase_wire_rad_per_nm`` (the phase
    step at the interface, which defocus turns into fringes or a band). The other draws stay
    the same.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(VIDEO_STREAM,)))
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
    for name, value in (("liquid_mfp_ratio", liquid_mfp_ratio),
                        ("liquid_phase_ratio", liquid_phase_ratio)):
        if value is not None and not value > 0:
            raise ValueError(f"video_scene: {name} must be > 0, got {value}")
    if liquid_mfp_ratio is not None:
        base = replace(base, mfp_liquid_nm=base.mfp_wire_nm * float(liquid_mfp_ratio))
    if liquid_phase_ratio is not None:
        base = replace(base, phase_liquid_rad_per_nm=base.phase_wire_rad_per_nm
                       * float(liquid_phase_ratio))
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
