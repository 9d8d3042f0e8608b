"""How deep exact triple points read on steep caps whose facet goes on beyond the contact
line (a droplet base narrower than the wire): the background between droplet and facet is a
wedge of 180 deg - theta that a label mask closes near its apex. Per bin of theta: the largest
``triple_depth_px`` over exact labels (binary mask and coverage as probability; random size
a = 10-60 px, sub-pixel position, wire radius 1.1-1.5 a; half the wires along a pixel axis,
where the wedge is worst, the others at any orientation) against
:func:`nwwatch.measure.capcheck.triple_tolerance_px` at the bin's steepest angle, and how many
measurements get a non-zero term with it and with the 2.5 px of measurement 2.2.7, and the
largest angle error (against the exact apparent angle) among those charged by each and
among those the wider tolerance releases; of the released ones, how many are valid and how
many valid within 2 sigma, with each tolerance (sigma with 2.5 px recomputed from the terms).

    .venv/bin/python -m bench.bench_triple_wedge [--per-bin 40] [--seed 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from nwwatch.measure import measure_contact_angle
from nwwatch.measure.capcheck import (
    TRIPLE_TOLERANCE_PX,
    triple_depth_sigma_deg,
    triple_tolerance_px,
)
from nwwatch.measure.contact_angle import MAX_UNCERTAINTY_DEG
from nwwatch.synth.geometry import WireSpec, axis_vectors, droplet_geometry
from nwwatch.synth.labels import scene_labels

SHAPE = (512, 512)
BINS = tuple(range(146, 172, 3))  # each bin spans [lo, lo + 3) deg


def run(per_bin: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for lo in BINS:
        depths, terms, flat_terms, valid = [], 0, 0, 0
        err_charged, err_released = [0.0], [0.0]
        released = {"valid": 0, "valid_at_2_5_px": 0, "within_2_sigma": 0,
                    "within_2_sigma_at_2_5_px": 0}
        for _ in range(per_bin):
            theta = float(lo + rng.uniform(0.0, 3.0))
            a = float(np.exp(rng.uniform(math.log(10.0), math.log(60.0))))
            radius = a / math.sin(math.radians(theta))
            if radius > 200.0:
                continue
            axis = float(rng.uniform(-180.0, 180.0))
            if rng.random() < 0.5:
                axis = 90.0 * round(axis / 90.0)
            u = np.array(axis_vectors(axis)[0])
            c = np.array(SHAPE, float) / 2 + rng.uniform(-0.5, 0.5, 2) - 0.3 * radius * u
            wire = WireSpec(facet_row=float(c[0]), facet_col=float(c[1]), axis_deg=axis,
                            radius_px=a * float(rng.uniform(1.1, 1.5)), theta_deg=theta,
                            droplet_base_px=a)
            labels, coverage = scene_labels((wire,), SHAPE, factor=1, fine=10)
            for prob in (None, coverage):
                r = measure_contact_angle(labels, droplet_probability=prob)
                if r.triple_depth_px is None:
                    continue
                depths.append(r.triple_depth_px)
                valid += bool(r.angle_valid)
                terms += triple_depth_sigma_deg(r.triple_depth_px, r.base_half_width_px,
                                                r.contact_angle_deg) > 0
                flat = r.triple_depth_px > TRIPLE_TOLERANCE_PX
                charged = triple_depth_sigma_deg(r.triple_depth_px, r.base_half_width_px,
                                                 r.contact_angle_deg) > 0
                error = abs(r.contact_angle_deg - droplet_geometry(wire).theta_apparent_deg)
                flat_terms += flat
                if charged:
                    err_charged.append(error)
                elif flat:
                    err_released.append(error)
                    sigma = r.contact_angle_uncertainty_deg
                    old = math.degrees((r.triple_depth_px - TRIPLE_TOLERANCE_PX)
                                       / max(r.base_half_width_px, 0.5))
                    sigma_old = math.sqrt(sigma**2 + old**2)
                    released["valid"] += sigma <= MAX_UNCERTAINTY_DEG
                    released["valid_at_2_5_px"] += sigma_old <= MAX_UNCERTAINTY_DEG
                    released["within_2_sigma"] += (sigma <= MAX_UNCERTAINTY_DEG
                                                   and error <= 2 * sigma)
                    released["within_2_sigma_at_2_5_px"] += (sigma_old <= MAX_UNCERTAINTY_DEG
                                                             and error <= 2 * sigma_old)
        out[f"{lo}-{lo + 3}"] = {
            "n": len(depths), "valid": valid,
            "max_triple_depth_px": float(max(depths, default=0.0)),
            "tolerance_px_at_bin_top": triple_tolerance_px(lo + 3.0),
            "nonzero_terms": int(terms), "nonzero_terms_at_2_5_px": int(flat_terms),
            "max_abs_error_deg_charged": max(err_charged),
            "max_abs_error_deg_released": max(err_released), "released": released}
        print(f"theta {lo}-{lo + 3}: {out[f'{lo}-{lo + 3}']}", flush=True)
    return out


def _main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-bin", type=int, default=40)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    out = run(args.per_bin, args.seed)
    if args.json:
        args.json.write_text(json.dumps({"per_bin": args.per_bin, "seed": args.seed,
                                         "bins": out}, indent=1) + "\n")


if __name__ == "__main__":
    _main()
