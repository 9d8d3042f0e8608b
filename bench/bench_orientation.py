"""Orientation, margins and contrast polarity: how a frame's angle through a model changes
when the frame is turned, mirrored, padded, cropped or inverted.

For each synthetic set (``nwwatch synth insitu --video``, the realistic scene, written once
under ``bench/out/orientation/sets``) every frame is measured in each of the 8 orientations of
the square's symmetry group (``id``, ``rot90``, ``rot180``, ``rot270``: ``np.rot90`` k times;
``fliplr``, ``flipud``, ``transpose``, ``antitranspose``: the four mirrors) two ways:

- ``frame``: the raw frame through the model as the service and ``nwwatch measure --model``
  do (``normalize_image``, :class:`nwwatch.segment.session.Segmenter` with one CPU thread,
  then :func:`nwwatch.measure.measure_contact_angle` with the droplet probability, the
  frame's pixel size and the raw frame);
- ``labels``: the set's exact labels measured alone (the measurement's own part).

Three more variants of each frame: ``pad64`` (64 px added on every side, drawn at random
from the frame's own background pixels at least 12 px from wire and droplet: a 512 px frame
becomes 640 px, which the model's working scale shrinks by 0.8), ``crop`` (the frame cut to
16 px beyond the objects' bounding box) and ``inverted`` (the grey values reversed,
``max(dtype) - frame``: dark vacuum and bright objects, as in HAADF/ADF-STEM; frames only).

Per set and variant: frames, valid angles (status ok / warning), mean and RMSE of the valid
angles' error against the true apparent angle, refusals by ``reason_code``, and against
``id``: frames valid in both, valid in one only (with the reason codes of the change), the
mean and largest |difference| of the pairs valid in both, how many of them differ by more
than twice their combined sigma (sqrt(sigma_id^2 + sigma^2)), and the largest side-angle
difference (a mirror's left against id's right). ``pooled`` sums the sets per variant.

Usage (one thread; about 3 minutes on one busy core, under one more the first time, to render
the sets; ``--frames N`` measures each set's first N frames only)::

    OMP_NUM_THREADS=1 python -m bench.bench_orientation nwwatch/models/insitu-default.onnx \\
        --json bench/results/orientation.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from nwwatch.classes import DROPLET
from nwwatch.io import read_frames
from nwwatch.io.dataset import read_label_image
from nwwatch.measure import measure_contact_angle
from nwwatch.normalize import normalize_image

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "orientation"
#: name -> (frames, seed, size): growth videos of the realistic scene
SETS: dict[str, tuple[int, int, int]] = {
    "video_seed0": (30, 0, 512),
    "video_seed1": (30, 1, 512),
    "video_seed2": (30, 2, 512),
    "video_seed3": (30, 3, 512),
    "video_seed2_1024": (8, 2, 1024),
}
#: name -> (array transform, whether it mirrors: left and right sides exchange)
ORIENTATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool]] = {
    "id": (lambda a: a, False),
    "rot90": (lambda a: np.rot90(a, 1), False),
    "rot180": (lambda a: np.rot90(a, 2), False),
    "rot270": (lambda a: np.rot90(a, 3), False),
    "fliplr": (lambda a: a[:, ::-1], True),
    "flipud": (lambda a: a[::-1], True),
    "transpose": (lambda a: a.T, True),
    "antitranspose": (lambda a: np.rot90(a, 2).T, True),
}
PAD_PX = 64
CROP_MARGIN_PX = 16
#: background pixels drawn for the padding lie at least this far from wire and droplet
PAD_SOURCE_DISTANCE_PX = 12.0

Rows = dict[str, dict[str, list[dict[str, Any]]]]  # way -> variant -> one row per frame


def ensure_set(name: str) -> Path:
    """The set ``name`` of :data:`SETS`, rendered once as ``nwwatch synth insitu OUT --video
    --frames N --seed S --size Z`` renders it."""
    folder = OUT / "sets" / name
    truth = folder / "truth.parquet"
    if not truth.is_file() or pq.read_metadata(truth).num_rows != SETS[name][0]:
        from nwwatch.synth import generate_insitu
        from nwwatch.synth.video import scene_options

        n_frames, seed, size = SETS[name]
        generate_insitu(folder, n_frames, video=True, seed=seed, size=size,
                        video_options=scene_options("realistic", size))
    return folder


def padded(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """The frame with :data:`PAD_PX` of its own background noise on every side, and its
    labels padded with background."""
    from scipy.ndimage import distance_transform_edt

    far = distance_transform_edt(labels == 0) >= PAD_SOURCE_DISTANCE_PX
    shape = (image.shape[0] + 2 * PAD_PX, image.shape[1] + 2 * PAD_PX)
    out = rng.choice(image[far], size=shape).astype(image.dtype)
    out[PAD_PX:-PAD_PX, PAD_PX:-PAD_PX] = image
    return out, np.pad(labels, PAD_PX)


def cropped(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame and labels cut to :data:`CROP_MARGIN_PX` beyond the objects' bounding box."""
    rows, cols = np.nonzero(labels)
    r0 = max(int(rows.min()) - CROP_MARGIN_PX, 0)
    c0 = max(int(cols.min()) - CROP_MARGIN_PX, 0)
    r1 = min(int(rows.max()) + CROP_MARGIN_PX + 1, labels.shape[0])
    c1 = min(int(cols.max()) + CROP_MARGIN_PX + 1, labels.shape[1])
    return (np.ascontiguousarray(image[r0:r1, c0:c1]),
            np.ascontiguousarray(labels[r0:r1, c0:c1]))


