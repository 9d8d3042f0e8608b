"""Where along the interface the elliptical (tilted-wire) bulge comes from: hand-drawn polygon
labels read as an ellipse against real tilted wires' exact labels.

For every frame the last half-ellipse fit of ``tilt.facet_shape`` (``interface.rim_shift``,
at the rim chord) is refitted on its own points: as shipped (|l/a| < 0.95), without the
points within 3 or 5 px of the triple points, and within |l/a| < 0.85 (``pass``: the bulge
still meets ``tilt.facet_shape``'s evidence test, MIN_BULGE_PX and 4 inflated standard
errors). ``prof``: the mean offset of the points from the flat line (per group, its mean
removed), over the bulge, in bands of |l/a| (0-0.2, 0.2-0.4, 0.4-0.6, 0.6-0.8, 0.8-0.9,
0.9-0.95): a half ellipse rises steeply at the ends. ``bow_into_wire`` / ``bow_into_droplet``:
frames whose bulge passes the same evidence test either way (only the first is read as
tilt). ``parabola_better``: the parabola
1 - (l/a)^2 in place of the half ellipse leaves the smaller residual sum of squares.

Frames: ``bench_ellipse_labels.tilted_frames`` (exact labels, tilts 1-10 deg) and the polygon
labels of ``bench_ellipse_labels`` / ``bench_degraded_block_sigma`` (jitter 0.7 and 1.5 px,
spacing 6-25 px), in their random order.

    python -m bench.bench_bulge_ends --seed 0 [--json FILE]

The evidence test copied here predates ``tilt.MIN_RIM_REACH`` (measurement 2.2.17: the
interface must reach 0.75 of the rim half chord on both sides); it does not apply it, as
the code it was measured against did not.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

import bench.bench_degraded_block_sigma as block_sigma
import bench.bench_ellipse_labels as ellipse_labels
import nwwatch.measure.facet as facet_mod
import nwwatch.measure.tilt as tilt
from bench.bench_contact_angle import render
from bench.bench_polygon_labels import polygon_labels
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.uncertainty import correlation_factor
from nwwatch.synth.geometry import droplet_geometry

_ORIGINAL = tilt.rim_shift
_CALLS: list = []
BANDS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)
VARIANTS = {"shipped": (0.95, 0.0), "ends_3px": (0.95, 3.0), "ends_5px": (0.95, 5.0),
            "within_0.85": (0.85, 0.0)}


def _recording_rim_shift(line, iface, foot_along, half_chord):
    _CALLS.append((line, iface, foot_along, half_chord))
    return _ORIGINAL(line, iface, foot_along, half_chord)


tilt.rim_shift = _recording_rim_shift
# bench_ellipse_labels wraps facet_shape on import: measure with the shipped one.
facet_mod.facet_shape = ellipse_labels._ORIGINAL


def refit(line, iface, foot_along: float, half_chord_px: float, lat_max: float,
          ends_px: float) -> dict | None:
    """The half-ellipse fit of ``rim_shift`` on the points with |l/a| < ``lat_max`` and more
    than ``ends_px`` from the triple points."""
    pts = iface.points[line.inliers]
    grp = iface.group[line.inliers]
    along = line.along(pts)
    lat = (along - foot_along) / half_chord_px
    inside = (np.abs(lat) < lat_max) & (np.abs(along - foot_along) < half_chord_px - ends_px)
    if np.count_nonzero(inside) < 8:
        return None
    y = line.offset(pts[inside])
    cols = [grp[inside] == 0]
    if (grp[inside] == 1).any():
        cols.append(grp[inside] == 1)
    out = {}
    for shape, g in (("ellipse", np.sqrt(np.clip(1.0 - lat[inside] ** 2, 0.0, 1.0))),
                     ("parabola", 1.0 - lat[inside] ** 2)):
        design = np.column_stack([*cols, -g]).astype(np.float64)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        res = y - design @ coef
        out[shape] = (float(coef[-1]), res, design)
    k, res, design = out["ellipse"]
    cov = np.linalg.pinv(design.T @ design) * float(res @ res) / max(len(y) - design.shape[1], 1)
    se = math.sqrt(max(cov[-1, -1], 0.0) * correlation_factor(res, along[inside]))
    flat = y.copy()
    for c in cols:
        flat[c] -= flat[c].mean()
    mag = np.abs(lat[inside])
    prof = [round(float(flat[(mag >= lo) & (mag < hi)].mean()) / k, 3)
            if k > 0 and ((mag >= lo) & (mag < hi)).any() else None
            for lo, hi in zip(BANDS[:-1], BANDS[1:], strict=True)]
    return {"k_px": round(k, 3), "se_k_px": round(se, 3),
            "pass": bool(k >= max(tilt.MIN_BULGE_PX, 4.0 * se) and k < 0.5 * half_chord_px),
            "prof": prof,
            "parabola_better": bool(out["parabola"][1] @ out["parabola"][1] < res @ res)}


def frame_row(labels: np.ndarray, truth: float, name: str) -> dict:
    _CALLS.clear()
    r = measure_contact_angle(labels)
    row = {"set": name, "valid": bool(r.angle_valid), "tilt_deg": round(r.wire_tilt_deg or 0.0, 2),
           "error_deg": None if r.contact_angle_deg is None
           else round(r.contact_angle_deg - truth, 3),
           "sigma_deg": r.contact_angle_uncertainty_deg}
    if _CALLS:
        # The same evidence test for a bulge either way (a bow into the droplet is read flat).
        line, iface, foot, a = _CALLS[-1]
        fit = refit(line, iface, foot, a, 0.95, 0.0)
        if fit is not None:
            k, need = fit["k_px"], max(tilt.MIN_BULGE_PX, 4.0 * fit["se_k_px"])
            row["bulge_k_px"] = k
            row["bow"] = ("into wire" if need <= k < 0.5 * a
                          else "into droplet" if need <= -k < 0.5 * a else None)
    if row["tilt_deg"] > 0 and _CALLS:
        row["half_chord_px"] = round(a, 1)
        for name_v, (lat_max, ends) in VARIANTS.items():
            row[name_v] = refit(line, iface, foot, a, lat_max, ends)
    return row


def frames(seed: int):
    """(set name, labels, truth): tilted wires, then the polygon labels (20 per geometry)."""
    for _, labels, truth in ellipse_labels.tilted_frames(30, seed):
        yield "tilted", labels, truth
    rng = np.random.default_rng(seed)
    kinds = list(block_sigma.GEOMETRIES)
    exact = []
    for i in range(20 * len(kinds)):
        wire = block_sigma.real_wire(rng, kinds[i % len(kinds)])
        labels = render(wire)[0]
        exact.append((labels, droplet_geometry(wire).theta_apparent_deg))
        for deg in block_sigma.DEGRADATIONS:  # keep the random stream of the other benches
            block_sigma.degrade(labels, wire, deg, rng)
    for a in (30, 45, 60, 80):
        for i in range(40):
            block_sigma.random_cap(rng, a, cut=i < 6)
    for jitter in (0.7, 1.5):
        for spacing in (6, 10, 15, 25):
            draw = np.random.default_rng([seed, round(10 * spacing), round(10 * jitter)])
            for labels, truth in exact:
                yield (f"polygon jitter {jitter}", polygon_labels(labels, spacing, jitter, draw),
                       truth)


def summary(rows: list[dict]) -> dict:
    ell = [r for r in rows if r["tilt_deg"] > 0 and r.get("shipped")]
    ks = [r["bulge_k_px"] for r in rows if "bulge_k_px" in r]
    out = {"n": len(rows), "elliptical": len(ell),
           "bow_into_wire": sum(r.get("bow") == "into wire" for r in rows),
           "bow_into_droplet": sum(r.get("bow") == "into droplet" for r in rows),
           "mean_bulge_k_px": round(float(np.mean(ks)), 3) if ks else None,
           "elliptical_valid_over_2sigma": sum(
               r["valid"] and abs(r["error_deg"]) > 2 * r["sigma_deg"] for r in ell)}
    for v in VARIANTS:
        fits = [r[v] for r in ell if r.get(v)]
        out[v] = {"still_read_as_ellipse": sum(f["pass"] for f in fits),
                  "median_k_px": round(float(np.median([f["k_px"] for f in fits])), 2)
                  if fits else None}
    prof = np.array([[np.nan if p is None else p for p in r["shipped"]["prof"]] for r in ell])
    out["profile_over_k"] = [round(float(x), 2) for x in np.nanmean(prof, axis=0)] if ell else []
    out["parabola_better"] = sum(r["shipped"]["parabola_better"] for r in ell)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    rows = [frame_row(labels, truth, name) for name, labels, truth in frames(args.seed)]
    sets = {}
    for name in ("tilted", "polygon jitter 0.7", "polygon jitter 1.5"):
        sets[name] = summary([r for r in rows if r["set"] == name])
        print(name, json.dumps(sets[name]))
    if args.json:
        args.json.write_text(json.dumps(
            {"command": "python -m bench.bench_bulge_ends " + " ".join(argv), "seed": args.seed,
             "sets": sets,
             "elliptical_frames": [r for r in rows if r["tilt_deg"] > 0]},
            indent=1) + "\n")


if __name__ == "__main__":
    main()
