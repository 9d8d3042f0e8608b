"""Where the angle error and the 1-sigma of hand-drawn and wiggled labels come from.

For the real-geometry frames of ``bench.bench_contact_angle`` (``--per-geometry`` per
geometry, seed ``--seed``) redrawn as polygon labels (``bench.bench_polygon_labels``: a vertex
every 6/10/15/25 px, jitter ``--jitters``) and wiggled by 1/2/3 px (``bench_contact_angle.wiggle``),
every measured frame (valid or refused with an angle) is split into:

* the error's parts (``bench.bench_wiggle_limits.split_error``): the fitted circle against
  the true facet line (circle part), the true circle against the fitted line (line part);
* the terms of its 1-sigma, as the measurement adds them: the circle's and the facet line's
  statistical parts (times CALIBRATION) and each systematic term (facet orientation, flat
  versus elliptical facet, ...);

and per label kind it reports the parts' RMS and mean (measured and valid frames), which term
is the largest in each refused frame, and the refused frames that only the flat-versus-
elliptical term refuses (1-sigma without it <= the cut) with their errors.

``--reference DIR`` measures with another checkout's ``nwwatch/measure`` (see
``bench.bench_measure_speed.load_measure``) instead of this one's.

    python -m bench.bench_label_error_budget [--seed 0] [--per-geometry 10]
        [--jitters 0.7 1.5] [--reference DIR] [--json FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.bench_contact_angle import real_geometry_frames, wiggle
from bench.bench_measure_speed import load_measure
from bench.bench_polygon_labels import polygon_labels
from bench.bench_wiggle_limits import split_error

SPACINGS_PX = (6.0, 10.0, 15.0, 25.0)
WIGGLES_PX = (1.0, 2.0, 3.0)
#: The systematic terms in the order ``contact_angle._angle`` passes them to combine_deg.
SYSTEMATIC = ("facet_orientation", "facet_shape", "facet_tilt", "facet_edge", "droplet_shape",
              "triple_points")


class Recorder:
    """Wraps the measurement's ``statistical_variances`` and ``combine_deg`` (in the module
    globals of ``measure``) to keep the last frame's terms of sigma (degrees)."""

    def __init__(self, measure: Callable) -> None:
        self.measure = measure
        self.glob = measure.__globals__
        self.terms: dict[str, float] = {}
        sv, comb, calibration = (self.glob["statistical_variances"], self.glob["combine_deg"],
                                 self.glob["CALIBRATION"])

        def statistical_variances(*args, **kwargs):
            circle_var, line_var = sv(*args, **kwargs)
            self.terms["outline"] = calibration * math.degrees(math.sqrt(max(circle_var, 0.0)))
            self.terms["facet_line"] = calibration * math.degrees(math.sqrt(max(line_var, 0.0)))
            return circle_var, line_var

        def combine_deg(statistical_deg, *systematic_deg):
            self.terms.update(zip(SYSTEMATIC, systematic_deg, strict=True))
            return comb(statistical_deg, *systematic_deg)

        self.glob["statistical_variances"] = statistical_variances
        self.glob["combine_deg"] = combine_deg
        self.cut_deg = float(self.glob["MAX_UNCERTAINTY_DEG"])

    def __call__(self, labels: np.ndarray):
        self.terms = {}
        return self.measure(labels), dict(self.terms)


def _rms(x: np.ndarray) -> float | None:
    return round(float(np.sqrt(np.mean(x**2))), 3) if x.size else None


def summarise(rows: list[dict], cut_deg: float) -> dict:
    measured = [r for r in rows if r["terms"]]
    valid = [r for r in measured if r["valid"]]
    refused = [r for r in measured if not r["valid"]]

    def parts(sel: list[dict]) -> dict:
        c = np.array([r["circle_part"] for r in sel])
        ln = np.array([r["line_part"] for r in sel])
        e = np.array([r["error"] for r in sel])
        return {"n": len(sel), "error_rms_deg": _rms(e), "circle_part_rms_deg": _rms(c),
                "circle_part_mean_deg": round(float(c.mean()), 3) if c.size else None,
                "line_part_rms_deg": _rms(ln),
                "line_part_mean_deg": round(float(ln.mean()), 3) if ln.size else None}

    largest = Counter(max(r["terms"], key=r["terms"].get) for r in refused)
    shape_only = [r for r in refused
                  if math.sqrt(max(r["sigma"] ** 2 - r["terms"]["facet_shape"] ** 2, 0.0))
                  <= cut_deg]
    err_so = np.abs([r["error"] for r in shape_only])
    return {
        "frames": len(rows), "measured": len(measured), "valid": len(valid),
        "measured_parts": parts(measured), "valid_parts": parts(valid),
        "median_terms_deg": {k: round(float(np.median([r["terms"][k] for r in measured])), 3)
                             for k in ("outline", "facet_line", "facet_shape")},
        "frames_with_facet_shape_term": sum(r["terms"]["facet_shape"] > 0 for r in measured),
        "refused_largest_term": dict(largest.most_common()),
        "refused_only_by_facet_shape": {
            "n": len(shape_only),
            "abs_error_median_deg": round(float(np.median(err_so)), 3) if err_so.size else None,
            "abs_error_max_deg": round(float(err_so.max()), 3) if err_so.size else None},
    }


def run(measure: Callable, seed: int, per_geometry: int, jitters: list[float]) -> dict:
    rec = Recorder(measure)
    frames = real_geometry_frames(np.random.default_rng(seed), per_geometry)
    kinds = [(f"polygon jitter {j:g}", j) for j in jitters] + [("wiggle", None)]
    out = {}
    for name, jitter in kinds:
        rows = []
        for size in SPACINGS_PX if jitter is not None else WIGGLES_PX:
            # One stream per spacing (as bench_polygon_labels) or per amplitude.
            draw = np.random.default_rng([seed, round(10 * size) if jitter is not None
                                          else round(size)])
            for _, wire, labels, truth in frames:
                drawn = (polygon_labels(labels, size, jitter, draw) if jitter is not None
                         else wiggle(labels, size, draw))
                r, terms = rec(drawn)
                row = {"valid": bool(r.angle_valid), "reason_code": r.reason_code,
                       "terms": terms if r.contact_angle_deg is not None and terms else {}}
                if row["terms"]:
                    circle, line = split_error(r, wire)
                    row.update(error=r.contact_angle_deg - truth, circle_part=circle,
                               line_part=line, sigma=r.contact_angle_uncertainty_deg)
                rows.append(row)
        out[name] = summarise(rows, rec.cut_deg)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-geometry", type=int, default=10)
    parser.add_argument("--jitters", type=float, nargs="+", default=[0.7, 1.5])
    parser.add_argument("--reference", type=Path,
                        help="folder holding another checkout's nwwatch/measure")
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.reference is not None and not (
            args.reference / "nwwatch" / "measure" / "__init__.py").is_file():
        raise SystemExit(f"{args.reference}: no nwwatch/measure/__init__.py in it")
    # measure_contact_angle is defined in contact_angle.py: its globals are that module's.
    out = run(load_measure(args.reference), args.seed, args.per_geometry, args.jitters)
    record = {"command": " ".join(["python -m bench.bench_label_error_budget", *argv]),
              "seed": args.seed, "per_geometry": args.per_geometry, "kinds": out}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
