"""Angles from a model's labels, with and without the facet line's image refinement.

For one ONNX model: every frame of each synthetic set is segmented through the runtime
(:class:`nwwatch.segment.session.Segmenter`, one thread, as the service does) and measured
by :func:`nwwatch.measure.measure_contact_angle` twice — on the labels alone, and with the
raw frame (``image=``; the normalised frame would not do: it clips the darkest 0.5 % of the
pixels, often the droplet, which moves the step) — and scored against the set's exact
apparent angle: valid fraction, RMSE, bias, max |error| of the valid frames, the share of
valid frames with |error| <= 2 sigma, the failures by ``reason_code`` and what the
refinement did (``facet_edge``), and what the frame costs (``cost_ms``: median wall-time
difference per frame, one call each way). The true labels are measured too, as the
measurement's own floor. The real crops (``bench/data/real``: fig6 and three fig1 panels,
labels drawn by hand) give the model's angle with and without refinement next to the hand
labels' angle.

Sets (written once under ``bench/out/model_angles/sets`` with ``nwwatch.synth``, or taken
from ``--set NAME=FOLDER``): ``eval_new`` (60 frames, seed 302, the geometry variations),
``video_new`` (a 60-frame growth video, seed 303), ``eval_a`` (40 frames, seed 301) and
``demo`` (seed 0, 60 frames, ``bench.bench_demo_bias.EQUAL_LOOK``: the demo's scene with the
droplet's optics as the seed draws them, its main video until the droplet was set darker than
the wire). Segmentations are cached per model hash and
segmentation-runtime source.

Usage (one command per model; about 10 minutes on one busy core, half of it for the sets the
first time)::

    python -m bench.bench_model_angles nwwatch/models/insitu-default.onnx \\
        --json bench/results/model_angles.json
    python -m bench.bench_model_angles nwwatch/models/insitu-default.onnx --only \
        --json bench/results/model_angles_real_crops.json     # the real crops alone, seconds
    python -m bench.bench_model_angles nwwatch/models/insitu-default.onnx --flip-average \
        --only eval_new video_new --json bench/results/model_angles_flip.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_demo_bias import EQUAL_LOOK
from nwwatch.classes import DROPLET
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.measure import measure_contact_angle
from nwwatch.normalize import normalize_image

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "model_angles"
REAL = ROOT / "data" / "real"
#: name -> (frames, seed, video, video_options)
SETS: dict[str, tuple[int, int, bool, dict[str, float] | None]] = {
    "eval_new": (60, 302, False, None),
    "video_new": (60, 303, True, None),
    "eval_a": (40, 301, False, None),
    "demo": (60, 0, True, EQUAL_LOOK),
}


def ensure_set(name: str,
               spec: tuple[int, int, bool, dict[str, float] | None] | None = None) -> Path:
    """The synthetic set ``name`` of :data:`SETS` (or made from ``spec``, another bench's own
    set), generated once under ``OUT/sets``."""
    folder = OUT / "sets" / name
    if not (folder / "truth.parquet").is_file():
        from nwwatch.synth import generate_insitu

        frames, seed, video, options = spec if spec is not None else SETS[name]
        generate_insitu(folder, frames, video=video, seed=seed, size=512, video_options=options)
    return folder


def segmented(model: Path, folder: Path, name: str, segmenter) -> dict[str, np.ndarray]:
    """Raw frames (float32), predicted labels, droplet probabilities, true labels, true angles
    and pixel sizes of ``folder`` (cached per model hash and runtime source: a change to the
    segmentation runtime must not reuse labels it would no longer give)."""
    import hashlib

    import nwwatch.segment

    where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    runtime = hashlib.sha256()
    sources = sorted(Path(nwwatch.segment.__file__).parent.glob("*.py"))
    for source in [*sources, Path(nwwatch.segment.__file__).parents[1] / "normalize.py"]:
        runtime.update(source.read_bytes())
    runtime.update(repr(segmenter.working_scale).encode())  # e.g. --no-whole-droplet
    runtime.update(b"flip" if segmenter.flip_average else b"")
    cache = OUT / f"{segmenter.model_sha256[:12]}_{runtime.hexdigest()[:8]}_{name}_{where}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return dict(data)
    import pyarrow.parquet as pq

    truth = {Path(r["file"]).stem: r for r in pq.read_table(folder / "truth.parquet").to_pylist()}
    out: dict[str, list] = {k: [] for k in ("image", "labels", "prob", "truth_labels", "angle",
                                           "pixel_size_nm", "stem")}
    for stem, image_path, label_path in pair_folder(folder):
        raw, truth_labels = read_pair(image_path, label_path, 3)
        x = normalize_image(raw)
        seg = segmenter.segment(x)
        row = truth[stem]
        out["image"].append(np.asarray(raw, dtype=np.float32))  # unclipped, for the step
        out["labels"].append(seg.labels[0])
        out["prob"].append(seg.probabilities[0, DROPLET].astype(np.float32))
        out["truth_labels"].append(np.where(truth_labels == 255, 0, truth_labels).astype(np.uint8))
        out["angle"].append(float(row.get("theta_apparent_deg") or row["theta_deg"]))
        out["pixel_size_nm"].append(float(row.get("pixel_size_nm") or np.nan))
        out["stem"].append(stem)
    arrays = {k: np.asarray(v) for k, v in out.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **arrays)
    return arrays


def summarise(errors: list[float | None], sigmas: list[float | None],
              codes: list[str], edges: list[str | None]) -> dict[str, Any]:
    """Scores of one way of measuring one set (errors None for frames without a valid angle)."""
    valid = [i for i, e in enumerate(errors) if e is not None]
    e = np.array([errors[i] for i in valid], dtype=float)
    s = np.array([sigmas[i] for i in valid], dtype=float)
    nan = float("nan")
    return {
        "frames": len(errors), "valid": len(valid),
        "valid_fraction": round(len(valid) / max(len(errors), 1), 4),
        "rmse_deg": round(float(np.sqrt(np.mean(e**2))), 3) if e.size else nan,
        "bias_deg": round(float(np.mean(e)), 3) if e.size else nan,
        "median_abs_deg": round(float(np.median(np.abs(e))), 3) if e.size else nan,
        "max_abs_deg": round(float(np.max(np.abs(e))), 3) if e.size else nan,
        "within_2sigma": round(float(np.mean(np.abs(e) <= 2 * s)), 4) if e.size else nan,
        "valid_over_3deg": int(np.sum(np.abs(e) > 3.0)),
        "reason_codes": dict(sorted(Counter(codes).items())),
        "facet_edge": dict(sorted(Counter(str(x) for x in edges).items())),
    }


def score_set(data: dict[str, np.ndarray]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ways = {"labels": [], "refined": [], "truth_labels": []}
    frames = []
    cost = []  # (labels alone, with the image) wall ms per frame, timed once each
    for i, stem in enumerate(data["stem"]):
        ps = float(data["pixel_size_nm"][i])
        ps = ps if math.isfinite(ps) and ps > 0 else None
        t0 = time.perf_counter()
        plain = measure_contact_angle(data["labels"][i], data["prob"][i], ps)
        t1 = time.perf_counter()
        refined = measure_contact_angle(data["labels"][i], data["prob"][i], ps,
                                        image=data["image"][i])
        t2 = time.perf_counter()
        cost.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3))
        results = {"labels": plain, "refined": refined,
                   "truth_labels": measure_contact_angle(data["truth_labels"][i], None, ps)}
        frame = {"stem": str(stem), "truth_deg": round(float(data["angle"][i]), 3)}
        for way, r in results.items():
            err = r.contact_angle_deg - float(data["angle"][i]) if r.angle_valid else None
            ways[way].append((err, r.contact_angle_uncertainty_deg, r.reason_code, r.facet_edge))
            frame[way] = {"status": r.status, "reason_code": r.reason_code,
                          "angle_deg": r.contact_angle_deg,
                          "sigma_deg": r.contact_angle_uncertainty_deg,
                          "facet_edge": r.facet_edge, "shift_px": r.facet_edge_shift_px,
                          "snr": r.facet_edge_snr, "a_px": r.base_half_width_px}
        frames.append(frame)
    summary = {way: summarise(*map(list, zip(*rows, strict=True))) for way, rows in ways.items()}
    # The frames whose facet line the image moved, valid or not: what the move did.
    pairs = np.array([(f["labels"]["angle_deg"] - f["truth_deg"],
                       f["refined"]["angle_deg"] - f["truth_deg"]) for f in frames
                      if f["refined"]["facet_edge"] == "refined"
                      and f["labels"]["angle_deg"] is not None
                      and f["refined"]["angle_deg"] is not None]).reshape(-1, 2)
    summary["moved"] = {"frames": int(len(pairs)), **{
        f"{way}_{stat}": (round(float(fn(pairs[:, k])), 3) if len(pairs) else float("nan"))
        for k, way in enumerate(("labels", "refined"))
        for stat, fn in (("rmse_deg", lambda e: np.sqrt(np.mean(e**2))),
                         ("bias_deg", np.mean))}}
    # What the image costs: wall time per frame, the median of the per-frame differences
    # (one call each, on whatever load the machine has: state it with the figure).
    ms = np.array(cost).reshape(-1, 2)
    summary["cost_ms"] = {
        "labels_median": round(float(np.median(ms[:, 0])), 2),
        "with_image_median": round(float(np.median(ms[:, 1])), 2),
        "added_median": round(float(np.median(ms[:, 1] - ms[:, 0])), 2)}
    return summary, frames


def real_crops(segmenter) -> dict[str, Any]:
    """Angles on the real crops: model labels, with and without refinement, and the hand
    labels (their 255 'unsure' band filled with the nearest drawn class), alone and with the
    raw frame (as the service would measure labels as good as a human's)."""
    from nwwatch.classes import nearest_labeled

    out = {}
    for stem, image_path, label_path in pair_folder(REAL):
        raw, hand = read_pair(image_path, label_path, 3)
        hand = nearest_labeled(hand)
        x = normalize_image(raw)
        seg = segmenter.segment(x)
        entry = {}
        for way, r in (
                ("hand_labels", measure_contact_angle(hand)),
                ("hand_with_frame", measure_contact_angle(hand, image=raw)),
                ("model_labels", measure_contact_angle(seg.labels[0],
                                                       seg.probabilities[0, DROPLET])),
                ("model_refined", measure_contact_angle(seg.labels[0],
                                                        seg.probabilities[0, DROPLET],
                                                        image=raw))):
            entry[way] = {"status": r.status, "reason_code": r.reason_code,
                          "angle_deg": r.contact_angle_deg,
                          "sigma_deg": r.contact_angle_uncertainty_deg,
                          "facet_edge": r.facet_edge, "shift_px": r.facet_edge_shift_px,
                          "snr": r.facet_edge_snr, "triple_depth_px": r.triple_depth_px}
        out[stem] = entry
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER",
                        help="use FOLDER (with truth.parquet) for set NAME instead of "
                             "generating it")
    parser.add_argument("--only", nargs="*", default=None,
                        help="names of the sets to run (given with no names: only the real "
                             "crops)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-whole-droplet", action="store_true",
                        help="segment without the runtime's whole-droplet second pass "
                             "(its working scale's whole_droplet_radius_px set to None)")
    parser.add_argument("--flip-average", action="store_true",
                        help="segment with the softmax averaged over the frame's four mirror "
                             "images (Segmenter(flip_average=True))")
    parser.add_argument("--frames-json", type=Path, default=None,
                        help="also write the per-frame results")
    args = parser.parse_args(argv)
    from nwwatch.segment.session import Segmenter

    given = dict(s.split("=", 1) for s in args.set)
    segmenter = Segmenter(args.model, providers=("cpu",), threads=1,
                          flip_average=args.flip_average)
    if args.no_whole_droplet:
        import dataclasses

        segmenter.working_scale = dataclasses.replace(segmenter.working_scale,
                                                      whole_droplet_radius_px=None)
    report: dict[str, Any] = {"command": "python -m bench.bench_model_angles "
                                         + " ".join(argv or sys.argv[1:]),
                              "model": str(args.model), "sha256": segmenter.model_sha256,
                              "sets": {}}
    per_frame = {}
    for name in list(SETS) if args.only is None else args.only:
        folder = Path(given[name]) if name in given else ensure_set(name)
        summary, frames = score_set(segmented(args.model, folder, name, segmenter))
        report["sets"][name] = {"data": str(folder), **summary}
        per_frame[name] = frames
        for way, s in summary.items():
            if way in ("moved", "cost_ms"):
                print(f"{name:10s} {way}: {s}")
                continue
            print(f"{name:10s} {way:13s} valid {s['valid']:3d}/{s['frames']:3d}  RMSE "
                  f"{s['rmse_deg']:6.2f}  bias {s['bias_deg']:+6.2f}  max {s['max_abs_deg']:6.2f}"
                  f"  <=2sigma {100 * s['within_2sigma']:5.1f} %  edge {s['facet_edge']}",
                  flush=True)
    report["real_crops"] = real_crops(segmenter)
    for stem, entry in report["real_crops"].items():
        print(stem, "  ".join(f"{w}: {e['status']} {e['angle_deg'] or float('nan'):.1f}"
                              f"+-{e['sigma_deg'] or float('nan'):.1f} ({e['facet_edge']})"
                              for w, e in entry.items()))
    report["load_average_1_5_15_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float) + "\n")
    if args.frames_json:
        args.frames_json.parent.mkdir(parents=True, exist_ok=True)
        args.frames_json.write_text(json.dumps(per_frame, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
