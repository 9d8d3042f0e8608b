"""CPU cost of placing the facet line on the frame's intensity step (``nwwatch.measure.refine``).

Two kinds of frame, 512x512:

1. Ideal caps: exact labels of one untilted wire with its droplet (theta 110 deg, a = 40,
   100, 200 px; ``bench.bench_contact_angle.render``) and an image made from them (wire 90,
   droplet 50, background 180 counts, blurred 1.5 px, Gaussian noise 4 counts, float32):
   a clear step along the whole interface, so every call goes through the bootstrap.
2. The bench sets of ``bench/bench_model_angles.py`` (its cached segmentations under
   bench/out/model_angles/ for the model and set folders given): the model's labels and the
   raw frames.

For every frame, :func:`nwwatch.measure.refine.refine_facet_line` is timed alone on the
arguments ``measure_contact_angle(image=...)`` passes it (CPU time, the fastest of
``--repeats`` calls: the least disturbed by other jobs), and the whole measurement with and
without the image (fastest of ``--repeats`` each). Medians over each set's frames. With
``--reference FILE`` another version of ``refine.py`` (e.g. the main branch's) is timed on
the same arguments, each call right after this one's, so both see the same load.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_refine_speed \\
        [--model nwwatch/models/insitu-default.onnx] [--repeats 5] [--json FILE.json]
        [--set NAME=FOLDER ...] [--reference /path/to/other/refine.py]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

import nwwatch.measure.facet as facet  # the module that calls refine_facet_line
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


def load_reference(path: Path):
    """``refine_facet_line`` of another copy of ``nwwatch/measure/refine.py``."""
    spec = importlib.util.spec_from_file_location("reference_refine", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference_refine"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.refine_facet_line


def time_frame(labels: np.ndarray, prob: np.ndarray | None, image: np.ndarray,
               repeats: int, reference=None) -> dict:
    """Fastest-of-``repeats`` CPU ms of the refinement alone and of the measurement without
    and with ``image``; the refinement's status (None when the measurement did not call it)."""
    calls = []
    original = facet.refine_facet_line

    def spy(*args):
        calls.append(args)
        return original(*args)

    facet.refine_facet_line = spy
    try:
        measure_contact_angle(labels, prob, image=image)
    finally:
        facet.refine_facet_line = original
    row = {"labels_ms": _fastest_ms(lambda: measure_contact_angle(labels, prob), repeats),
           "with_image_ms": _fastest_ms(
               lambda: measure_contact_angle(labels, prob, image=image), repeats),
           "refine_ms": None, "status": None}
    if calls:
        row["refine_ms"] = _fastest_ms(lambda: original(*calls[0]), repeats)
        row["status"] = original(*calls[0]).status
        if reference is not None:
            row["reference_refine_ms"] = _fastest_ms(lambda: reference(*calls[0]), repeats)
            row["reference_status"] = reference(*calls[0]).status
    return row


def summarise(rows: list[dict]) -> dict:
    refine = [r["refine_ms"] for r in rows if r["refine_ms"] is not None]
    reference = [r["reference_refine_ms"] for r in rows if "reference_refine_ms" in r]
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
        **({"reference_refine_median_ms": round(float(np.median(reference)), 3),
            "reference_refine_p95_ms": round(float(np.percentile(reference, 95)), 3),
            "reference_same_status": all(r["reference_status"] == r["status"]
                                         for r in rows if "reference_status" in r)}
           if reference else {}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("nwwatch/models/insitu-default.onnx"))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER",
                        help="a set segmented by bench_model_angles.py --set NAME=FOLDER "
                             "(default: its sets eval_new, video_new, eval_a under bench/out)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--reference", type=Path, default=None,
                        help="another refine.py to time on the same calls")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    reference = load_reference(args.reference) if args.reference else None
    report: dict = {"repeats": args.repeats, "reference": str(args.reference or ""),
                    "load_average_start": os.getloadavg()[0],
                    "ideal_caps": {}, "bench_sets": {}}
    for a_px in CAP_A_PX:
        labels, image = ideal_cap(a_px)
        row = time_frame(labels, None, image, args.repeats, reference)
        report["ideal_caps"][f"a={a_px}px"] = {k: (round(v, 3) if isinstance(v, float) else v)
                                               for k, v in row.items()}
        print(f"ideal cap a={a_px:3d} px: {report['ideal_caps'][f'a={a_px}px']}", flush=True)
    sha = hashlib.sha256(args.model.read_bytes()).hexdigest()[:12]
    sets = dict(item.split("=", 1) for item in args.set) or {
        name: str(OUT / "sets" / name) for name in ("eval_new", "video_new", "eval_a")}
    for name, folder in sets.items():
        # The cache name bench_model_angles.segmented gives this model, set and folder (any
        # runtime hash, the newest file).
        where = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:8]
        found = sorted(OUT.glob(f"{sha}_*_{name}_{where}.npz"), key=lambda p: p.stat().st_mtime)
        cache = found[-1] if found else OUT / f"{sha}_*_{name}_{where}.npz"
        if not cache.is_file():
            raise SystemExit(f"{cache}: no cached segmentation of set {name!r} ({folder}) for "
                             f"model {sha}: run bench/bench_model_angles.py with it first")
        with np.load(cache) as data:
            rows = [time_frame(data["labels"][i], data["prob"][i], data["image"][i],
                               args.repeats, reference) for i in range(len(data["stem"]))]
        report["bench_sets"][name] = summarise(rows)
        print(f"{name}: {report['bench_sets'][name]}", flush=True)
    report["load_average_end"] = os.getloadavg()[0]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
