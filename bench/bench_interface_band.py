"""Does the wire/droplet interface show as a dark band (not a step) on real frames?

The check made before building a "band locator" for step 7b of the measurement (a facet line
placed on a narrow dark ridge where the refinement finds no step; issues #13, #14). On the
demo's main video the raw frame shows the interface as a dark band about 3 px wide centred on
the true facet line (``bench/results/demo_bias.json``, ``true_line_profile``). This script
asks where that band comes from in the generator and whether the real frames show it.

* ``real``: the crops of the reference figures (``bench/data/real``, hand labels, 255 =
  unsure). The facet line is fitted (total least squares) to the unsure pixels that lie within
  6 px of both wire and droplet (the hand-drawn interface); the frame is sampled along its
  normal (positive into the droplet, every 0.5 px over +-10 px) at 1 px steps over the middle
  60 % of the interface, keeping positions whose labels read wire 4-8 px before the line and
  droplet 4-8 px beyond it, and averaged by the median over positions (the burned-in
  annotations of fig1 — the angle's baseline along the facet, "ZB"/"WZ" inside the wire —
  cover up to a third of them; fig6's measurement overlay is drawn along its interface). Also
  :func:`nwwatch.measure.refine.refine_facet_line` on that line.
* ``generator``: frame 0 of the four demo videos as the seeds draw the droplet's optics
  (``bench.bench_demo_bias.EQUAL_LOOK``, seeds 0-3)
  rendered as drawn, with the defocus set to 0, and with the droplet's phase per nm set to
  the wire's; the raw frame's mean in 1 px bins of distance from the true facet line over the
  middle 60 % of the chord (as ``bench_demo_bias.true_line_profile``), and the phase step
  between wire and droplet at the interface, ``(phase_liquid - phase_wire) * 2 r`` (rad).
* ``draws``: the share of :func:`nwwatch.synth.params.sample_frame_params` draws (the
  training generator) whose phase step exceeds 1, 2 and 2.5 rad.

Per profile: the two plateaus (4-10 px either side), the darkest and brightest points within
3 px of the line, and ``band_depth_over_step`` = the darker plateau minus that darkest value,
over the step between the plateaus (a band: well above 1).

Usage (about a minute on one busy core)::

    python -m bench.bench_interface_band --json bench/results/interface_band.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt, map_coordinates

from bench.bench_demo_bias import EQUAL_LOOK
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.measure.interface import FacetLine
from nwwatch.measure.refine import refine_facet_line
from nwwatch.synth.geometry import droplet_geometry, facet_vectors
from nwwatch.synth.insitu import render_insitu_frame
from nwwatch.synth.params import FrameParams, sample_frame_params
from nwwatch.synth.video import video_frame_params

DATA = Path(__file__).resolve().parent / "data" / "real"
REACH_PX = 10.0


def band_summary(distance_px: np.ndarray, profile: np.ndarray) -> dict[str, float]:
    """Plateaus (4-10 px either side of 0), the darkest and brightest points within 3 px of 0,
    and the band's depth below the darker plateau over the step between the plateaus. A band
    centred on the line has its darkest point at 0; a step with Fresnel fringes has a dark and
    a bright fringe on opposite sides of it."""
    wire = float(profile[(distance_px <= -4) & (distance_px >= -REACH_PX)].mean())
    drop = float(profile[(distance_px >= 4) & (distance_px <= REACH_PX)].mean())
    near = np.abs(distance_px) <= 3
    i = int(np.argmin(profile[near]))
    darkest = float(profile[near][i])
    j = int(np.argmax(profile[near]))
    step = abs(drop - wire)
    return {"plateau_wire": round(wire, 2), "plateau_droplet": round(drop, 2),
            "darkest_px": float(distance_px[near][i]), "darkest": round(darkest, 2),
            "brightest_px": float(distance_px[near][j]),
            "brightest": round(float(profile[near][j]), 2),
            "band_depth_over_step": round((min(wire, drop) - darkest) / max(step, 1e-9), 2)}


def hand_line(labels: np.ndarray) -> tuple[FacetLine, tuple[float, float]]:
    """The hand-drawn interface of a real crop as a facet line (normal into the droplet) and
    the middle 60 % of its extent along the line."""
    near_wire = distance_transform_edt(labels != 1) <= 6
    near_drop = distance_transform_edt(labels != 2) <= 6
    pts = np.argwhere((labels == 255) & near_wire & near_drop).astype(float)
    centre = pts.mean(axis=0)
    direction = np.linalg.svd(pts - centre, full_matrices=False)[2][0]
    normal = np.array([-direction[1], direction[0]])
    probe = np.round(centre + 6.0 * normal).astype(int)
    if labels[probe[0], probe[1]] != 2:
        normal = -normal
    along = (pts - centre) @ direction
    mid, half = (along.min() + along.max()) / 2.0, (along.max() - along.min()) / 2.0
    line = FacetLine(point=centre, normal=normal, direction=direction, sigma_offset_px=0.0,
                     sigma_angle_rad=0.0, scatter_px=0.0, quantisation_px=0.0, gap_px=0.0,
                     inliers=np.ones(len(pts), bool), length_px=float(2.0 * half))
    return line, (mid - 0.6 * half, mid + 0.6 * half)


def real_crop(image: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Mean profile across the hand-drawn interface and the refinement's verdict on it."""
    line, (lo, hi) = hand_line(labels)
    positions = np.arange(np.ceil(lo), np.floor(hi) + 1.0)
    offsets = np.arange(-REACH_PX, REACH_PX + 1e-9, 0.5)
    pts = (line.point + positions[:, None, None] * line.direction
           + offsets[None, :, None] * line.normal)
    lab = map_coordinates(labels, [pts[..., 0].ravel(), pts[..., 1].ravel()], order=0,
                          cval=0).reshape(pts.shape[:2])
    wire_side = (offsets <= -4) & (offsets >= -8)
    drop_side = (offsets >= 4) & (offsets <= 8)
    ok = (lab[:, wire_side] == 1).all(axis=1) & (lab[:, drop_side] == 2).all(axis=1)
    out: dict[str, Any] = {"positions": int(ok.sum())}
    if ok.sum() >= 5:
        prof = map_coordinates(image.astype(np.float64),
                               [pts[ok, :, 0].ravel(), pts[ok, :, 1].ravel()],
                               order=1).reshape(int(ok.sum()), -1)
        mean = np.median(prof, axis=0)
        out["distance_px"] = offsets.tolist()
        out["median_intensity"] = [round(float(v), 2) for v in mean]
        out.update(band_summary(offsets, mean))
    # The refinement reads only wire and droplet: the unsure pixels count as background.
    edge = refine_facet_line(image, np.where(labels == 255, 0, labels).astype(np.uint8), line,
                             (lo, hi))
    out["refine"] = {"status": edge.status, "shift_px": edge.shift_px, "snr": edge.snr}
    return out


