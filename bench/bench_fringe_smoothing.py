"""FRINGE_SMOOTH_PX settings over cached segmentations: service path and true labels with the frame.

Experiment code (reverted with the setting it toggles). Usage, with the segmentations cached by
``bench.bench_demo_bias.segmented`` under WORK/cache:
    python -m bench.bench_fringe_smoothing seed305 off,1.5,2,3 OUT.json
"""
import json
import sys
from pathlib import Path

import numpy as np

import nwwatch.measure.refine as rf
from nwwatch.measure import measure_contact_angle

work = Path(sys.argv[4]) if len(sys.argv) > 4 else Path("/tmp/bandwork")
names = sys.argv[1].split(",")
settings = [None if s == "off" else float(s) for s in sys.argv[2].split(",")]
out = {}
for name in names:
    (cache,) = [p for p in (work / "cache").glob(f"*_{name}_*.npz")]
    d = dict(np.load(cache))
    rows = []
    for k in range(len(d["stem"])):
        row = {"stem": str(d["stem"][k]), "truth": float(d["angle"][k])}
        for way, lab, prob in (("service", d["labels"][k], d["prob"][k]),
                               ("truth", d["truth_labels"][k], None)):
            for j, smooth in enumerate(settings):
                rf.FRINGE_SMOOTH_PX = smooth
                r = measure_contact_angle(lab, prob, image=d["image"][k])
                row[f"{way}_{j}"] = dict(
                    status=r.status, code=r.reason_code, angle=r.contact_angle_deg,
                    sigma=r.contact_angle_uncertainty_deg, edge=r.facet_edge,
                    shift=r.facet_edge_shift_px)
        rows.append(row)
    out[name] = rows
    print(name, len(rows), flush=True)
Path(sys.argv[3]).write_text(json.dumps({"settings": sys.argv[2], "sets": out}))
