"""The labelling tool's round trip on synthetic frames: geometry -> masks -> training data.

For each frame (untilted, untruncated wire, no distractors: shapes the tool draws exactly), the
true geometry is written as the tool's shapes (droplet circle, wire rectangle), saved with
:func:`nwwatch.label.store.save_labeled_frame` and loaded back by the training loader
(:func:`training.data.load_folder`, what ``nwwatch train`` reads). Recorded: pixels where the
loaded label differs from the generator's label image, the error of the human angle from the
shapes against the true apparent angle, the rasterisation time.

Usage::

    python bench/bench_label_roundtrip.py --frames 20 --size 512 --record
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from label_helpers import plain_params, truth_geometry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from nwwatch.label.geometry import contact_angle
    from nwwatch.label.raster import rasterize
    from nwwatch.label.store import save_labeled_frame
    from nwwatch.synth.insitu import render_insitu_frame
    from training.data import load_folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--record", action="store_true",
                        help="write bench/results/label_roundtrip.json")
    args = parser.parse_args(argv)
    per_frame, truth_labels = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "DATA"
        for k in range(args.frames):
            params = plain_params(args.seed, k, args.size)
            image, labels, truth = render_insitu_frame(params, np.random.default_rng(k))
            geometry = truth_geometry(params)
            started = time.perf_counter()
            rasterize(geometry)
            raster_ms = (time.perf_counter() - started) * 1e3
            save_labeled_frame(data, f"frame_{k:05d}", image, geometry)
            truth_labels[f"frame_{k:05d}"] = labels
            angle = contact_angle(geometry).angle_deg
            per_frame.append({"frame": k, "raster_ms": raster_ms,
                              "angle_error_deg": angle - truth["theta_apparent_deg"]})
        loaded = {item.stem: item.label for item in load_folder(data).labeled}
    for row in per_frame:
        stem = f"frame_{row['frame']:05d}"
        row["differing_pixels"] = int(np.count_nonzero(loaded[stem] != truth_labels[stem]))
    result = {
        "bench": "python bench/bench_label_roundtrip.py " + " ".join(argv or sys.argv[1:]),
        "frames": args.frames, "size": args.size, "seed": args.seed,
        "frames_exact": sum(r["differing_pixels"] == 0 for r in per_frame),
        "max_differing_pixels": max(r["differing_pixels"] for r in per_frame),
        "max_abs_angle_error_deg": max(abs(r["angle_error_deg"]) for r in per_frame),
        "median_raster_ms": float(np.median([r["raster_ms"] for r in per_frame])),
        "per_frame": per_frame,
    }
    if args.record:
        (ROOT / "bench" / "results" / "label_roundtrip.json").write_text(
            json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_frame"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
