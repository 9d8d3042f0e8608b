"""Contact angles from hand-drawn polygon labels of the real geometries.

People label frames with polygon tools: a vertex every few pixels along each object's outline,
each placed to within about a pixel, the classes drawn as separate polygons. This bench makes
such labels from the exact ones of ``bench.bench_contact_angle``'s real-geometry cases (a >=
30 px, untilted): per class, the outline of the exact label (``cv2.findContours``) keeps one
vertex every ``spacing`` px of contour plus its corners (``cv2.approxPolyDP`` at 1 px), each
vertex moves by a Gaussian of ``jitter`` px (1-sigma) per axis (vertices on the image border
only along it, as a drawing tool clamps them), and the polygons are filled
wire first, droplet over it (so the droplet's polygon wins where they overlap and a thin gap
of background may open where they do not meet). Errors in degrees against the exact angle;
"<= 2 sigma" is the share of valid frames within twice their stated uncertainty.

    .venv/bin/python -m bench.bench_polygon_labels [--per-geometry 20] [--spacings 8 15 25]
        [--jitter 0.7] [--seed 0] [--json FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from bench.bench_contact_angle import GEOMETRIES, real_geometry_frames
from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import measure_contact_angle


def polygon_labels(labels: np.ndarray, spacing_px: float, jitter_px: float,
                   rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W) labels redrawn as one jittered polygon per object outline of ``labels``."""
    out = np.zeros_like(labels)
    for cls in (NANOWIRE, DROPLET):
        contours, _ = cv2.findContours((labels == cls).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            points = contour[:, 0, :].astype(np.float64)  # (x, y) = (col, row)
            if len(points) < 8:
                continue
            keep = set(range(0, len(points), max(1, round(spacing_px))))
            corners = cv2.approxPolyDP(points.astype(np.float32)[:, None, :], 1.0, True)[:, 0]
            keep.update(int(np.argmin(np.hypot(*(points - c).T))) for c in corners)
            vertices = points[sorted(keep)]
            moved = vertices + rng.normal(0.0, jitter_px, vertices.shape)
            # Along the image border a drawing tool clamps vertices to the edge: the cut
            # side of a frame-cut object stays on it.
            for axis, size in ((0, labels.shape[1]), (1, labels.shape[0])):
                on_edge = (vertices[:, axis] <= 0) | (vertices[:, axis] >= size - 1)
                moved[on_edge, axis] = np.where(vertices[on_edge, axis] <= 0, -0.5, size - 0.5)
            vertices = moved
            # 2 fractional bits: vertices at quarter-pixel positions, as a drawing tool's.
            cv2.fillPoly(out, [np.round(vertices * 4).astype(np.int32)], int(cls), shift=2)
    return out


def run(per_geometry: int, spacings: list[float], jitter_px: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    frames = [(kind, labels, truth)
              for kind, _, labels, truth in real_geometry_frames(rng, per_geometry)]
    record: dict = {"per_geometry": per_geometry, "jitter_px": jitter_px, "seed": seed,
                    "frames": len(frames), "spacings": {}}
    for spacing in spacings:
        draw = np.random.default_rng([seed, round(10 * spacing)])
        errors, sigmas, codes, refused = [], [], Counter(), []
        per_kind: dict[str, list[int]] = {k: [0, 0] for k in GEOMETRIES}
        for kind, labels, truth in frames:
            r = measure_contact_angle(polygon_labels(labels, spacing, jitter_px, draw))
            codes[r.reason_code] += 1
            per_kind[kind][1] += 1
            if r.angle_valid:
                per_kind[kind][0] += 1
                errors.append(r.contact_angle_deg - truth)
                sigmas.append(r.contact_angle_uncertainty_deg)
            elif r.contact_angle_deg is not None:
                refused.append(abs(r.contact_angle_deg - truth))
        err, sig = np.abs(np.array(errors)), np.array(sigmas)
        record["spacings"][f"{spacing:g}"] = {
            "valid": len(errors), "valid_pct": round(100.0 * len(errors) / len(frames), 1),
            "median_abs_deg": round(float(np.median(err)), 3),
            "rmse_deg": round(float(np.sqrt(np.mean(err**2))), 3),
            "max_abs_deg": round(float(err.max()), 3),
            "within_2sigma": round(float(np.mean(err <= 2.0 * sig)), 3),
            "reason_codes": dict(codes.most_common()),
            "refused_with_angle_median_abs_deg": (round(float(np.median(refused)), 2)
                                                  if refused else None),
            "valid_per_geometry": {k: f"{v[0]}/{v[1]}" for k, v in per_kind.items()},
        }
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-geometry", type=int, default=20)
    parser.add_argument("--spacings", type=float, nargs="+", default=[8.0, 15.0, 25.0])
    parser.add_argument("--jitter", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    record = run(args.per_geometry, args.spacings, args.jitter, args.seed)
    record["command"] = " ".join(["python -m bench.bench_polygon_labels", *argv])
    for spacing, s in record["spacings"].items():
        print(f"vertex every {spacing} px: {s['valid']}/{record['frames']} valid, median "
              f"{s['median_abs_deg']:.3f} deg, RMSE {s['rmse_deg']:.3f}, max "
              f"{s['max_abs_deg']:.2f}, <= 2 sigma {100 * s['within_2sigma']:.0f} %; "
              f"{s['reason_codes']}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
