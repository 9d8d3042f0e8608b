"""Where the wiggled labels' > 2 deg errors come from, and what a better circle fit could win.

1. ``frames``: the benchmark's own degraded real-geometry frames (``bench.bench_contact_angle``
   at ``--seed``, 40 per bin and 30 per geometry: the random stream is advanced past its
   textbook section exactly as that section draws it). For every valid frame more than
   ``--over`` deg off: geometry, wiggle, 1-sigma, arc span, points on the circle, the tilt read,
   and the error split into the circle's part (the fitted circle against the true facet line)
   and the facet line's part (the true circle against the fitted line).
2. ``split``: ``--split-per-geometry`` frames per real geometry, each wiggled by 1, 2 and 3 px:
   per amplitude the RMS of the circle's and the line's part on the measured frames, the RMS
   of error / 1-sigma for arcs under and over 120 deg, and the valid labels more than
   ``--over-split`` deg off with their tilt reading and points on the circle.
3. ``smoothed``: the circle fitted to the 0.5 iso-line of the Gaussian-blurred droplet mask
   (passed as the droplet probability) instead of the pixel-edge midpoints; exact labels and
   wiggles of 2 and 3 px, ``--per-geometry`` frames per real geometry.
4. ``oracle_gls``: the circle refitted by generalised least squares with the wiggle's true
   covariance (its correlation length and amplitude, known to the bench only) on the same
   free-surface points, against the shipped circle; circle error against the true facet line.

    python -m bench.bench_wiggle_limits [--seed 0] [--per-geometry 20]
        [--split-per-geometry 30] [--json FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import scipy.linalg

from bench.bench_contact_angle import (
    A_BINS,
    DEGRADATIONS,
    GEOMETRIES,
    degrade,
    random_cap,
    real_wire,
    render,
    wiggle,
)
from nwwatch.classes import DROPLET
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.result import ContactAngleResult
from nwwatch.synth.geometry import DropletGeometry, WireSpec, droplet_geometry, facet_vectors


def _theta_deg(centre: np.ndarray, radius: float, point: np.ndarray, normal: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip(-((centre - point) @ normal) / radius, -1, 1))))


def split_error(r: ContactAngleResult, wire: WireSpec) -> tuple[float, float]:
    """(circle part, facet-line part) of the error, degrees: the fitted circle against the
    true line, and the true circle against the fitted line."""
    g: DropletGeometry = droplet_geometry(wire)
    m = np.array(facet_vectors(wire)[0])
    centre = np.array([r.circle_center_row, r.circle_center_col])
    circle = _theta_deg(centre, r.droplet_radius_px, np.array(g.left), m) - g.theta_apparent_deg
    phi = math.radians(r.facet_angle_deg)
    normal = np.array([math.cos(phi), math.sin(phi)])  # the fitted line's normal
    normal = normal if normal @ m > 0 else -normal
    foot = np.array([r.facet_row, r.facet_col])
    line = _theta_deg(np.array(g.centre), g.radius_px, foot, normal) - g.theta_apparent_deg
    return circle, line


def benchmark_frames(seed: int, over_deg: float) -> list[dict]:
    """The valid degraded frames more than ``over_deg`` off in bench_contact_angle's run."""
    rng = np.random.default_rng(seed)
    per_bin, per_geometry = 40, 30
    for a in A_BINS:  # textbook(): its caps, in its order (the measurements draw nothing)
        for i in range(per_bin):
            random_cap(rng, a, cut=i < int(0.15 * per_bin))
    for kind in ("blobs", "holes", "gap2", "ragged"):
        for _ in range(per_bin):
            wire = random_cap(rng, float(rng.choice([30, 45])), cut=False)
            degrade(render(wire)[0], wire, kind, rng)
    out = []
    for kind in GEOMETRIES:
        for i in range(per_geometry):
            wire = real_wire(rng, kind)
            labels = render(wire)[0]
            truth = droplet_geometry(wire).theta_apparent_deg
            deg = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
            r = measure_contact_angle(degrade(labels, wire, deg, rng))
            if r.angle_valid and abs(r.contact_angle_deg - truth) > over_deg:
                circle, line = split_error(r, wire)
                out.append({"geometry": kind, "index": i, "degradation": deg,
                            "error_deg": round(r.contact_angle_deg - truth, 3),
                            "sigma_deg": round(r.contact_angle_uncertainty_deg, 3),
                            "circle_part_deg": round(circle, 3), "line_part_deg": round(line, 3),
                            "arc_span_deg": round(r.arc_span_deg, 1),
                            "circle_points": r.n_contour_points,
                            "a_px": round(r.base_half_width_px, 1),
                            "tilt_read_deg": round(r.wire_tilt_deg, 2), "reason": r.reason})
    return out


