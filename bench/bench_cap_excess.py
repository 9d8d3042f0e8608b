"""Labels checked against the measured cap: droplet labels beyond it (``cap_excess_px``),
triple points inside the wire and droplet (``triple_depth_px``), and what their terms of
sigma do.

For the model's labels of the synthetic sets of :mod:`bench.bench_model_angles` (segmented
once and cached there; measured with the raw frame, as the service does) and for exact
labels (the real geometries and textbook caps of :mod:`bench.bench_contact_angle`): the
columns' values, the terms they add to sigma, and which frames each term decides — those
valid with sigma less the term (``sqrt(sigma^2 - term^2)`` <= 1.5 deg) but refused with it
— with their errors against the exact apparent angle.

Usage::

    python -m bench.bench_cap_excess nwwatch/models/insitu-default.onnx \\
        --set eval_new=EVAL_NEW --only eval_new video_new eval_a demo \\
        --json bench/results/cap_excess.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_contact_angle import GEOMETRIES, random_cap, real_wire, render
from bench.bench_model_angles import SETS, ensure_set, segmented
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.capcheck import cap_excess_sigma_deg, triple_depth_sigma_deg
from nwwatch.measure.contact_angle import MAX_UNCERTAINTY_DEG


def _frame(r, truth_deg: float) -> dict[str, Any]:
    a = r.base_half_width_px
    terms = {"cap_excess": (cap_excess_sigma_deg(r.cap_excess_px, a)
                            if r.cap_excess_px is not None else 0.0),
             "triple_depth": (triple_depth_sigma_deg(r.triple_depth_px, a)
                              if a is not None else 0.0)}
    sigma = r.contact_angle_uncertainty_deg
    out = {"status": r.status, "reason_code": r.reason_code,
           "error_deg": (r.contact_angle_deg - truth_deg
                         if r.contact_angle_deg is not None else None),
           "cap_excess_px": r.cap_excess_px, "triple_depth_px": r.triple_depth_px,
           "sigma_deg": sigma}
    for name, term in terms.items():
        without = math.sqrt(max(sigma**2 - term**2, 0.0)) if sigma is not None else None
        out[f"{name}_term_deg"] = term
        out[f"refused_by_{name}"] = (r.reason_code == "angle_uncertain" and without is not None
                                     and without <= MAX_UNCERTAINTY_DEG)
    return out


def model_sets(model: Path, names: list[str], given: dict[str, str]) -> dict[str, Any]:
    from nwwatch.segment.session import Segmenter

    segmenter = Segmenter(model, providers=("cpu",), threads=1)
    out: dict[str, Any] = {}
    for name in names:
        folder = Path(given[name]) if name in given else ensure_set(name)
        data = segmented(model, folder, name, segmenter)
        frames = []
        for i, stem in enumerate(data["stem"]):
            r = measure_contact_angle(data["labels"][i], data["prob"][i], None,
                                      image=data["image"][i])
            frames.append({"stem": str(stem), **_frame(r, float(data["angle"][i]))})
        out[name] = {"data": str(folder), "frames": len(frames),
                     "valid": sum(f["status"] in ("ok", "several_droplets") for f in frames)}
        keys = ("stem", "status", "error_deg", "cap_excess_px", "triple_depth_px",
                "sigma_deg")
        for term in ("cap_excess", "triple_depth"):
            with_term = [f for f in frames if f[f"{term}_term_deg"] > 0]
            refused = [f for f in frames if f[f"refused_by_{term}"]]
            out[name][term] = {
                "frames_with_term": len(with_term),
                "refused_by_term": [{k: f[k] for k in (*keys, f"{term}_term_deg")}
                                    for f in refused],
                "largest_terms": sorted(({k: f[k] for k in (*keys, f"{term}_term_deg")}
                                         for f in with_term),
                                        key=lambda f: -f[f"{term}_term_deg"])[:5]}
            print(f"{name}: {out[name]['valid']}/{len(frames)} valid; {term}: "
                  f"{len(with_term)} frames with a term, refused by it: "
                  + (", ".join(f"{f['stem']} ({f['error_deg']:+.1f} deg off)"
                               for f in refused) or "none"))
    return out


def exact_labels(per_geometry: int, per_bin: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    results = []
    for kind in GEOMETRIES:
        for _ in range(per_geometry):
            results.append(measure_contact_angle(render(real_wire(rng, kind))[0]))
    for a in (30.0, 45.0, 60.0, 80.0):
        for k in range(per_bin):
            wire = random_cap(rng, a, cut=k % 2 == 1)
            labels, coverage = render(wire)
            results += [measure_contact_angle(labels), measure_contact_angle(labels, coverage)]
    measured = [r for r in results if r.cap_excess_px is not None]
    depths = [r.triple_depth_px for r in measured if r.triple_depth_px is not None]
    out = {"frames": len(results), "measured": len(measured),
           "cap_excess_nonzero": sum(r.cap_excess_px > 0 for r in measured),
           "max_cap_excess_px": float(max((r.cap_excess_px for r in measured), default=0.0)),
           "cap_excess_nonzero_valid": sum(r.cap_excess_px > 0 and r.angle_valid
                                           for r in measured),
           "triple_depth_decided": len(depths),
           "max_triple_depth_px": float(max(depths, default=0.0)),
           "triple_term_nonzero": sum(triple_depth_sigma_deg(r.triple_depth_px,
                                                             r.base_half_width_px) > 0
                                      for r in measured)}
    print(f"exact labels: {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--per-geometry", type=int, default=30)
    parser.add_argument("--per-bin", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    given = dict(s.split("=", 1) for s in args.set)
    report = {"model": str(args.model),
              "sets": model_sets(args.model, args.only or list(SETS), given),
              "exact_labels": exact_labels(args.per_geometry, args.per_bin, args.seed)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
