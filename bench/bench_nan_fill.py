"""What NaN pixels of an in-situ frame should become before the network.

Each frame of a synthetic set (``nwwatch synth insitu`` layout with ``truth.parquet``) is
converted to float32 and given NaN pixels three ways, ``--reps`` random placements each:

- ``border``: a band 20-40 px wide along one or two sides (a drift-corrected frame);
- ``patch``: a 60 x 60 square wholly in the vacuum, 10 px or more from wire and droplet;
- ``scatter``: 0.1 % of the pixels (dead pixels of a float export).

The NaN pixels, after ``normalize_image(..., nan_fill="darkest")``, are set by each fill:
``darkest`` (-1), ``median`` (the frame's median normalised value), ``p75`` / ``p99`` (a
high percentile: the vacuum is the bright class), ``inpaint`` (``cv2.inpaint``, Telea,
radius 3, on a uint8 view) and ``nearest`` (``normalize_image``'s own ``nan_fill="nearest"``,
the runtime's); ``crop`` (border only) segments the frame cut to the rectangle with data, as
if the band were the frame's edge. Each is segmented by the model (one ORT thread) and
measured as the service measures (labels, droplet probability, raw frame with its NaN), and
compared with the same frame without NaN (``clean``): per-frame mIoU over the pixels with data
against the true labels, valid angles, validity lost and gained against the clean frame,
|angle change| of the frames valid both ways, and the classes the model gave the NaN pixels.
``clean_labels`` measures the clean frame's labels with the NaN frame: what the
measurement's own handling of NaN (docs/measurement.md step 7b) changes.

Usage (about 2.5 minutes per 30-frame set on one busy core)::

    nwwatch synth insitu /tmp/s11 --frames 30 --size 512 --seed 11
    python -m bench.bench_nan_fill nwwatch/models/insitu-default.onnx /tmp/s11 --seed 11 \\
        --json bench/results/nan_fill_seed11.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nwwatch.classes import DROPLET
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.measure import measure_contact_angle
from nwwatch.normalize import normalize_image

CONDITIONS = ("border", "patch", "scatter")
FILLS = ("darkest", "median", "p75", "p99", "inpaint", "nearest", "crop", "clean_labels")


def nan_mask(condition: str, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Where ``condition`` puts NaN on a frame with true labels ``truth`` (None: no room)."""
    h, w = truth.shape
    mask = np.zeros((h, w), bool)
    if condition == "border":
        for side in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
            width = int(rng.integers(20, 41))
            mask[[np.s_[:width], np.s_[-width:], np.s_[:, :width], np.s_[:, -width:]][side]] = True
    elif condition == "patch":
        vacuum = cv2.erode((truth == 0).astype(np.uint8), np.ones((81, 81), np.uint8),
                           borderValue=0)
        centres = np.argwhere(vacuum > 0)
        if not len(centres):
            return None
        r, c = centres[rng.integers(len(centres))]
        mask[r - 30:r + 30, c - 30:c + 30] = True
    else:
        mask = rng.random((h, w)) < 0.001
    return mask


