"""Contact angles of droplets drawn as polygons whose clicks lie on the true circle.

An annotator outlining a droplet in a polygon tool clicks points on its edge every 10-25 px;
the tool fills the polygon, whose straight chords lie inside the circle by their sagitta. This
bench draws such masks of exact caps: a wire of the droplet's base width below a facet line at
any orientation, a cap of θ 95-150° and R 40-140 px in a 512² frame, its outline a polygon
through points of the true arc every ``spacing`` px (moved by a Gaussian of ``jitter`` px per
axis, the end points kept on the facet), filled by pixel-centre inclusion as nwwatch's label
tool fills its polygons (spacing 0: 2,000 points, the exact cap). Per (spacing, jitter): valid
frames, mean and largest error against the true θ, the share within 2σ.

    .venv/bin/python -m bench.bench_polygon_vertices [--seeds 101 202] [--frames 40]
        [--spacings 0 10 12 13 14 15 17 25] [--jitters 0 0.5] [--json FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.path import Path as Polygon

from nwwatch.measure import measure_contact_angle

SIZE_PX = 512


def _facet_point(alpha_deg: float, radius_px: float, theta_deg: float) -> np.ndarray:
    """(row, col) of the facet's centre: the cap 8 px inside the frame along the normal, with
    at least 40 px of wire behind the facet."""
    a = math.radians(alpha_deg)
    normal = np.array([-math.cos(a), -math.sin(a)])
    reach = min((SIZE_PX / 2 - 1) / max(abs(normal[0]), 1e-9),
                (SIZE_PX / 2 - 1) / max(abs(normal[1]), 1e-9))
    offset = max(reach - 8 - radius_px + radius_px * math.cos(math.radians(theta_deg)),
                 -(reach - 40))
    return np.array([SIZE_PX / 2 - 0.37, SIZE_PX / 2 + 0.21]) + offset * normal


def polygon_cap(rng: np.random.Generator, spacing_px: float, jitter_px: float
                ) -> tuple[np.ndarray, float]:
    """uint8 (512, 512) labels (0 background, 1 wire, 2 droplet) and the true θ in degrees."""
    theta = rng.uniform(95, 150)
    radius = rng.uniform(40, 140)
    alpha = math.radians(rng.uniform(-180, 180))
    normal = np.array([-math.cos(alpha), -math.sin(alpha)])  # from the wire into the droplet
    along = np.array([normal[1], -normal[0]])
    facet = _facet_point(math.degrees(alpha), radius, theta)
    centre_offset = -radius * math.cos(math.radians(theta))
    half_base = radius * math.sin(math.radians(theta))
    n_points = (max(6, round(2 * math.radians(theta) * radius / spacing_px)) + 1
                if spacing_px else 2000)
    phi = np.linspace(-math.radians(theta), math.radians(theta), n_points)
    arc = (facet + (centre_offset + radius * np.cos(phi))[:, None] * normal
           + (radius * np.sin(phi))[:, None] * along)
    if spacing_px:
        arc[1:-1] += rng.normal(0.0, jitter_px, arc[1:-1].shape)
    rows, cols = np.mgrid[0:SIZE_PX, 0:SIZE_PX]
    pixels = np.c_[rows.ravel(), cols.ravel()].astype(float)
    labels = np.zeros((SIZE_PX, SIZE_PX), np.uint8)
    wire = [facet - half_base * along, facet + half_base * along,
            facet + half_base * along - 3 * SIZE_PX * normal,
            facet - half_base * along - 3 * SIZE_PX * normal]
    labels[Polygon(np.array(wire)).contains_points(pixels).reshape(labels.shape)] = 1
    labels[Polygon(arc).contains_points(pixels).reshape(labels.shape)] = 2
    return labels, theta


def run(seeds: list[int], frames: int, spacings: list[float], jitters: list[float]) -> list[dict]:
    cells = []
    for spacing in spacings:
        for jitter in (jitters if spacing else [0.0]):
            errors, z = [], []
            total = 0
            for seed in seeds:
                rng = np.random.default_rng([seed, round(spacing * 10), round(jitter * 10)])
                for _ in range(frames):
                    labels, theta = polygon_cap(rng, spacing, jitter)
                    row = measure_contact_angle(labels)
                    total += 1
                    if row.angle_valid:
                        errors.append(row.contact_angle_deg - theta)
                        z.append(errors[-1] / row.contact_angle_uncertainty_deg)
            e, zz = np.array(errors), np.abs(z)
            cell = {"spacing_px": spacing, "jitter_px": jitter, "frames": total,
                    "valid": len(e), "mean_error_deg": float(e.mean()) if len(e) else None,
                    "max_abs_error_deg": float(np.abs(e).max()) if len(e) else None,
                    "within_2_sigma": float(np.mean(zz <= 2)) if len(e) else None}
            cells.append(cell)
            print(f"spacing {spacing:g} px, jitter {jitter:g} px: {cell['valid']}/{total} valid, "
                  f"mean error {cell['mean_error_deg']:+.3f} deg, "
                  f"max {cell['max_abs_error_deg']:.3f} deg, "
                  f"within 2 sigma {cell['within_2_sigma']:.3f}", flush=True)
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 202])
    ap.add_argument("--frames", type=int, default=40, help="frames per seed and cell")
    # 12-15 px: clicks closer than the envelope's window of peaks
    ap.add_argument("--spacings", type=float, nargs="+", default=[0, 10, 12, 13, 14, 15, 17, 25])
    ap.add_argument("--jitters", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cells = run(args.seeds, args.frames, args.spacings, args.jitters)
    if args.json:
        args.json.write_text(json.dumps({"seeds": args.seeds, "frames_per_seed": args.frames,
                                         "cells": cells}, indent=1) + "\n")


if __name__ == "__main__":
    main()
