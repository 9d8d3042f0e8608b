"""Elliptical facet readings checked on the raw frame: the scores for the rule in
bench/results/ellipse_image_check_rule.txt.

Per set (segmentations cached by bench/bench_model_angles.py's ``segmented``, default model,
one thread, whole-droplet pass): model labels + droplet probability + raw frame (the service
path, the bench's "refined" way): valid count, RMSE, max |error|, share within 2 sigma,
``facet_edge`` counts; on eval_new and s304 also the exact labels + raw frame on the frames
with true tilt >= 2 deg (how many read elliptical, their errors). Where the code under test
has ``nwwatch.measure.tilt._traced_rim``, every trace's bulge (k, inflated SE) is recorded
per frame ("about_line": profiles about the flat line; "about_labels": about the labels'
half ellipse).

Usage: ``python bench/ellipse_image_check.py CACHE_DIR OUT.json [NAME=FOLDER ...]``
(CACHE_DIR holds the ``*_{NAME}_*.npz`` caches, FOLDER the set's frames and truth.parquet;
the defaults are this machine's copies of the four sets; the baseline: the same with
PYTHONPATH at the base commit's code).
"""
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import nwwatch.measure
import nwwatch.measure.tilt as T
from nwwatch.measure import MEASUREMENT_VERSION, measure_contact_angle

SETS = [("s304", "/work/em/rescore/s304"), ("eval_new", "/work/em/eval_new"),
        ("eval_a", "/work/em/eval_a"), ("video_new", "/work/em/video_new")]
TRACES: list = []
if hasattr(T, "_traced_rim"):
    _orig = T._traced_rim

    def _rec(image, labels, line, foot, hc, centre):
        r = _orig(image, labels, line, foot, hc, centre)
        TRACES.append({"about": "line" if centre is None else "labels",
                       "k_px": None if r is None else round(r.k_px, 3),
                       "se_k_px": None if r is None else round(T._inflated_se_k(r), 3)})
        return r
    T._traced_rim = _rec


def summ(items):
    e = np.array([x[0] for x in items], float)
    s = np.array([x[1] for x in items], float)
    if not e.size:
        return {"valid": 0}
    return {"valid": int(e.size), "rmse_deg": round(float(np.sqrt(np.mean(e**2))), 3),
            "max_abs_deg": round(float(np.abs(e).max()), 3),
            "within_2sigma": round(float(np.mean(np.abs(e) <= 2 * s)), 4),
            "valid_over_3deg": int(np.sum(np.abs(e) > 3))}


def row(r, truth):
    return {"code": r.reason_code, "edge": r.facet_edge, "tilt_read": r.wire_tilt_deg,
            "err": round(r.contact_angle_deg - truth, 3) if r.angle_valid else None,
            "sigma": r.contact_angle_uncertainty_deg, "traces": list(TRACES)}


def main(cache: Path, out_path: Path, sets: list[tuple[str, str]]) -> None:
    out = {"code": str(Path(nwwatch.measure.__file__).parent),
           "measurement_version": MEASUREMENT_VERSION, "sets": {}, "frames": {}}
    for name, folder in sets:
        with np.load(next(cache.glob(f"*_{name}_*.npz"))) as z:
            data = dict(z)
        tilt = {Path(r["file"]).stem: float(r["tilt_deg"] or 0.0)
                for r in pq.read_table(Path(folder) / "truth.parquet").to_pylist()}
        model, exact, frames, edges, n_tilted, n_ell = [], [], [], Counter(), 0, 0
        for i, stem in enumerate(data["stem"]):
            stem, truth = str(stem), float(data["angle"][i])
            ps = float(data["pixel_size_nm"][i])
            ps = ps if math.isfinite(ps) and ps > 0 else None
            TRACES.clear()
            r = measure_contact_angle(data["labels"][i], data["prob"][i], ps,
                                      image=data["image"][i])
            edges[str(r.facet_edge)] += 1
            f = {"stem": stem, "tilt_true_deg": tilt[stem], "model": row(r, truth)}
            if r.angle_valid:
                model.append((r.contact_angle_deg - truth, r.contact_angle_uncertainty_deg))
            if tilt[stem] >= 2.0 and name in ("eval_new", "s304"):
                n_tilted += 1
                TRACES.clear()
                x = measure_contact_angle(data["truth_labels"][i], None, ps, image=data["image"][i])
                n_ell += (x.wire_tilt_deg or 0) > 0
                f["exact"] = row(x, truth)
                if x.angle_valid:
                    exact.append((x.contact_angle_deg - truth, x.contact_angle_uncertainty_deg))
            frames.append(f)
        res = {"model_image": summ(model), "facet_edge": dict(sorted(edges.items()))}
        if n_tilted:
            res["exact_image_tilt_ge_2"] = {"frames": n_tilted, "read_elliptical": int(n_ell),
                                            **summ(exact)}
        out["sets"][name] = res
        out["frames"][name] = frames
        print(name, json.dumps(res), flush=True)
    out_path.write_text(json.dumps(out, indent=0, default=float) + "\n")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]) or len(sys.argv) < 3:
        print(__doc__)
        sys.exit(0 if len(sys.argv) >= 2 and {"-h", "--help"} & set(sys.argv[1:]) else 2)
    given = dict(a.split("=", 1) for a in sys.argv[3:])
    main(Path(sys.argv[1]), Path(sys.argv[2]), list(given.items()) or SETS)