def filled(image: np.ndarray, mask: np.ndarray, fill: str) -> np.ndarray:
    """The normalised frame with its NaN pixels (``mask``) set by ``fill``."""
    if fill == "nearest":
        return normalize_image(image, nan_fill="nearest")
    x = normalize_image(image, nan_fill="darkest")
    data = x[~mask]
    if fill == "median":
        x[mask] = np.median(data)
    elif fill in ("p75", "p99"):
        x[mask] = np.percentile(data, float(fill[1:]))
    elif fill == "inpaint":
        view = np.clip((x + 1.0) * 127.5, 0, 255).astype(np.uint8)
        painted = cv2.inpaint(view, mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        x[mask] = painted[mask].astype(np.float32) / 127.5 - 1.0
    return x


def miou(pred: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    ious = []
    for c in (0, 1, 2):
        p, t = (pred == c) & where, (truth == c) & where
        union = np.count_nonzero(p | t)
        if union:
            ious.append(np.count_nonzero(p & t) / union)
    return float(np.mean(ious))


def frame_rows(segmenter, stem: str, index: int, raw: np.ndarray, truth: np.ndarray,
               angle: float, ps: float | None, seed: int, reps: int) -> list[dict[str, Any]]:
    """The rows of one frame: clean, then each condition, placement and fill."""
    rows: list[dict[str, Any]] = []
    frame = raw.astype(np.float32)
    clean = segmenter.segment(normalize_image(frame))

    def record(condition, rep, fill, mask, seg_labels, prob, image, box=None):
        r = measure_contact_angle(seg_labels, prob, ps, image=image)
        rows.append(dict(
            stem=stem, condition=condition, rep=rep, fill=fill,
            miou=(miou(seg_labels, truth, ~mask) if box is None
                  else miou(seg_labels, truth[box], np.ones(seg_labels.shape, bool))),
            nan_labels=(np.bincount(seg_labels[mask], minlength=3).tolist() if box is None
                        else [0, 0, 0]),
            valid=bool(r.angle_valid), reason_code=r.reason_code,
            angle_deg=r.contact_angle_deg,
            error_deg=r.contact_angle_deg - angle if r.angle_valid else None))

    record("clean", 0, "clean", np.zeros(truth.shape, bool), clean.labels[0],
           clean.probabilities[0, DROPLET], frame)
    for k, condition in enumerate(CONDITIONS):
        for rep in range(reps):
            mask = nan_mask(condition, truth, np.random.default_rng([seed, index, k + 1, rep]))
            if mask is None:
                continue
            image = frame.copy()
            image[mask] = np.nan
            for fill in FILLS:
                if fill == "clean_labels":
                    record(condition, rep, fill, mask, clean.labels[0],
                           clean.probabilities[0, DROPLET], image)
                elif fill == "crop":
                    if condition != "border":
                        continue
                    rr, cc = np.flatnonzero(~mask.all(1)), np.flatnonzero(~mask.all(0))
                    box = np.s_[rr[0]:rr[-1] + 1, cc[0]:cc[-1] + 1]
                    s = segmenter.segment(normalize_image(image[box]))
                    record(condition, rep, fill, mask, s.labels[0],
                           s.probabilities[0, DROPLET], image[box], box)
                else:
                    s = segmenter.segment(filled(image, mask, fill))
                    record(condition, rep, fill, mask, s.labels[0],
                           s.probabilities[0, DROPLET], image)
    return rows


def run(model: Path, folder: Path, seed: int, reps: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    from nwwatch.segment.session import Segmenter

    segmenter = Segmenter(model, providers=("cpu",), threads=1)
    truth_rows = {Path(r["file"]).stem: r
                  for r in pq.read_table(folder / "truth.parquet").to_pylist()}
    rows = []
    pairs = pair_folder(folder)
    for i, (stem, image_path, label_path) in enumerate(pairs):
        raw, truth = read_pair(image_path, label_path, 3)
        truth = np.where(truth == 255, 0, truth).astype(np.uint8)
        row = truth_rows[stem]
        angle = float(row.get("theta_apparent_deg") or row["theta_deg"])
        ps = row.get("pixel_size_nm")
        ps = float(ps) if ps and math.isfinite(ps) and ps > 0 else None
        rows += frame_rows(segmenter, stem, i, raw, truth, angle, ps, seed, reps)
        print(f"{i + 1}/{len(pairs)} {stem}", flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    clean = {r["stem"]: r for r in rows if r["condition"] == "clean"}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["condition"] != "clean":
            groups.setdefault(f"{r['condition']}/{r['fill']}", []).append(r)
    out = {}
    for key, group in groups.items():
        d_miou = np.array([r["miou"] - clean[r["stem"]]["miou"] for r in group])
        both = [abs(r["angle_deg"] - clean[r["stem"]]["angle_deg"]) for r in group
                if r["valid"] and clean[r["stem"]]["valid"]]
        errors = np.array([r["error_deg"] for r in group if r["valid"]], dtype=float)
        nan_labels = np.sum([r["nan_labels"] for r in group], axis=0)
        out[key] = {
            "frames": len(group),
            "miou": round(float(np.mean([r["miou"] for r in group])), 4),
            "miou_change_mean": round(float(d_miou.mean()), 4),
            "miou_change_worst": round(float(d_miou.min()), 4),
            "valid": sum(r["valid"] for r in group),
            "valid_clean": sum(clean[r["stem"]]["valid"] for r in group),
            "valid_lost": sum(clean[r["stem"]]["valid"] and not r["valid"] for r in group),
            "valid_gained": sum(r["valid"] and not clean[r["stem"]]["valid"] for r in group),
            "angle_change_median_deg": round(float(np.median(both)), 3) if both else None,
            "angle_change_max_deg": round(float(np.max(both)), 3) if both else None,
            "rmse_valid_deg": round(float(np.sqrt(np.mean(errors**2))), 3)
            if errors.size else None,
            "nan_pixels_background_wire_droplet": [
                round(float(v), 3) for v in nan_labels / max(int(nan_labels.sum()), 1)],
            "reason_codes": dict(sorted(Counter(r["reason_code"] for r in group).items())),
        }
    c = list(clean.values())
    out["clean"] = {"frames": len(c), "miou": round(float(np.mean([r["miou"] for r in c])), 4),
                    "valid": sum(r["valid"] for r in c)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, required=True, help="seeds the NaN placements")
    parser.add_argument("--reps", type=int, default=3, help="placements per frame and kind")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--frames-json", type=Path, default=None,
                        help="also write every frame's rows")
    args = parser.parse_args(argv)
    rows = run(args.model, args.folder, args.seed, args.reps)
    summary = summarise(rows)
    for key, s in summary.items():
        if key == "clean":
            print(f"{key:22s} mIoU {s['miou']:.4f}  valid {s['valid']}/{s['frames']}")
            continue
        print(f"{key:22s} mIoU {s['miou']:.4f} change {s['miou_change_mean']:+.4f} "
              f"(worst {s['miou_change_worst']:+.3f})  valid {s['valid']:3d} of clean "
              f"{s['valid_clean']:3d} (lost {s['valid_lost']}, gained {s['valid_gained']})  "
              f"|d angle| median {s['angle_change_median_deg']}  NaN -> "
              f"{s['nan_pixels_background_wire_droplet']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": "python -m bench.bench_nan_fill " + " ".join(
                str(a) for a in (argv if argv is not None else sys.argv[1:])),
            "model": str(args.model), "folder": str(args.folder), "seed": args.seed,
            "reps": args.reps, "summary": summary}, indent=1) + "\n")
    if args.frames_json:
        args.frames_json.parent.mkdir(parents=True, exist_ok=True)
        args.frames_json.write_text(json.dumps(rows) + "\n")


if __name__ == "__main__":
    main()
