"""Per-frame errors of the textbook caps with exact labels (a >= 30 px), and where they come from.

Replays the random stream of ``bench.bench_contact_angle.textbook`` (the caps of every a bin
are drawn in the same order, so the frames are the benchmark's own for that seed) and
measures only the a >= 30 px bins, binary labels. For each frame it records the error, the
1-sigma, the facet's angle to the pixel lattice and its sub-pixel phase, and splits the
error between the fitted circle and the fitted facet line: the angle of the fitted circle
against the true facet line, and of the true circle against the fitted line (exact truth
from ``nwwatch.synth.geometry.droplet_geometry``). For frames over 0.2 deg it renders two
"twins" to see what the labels allow: the cap the measurement describes (fitted circle on the
fitted line; droplet pixels differing from the frame's) and the true circle on a facet moved
onto the fitted line's offset (whether its label image is identical). The JSON keeps per-seed
and per-a summaries and the frames with |error| > 0.1 deg or no valid angle.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_ideal_tail --seeds 0 1 2 3 \
        [--json bench/results/ideal_tail_shipped.json]   (about a minute)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from bench.bench_contact_angle import A_BINS, random_cap, render
from nwwatch.classes import DROPLET
from nwwatch.measure import measure_contact_angle
from nwwatch.synth.geometry import WireSpec, droplet_geometry, facet_vectors

PER_BIN = 40
MIN_A_PX = 30


def _theta_deg(centre: np.ndarray, radius: float, point: np.ndarray, normal: np.ndarray) -> float:
    """Angle of a circle against the line through ``point`` with unit ``normal`` (into the
    droplet): cos(theta) = -s / R, s the centre's signed distance from the line."""
    s = float((centre - point) @ normal)
    return math.degrees(math.acos(min(max(-s / radius, -1.0), 1.0)))


def lattice_twin(wire: WireSpec, shift_px: float) -> tuple[WireSpec, float]:
    """The same droplet circle and wire with the facet moved ``shift_px`` along its normal
    (into the droplet): the droplet base changes to keep the circle, so the twin's angle is
    ``acos(-(s - shift) / R)``. Returns (twin, its theta in degrees)."""
    g = droplet_geometry(wire)
    m = np.array(facet_vectors(wire)[0])
    s = float((np.array(g.centre) - np.array(g.facet)) @ m) - shift_px
    theta = math.degrees(math.acos(min(max(-s / g.radius_px, -1.0), 1.0)))
    facet = np.array(g.facet) + shift_px * m
    twin = replace(wire, facet_row=float(facet[0]), facet_col=float(facet[1]), theta_deg=theta,
                   droplet_base_px=g.radius_px * math.sin(math.radians(theta)))
    return twin, theta


def measured_twin(wire: WireSpec, centre: np.ndarray, radius: float, point: np.ndarray,
                  normal: np.ndarray) -> WireSpec:
    """The cap the measurement describes: circle (``centre`` (row, col), ``radius`` px) on the
    fitted facet line (through ``point`` with unit ``normal`` into the droplet), on a wire
    of the true radius along that normal."""
    s = float((centre - point) @ normal)
    theta = math.degrees(math.acos(min(max(-s / radius, -1.0), 1.0)))
    facet = centre - s * normal
    axis = math.degrees(math.atan2(-normal[0], normal[1]))
    return replace(wire, facet_row=float(facet[0]), facet_col=float(facet[1]), axis_deg=axis,
                   theta_deg=theta, droplet_base_px=radius * math.sin(math.radians(theta)))


def _minus(value: float | None, truth: float) -> float | None:
    return None if value is None else value - truth


