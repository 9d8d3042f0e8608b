"""Contact angles from labels drawn to other conventions at the wire/droplet interface.

Hand labels of real frames need not meet at one shared edge: the interface shows as a dark
band, and an annotator may leave it unlabeled, draw the droplet inside its dark rim, or take
the rim into the droplet. This bench redraws the exact labels of
``bench.bench_contact_angle``'s real-geometry cases (512 x 512, a >= 30 px, untilted) each
way and measures them as ``nwwatch measure`` does (labels alone):

* ``band G``: background across the facet line, G px wide and centred on it (wire pixels
  within G/2 of the line below it, droplet pixels within G/2 above it removed);
* ``inside rim K``: the droplet eroded by K px (a disc), so a band of about K px opens too;
* ``with rim K``: the droplet dilated by K px into the background (not over the wire);
* ``polygons J, band G``: the labels with a band of G px redrawn as hand-drawn polygons
  (``bench.bench_polygon_labels``: a vertex every 10 px, each moved by J px);
* ``unsure band U``: an unsure band left unlabeled (255) along every boundary, each class's
  pixels within U/2 of another class, given the nearest class as ``nwwatch measure`` gives
  it (:func:`nwwatch.classes.nearest_labeled`; refused as ``unsure_band_too_wide`` where
  :func:`nwwatch.classes.unsure_band_problem` says so);
* ``unsure band U, uneven``: the same with each class's depth drawn per frame between 0 and
  U px, so the band is not centred on the boundaries and the nearest class moves them by up
  to U/2.

Errors in degrees against the exact angle of the cap (the mask's own geometry differs from
it for the rim conventions, by design: they show what the convention costs); "<= 2 sigma"
is the share of valid frames within twice their stated uncertainty.

    .venv/bin/python -m bench.bench_label_bands [--per-geometry 10] [--seed 0] [--json FILE]

Run it from another checkout (``PYTHONPATH``) to compare two versions of the measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from bench.bench_contact_angle import SHAPE, real_geometry_frames
from bench.bench_polygon_labels import polygon_labels
from nwwatch.classes import (
    BACKGROUND,
    DROPLET,
    NANOWIRE,
    UNLABELED,
    nearest_labeled,
    unsure_band_problem,
)
from nwwatch.measure import MEASUREMENT_VERSION, measure_contact_angle
from nwwatch.synth.geometry import WireSpec, facet_vectors

BANDS_PX = (2, 4, 6, 8, 12, 16)
RIMS_PX = (1, 2, 3, 4)
POLYGON_JITTERS_PX = (0.7, 1.5)
POLYGON_BANDS_PX = (0, 4, 8)
POLYGON_SPACING_PX = 10.0
UNSURE_BANDS_PX = (2, 4, 8, 16)


def band(labels: np.ndarray, wire: WireSpec, width_px: float) -> np.ndarray:
    """``labels`` with a background band ``width_px`` wide centred on the facet line."""
    normal, _ = facet_vectors(wire)
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    t = (rows - wire.facet_row) * normal[0] + (cols - wire.facet_col) * normal[1]
    out = labels.copy()
    out[(out == NANOWIRE) & (t > -0.5 * width_px)] = 0
    out[(out == DROPLET) & (t < 0.5 * width_px)] = 0
    return out


def rim(labels: np.ndarray, radius_px: int, inside: bool) -> np.ndarray:
    """The droplet eroded (``inside``) or dilated into the background by ``radius_px``."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1,) * 2)
    drop = (labels == DROPLET).astype(np.uint8)
    out = labels.copy()
    if inside:
        out[(drop == 1) & (cv2.erode(drop, disc) == 0)] = 0
    else:
        out[(cv2.dilate(drop, disc) == 1) & (out == 0)] = DROPLET
    return out


def _polygons(jitter_px: float, band_px: int, rng: np.random.Generator):
    """A redraw: a band of ``band_px`` (none for 0), then hand-drawn polygons."""
    def redraw(labels: np.ndarray, wire: WireSpec) -> np.ndarray:
        banded = band(labels, wire, band_px) if band_px else labels
        return polygon_labels(banded, POLYGON_SPACING_PX, jitter_px, rng)
    return redraw


