"""Synthetic in-situ TEM frames and growth videos of a nanowire under its catalyst droplet.

Image formation (per frame): projected thicknesses of the wire (cylinder chords) and the
droplet (spherical-cap chords) on an S x S supersampled grid padded around the frame ->
exit wave ``exp(-t/(2 mfp)) exp(i phase t)`` with lattice-fringe / stacking-fault texture in
the wire and an amorphous-film phase texture everywhere -> Fresnel propagation (defocus, bright
fringe outside edges) -> intensity -> S x S binning -> illumination gradient and film thickness
variation -> detector (Poisson electrons, scintillator blur, gain, offset, read noise, hot
pixels) -> optional burned-in scale bar. Labels follow the 50 %-coverage rule
(:mod:`nwwatch.synth.labels`); truth is exact (:func:`nwwatch.synth.geometry.droplet_geometry`).

Conventions: (row, col) arrays, integer indices at pixel centres, ``wire_axis_deg`` =
``atan2(-d_row, d_col)`` of the growth direction; triple points left/right as seen looking from
the wire towards the droplet.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nwwatch.classes import DROPLET
from nwwatch.synth.appearance import (
    apply_gamma,
    apply_halo_and_contamination,
    burn_text,
    jpeg_roundtrip,
)
from nwwatch.synth.geometry import Scene, WireSpec, axis_vectors, droplet_geometry, project_scene
from nwwatch.synth.labels import coverage_labels
from nwwatch.synth.noise import detect
from nwwatch.synth.optics import (
    bin_pixels,
    fresnel_propagate,
    gaussian_field,
    illumination,
    smooth_field,
)
from nwwatch.synth.params import FrameParams, frame_rng, sample_frame_params
from nwwatch.synth.scalebar import burn_scale_bar
from nwwatch.synth.texture import lattice_modulation, stacking_sequence
from nwwatch.synth.video import video_frame_params

#: Columns of truth.parquet, in order.
TRUTH_SCHEMA = pa.schema([
    ("file", pa.string()),
    ("frame_index", pa.int64()),
    ("time_s", pa.float64()),
    ("acquired_at", pa.timestamp("us", tz="UTC")),
    ("theta_deg", pa.float64()),
    ("theta_apparent_deg", pa.float64()),
    ("a_px", pa.float64()),
    ("h_px", pa.float64()),
    ("R_px", pa.float64()),
    ("volume_px3", pa.float64()),
    ("center_row", pa.float64()),
    ("center_col", pa.float64()),
    ("left_row", pa.float64()),
    ("left_col", pa.float64()),
    ("right_row", pa.float64()),
    ("right_col", pa.float64()),
    ("facet_row", pa.float64()),
    ("facet_col", pa.float64()),
    ("wire_axis_deg", pa.float64()),
    ("wire_width_px", pa.float64()),
    ("tilt_deg", pa.float64()),
    ("truncation_px", pa.float64()),
    ("facet_incline_deg", pa.float64()),
    ("wire_flare", pa.float64()),
    ("wire_step_px", pa.float64()),
    ("placement", pa.string()),
    ("droplet_cut", pa.bool_()),
    ("droplet_area_px2", pa.int64()),
    ("pixel_size_nm", pa.float64()),
    ("dose_e_per_px", pa.float64()),
    ("contrast", pa.float64()),
    ("contrast_wire", pa.float64()),
    ("contrast_droplet", pa.float64()),
    ("defocus_nm", pa.float64()),
    ("blur_px", pa.float64()),
    ("lattice_period_px", pa.float64()),
    ("n_distractors", pa.int64()),
    ("has_scale_bar", pa.bool_()),
    ("seed", pa.int64()),
    ("video", pa.bool_()),
])

_MIN_PAD_PX = 16


def _padding(size: int, supersample: int, reach_px: float) -> int:
    """Smallest pad >= max(16, reach + 8) px whose padded render grid has a 2-3-5-smooth FFT
    length; ``reach_px`` is how far the defocus moves the finest sampled detail."""
    pad = max(_MIN_PAD_PX, math.ceil(reach_px) + 8)
    while True:
        n = (size + 2 * pad) * supersample
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return pad
        pad += 1


def _contrasts(params: FrameParams) -> tuple[float, float]:
    """1 - transmission through the thickest part of the wire and of the droplet."""
    wire = params.wire
    t_wire_nm = 2.0 * wire.radius_px * params.pixel_size_nm
    geo = droplet_geometry(wire)
    # Sphere centre above the facet (theta >= 90 deg): the cap holds a full diameter.
    centre_height = geo.h_px - geo.radius_px
    t_drop_px = 2.0 * geo.radius_px if centre_height >= 0 else 2.0 * wire.radius_px
    t_drop_nm = t_drop_px * params.pixel_size_nm
    return (1.0 - math.exp(-t_wire_nm / params.mfp_wire_nm),
            1.0 - math.exp(-t_drop_nm / params.mfp_liquid_nm))


def render_insitu_frame(
    params: FrameParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render one frame.

    Parameters
    ----------
    params : geometry, optics and detector settings (see :func:`sample_frame_params`).
    rng : source of this frame's noise (electron counts, read noise); textures, hot pixels
        and the scale-bar corner come from ``params.texture_seed`` so a video keeps them.

    Returns
    -------
    image : uint16 (size, size) detector counts.
    labels : uint8 (size, size), 0 background, 1 nanowire, 2 droplet (50 %-coverage rule).
    truth : dict of the truth-table columns (pixels, degrees, (row, col) convention), without
        ``file``, ``seed`` and ``video``.
    """
    size, ss = params.size, params.supersample
    if params.wire.theta_deg is None:
        raise ValueError("render_insitu_frame: params.wire must carry a droplet (theta_deg)")
    ps = params.pixel_size_nm
    # Defocus displaces spatial frequency k by lambda |df| k; at the grid's Nyquist frequency
    # that is lambda |df| S / (2 ps^2) pixels. The wrap-around must stay inside the padding.
    reach_px = params.wavelength_nm * abs(params.defocus_nm) * ss / (2.0 * ps * ps)
    pad = _padding(size, ss, reach_px)
    m = (size + 2 * pad) * ss
    # Sub-sample j of the padded grid sits at (j + 0.5)/S - 0.5 - pad: pixel centres integer.
    coords = ((np.arange(m, dtype=np.float64) + 0.5) / ss - 0.5 - pad).astype(np.float32)
    rows, cols = coords[:, None], coords[None, :]
    scene: Scene = (params.wire, *params.distractors)
    proj = project_scene(scene, rows, cols)
    t_solid = proj.solid * np.float32(ps)
    t_liquid = proj.liquid * np.float32(ps)

    textures = gaussian_field(
        (m, m), params.film_correlation_px * ss, params.texture_seed,
        shift=(params.texture_shift_px[0] * ss, params.texture_shift_px[1] * ss),
    )
    phase = (params.phase_wire_rad_per_nm * t_solid + params.phase_liquid_rad_per_nm * t_liquid
             + params.film_phase_rad * textures.real.astype(np.float32))
    liquid_weight = np.minimum(t_liquid / np.float32(10.0), 1.0)
    phase += params.liquid_texture_rad * liquid_weight * textures.imag.astype(np.float32)
    amplitude = np.exp(-0.5 * (t_solid / params.mfp_wire_nm + t_liquid / params.mfp_liquid_nm))

    # Crystal texture of the main wire, in material coordinates (fixed to the crystal).
    wire = params.wire
    (d_row, d_col), _ = axis_vectors(wire.axis_deg)
    y_mat = (rows - wire.facet_row) * d_row + (cols - wire.facet_col) * d_col + params.growth_px
    # Fringes of planes inclined to the axis: the same material coordinate, rotated.
    turn = math.radians(params.fringe_angle_deg)
    u_mat = (y_mat * math.cos(turn)
             + ((rows - wire.facet_row) * -d_col + (cols - wire.facet_col) * d_row)
             * math.sin(turn))
    sequence = stacking_sequence(params.texture_seed + 1, params.stacking_mean_px,
                                 params.stacking_contrast, extent_px=3.0 * size + params.growth_px)
    t_wire_max = 2.0 * wire.radius_px * ps
    weight = np.minimum(t_solid / np.float32(0.3 * t_wire_max), 1.0)
    amplitude *= lattice_modulation(y_mat.astype(np.float32), weight, params.lattice_period_px,
                                    params.lattice_amplitude, sequence,
                                    u_mat.astype(np.float32))

    wave = np.empty(phase.shape, np.complex64)
    wave.real = amplitude * np.cos(phase)
    wave.imag = amplitude * np.sin(phase)
    wave = fresnel_propagate(wave, params.defocus_nm, ps / ss, params.wavelength_nm)
    intensity_ss = (wave.real**2 + wave.imag**2).astype(np.float32)
    crop = slice(pad * ss, (pad + size) * ss)
    intensity = bin_pixels(intensity_ss[crop, crop], ss)

    def members(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = project_scene(scene, r, c)
        return p.wire, p.droplet

    labels, _, _ = coverage_labels(
        members, (size, size), coarse=(proj.wire[crop, crop], proj.droplet[crop, crop]),
        factor=ss,
    )
    look = params.appearance
    intensity = apply_halo_and_contamination(intensity, labels, look)
    intensity *= illumination((size, size), params.illumination_gradient,
                              params.illumination_direction_deg, params.vignette)
    intensity *= 1.0 + params.film_thickness_variation * smooth_field(
        (size, size), params.film_variation_correlation_px, params.texture_seed + 2,
        shift=params.texture_shift_px)
    intensity = apply_gamma(intensity, look.gamma)
    image = detect(intensity, rng, dose_e_per_px=params.dose_e_per_px, blur_px=params.blur_px,
                   gain_adu_per_e=params.gain_adu_per_e, offset_adu=params.offset_adu,
                   read_noise_adu=params.read_noise_adu, n_hot_pixels=params.n_hot_pixels,
                   hot_pixel_seed=params.texture_seed + 4)
    has_bar = bool(params.scale_bar) and burn_scale_bar(image, labels, ps, params.texture_seed + 3)
    burn_text(image, look)
    image = jpeg_roundtrip(image, look.jpeg_quality)
    truth = frame_truth(params, labels, has_bar)
    return image, labels, truth


def _main_droplet_on_border(wire: WireSpec, labels: np.ndarray) -> bool:
    size = labels.shape[0]
    idx = np.arange(size, dtype=np.float64)
    edge = np.concatenate([
        np.stack([np.zeros(size), idx], 1), np.stack([np.full(size, size - 1.0), idx], 1),
        np.stack([idx, np.zeros(size)], 1), np.stack([idx, np.full(size, size - 1.0)], 1),
    ])
    proj = project_scene((wire,), edge[:, 0], edge[:, 1])
    lab = labels[edge[:, 0].astype(int), edge[:, 1].astype(int)]
    return bool(np.any(proj.droplet & (lab == DROPLET)))


def frame_truth(params: FrameParams, labels: np.ndarray, has_scale_bar: bool) -> dict[str, Any]:
    """Truth-table columns of one rendered frame (see :data:`TRUTH_SCHEMA`)."""
    wire = params.wire
    geo = droplet_geometry(wire)
    c_wire, c_drop = _contrasts(params)
    return {
        "frame_index": params.frame_index,
        "time_s": params.time_s,
        "acquired_at": params.acquired_at,
        "theta_deg": geo.theta_deg,
        "theta_apparent_deg": geo.theta_apparent_deg,
        "a_px": geo.a_px,
        "h_px": geo.h_px,
        "R_px": geo.radius_px,
        "volume_px3": geo.volume_px3,
        "center_row": geo.centre[0],
        "center_col": geo.centre[1],
        "left_row": geo.left[0],
        "left_col": geo.left[1],
        "right_row": geo.right[0],
        "right_col": geo.right[1],
        "facet_row": geo.facet[0],
        "facet_col": geo.facet[1],
        "wire_axis_deg": _wrap_deg(wire.axis_deg),
        "wire_width_px": 2.0 * wire.radius_px,
        "tilt_deg": wire.tilt_deg,
        "truncation_px": wire.truncation_px,
        "facet_incline_deg": wire.facet_incline_deg,
        "wire_flare": wire.flare,
        "wire_step_px": wire.step_px,
        "placement": params.placement,
        "droplet_cut": _main_droplet_on_border(wire, labels),
        "droplet_area_px2": int(np.count_nonzero(labels == DROPLET)),
        "pixel_size_nm": params.pixel_size_nm,
        "dose_e_per_px": params.dose_e_per_px,
        "contrast": min(c_wire, c_drop),
        "contrast_wire": c_wire,
        "contrast_droplet": c_drop,
        "defocus_nm": params.defocus_nm,
        "blur_px": params.blur_px,
        "lattice_period_px": params.lattice_period_px,
        "n_distractors": len(params.distractors),
        "has_scale_bar": has_scale_bar,
    }


def _wrap_deg(angle: float) -> float:
    """Wrap to (-180, 180]."""
    wrapped = math.fmod(angle + 180.0, 360.0)
    if wrapped <= 0:
        wrapped += 360.0
    return wrapped - 180.0


def frame_params(seed: int, frame_index: int, size: int = 512) -> FrameParams:
    """Parameters of independent frame ``frame_index`` of ``seed`` (same whatever the count)."""
    rng = frame_rng(seed, frame_index, 0)
    return sample_frame_params(rng, size, frame_index=frame_index)


def generate_insitu(
    out_dir: str | os.PathLike[str],
    n_frames: int,
    *,
    video: bool = False,
    seed: int = 0,
    size: int = 512,
    video_options: dict[str, float] | None = None,
    first: int = 0,
    label_transform: Callable[[np.ndarray, FrameParams], np.ndarray] | None = None,
) -> pa.Table:
    """Write a synthetic in-situ acquisition with exact truth.

    Files: ``out_dir/frame_NNNNN.tif`` (uint16, pixel size and acquisition time in the
    metadata), ``out_dir/labels/frame_NNNNN.png`` (uint8 0/1/2) and ``out_dir/truth.parquet``
    (one row per frame, columns :data:`TRUTH_SCHEMA`). ``video=False``: independent random
    frames; ``video=True``: one growing wire, drifting, with the contact angle oscillating
    over layer cycles; ``video_options`` fix parts of the video's scene
    (:func:`nwwatch.synth.video.video_scene`: droplet radius, dose, facet inclination, the
    droplet's mean free path and phase per nm relative to the wire's).
    Frame k depends only on (seed, k, video, size, video_options). Independent frames may
    start at index ``first``; ``label_transform(labels, params)`` replaces the label image
    written (e.g. training labels with regions left unlabeled), the truth stays exact.

    Returns the truth table (pyarrow.Table).
    """
    from nwwatch.io import write_frame_tiff
    from nwwatch.io.png import write_image_file

    if n_frames < 1:
        raise ValueError(f"generate_insitu: n_frames must be >= 1, got {n_frames}")
    if video and first:
        raise ValueError("generate_insitu: a video always starts at frame 0 (first must be 0)")
    out = Path(out_dir)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    if video:
        all_params = video_frame_params(seed, size, n_frames, **(video_options or {}))
    rows: list[dict[str, Any]] = []
    for k in range(first, first + n_frames):
        params = all_params[k] if video else frame_params(seed, k, size)
        image, labels, truth = render_insitu_frame(params, frame_rng(seed, k, 2, video=video))
        if label_transform is not None:
            labels = label_transform(labels, params)
        name = f"frame_{k:05d}"
        write_frame_tiff(out / f"{name}.tif", image, pixel_size_nm=params.pixel_size_nm,
                         acquired_at=params.acquired_at)
        write_image_file(out / "labels" / f"{name}.png", labels)
        rows.append({"file": f"{name}.tif", **truth, "seed": seed, "video": video})
    table = pa.Table.from_pylist(rows, schema=TRUTH_SCHEMA)
    # A file object, not the path: pyarrow parses a path as a URI, which a folder name that
    # is not UTF-8 cannot be encoded as.
    with open(out / "truth.parquet", "wb") as handle:
        pq.write_table(table, handle)
    return table
