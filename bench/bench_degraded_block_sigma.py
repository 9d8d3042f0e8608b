"""The circle's 1-sigma from a block sandwich (a linearised block bootstrap along the arc),
against the shipped correlation-time inflation, on wiggled and other label sets.

Why: on the benchmark's wiggled labels (``bench.bench_contact_angle.wiggle``: one smooth
displacement field, correlation 3-8 px) the valid frames more than 2 deg off are circle
errors of a few kinds. On droplets whose visible outline is short or in pieces (cut by the
frame: 30-120 points) the circle absorbs the low-frequency wiggle, the residuals look
nearly independent (correlation time 1.5-8) and 1-sigma stays at 0.9-1.4 deg for errors of
2-5 deg. The shipped variance (``uncertainty.statistical_variances``) scales the fit's
covariance by the residuals' integrated autocorrelation time, read from those same residuals.
The candidate replaces it for the circle by the cluster-robust sandwich over blocks of
``block_px`` px of arc (pieces of the outline split at gaps > 3 px, each cut into blocks):
``V = (J^T J)^-1 [G/(G-3) sum_b s_b s_b^T] (J^T J)^-1``, ``s_b`` the block's sum of
Jacobian row x residual, G the number of blocks; with G <= 3 the residuals cannot tell the
circle's error and the variance is infinite (refused). The facet line, the systematic terms,
CALIBRATION (1.3) and the 1.5 deg cut stay as shipped.

Sets, per seed (each measured shipped and with the candidate, on the same labels):
  * real geometry (``bench_contact_angle.real_wire``, 11 geometries x ``--per-geometry``),
    exact labels and each of the six degradations of the benchmark on every frame;
  * textbook caps a = 30/45/60/80 px (``random_cap``, 15 % cut), ``--per-bin`` each;
  * polygon labels (``bench_polygon_labels.polygon_labels``) of the real-geometry frames,
    vertex every 6/10/15/25 px, jitter 0.7 and 1.5 px.

    python -m bench.bench_degraded_block_sigma --seed 0 [--per-geometry 20] [--per-bin 40]
        [--polygon-per-geometry 20] [--block-px 16] [--json FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

import nwwatch.measure.contact_angle as contact_angle
from bench.bench_contact_angle import (
    DEGRADATIONS,
    GEOMETRIES,
    degrade,
    random_cap,
    real_wire,
    render,
)
from bench.bench_polygon_labels import polygon_labels
from nwwatch.measure.circle import CircleFit
from nwwatch.measure.interface import FacetLine
from nwwatch.synth.geometry import droplet_geometry

#: Outline points farther apart than this along the arc start a new piece (frame cuts,
#: points dropped near the wire).
GAP_PX = 3.0


def block_circle_variance(fit: CircleFit, grad: np.ndarray, residuals: np.ndarray,
                          angles: np.ndarray, block_px: float) -> float:
    """Variance (rad^2) of ``grad . (centre row, centre col, R)`` from a block sandwich.

    ``residuals`` (N,) orthogonal residuals of the fitted circle's points, ``angles`` (N,)
    their polar angles about the centre (``atan2(row - c_row, col - c_col)``). Blocks are
    ``block_px`` px of arc within each piece of the outline. Infinite with <= 3 blocks.
    """
    order = np.argsort(angles)
    a, r = angles[order], residuals[order]
    gaps = np.diff(np.r_[a, a[0] + 2.0 * math.pi])
    k = int(np.argmax(gaps))  # the arc starts after its largest angular gap
    a = np.r_[a[k + 1:], a[: k + 1] + 2.0 * math.pi]
    r = np.r_[r[k + 1:], r[: k + 1]]
    t = fit.radius * (a - a[0])
    jac = np.stack([-np.sin(a), -np.cos(a), -np.ones_like(a)], axis=1)
    piece = np.cumsum(np.r_[0, np.diff(t) > GAP_PX])
    starts = np.r_[0, np.nonzero(np.diff(piece))[0] + 1]
    within = np.floor((t - t[starts][piece]) / block_px).astype(np.int64)
    _, block = np.unique(piece * (1 << 20) + within, return_inverse=True)
    n_blocks = int(block.max()) + 1
    if n_blocks <= 3:
        return math.inf
    scores = np.stack([np.bincount(block, jac[:, j] * r, n_blocks) for j in range(3)], axis=1)
    bread = np.linalg.inv(jac.T @ jac)
    meat = scores.T @ scores * (n_blocks / (n_blocks - 3.0))
    return float(grad @ (bread @ meat @ bread) @ grad)


class Candidate:
    """Context manager: ``contact_angle`` measures with the block-sandwich circle variance."""

    def __init__(self, block_px: float) -> None:
        self.block_px = block_px
        self._stash: dict = {}

    def __enter__(self) -> Candidate:
        self._cf, self._sv = contact_angle.correlation_factor, contact_angle.statistical_variances
        stash, cf, sv, block_px = self._stash, self._cf, self._sv, self.block_px

        def correlation_factor(residuals: np.ndarray, order: np.ndarray) -> float:
            stash["res"], stash["ang"] = residuals, order
            return cf(residuals, order)

        def statistical_variances(fit: CircleFit, line: FacetLine, theta_rad: float,
                                  lever_px: float, circle_factor: float = 1.0,
                                  line_factor: float = 1.0) -> tuple[float, float]:
            _, line_var = sv(fit, line, theta_rad, lever_px, circle_factor, line_factor)
            half_chord = max(fit.radius * math.sin(theta_rad), 0.5)
            grad = np.array([line.normal[0], line.normal[1], math.cos(theta_rad)]) / half_chord
            return block_circle_variance(fit, grad, stash["res"], stash["ang"],
                                         block_px), line_var

        contact_angle.correlation_factor = correlation_factor
        contact_angle.statistical_variances = statistical_variances
        return self

    def __exit__(self, *exc: object) -> None:
        contact_angle.correlation_factor = self._cf
        contact_angle.statistical_variances = self._sv


class Rows:
    """Valid errors and sigmas of one set under one method."""

    def __init__(self) -> None:
        self.n = 0
        self.errors: list[float] = []
        self.sigmas: list[float] = []

    def add(self, labels: np.ndarray, truth: float) -> None:
        r = contact_angle.measure_contact_angle(labels)
        self.n += 1
        if r.angle_valid:
            self.errors.append(r.contact_angle_deg - truth)
            self.sigmas.append(r.contact_angle_uncertainty_deg)

    def summary(self) -> dict:
        err, sig = np.abs(np.array(self.errors)), np.array(self.sigmas)
        out = {"n": self.n, "valid": len(err),
               "valid_pct": round(100.0 * len(err) / max(self.n, 1), 2)}
        if err.size:
            out.update(median_deg=round(float(np.median(err)), 4),
                       rmse_deg=round(float(np.sqrt(np.mean(err**2))), 4),
                       max_deg=round(float(err.max()), 3), over_2_deg=int((err > 2.0).sum()),
                       within_2sigma_pct=round(100.0 * float(np.mean(err <= 2.0 * sig)), 1))
        return out


def _measure(sets: dict[str, dict[str, Rows]], name: str, labels: np.ndarray, truth: float,
             block_px: float) -> None:
    both = sets.setdefault(name, {"shipped": Rows(), "candidate": Rows()})
    both["shipped"].add(labels, truth)
    with Candidate(block_px):
        both["candidate"].add(labels, truth)


def run(seed: int, per_geometry: int, per_bin: int, polygon_per_geometry: int,
        block_px: float) -> dict:
    sets: dict[str, dict[str, Rows]] = {}
    rng = np.random.default_rng(seed)
    kinds = list(GEOMETRIES)
    frames = []
    for i in range(per_geometry * len(kinds)):
        wire = real_wire(rng, kinds[i % len(kinds)])
        labels = render(wire)[0]
        truth = droplet_geometry(wire).theta_apparent_deg
        frames.append((labels, truth))
        _measure(sets, "exact", labels, truth, block_px)
        for deg in DEGRADATIONS:
            _measure(sets, deg, degrade(labels, wire, deg, rng), truth, block_px)
    for a in (30, 45, 60, 80):
        for i in range(per_bin):
            wire = random_cap(rng, a, cut=i < int(0.15 * per_bin))
            _measure(sets, f"textbook a {a}", render(wire)[0], wire.theta_deg, block_px)
    for jitter in (0.7, 1.5):
        for spacing in (6, 10, 15, 25):
            draw = np.random.default_rng([seed, round(10 * spacing), round(10 * jitter)])
            for labels, truth in frames[: polygon_per_geometry * len(kinds)]:
                _measure(sets, f"polygon jitter {jitter} spacing {spacing}",
                         polygon_labels(labels, spacing, jitter, draw), truth, block_px)
    out = {name: {m: rows.summary() for m, rows in both.items()} for name, both in sets.items()}
    for group, names in (("wiggles", [d for d in DEGRADATIONS if d.startswith("wiggle")]),
                         ("degraded", list(DEGRADATIONS)),
                         ("textbook", [n for n in sets if n.startswith("textbook")]),
                         ("polygon jitter 0.7", [n for n in sets if "jitter 0.7" in n]),
                         ("polygon jitter 1.5", [n for n in sets if "jitter 1.5" in n])):
        out[f"pooled {group}"] = {}
        for m in ("shipped", "candidate"):
            pooled = Rows()
            for n in names:
                pooled.n += sets[n][m].n
                pooled.errors += sets[n][m].errors
                pooled.sigmas += sets[n][m].sigmas
            out[f"pooled {group}"][m] = pooled.summary()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-geometry", type=int, default=20)
    parser.add_argument("--per-bin", type=int, default=40)
    parser.add_argument("--polygon-per-geometry", type=int, default=20)
    parser.add_argument("--block-px", type=float, default=16.0)
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    out = run(args.seed, args.per_geometry, args.per_bin, args.polygon_per_geometry,
              args.block_px)
    record = {"command": "python -m bench.bench_degraded_block_sigma "
                         + " ".join(argv),
              "seed": args.seed, "block_px": args.block_px, "sets": out}
    report_sets(record, args.json)


def report_sets(record: dict, json_path: Path | None) -> None:
    """Print ``record["sets"]`` (per set, each method's summary) and write ``record`` as JSON
    to ``json_path`` when given."""
    for name, both in record["sets"].items():
        print(name)
        for m, s in both.items():
            print(f"   {m:9s} {s}")
    if json_path:
        json_path.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