def unsure_band(labels: np.ndarray, depths_px: tuple[float, float, float]) -> np.ndarray:
    """``labels`` with the pixels of class k (background, wire, droplet) within
    ``depths_px[k]`` of another class set to 255 (unlabeled)."""
    from scipy.ndimage import distance_transform_edt

    out = labels.copy()
    for cls, depth in zip((BACKGROUND, NANOWIRE, DROPLET), depths_px, strict=True):
        inside = labels == cls
        out[inside & (distance_transform_edt(inside) <= depth)] = UNLABELED
    return out


def _unsure(width_px: float, uneven: bool, rng: np.random.Generator):
    def redraw(labels: np.ndarray, wire: WireSpec) -> np.ndarray | None:
        depths = (tuple(rng.uniform(0.0, width_px, 3)) if uneven
                  else (width_px / 2,) * 3)
        drawn = unsure_band(labels, depths)
        return None if unsure_band_problem(drawn) else nearest_labeled(drawn)
    return redraw


def _summary(errors: list[float], sigmas: list[float], codes: Counter, n: int) -> dict:
    e = np.abs(np.array(errors))
    out = {"frames": n, "valid": len(errors), "reason_codes": dict(sorted(codes.items()))}
    if len(e):
        out.update(rmse_deg=float(np.sqrt(np.mean(e**2))), median_abs_deg=float(np.median(e)),
                   max_abs_deg=float(e.max()),
                   within_2sigma=float(np.mean(e <= 2.0 * np.array(sigmas))))
    return out


def run(per_geometry: int, seed: int) -> dict:
    frames = real_geometry_frames(np.random.default_rng(seed), per_geometry)
    ways = ([(f"band {g}", lambda lab, w, g=g: band(lab, w, g)) for g in BANDS_PX]
            + [(f"inside rim {k}", lambda lab, w, k=k: rim(lab, k, True)) for k in RIMS_PX]
            + [(f"with rim {k}", lambda lab, w, k=k: rim(lab, k, False)) for k in RIMS_PX]
            + [(f"polygons {j}, band {g}", _polygons(j, g, np.random.default_rng([seed, g])))
               for j in POLYGON_JITTERS_PX for g in POLYGON_BANDS_PX]
            + [(f"unsure band {u}" + (", uneven" if uneven else ""),
                _unsure(u, uneven, np.random.default_rng([seed, 100 + u])))
               for uneven in (False, True) for u in UNSURE_BANDS_PX])
    record: dict = {"per_geometry": per_geometry, "seed": seed, "frames": len(frames),
                    "measurement_version": MEASUREMENT_VERSION, "ways": {}}
    for name, redraw in ways:
        errors, sigmas, codes, with_angle = [], [], Counter(), 0
        for _, wire, labels, truth in frames:
            drawn = redraw(labels, wire)
            if drawn is None:  # refused before the measurement
                codes["unsure_band_too_wide"] += 1
                continue
            r = measure_contact_angle(drawn)
            codes[r.reason_code] += 1
            with_angle += r.contact_angle_deg is not None
            if r.angle_valid:
                errors.append(r.contact_angle_deg - truth)
                sigmas.append(r.contact_angle_uncertainty_deg)
        record["ways"][name] = {**_summary(errors, sigmas, codes, len(frames)),
                                "with_an_angle": with_angle}
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-geometry", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    record = run(args.per_geometry, args.seed)
    record["command"] = " ".join(["python -m bench.bench_label_bands", *argv])
    for name, s in record["ways"].items():
        fig = (f"RMSE {s['rmse_deg']:.2f}, max {s['max_abs_deg']:.2f}, <= 2 sigma "
               f"{100 * s['within_2sigma']:.0f} %" if s["valid"] else "-")
        print(f"{name:22s} {s['valid']:3d}/{s['frames']} valid, {s['with_an_angle']:3d} with an "
              f"angle; {fig}; {s['reason_codes']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
