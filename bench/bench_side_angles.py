"""Side angles against their own 1-sigma on the real geometries, exact and degraded labels.

Every frame of bench_contact_angle's real-geometry cases (inclined facets, flared / tapered /
stepped walls, other base widths, corner, stub, large and frame-cut droplets) is measured
from its exact labels and from each degradation below; for every valid row, each side angle
(``contact_angle_left_deg`` / ``_right_deg``) is compared with the true angle (a spherical
cap meets its facet at one angle all round) and with 2 x its own 1-sigma
(``*_uncertainty_deg``) and 2 x the whole cap's.

    OMP_NUM_THREADS=1 python -m bench.bench_side_angles --seed 5 --per-geometry 8 \\
        --json bench/results/side_angles_seed5.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.bench_contact_angle import GEOMETRIES, degrade, real_wire, render
from nwwatch.measure import MEASUREMENT_VERSION, measure_contact_angle
from nwwatch.synth.insitu import droplet_geometry

LABELS = ("exact", "wiggle 1 px", "wiggle 2 px", "wiggle 3 px", "blobs", "gap2")


def run(seed: int, per_geometry: int) -> dict:
    """{labels: summary} over ``per_geometry`` frames of each geometry."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in LABELS}
    for kind in GEOMETRIES:
        for _ in range(per_geometry):
            wire = real_wire(rng, kind)
            labels, _ = render(wire)
            truth = droplet_geometry(wire).theta_apparent_deg
            for name in LABELS:
                image = labels if name == "exact" else degrade(labels, wire, name, rng)
                r = measure_contact_angle(image)
                if not r.angle_valid:
                    continue
                for angle, sigma in ((r.contact_angle_left_deg,
                                      r.contact_angle_left_uncertainty_deg),
                                     (r.contact_angle_right_deg,
                                      r.contact_angle_right_uncertainty_deg)):
                    if angle is not None:
                        rows[name].append((angle - truth, sigma,
                                           r.contact_angle_uncertainty_deg))
    out = {}
    for name, values in rows.items():
        err = np.abs([v[0] for v in values])
        side = np.array([v[1] for v in values])
        whole = np.array([v[2] for v in values])
        out[name] = {
            "side_angles": len(values),
            "rmse_deg": float(np.sqrt(np.mean(err**2))),
            "max_abs_error_deg": float(err.max()),
            "within_2_side_sigma": float(np.mean(err <= 2 * side)),
            "within_2_cap_sigma": float(np.mean(err <= 2 * whole)),
            "median_side_sigma_deg": float(np.median(side)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--per-geometry", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    summary = run(args.seed, args.per_geometry)
    print("| labels | side angles | RMSE | max | within 2 side-sigma | within 2 cap-sigma |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, s in summary.items():
        print(f"| {name} | {s['side_angles']} | {s['rmse_deg']:.2f} | "
              f"{s['max_abs_error_deg']:.2f} | {100 * s['within_2_side_sigma']:.0f} % | "
              f"{100 * s['within_2_cap_sigma']:.0f} % |")
    if args.json:
        args.json.write_text(json.dumps({
            "command": f"python -m bench.bench_side_angles --seed {args.seed} "
                       f"--per-geometry {args.per_geometry}",
            "measurement_version": MEASUREMENT_VERSION, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