def inverted(image: np.ndarray) -> np.ndarray:
    """The frame's grey values reversed within its integer type (dark vacuum)."""
    top = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else image.max()
    return (top - image).astype(image.dtype)


def _rounded(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _row(result, truth_deg: float) -> dict[str, Any]:
    valid = bool(result.angle_valid)
    return {"valid": valid, "reason_code": result.reason_code,
            "angle_deg": _rounded(result.contact_angle_deg),
            "sigma_deg": _rounded(result.contact_angle_uncertainty_deg),
            "left_deg": _rounded(result.contact_angle_left_deg),
            "right_deg": _rounded(result.contact_angle_right_deg),
            "error_deg": _rounded(result.contact_angle_deg - truth_deg) if valid else None}


def run_set(folder: Path, segmenter, seed: int, limit: int | None = None) -> Rows:
    """The rows of the set in ``folder`` (its first ``limit`` frames), per way and variant."""
    truth = {Path(r["file"]).name: r for r in pq.read_table(folder / "truth.parquet").to_pylist()}
    rng = np.random.default_rng(seed)
    rows: Rows = {"frame": {}, "labels": {}}
    for name in sorted(truth)[:limit]:
        frame = read_frames(folder / name)[0]
        labels = read_label_image(folder / "labels" / (Path(name).stem + ".png"), 3)
        truth_deg = float(truth[name]["theta_apparent_deg"])
        variants = {o: (np.ascontiguousarray(turn(frame.image)),
                        np.ascontiguousarray(turn(labels)))
                    for o, (turn, _) in ORIENTATIONS.items()}
        variants["pad64"] = padded(frame.image, labels, rng)
        variants["crop"] = cropped(frame.image, labels)
        variants["inverted"] = (inverted(frame.image), None)
        for variant, (image, exact) in variants.items():
            # as the service: normalised frame in, raw frame to the measurement
            seg = segmenter.segment(normalize_image(image))
            found = measure_contact_angle(seg.labels[0], seg.probabilities[0, DROPLET],
                                          frame.pixel_size_nm, image=image)
            rows["frame"].setdefault(variant, []).append(
                {"file": name, **_row(found, truth_deg)})
            if exact is not None:
                rows["labels"].setdefault(variant, []).append(
                    {"file": name, **_row(measure_contact_angle(exact), truth_deg)})
    return rows


def summarise(rows: list[dict[str, Any]], base: list[dict[str, Any]],
              mirrored: bool) -> dict[str, Any]:
    """Scores of one variant's rows, and their agreement with ``base`` (the ``id`` rows of
    the same frames)."""
    nan = float("nan")
    pairs = list(zip(base, rows, strict=True))
    errors = np.array([r["error_deg"] for r in rows if r["valid"]], dtype=float)
    both = [(b, r) for b, r in pairs if b["valid"] and r["valid"]]
    delta = np.array([r["angle_deg"] - b["angle_deg"] for b, r in both], dtype=float)
    combined = np.array([math.hypot(b["sigma_deg"], r["sigma_deg"]) for b, r in both])
    # a mirror exchanges the sides: this variant's left is the id frame's right
    sides_of = ((("left", "right"), ("right", "left")) if mirrored
                else (("left", "left"), ("right", "right")))
    sides = [abs(r[f"{s}_deg"] - b[f"{t}_deg"]) for b, r in both for s, t in sides_of
             if r[f"{s}_deg"] is not None and b[f"{t}_deg"] is not None]
    changes = Counter(f"{b['reason_code']} -> {r['reason_code']}"
                      for b, r in pairs if b["valid"] != r["valid"])
    return {
        "frames": len(rows), "valid": int(errors.size),
        "mean_error_deg": round(float(errors.mean()), 3) if errors.size else nan,
        "rmse_deg": round(float(np.sqrt(np.mean(errors**2))), 3) if errors.size else nan,
        "max_abs_error_deg": round(float(np.abs(errors).max()), 3) if errors.size else nan,
        "reason_codes": dict(sorted(Counter(r["reason_code"] for r in rows).items())),
        "vs_id": {
            "valid_both": len(both),
            "valid_id_only": sum(b["valid"] and not r["valid"] for b, r in pairs),
            "valid_here_only": sum(r["valid"] and not b["valid"] for b, r in pairs),
            "validity_changes": dict(sorted(changes.items())),
            "mean_delta_deg": round(float(delta.mean()), 3) if delta.size else nan,
            "max_abs_delta_deg": round(float(np.abs(delta).max()), 4) if delta.size else nan,
            "max_abs_delta_over_combined_sigma": (
                round(float(np.max(np.abs(delta) / combined)), 3) if delta.size else nan),
            "beyond_2_combined_sigma": int(np.sum(np.abs(delta) > 2 * combined)),
            "max_abs_side_delta_deg": round(max(sides), 4) if sides else nan,
        },
    }


def summarise_way(by_variant: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {variant: summarise(rows, by_variant["id"],
                               ORIENTATIONS.get(variant, (None, False))[1])
            for variant, rows in by_variant.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--only", nargs="+", choices=list(SETS), default=None,
                        help="these sets of SETS (default: all)")
    parser.add_argument("--frames", type=int, default=None,
                        help="measure only each set's first N frames")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--frames-json", type=Path, default=None,
                        help="also write the per-frame rows")
    args = parser.parse_args(argv)
    from nwwatch.segment.session import Segmenter

    segmenter = Segmenter(args.model, providers=("cpu",), threads=1)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "command": "python -m bench.bench_orientation " + " ".join(argv or sys.argv[1:]),
        "model": str(args.model), "sha256": segmenter.model_sha256,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "sets": {}, "pooled": {}}
    per_set: dict[str, Rows] = {}
    for k, name in enumerate(args.only or list(SETS)):
        per_set[name] = run_set(ensure_set(name), segmenter, seed=k, limit=args.frames)
        n_frames, seed, size = SETS[name]
        report["sets"][name] = {
            "synth": f"nwwatch synth insitu OUT --video --frames {n_frames} --seed {seed} "
                     f"--size {size}",
            "measured_frames": len(per_set[name]["frame"]["id"]),
            **{way: summarise_way(by_variant) for way, by_variant in per_set[name].items()}}
        valid = {v: s["valid"] for v, s in report["sets"][name]["frame"].items()}
        print(name, json.dumps(valid), f"{time.perf_counter() - started:.0f} s", flush=True)
    for way in ("frame", "labels"):
        variants = list(dict.fromkeys(v for rows in per_set.values() for v in rows[way]))
        report["pooled"][way] = summarise_way(
            {v: [r for rows in per_set.values() for r in rows[way][v]] for v in variants})
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({v: (s["valid"], s["frames"], s["vs_id"]["beyond_2_combined_sigma"])
                      for v, s in report["pooled"]["frame"].items()}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.frames_json:
        args.frames_json.parent.mkdir(parents=True, exist_ok=True)
        args.frames_json.write_text(json.dumps(per_set, indent=1) + "\n")


if __name__ == "__main__":
    main()