def _summary(errors: list[float | None], circle: list[float]) -> dict:
    valid = np.abs([e for e in errors if e is not None])
    return {"n": len(errors), "valid_pct": round(100.0 * valid.size / max(len(errors), 1), 1),
            "rmse_deg": round(float(np.sqrt(np.mean(valid**2))), 3),
            "max_deg": round(float(valid.max()), 3),
            "circle_part_rmse_deg": round(float(np.sqrt(np.mean(np.square(circle)))), 3)}


def _frames(seed: int, per_geometry: int):
    rng = np.random.default_rng(seed)
    kinds = list(GEOMETRIES)
    for i in range(per_geometry * len(kinds)):
        wire = real_wire(rng, kinds[i % len(kinds)])
        yield wire, render(wire)[0], rng


def split(seed: int, per_geometry: int, over_deg: float) -> dict:
    """Circle against line part, error / sigma by arc span, the worst valid labels."""
    acc: dict[float, dict[str, list]] = {a: {"circle": [], "line": [], "z_short": [], "z_long": [],
                                             "worst": []} for a in (1.0, 2.0, 3.0)}
    for wire, labels, rng in _frames(seed, per_geometry):
        truth = droplet_geometry(wire).theta_apparent_deg
        for amp, v in acc.items():
            r = measure_contact_angle(wiggle(labels, amp, rng))
            if r.contact_angle_deg is None or r.contact_angle_uncertainty_deg is None:
                continue
            err = r.contact_angle_deg - truth
            circle, line = split_error(r, wire)
            v["circle"].append(circle)
            v["line"].append(line)
            v["z_short" if r.arc_span_deg < 120 else "z_long"].append(
                err / r.contact_angle_uncertainty_deg)
            if r.angle_valid and abs(err) > over_deg:
                v["worst"].append({"error_deg": round(err, 2),
                                   "sigma_deg": round(r.contact_angle_uncertainty_deg, 2),
                                   "circle_part_deg": round(circle, 2),
                                   "line_part_deg": round(line, 2),
                                   "arc_span_deg": round(r.arc_span_deg), "circle_points":
                                   r.n_contour_points, "tilt_read_deg": round(r.wire_tilt_deg, 1)})
    rms = lambda x: round(float(np.sqrt(np.mean(np.square(x)))), 3) if x else None  # noqa: E731
    return {f"wiggle {amp:g} px": {"measured": len(v["circle"]), "circle_part_rmse_deg":
                                   rms(v["circle"]), "line_part_rmse_deg": rms(v["line"]),
                                   "error_over_sigma_rms_arc_under_120": rms(v["z_short"]),
                                   "n_arc_under_120": len(v["z_short"]),
                                   "error_over_sigma_rms_arc_over_120": rms(v["z_long"]),
                                   "worst_valid": v["worst"]} for amp, v in acc.items()}


def smoothed(seed: int, per_geometry: int) -> dict:
    """Pixel-edge midpoints (shipped) against blurred-mask iso-lines, exact and wiggled."""
    blurs = (0.0, 1.5, 3.0)
    acc = {(b, amp): ([], []) for b in blurs for amp in (0.0, 2.0, 3.0)}
    for wire, labels, rng in _frames(seed, per_geometry):
        truth = droplet_geometry(wire).theta_apparent_deg
        for amp in (0.0, 2.0, 3.0):
            lab = labels if amp == 0 else wiggle(labels, amp, rng)
            for b in blurs:
                prob = (None if b == 0 else
                        cv2.GaussianBlur((lab == DROPLET).astype(np.float32), (0, 0), b))
                r = measure_contact_angle(lab, prob)
                errors, circle = acc[(b, amp)]
                errors.append(r.contact_angle_deg - truth if r.angle_valid else None)
                if r.angle_valid:
                    circle.append(split_error(r, wire)[0])
    return {f"blur {b:g} px, wiggle {amp:g} px": _summary(*v) for (b, amp), v in acc.items()}