def frame_record(wire: WireSpec, seed: int, a: float, index: int, cut: bool) -> dict:
    """Measure one cap from its exact labels and split its error (see module docstring)."""
    labels, _ = render(wire)
    t0 = time.process_time()
    r = measure_contact_angle(labels)
    ms = 1000 * (time.process_time() - t0)
    g = droplet_geometry(wire)
    m = np.array(facet_vectors(wire)[0])
    fold = wire.axis_deg % 90.0
    off_grid = min(fold, 90.0 - fold)
    # the facet line's coordinate along the lattice axis nearest its normal, and its phase
    # within a pixel (0 or 1: on a pixel boundary, 0.5: through pixel centres)
    k = int(np.argmax(np.abs(m)))
    phase = (float(np.array(g.facet)[k]) + 0.5) % 1.0
    rec = {
        "seed": seed, "a_px": a, "index": index, "cut": cut, "theta_deg": wire.theta_deg,
        "axis_deg": wire.axis_deg, "off_grid_deg": off_grid, "lattice_phase": phase,
        "status": r.status, "reason_code": r.reason_code, "ms": ms,
    }
    if not r.angle_valid:
        return rec
    centre_fit = np.array([r.circle_center_row, r.circle_center_col])
    phi = math.radians(r.facet_angle_deg)
    direction = np.array([-math.sin(phi), math.cos(phi)])
    normal_fit = np.array([direction[1], -direction[0]])
    if normal_fit @ m < 0:
        normal_fit = -normal_fit
    p_fit = np.array([r.facet_row, r.facet_col])
    p_true = np.array(g.left) * 0.5 + np.array(g.right) * 0.5
    c_true = np.array(g.centre)
    # fitted line: its tilt against the true one and its offset at the true base centre
    line_rot = math.degrees(math.asin(float(np.clip(normal_fit[0] * m[1] - normal_fit[1] * m[0],
                                                    -1, 1))))
    line_offset = float((p_true - p_fit) @ normal_fit)
    tl = np.array([r.triple_left_row, r.triple_left_col])
    tr = np.array([r.triple_right_row, r.triple_right_col])
    rec.update(
        measured_deg=r.contact_angle_deg, error_deg=r.contact_angle_deg - wire.theta_deg,
        sigma_deg=r.contact_angle_uncertainty_deg,
        circle_only_error_deg=_theta_deg(centre_fit, r.droplet_radius_px, p_true, m)
        - wire.theta_deg,
        line_only_error_deg=_theta_deg(c_true, g.radius_px, p_fit, normal_fit) - wire.theta_deg,
        circle_centre_err_px=float(np.linalg.norm(centre_fit - c_true)),
        circle_centre_err_normal_px=float((centre_fit - c_true) @ m),
        radius_err_px=r.droplet_radius_px - g.radius_px,
        line_rotation_deg=line_rot, line_offset_px=line_offset,
        triple_left_err_px=float(np.linalg.norm(tl - np.array(g.left))),
        triple_right_err_px=float(np.linalg.norm(tr - np.array(g.right))),
        left_err_deg=_minus(r.contact_angle_left_deg, wire.theta_deg),
        right_err_deg=_minus(r.contact_angle_right_deg, wire.theta_deg),
        facet_source=r.facet_source, wire_tilt_deg=r.wire_tilt_deg,
        facet_scatter_px=r.facet_scatter_px, n_facet_points=r.n_facet_points,
        cap_excess_px=r.cap_excess_px, triple_depth_px=r.triple_depth_px,
        fit_residual_rms_px=r.fit_residual_rms_px, arc_span_deg=r.arc_span_deg,
    )
    if abs(rec["error_deg"]) > 0.2:
        # Would the cap the measurement describes draw the same droplet pixels? Then the labels
        # cannot tell it from the truth. And would the true cap with its facet moved onto the
        # fitted line's offset (same circle) give the very same labels?
        twin = measured_twin(wire, centre_fit, r.droplet_radius_px, p_fit, normal_fit)
        rec["measured_twin_droplet_pixels_differing"] = int(np.count_nonzero(
            (render(twin)[0] == DROPLET) != (labels == DROPLET)))
        twin, twin_theta = lattice_twin(wire, -line_offset)
        rec.update(twin_theta_deg=twin_theta,
                   twin_labels_identical=bool(np.array_equal(render(twin)[0], labels)))
    return rec


def run_seed(seed: int, per_bin: int = PER_BIN) -> list[dict]:
    """The a >= MIN_A_PX textbook caps of ``bench_contact_angle --seed seed``, measured."""
    rng = np.random.default_rng(seed)
    out = []
    for a in A_BINS:
        for i in range(per_bin):
            cut = i < int(0.15 * per_bin)
            wire = random_cap(rng, a, cut=cut)  # draws as the benchmark does, every bin
            if a >= MIN_A_PX:
                out.append(frame_record(wire, seed, a, i, cut))
    return out


def summary(frames: list[dict]) -> dict:
    """Median / max |error| (deg) of the valid frames, how many exceed 0.2 / 0.26 deg, how many
    are within 2 sigma, the max over facets >= 2 deg off the pixel axes, median CPU ms."""
    valid = [f for f in frames if "error_deg" in f]
    errs = np.array([abs(f["error_deg"]) for f in valid])
    off = [abs(f["error_deg"]) for f in valid if f["off_grid_deg"] >= 2.0]
    return {"n": len(frames), "valid": int(errs.size),
            "median": float(np.median(errs)) if errs.size else None,
            "max": float(errs.max()) if errs.size else None,
            "over_0.2": int((errs > 0.2).sum()), "over_0.26": int((errs > 0.26).sum()),
            "within_2sigma": sum(abs(f["error_deg"]) <= 2 * f["sigma_deg"] for f in valid),
            "max_off_grid_2deg": max(off) if off else None,
            "ms_median": float(np.median([f["ms"] for f in frames]))}


def _rounded(value: object) -> object:
    """``value`` with floats to 5 decimals (the JSON stays small; 1e-5 deg is far below
    anything read from it)."""
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _main(argv: list[str] | None = None, report: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-bin", type=int, default=PER_BIN)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    record: dict = {"per_bin": args.per_bin, "min_a_px": MIN_A_PX, "seeds": {}}
    for seed in args.seeds:
        frames = run_seed(seed, args.per_bin)
        s = summary(frames)
        per_a = {str(a): summary([f for f in frames if f["a_px"] == a])
                 for a in A_BINS if a >= MIN_A_PX}
        # Only the tail is kept frame by frame: |error| > 0.1 deg or no valid angle.
        tail = [f for f in frames if abs(f.get("error_deg", 1.0)) > 0.1]
        record["seeds"][str(seed)] = {"summary": s, "per_a": per_a, "tail_frames": tail}
        report(f"seed {seed}: " + json.dumps(s))
        for f in frames:
            if abs(f.get("error_deg", 0.0)) > 0.2 or "error_deg" not in f:
                report("  " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                          for k, v in f.items()}))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_rounded(record), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    _main()