def true_profile(image: np.ndarray, params: FrameParams) -> tuple[np.ndarray, np.ndarray]:
    """Mean raw intensity in 1 px bins of signed distance (-10..10, positive into the droplet)
    from the true facet line, within 0.6 of the base half-width of its centre along it."""
    wire = params.wire
    geo = droplet_geometry(wire)
    (m_row, m_col), (e_row, e_col) = facet_vectors(wire)
    rows, cols = np.indices(image.shape, dtype=float)
    dist = (rows - geo.facet[0]) * m_row + (cols - geo.facet[1]) * m_col
    along = (rows - geo.facet[0]) * e_row + (cols - geo.facet[1]) * e_col
    n = int(REACH_PX)
    near = (np.abs(along) < 0.6 * wire.base_px) & (np.abs(dist) < n + 0.5)
    bins = np.floor(dist[near] + 0.5).astype(int) + n
    sums = np.bincount(bins, weights=image[near].astype(float), minlength=2 * n + 1)
    counts = np.bincount(bins, minlength=2 * n + 1)
    return np.arange(-n, n + 1, dtype=float), sums / np.maximum(counts, 1)


def phase_step_rad(params: FrameParams) -> float:
    """Phase step between droplet and wire at the interface, through the wire's diameter."""
    t_nm = 2.0 * params.wire.radius_px * params.pixel_size_nm
    return (params.phase_liquid_rad_per_nm - params.phase_wire_rad_per_nm) * t_nm


def generator_frame(seed: int) -> dict[str, Any]:
    params = video_frame_params(seed, 512, 1, **EQUAL_LOOK)[0]
    variants = {
        "as_drawn": params,
        "defocus_0": dataclasses.replace(params, defocus_nm=0.0),
        "equal_phase": dataclasses.replace(
            params, phase_liquid_rad_per_nm=params.phase_wire_rad_per_nm),
    }
    out: dict[str, Any] = {"phase_step_rad": round(phase_step_rad(params), 3),
                           "defocus_nm": round(params.defocus_nm, 1)}
    for name, p in variants.items():
        image, _, _ = render_insitu_frame(p, np.random.default_rng(0))
        dist, mean = true_profile(image, p)
        out[name] = {"distance_px": dist.tolist(),
                     "mean_intensity": [round(float(v), 1) for v in mean],
                     **band_summary(dist, mean)}
    return out


def draws(n: int) -> dict[str, Any]:
    steps = np.abs([phase_step_rad(sample_frame_params(np.random.default_rng(i), 512))
                    for i in range(n)])
    return {"n": n, "quantiles_10_50_90": [round(float(q), 2)
                                           for q in np.quantile(steps, [0.1, 0.5, 0.9])],
            **{f"share_above_{t}_rad": round(float(np.mean(steps > t)), 3)
               for t in (1.0, 2.0, 2.5)}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"real": {}, "generator": {}}
    for stem, image_path, label_path in pair_folder(DATA):
        image, labels = read_pair(image_path, label_path, 3)
        result["real"][stem] = real_crop(np.asarray(image, np.float64), labels)
    for seed in range(4):
        result["generator"][f"demo_seed{seed}"] = generator_frame(seed)
    result["draws"] = draws(args.draws)
    for name, r in result["real"].items():
        keep = ("positions", "darkest_px", "brightest_px", "band_depth_over_step", "refine")
        print(name, {k: r[k] for k in keep if k in r})
    for name, g in result["generator"].items():
        print(name, g["phase_step_rad"], {v: (g[v]["darkest_px"], g[v]["brightest_px"],
                                              g[v]["band_depth_over_step"])
                                          for v in ("as_drawn", "defocus_0", "equal_phase")})
    print("draws", result["draws"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
