"""Why wiggled labels are refused: which 1-sigma term pushes a frame over the 1.5 deg limit.

The real-geometry frames of :mod:`bench.bench_contact_angle` (its sampler, one geometry after
another), each with a 2 px and a 3 px boundary wiggle (its ``wiggle``), measured; for every
``angle_uncertain`` frame the terms that :func:`nwwatch.measure.uncertainty.combine_deg`
received are recorded: the calibrated statistical term (circle and facet-line fits), the
choice term, the flat-versus-elliptical facet term and the image term. A frame counts as
refused by the flat-versus-elliptical term when the statistical term alone is <= 1.5 deg.
Errors against the apparent angle.

Usage::

    python -m bench.bench_wiggle_refusals --frames 66 --json bench/results/wiggle_refusals.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

import nwwatch.measure.contact_angle as contact_angle
from bench.bench_contact_angle import GEOMETRIES, real_wire, render, wiggle
from nwwatch.synth.geometry import droplet_geometry


def run(frames: int, seed: int) -> dict:
    terms: list[tuple] = []
    combine = contact_angle.combine_deg

    def recording(*args: float) -> float:
        terms.append(args)
        return combine(*args)

    contact_angle.combine_deg = recording
    try:
        rng = np.random.default_rng(seed)
        kinds = list(GEOMETRIES)
        groups: dict[str, list[float | None]] = defaultdict(list)
        for i in range(frames):
            wire = real_wire(rng, kinds[i % len(kinds)])
            labels, _ = render(wire)
            truth = droplet_geometry(wire).theta_apparent_deg
            for amplitude in (2.0, 3.0):
                terms.clear()
                r = contact_angle.measure_contact_angle(wiggle(labels, amplitude, rng))
                err = None if r.contact_angle_deg is None else abs(r.contact_angle_deg - truth)
                if r.reason_code == "angle_uncertain":
                    stat, _, flat, _ = terms[-1]
                    why = ("flat/elliptical term" if stat <= contact_angle.MAX_UNCERTAINTY_DEG
                           and flat > 0 else "statistical term")
                    key = f"wiggle {amplitude:g} px, refused by the {why}"
                else:
                    key = f"wiggle {amplitude:g} px, {'valid' if r.angle_valid else r.reason_code}"
                groups[key].append(err)
    finally:
        contact_angle.combine_deg = combine
    out = {}
    for key in sorted(groups):
        errs = np.array([e for e in groups[key] if e is not None])
        out[key] = {"frames": len(groups[key])}
        if errs.size:
            out[key].update(median_abs_deg=round(float(np.median(errs)), 2),
                            max_abs_deg=round(float(errs.max()), 2),
                            over_1_5_deg=int((errs > 1.5).sum()))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=66)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    out = run(args.frames, args.seed)
    for key, row in out.items():
        print(f"{key}: {row}")
    if args.json:
        args.json.write_text(json.dumps({"frames_per_amplitude": args.frames,
                                         "seed": args.seed, "groups": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
