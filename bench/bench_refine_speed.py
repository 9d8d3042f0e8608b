"""CPU cost of placing the facet line on the frame's intensity step (``nwwatch.measure.refine``).

Two kinds of frame, 512x512:

1. Ideal caps: exact labels of one untilted wire with its droplet (theta 110 deg, a = 40,
   100, 200 px; ``bench.bench_contact_angle.render``) and an image made from them (wire 90,
   droplet 50, background 180 counts, blurred 1.5 px, Gaussian noise 4 counts, float32):
   a clear step along the whole interface, so every call goes through the bootstrap.
2. The bench sets of ``bench/bench_model_angles.py`` (its cached segmentations under
   bench/out/model_angles/ for the model given): the model's labels and the raw frames.

For every frame, :func:`nwwatch.measure.refine.refine_facet_line` is timed alone on the
arguments ``measure_contact_angle(image=...)`` passes it (CPU time, the fastest of
``--repeats`` calls: the least disturbed by other jobs), and the whole measurement with and
without the image (fastest of ``--repeats`` each). Medians over each set's frames.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_refine_speed \\
        [--model nwwatch/models/insitu-default.onnx] [--repeats 5] [--json FILE.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

import nwwatch.measure.contact_angle as contact_angle
from bench.bench_contact_angle import render
from nwwatch.measure import measure_contact_angle
from nwwatch.synth.geometry import WireSpec

OUT = Path("bench/out/model_angles")
CAP_A_PX = (40, 100, 200)


def ideal_cap(a_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint8) and a float32 image of an untilted 110 deg cap of base half-width a."""
    wire = WireSpec(facet_row=470.0 if a_px >= 150 else 350.0, facet_col=256.0,
                    axis_deg=90.0, radius_px=float(a_px), theta_deg=110.0)
    labels, _ = render(wire)
    image = gaussian_filter(np.choose(labels, [180.0, 90.0, 50.0]), 1.5)
    image += np.random.default_rng(a_px).normal(0.0, 4.0, labels.shape)
    return labels, image.astype(np.float32)


def _fastest_ms(call, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.process_time()
        call()
        best = min(best, time.process_time() - t0)
    return 1e3 * best


def time_frame(labels: np.ndarray, prob: np.ndarray | None, image: np.ndarray,
               repeats: int) -> dict:
    """Fastest-of-``repeats`` CPU ms of the refinement alone and of the measurement without
    and with ``image``; the refinement's status (None when the measurement did not call it)."""
    calls = []
    original = contact_angle.refine_facet_line

    def spy(*args):
        calls.append(args)
        return original(*args)

    contact_angle.refine_facet_line = spy
    try:
        measure_contact_angle(labels, prob, image=image)
    finally:
        contact_angle.refine_facet_line = original
    row = {"labels_ms": _fastest_ms(lambda: measure_contact_angle(labels, prob), repeats),
           "with_image_ms": _fastest_ms(
               lambda: measure_contact_angle(labels, prob, image=image), repeats),
           "refine_ms": None, "status": None}
    if calls:
        row["refine_ms"] = _fastest_ms(lambda: original(*calls[0]), repeats)
        row["status"] = original(*calls[0]).status
    return row


def summarise(rows: list[dict]) -> dict:
    refine = [r["refine_ms"] for r in rows if r["refine_ms"] is not None]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "frames": len(rows), "refined_calls": len(refine),
        "refine_median_ms": round(float(np.median(refine)), 3) if refine else None,
        "refine_p95_ms": round(float(np.percentile(refine, 95)), 3) if refine else None,
        "labels_median_ms": round(float(np.median([r["labels_ms"] for r in rows])), 3),
        "with_image_median_ms": round(float(np.median([r["with_image_ms"] for r in rows])), 3),
        "added_median_ms": round(float(np.median([r["with_image_ms"] - r["labels_ms"]
                                                  for r in rows])), 3),
        "refine_status": dict(sorted(statuses.items())),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("nwwatch/models/insitu-default.onnx"))
    parser.add_argument("--sets", nargs="+", default=["eval_new", "video_new", "eval_a"],
                        help="bench sets of bench_model_angles.py with a cached segmentation")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    report: dict = {"repeats": args.repeats, "load_average_start": os.getloadavg()[0],
                    "ideal_caps": {}, "bench_sets": {}}
    for a_px in CAP_A_PX:
        labels, image = ideal_cap(a_px)
        row = time_frame(labels, None, image, args.repeats)
        report["ideal_caps"][f"a={a_px}px"] = {k: (round(v, 3) if isinstance(v, float) else v)
                                               for k, v in row.items()}
        print(f"ideal cap a={a_px:3d} px: {report['ideal_caps'][f'a={a_px}px']}", flush=True)
    sha = hashlib.sha256(args.model.read_bytes()).hexdigest()[:12]
    for name in args.sets:
        caches = sorted(OUT.glob(f"{sha}_{name}_????????.npz"))
        if len(caches) != 1:
            raise SystemExit(f"{OUT}: {len(caches)} cached segmentations of set {name!r} for "
                             f"model {sha} (run bench/bench_model_angles.py first)")
        with np.load(caches[0]) as data:
            rows = [time_frame(data["labels"][i], data["prob"][i], data["image"][i],
                               args.repeats) for i in range(len(data["stem"]))]
        report["bench_sets"][name] = summarise(rows)
        print(f"{name}: {report['bench_sets'][name]}", flush=True)
    report["load_average_end"] = os.getloadavg()[0]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