def _gls_circle(points: np.ndarray, centre: np.ndarray, radius: float, amplitude_px: float,
                corr_px: float) -> tuple[np.ndarray, float]:
    """Gauss-Newton GLS circle with the wiggle's covariance of normal displacements: the field
    is white noise blurred by a Gaussian of ``corr_px`` (autocorrelation exp(-d^2 / 4 corr^2)),
    1-sigma ``amplitude_px / 2`` per axis, plus 0.3 px of independent quantisation."""
    unit = (points - centre) / np.hypot(*(points - centre).T)[:, None]
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    cov = (0.5 * amplitude_px) ** 2 * np.exp(-d2 / (4.0 * corr_px**2)) * (unit @ unit.T)
    chol = scipy.linalg.cho_factor(cov + 0.09 * np.eye(len(points)))
    c, r = centre.copy(), radius
    for _ in range(10):
        dist = np.hypot(*(points - c).T)
        jac = np.column_stack([-(points - c) / dist[:, None], -np.ones(len(points))])
        w_jac = scipy.linalg.cho_solve(chol, jac)
        step = -np.linalg.solve(jac.T @ w_jac, w_jac.T @ (dist - r))
        c, r = c + step[:2], r + step[2]
        if np.abs(step).max() < 1e-6:
            break
    return c, r


def oracle_gls(seed: int, per_geometry: int) -> dict:
    """Circle part of the error, shipped circle against the oracle GLS circle."""
    rows: dict[float, list[tuple[float, float, bool]]] = {2.0: [], 3.0: []}
    for wire, labels, rng in _frames(seed, per_geometry):
        g = droplet_geometry(wire)
        m, left = np.array(facet_vectors(wire)[0]), np.array(g.left)
        for amp in (2.0, 3.0):
            corr = float(copy.deepcopy(rng).uniform(3.0, 8.0))  # wiggle()'s first draw
            r = measure_contact_angle(wiggle(labels, amp, rng))
            if r.contact_angle_deg is None:
                continue
            centre = np.array([r.circle_center_row, r.circle_center_col])
            c, rad = _gls_circle(r.points.circle, centre, r.droplet_radius_px, amp, corr)
            rows[amp].append((_theta_deg(centre, r.droplet_radius_px, left, m)
                              - g.theta_apparent_deg,
                              _theta_deg(c, rad, left, m) - g.theta_apparent_deg, r.angle_valid))
    out = {}
    for amp, v in rows.items():
        arr = np.array(v, dtype=float)
        ok = arr[:, 2] > 0
        rms = lambda x: round(float(np.sqrt(np.mean(x**2))), 3)  # noqa: E731
        out[f"wiggle {amp:g} px"] = {
            "measured": len(arr), "valid": int(ok.sum()),
            "circle_rmse_shipped_deg": rms(arr[:, 0]), "circle_rmse_oracle_gls_deg": rms(arr[:, 1]),
            "valid_circle_rmse_shipped_deg": rms(arr[ok, 0]),
            "valid_circle_rmse_oracle_gls_deg": rms(arr[ok, 1]),
            "over_2_deg_shipped": int((np.abs(arr[:, 0]) > 2).sum()),
            "over_2_deg_oracle_gls": int((np.abs(arr[:, 1]) > 2).sum())}
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-geometry", type=int, default=20)
    parser.add_argument("--over", type=float, default=1.5)
    parser.add_argument("--split-per-geometry", type=int, default=30)
    parser.add_argument("--over-split", type=float, default=1.8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    record = {"command": "python -m bench.bench_wiggle_limits " + " ".join(argv),
              "frames": benchmark_frames(args.seed, args.over),
              "split": split(args.seed, args.split_per_geometry, args.over_split),
              "smoothed": smoothed(args.seed, args.per_geometry),
              "oracle_gls": oracle_gls(args.seed, args.per_geometry)}
    print(json.dumps(record, indent=1))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
