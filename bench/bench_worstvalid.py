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


def benchmark(seed: int) -> dict:
    """bench_contact_angle's degraded real-geometry frames at ``seed``, shipped and candidate."""
    rng = np.random.default_rng(seed)
    for a in A_BINS:  # its textbook section's draws, in its order
        for i in range(40):
            random_cap(rng, a, cut=i < int(0.15 * 40))
    for kind in ("blobs", "holes", "gap2", "ragged"):
        for _ in range(40):
            wire = random_cap(rng, float(rng.choice([30, 45])), cut=False)
            degrade(render(wire)[0], wire, kind, rng)
    rows = {"shipped": block_sigma.Rows(), "candidate": block_sigma.Rows()}
    wiggles = {"shipped": block_sigma.Rows(), "candidate": block_sigma.Rows()}
    for kind in GEOMETRIES:
        for _ in range(30):
            wire = real_wire(rng, kind)
            labels = render(wire)[0]
            truth = droplet_geometry(wire).theta_apparent_deg
            deg = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
            drawn = degrade(labels, wire, deg, rng)
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
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
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
    for name, both in out.items():
        print(name)
        for m, s in both.items():
            print(f"   {m:9s} {s}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
