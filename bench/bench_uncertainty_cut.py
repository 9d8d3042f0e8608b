"""What the refusal cut on 1-sigma costs and buys: valid share, RMSE, max |error| and the
share within 2 sigma at cuts of 1.5 (shipped), 2.0, 2.5 and 3.0 deg, per kind of labels.

An angle refused only as ``angle_uncertain`` keeps ``contact_angle_deg`` and
``contact_angle_uncertainty_deg`` in its row, so a lab can apply another cut itself; this
says what each cut gives. A frame is valid at cut ``c`` when it is valid as shipped (its
1-sigma is then at most 1.5) or refused as ``angle_uncertain`` with 1-sigma <= ``c``.

Label sets (``--seed``; the rule in ``bench/results/uncertainty_cut_rule.txt`` uses seed 0 to
choose and seed 1 to judge): exact labels of the 11 real geometries of
``bench/bench_contact_angle.py``; the same degraded (wiggle 1/2/3 px, blobs, holes, 2 px gap);
hand-drawn polygon labels of ``bench/bench_polygon_labels.py`` (vertex every 6/10/15/25 px,
jitter 0.7 and 1.5 px). Model labels with the raw frame, as the service measures them:
``bench/bench_model_angles.py``'s sets and cached segmentations (``--model-sets``), plus
``s304`` (60 frames of ``nwwatch synth insitu --seed 304``) and ``demonew`` (the demo's main
video, 60 frames, seed 0), generated under its ``OUT/sets`` when missing.

Usage::

    OMP_NUM_THREADS=1 python -m bench.bench_uncertainty_cut --seed 1 \\
        --model-sets eval_a demo s304 demonew --json bench/results/uncertainty_cut_seed1.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_contact_angle import DEGRADATIONS, degrade, real_geometry_frames
from bench.bench_polygon_labels import polygon_labels
from nwwatch.measure import VALID_STATUSES, measure_contact_angle

CUTS_DEG = (1.5, 2.0, 2.5, 3.0)
SPACINGS_PX = (6.0, 10.0, 15.0, 25.0)
JITTERS_PX = (0.7, 1.5)


def record(r, truth_deg: float) -> dict[str, Any]:
    """What a cut needs of one result: its status, angle, 1-sigma and the truth."""
    return {"valid": bool(r.angle_valid), "reason_code": r.reason_code,
            "angle_deg": r.contact_angle_deg, "sigma_deg": r.contact_angle_uncertainty_deg,
            "truth_deg": truth_deg}


def valid_at(rec: dict[str, Any], cut_deg: float) -> bool:
    if rec["valid"]:
        return True
    return (rec["reason_code"] == "angle_uncertain" and rec["sigma_deg"] is not None
            and rec["angle_deg"] is not None and rec["sigma_deg"] <= cut_deg)


def summary(records: list[dict[str, Any]], cut_deg: float) -> dict[str, Any]:
    kept = [r for r in records if valid_at(r, cut_deg)]
    err = np.array([r["angle_deg"] - r["truth_deg"] for r in kept], dtype=float)
    sig = np.array([r["sigma_deg"] for r in kept], dtype=float)
    nan = float("nan")
    return {"frames": len(records), "valid": len(kept),
            "valid_pct": round(100.0 * len(kept) / max(len(records), 1), 1),
            "rmse_deg": round(float(np.sqrt(np.mean(err**2))), 3) if err.size else nan,
            "max_abs_deg": round(float(np.max(np.abs(err))), 3) if err.size else nan,
            "within_2sigma_pct": (round(100.0 * float(np.mean(np.abs(err) <= 2 * sig)), 1)
                                  if err.size else nan)}


def label_sets(seed: int, per_geometry: int, per_degradation: int) -> dict[str, list]:
    """Records of the label-only sets: exact, degraded, polygon (per jitter)."""
    rng = np.random.default_rng(seed)
    frames = [frame[1:] for frame in real_geometry_frames(rng, per_geometry)]
    out: dict[str, list] = {"exact": [], "degraded": []}
    out["exact"] = [record(measure_contact_angle(labels), truth) for _, labels, truth in frames]
    spoil = np.random.default_rng([seed, 7])
    # the first per_degradation frames of every geometry (the frames come geometry by geometry)
    for k, (wire, labels, truth) in enumerate(frames):
        if k % per_geometry >= per_degradation:
            continue
        for kind in DEGRADATIONS:
            out["degraded"].append(record(measure_contact_angle(degrade(labels, wire, kind,
                                                                        spoil)), truth))
    for jitter in JITTERS_PX:
        name = f"polygon_{jitter:g}px"
        out[name] = []
        for spacing in SPACINGS_PX:
            draw = np.random.default_rng([seed, round(10 * spacing), round(10 * jitter)])
            for _, labels, truth in frames:
                out[name].append(record(measure_contact_angle(
                    polygon_labels(labels, spacing, jitter, draw)), truth))
    return out


def model_sets(names: list[str]) -> dict[str, list]:
    """Records of model labels measured with the raw frame (the service's way)."""
    from bench import bench_model_angles as bma
    from nwwatch.demo import MAIN_VIDEO
    from nwwatch.segment.session import Segmenter
    from nwwatch.service.config import DEFAULT_MODELS

    extra = {"s304": (60, 304, False, None), "demonew": (60, 0, True, dict(MAIN_VIDEO))}
    model = DEFAULT_MODELS["insitu"]
    segmenter = Segmenter(model, providers=("cpu",), threads=1)
    out = {}
    for name in names:
        _, frames = bma.score_set(bma.segmented(
            model, bma.ensure_set(name, extra.get(name)), name, segmenter))
        out[f"model_{name}"] = [
            {"valid": f["refined"]["status"] in VALID_STATUSES,
             "reason_code": f["refined"]["reason_code"],
             "angle_deg": f["refined"]["angle_deg"], "sigma_deg": f["refined"]["sigma_deg"],
             "truth_deg": f["truth_deg"]} for f in frames]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-geometry", type=int, default=20)
    parser.add_argument("--per-degradation", type=int, default=10,
                        help="frames per geometry that are degraded (each in every way)")
    parser.add_argument("--model-sets", nargs="*", default=[],
                        help="bench_model_angles sets, e.g. eval_new video_new")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sets = label_sets(args.seed, args.per_geometry, args.per_degradation)
    sets.update(model_sets(args.model_sets))
    result: dict[str, Any] = {
        "command": "python -m bench.bench_uncertainty_cut "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed, "cuts_deg": list(CUTS_DEG), "sets": {}}
    for name, records in sets.items():
        result["sets"][name] = {f"{c:g}": summary(records, c) for c in CUTS_DEG}
        for c in CUTS_DEG:
            s = result["sets"][name][f"{c:g}"]
            print(f"{name:18s} cut {c:3.1f}: valid {s['valid']:4d}/{s['frames']:4d} "
                  f"({s['valid_pct']:5.1f} %)  RMSE {s['rmse_deg']:.3f}  max "
                  f"{s['max_abs_deg']:.2f}  <=2sigma {s['within_2sigma_pct']:.1f} %", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
