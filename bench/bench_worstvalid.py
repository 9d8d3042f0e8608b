"""The circle's 1-sigma corrected for the share of correlated outline noise its fit absorbs,
against the shipped correlation-time inflation, on degraded and other label sets.

Why: on the benchmark's wiggled labels (``bench.bench_contact_angle.wiggle``) the valid
frames more than 2 deg off are mostly the circle's error, and on the worst of them the
outline residuals understate the wiggle: the fitted circle (3 parameters) absorbs part of
noise that is correlated along the outline, which shrinks both the residuals' variance and
their correlation time. With ``N`` points and a correlation time ``tau`` (in points) the fit
takes about ``3 tau`` of the ``N`` points' worth of noise power, so the residual variance is
low by ``q = 3 tau / N`` (the effective-degrees-of-freedom correction ``N - 3 tau`` instead of
``N - 3``) and the residual autocorrelation is pushed down by about the same share, which
truncates the correlation-time sum early. The candidate multiplies the circle's variance
(fit covariance x tau) by ``((N - 3) / (N - 3 tau))**2``; with ``N <= 3 tau`` the residuals
hold no independent sample beyond the fit's and the variance is infinite (refused). The
facet line, the systematic terms, CALIBRATION (1.3) and the 1.5 deg cut stay as shipped.

Sets, per seed (each measured shipped and with the candidate, on the same labels):
  * ``benchmark``: bench_contact_angle's own degraded real-geometry frames at ``--seed`` (its
    random stream followed as ``bench.bench_wiggle_limits.benchmark_frames`` does: 40 per
    bin, 30 per geometry, one degradation drawn per frame);
  * the sets of ``bench.bench_degraded_block_sigma.run`` (real geometry exact and in all six
    degradations, textbook caps a = 30-80 px, polygon labels at jitter 0.7 and 1.5 px).

    python -m bench.bench_worstvalid --seed 0 [--per-geometry 20] [--per-bin 40]
        [--polygon-per-geometry 20] [--json FILE.json]
    python -m bench.bench_worstvalid --seed 0 --list-over 1.5 [--json FILE.json]
        (only the benchmark's valid degraded frames more than 1.5 deg off, shipped, with the
        error's parts, sigma's terms and the outline residuals' correlation time)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

import bench.bench_degraded_block_sigma as block_sigma
import nwwatch.measure.contact_angle as contact_angle
from bench.bench_contact_angle import (
    A_BINS,
    DEGRADATIONS,
    GEOMETRIES,
    degrade,
    random_cap,
    real_wire,
    render,
)
from nwwatch.synth.geometry import droplet_geometry

#: Parameters of the circle fit (centre row, centre col, radius).
CIRCLE_PARAMS = 3


def absorbed_share(n_points: int, tau: float) -> float:
    """Share of correlated outline noise a 3-parameter circle fit absorbs: ``3 tau / N``."""
    return CIRCLE_PARAMS * tau / max(n_points, 1)


def corrected_factor(n_points: int, tau: float) -> float:
    """The circle's variance inflation: ``tau ((N - 3) / (N - 3 tau))**2``; inf when the fit
    absorbs all of it (``N <= 3 tau``)."""
    q = absorbed_share(n_points, tau)
    if q >= 1.0:
        return math.inf
    base = 1.0 - CIRCLE_PARAMS / max(n_points, CIRCLE_PARAMS + 1)
    return tau * (base / (1.0 - q)) ** 2


class Candidate:
    """Context manager: ``contact_angle`` measures with the absorption-corrected circle
    variance (the facet line's own correlation factors, read in ``tilt``, are untouched)."""

    def __init__(self, *_: object) -> None:
        self._cf = contact_angle.correlation_factor

    def __enter__(self) -> Candidate:
        cf = self._cf

        def correlation_factor(residuals: np.ndarray, order: np.ndarray) -> float:
            return corrected_factor(int(residuals.size), cf(residuals, order))

        contact_angle.correlation_factor = correlation_factor
        return self

    def __exit__(self, *exc: object) -> None:
        contact_angle.correlation_factor = self._cf


def benchmark_degraded(seed: int):
    """bench_contact_angle's degraded real-geometry frames at ``seed``, in its order: yields
    (geometry, index, wire, degradation, degraded labels, true apparent angle in degrees)."""
    rng = np.random.default_rng(seed)
    for a in A_BINS:  # its textbook section's draws, in its order (measuring draws nothing)
        for i in range(40):
            random_cap(rng, a, cut=i < int(0.15 * 40))
    for kind in ("blobs", "holes", "gap2", "ragged"):
        for _ in range(40):
            wire = random_cap(rng, float(rng.choice([30, 45])), cut=False)
            degrade(render(wire)[0], wire, kind, rng)
    for kind in GEOMETRIES:
        for i in range(30):
            wire = real_wire(rng, kind)
            labels = render(wire)[0]
            truth = droplet_geometry(wire).theta_apparent_deg
            deg = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
            yield kind, i, wire, deg, degrade(labels, wire, deg, rng), truth


def benchmark(seed: int) -> dict:
    """bench_contact_angle's degraded real-geometry frames at ``seed``, shipped and candidate."""
    rows = {"shipped": block_sigma.Rows(), "candidate": block_sigma.Rows()}
    wiggles = {"shipped": block_sigma.Rows(), "candidate": block_sigma.Rows()}
    for _, _, _, deg, drawn, truth in benchmark_degraded(seed):
        for m in ("shipped", "candidate"):
            sets = [rows[m]] + ([wiggles[m]] if deg.startswith("wiggle") else [])
            if m == "candidate":
                with Candidate():
                    for s in sets:
                        s.add(drawn, truth)
            else:
                for s in sets:
                    s.add(drawn, truth)
    return {"benchmark degraded": {m: r.summary() for m, r in rows.items()},
            "benchmark wiggles": {m: r.summary() for m, r in wiggles.items()}}


def worst_frames(seed: int, over_deg: float) -> list[dict]:
    """The benchmark's valid degraded frames more than ``over_deg`` off (shipped measurement):
    the error's circle and line parts, sigma's terms, the side angles, and the outline
    residuals' correlation time (points) and RMS (px) about the fitted circle and about the
    true one (which only the bench knows)."""
    from bench.bench_label_error_budget import Recorder
    from bench.bench_wiggle_limits import split_error

    rec = Recorder(contact_angle.measure_contact_angle)
    seen: dict = {}
    cf, angle = contact_angle.correlation_factor, contact_angle._angle

    def capture_angle(sel, facet, cap, labels, image):
        seen.update(sel=sel, cap=cap)
        return angle(sel, facet, cap, labels, image)

    def capture_tau(residuals: np.ndarray, order: np.ndarray) -> float:
        seen["tau"] = cf(residuals, order)
        return seen["tau"]

    contact_angle._angle, contact_angle.correlation_factor = capture_angle, capture_tau
    out = []
    try:
        for kind, i, wire, deg, drawn, truth in benchmark_degraded(seed):
            seen.clear()
            r, terms = rec(drawn)
            if not r.angle_valid or abs(r.contact_angle_deg - truth) <= over_deg:
                continue
            circle, line = split_error(r, wire)
            cap = seen["cap"]
            pts = cap.pts + np.asarray(seen["sel"].box[:2], dtype=float)
            g = droplet_geometry(wire)
            true_res = np.hypot(*(pts - np.array(g.centre)).T) - g.radius_px
            order = np.arctan2(pts[:, 0] - r.circle_center_row, pts[:, 1] - r.circle_center_col)
            sides = [None if v is None else round(v - truth, 2)
                     for v in (r.contact_angle_left_deg, r.contact_angle_right_deg)]
            out.append({
                "geometry": kind, "index": i, "degradation": deg,
                "a_px": round(r.base_half_width_px, 1), "theta_true_deg": round(truth, 1),
                "error_deg": round(r.contact_angle_deg - truth, 2),
                "sigma_deg": round(r.contact_angle_uncertainty_deg, 2),
                "circle_part_deg": round(circle, 2), "line_part_deg": round(line, 2),
                "terms_deg": {k: round(v, 2) for k, v in terms.items() if v >= 0.005},
                "side_errors_deg": sides, "arc_span_deg": round(r.arc_span_deg),
                "circle_points": r.n_contour_points, "droplet_cut": bool(r.droplet_cut),
                "tilt_read_deg": round(r.wire_tilt_deg, 1),
                "tau_fit_points": round(seen["tau"], 1),
                "tau_true_points": round(cf(true_res - true_res.mean(), order), 1),
                "rms_fit_px": round(r.fit_residual_rms_px, 2),
                "rms_true_px": round(float(np.std(true_res)), 2),
                "candidate_factor": round(corrected_factor(r.n_contour_points, seen["tau"])
                                          / seen["tau"], 2)})
    finally:
        contact_angle._angle, contact_angle.correlation_factor = angle, cf
    return out


def _summary_with_pairs(self: block_sigma.Rows) -> dict:
    out = _plain_summary(self)
    out["pairs"] = [[round(e, 4), round(s, 4)] for e, s in zip(self.errors, self.sigmas,
                                                              strict=True)]
    return out


_plain_summary = block_sigma.Rows.summary


def matched_cut(both: dict) -> dict:
    """The shipped measurement refusing its largest-sigma valid frames until it keeps as many
    as the candidate: what a plainly tighter cut on sigma would give at the same validity."""
    shipped, cand = both["shipped"], both["candidate"]
    pairs = sorted(shipped["pairs"], key=lambda p: p[1])[: cand["valid"]]
    err = np.abs([p[0] for p in pairs])
    if not err.size:
        return {"valid": 0}
    return {"valid": int(err.size), "cut_deg": round(float(pairs[-1][1]), 3),
            "rmse_deg": round(float(np.sqrt(np.mean(err**2))), 4),
            "max_deg": round(float(err.max()), 3), "over_2_deg": int((err > 2.0).sum())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-geometry", type=int, default=20)
    parser.add_argument("--per-bin", type=int, default=40)
    parser.add_argument("--polygon-per-geometry", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--list-over", type=float, metavar="DEG",
                        help="only list the benchmark's valid degraded frames more than DEG off")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.list_over is not None:
        frames = worst_frames(args.seed, args.list_over)
        for f in frames:
            print(json.dumps(f))
        if args.json:
            args.json.write_text(json.dumps({"command": "python -m bench.bench_worstvalid "
                                             + " ".join(argv), "frames": frames}, indent=1) + "\n")
        return
    block_sigma.Rows.summary = _summary_with_pairs
    out = benchmark(args.seed)
    # bench_degraded_block_sigma's sets, measured with this candidate instead of its own
    block_sigma.Candidate = Candidate
    out.update(block_sigma.run(args.seed, args.per_geometry, args.per_bin,
                               args.polygon_per_geometry, 0.0))
    for both in out.values():
        both["shipped at the candidate's validity"] = matched_cut(both)
        for m in ("shipped", "candidate"):
            both[m].pop("pairs")
    record = {"command": "python -m bench.bench_worstvalid " + " ".join(argv),
              "seed": args.seed, "sets": out}
    block_sigma.report_sets(record, args.json)


if __name__ == "__main__":
    main()
