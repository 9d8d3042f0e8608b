"""Small frames (256² binned cameras): is a refusal the droplet's geometry or the segmentation?

For every labeled frame of each ``--set NAME=FOLDER`` (``nwwatch synth insitu`` layout with
``truth.parquet``), one ORT thread:

- the true droplet size (truth ``a_px``, ``R_px``) and the true labels measured alone and
  with the raw frame (:func:`nwwatch.measure.measure_contact_angle`): whether a perfect
  segmentation of this frame would give a valid angle at all;
- for each runtime mode the per-frame mIoU of the model's labels and their angle measured as
  the service measures them (labels, droplet probability and raw frame) and from the labels
  alone. Modes: ``working`` (the model's own working scale: frames under ``min_frame_px`` =
  384 scaled up to it) and ``up512`` (the same with ``min_frame_px`` 512 = ``frame_px``).

Summary per set and mode: pooled and mean per-frame mIoU, valid angles (status ok / warning)
and their RMSE against the true apparent angle, refusal reasons.

Usage::

    python -m bench.bench_small_frames nwwatch/models/insitu-default.onnx \\
        --set video256=V256 --set stills256=S256 --json bench/results/small_frames.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from nwwatch.classes import nearest_labeled
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.measure import VALID_STATUSES, measure_contact_angle
from nwwatch.normalize import normalize_image
from nwwatch.segment.metrics import confusion_matrix, metrics_from_confusion
from nwwatch.segment.session import Segmenter


def _angle(labels: np.ndarray, probability: np.ndarray | None, image: np.ndarray | None,
           pixel_size_nm: float | None, truth_deg: float) -> dict[str, Any]:
    found = measure_contact_angle(labels, probability, pixel_size_nm, image=image)
    valid = found.status in VALID_STATUSES and found.contact_angle_deg is not None
    sigma = found.contact_angle_uncertainty_deg
    return {"valid": bool(valid), "reason": found.reason_code,
            "error_deg": round(found.contact_angle_deg - truth_deg, 3) if valid else None,
            "sigma_deg": None if sigma is None or not math.isfinite(sigma) else round(sigma, 3)}


def run_set(model: Path, folder: Path, modes: dict[str, int]) -> list[dict[str, Any]]:
    segmenters = {}
    for mode, min_frame in modes.items():
        seg = Segmenter(model, providers=("cpu",), threads=1)
        seg.working_scale = dataclasses.replace(seg.working_scale, min_frame_px=min_frame)
        segmenters[mode] = seg
    truth = {Path(r["file"]).stem: r for r in pq.read_table(folder / "truth.parquet").to_pylist()}
    rows = []
    for stem, image_path, label_path in pair_folder(folder):
        raw, label = read_pair(image_path, label_path, 3)
        t = truth[stem]
        angle_true = float(t.get("theta_apparent_deg", t["theta_deg"]))
        pixel = t.get("pixel_size_nm")
        exact = nearest_labeled(label)
        row: dict[str, Any] = {
            "file": stem, "a_px": round(float(t["a_px"]), 1), "R_px": round(float(t["R_px"]), 1),
            "theta_true_deg": round(angle_true, 2),
            "true_labels": _angle(exact, None, None, pixel, angle_true),
            "true_labels_with_frame": _angle(exact, None, raw, pixel, angle_true)}
        for mode, seg in segmenters.items():
            result = seg.segment(normalize_image(raw), probabilities=True)
            predicted = result.labels[0]
            confusion = confusion_matrix(label, predicted, 3)
            row[mode] = {
                "miou": round(100 * metrics_from_confusion(confusion).mean_iou, 2),
                "confusion": confusion.tolist(),
                "with_frame": _angle(predicted, result.probabilities[0, 2], raw, pixel,
                                     angle_true),
                "labels_alone": _angle(predicted, None, None, pixel, angle_true)}
        print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "confusion"}
                              if isinstance(v, dict) else v) for k, v in row.items()}),
              flush=True)
        rows.append(row)
    return rows


def _angles(items: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [i["error_deg"] for i in items if i["valid"]]
    return {"valid": len(errors), "of": len(items),
            "rmse_deg": round(math.sqrt(sum(e * e for e in errors) / len(errors)), 3)
            if errors else None,
            "refusals": dict(Counter(i["reason"] for i in items if not i["valid"]))}


def summarise(rows: list[dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "frames": len(rows),
        "a_px_range": [min(r["a_px"] for r in rows), max(r["a_px"] for r in rows)],
        "true_labels": _angles([r["true_labels"] for r in rows]),
        "true_labels_with_frame": _angles([r["true_labels_with_frame"] for r in rows])}
    for mode in modes:
        pooled = metrics_from_confusion(np.sum([r[mode]["confusion"] for r in rows], axis=0))
        out[mode] = {"pooled_miou": round(100 * pooled.mean_iou, 2),
                     "mean_frame_miou": round(float(np.mean([r[mode]["miou"] for r in rows])), 2),
                     "with_frame": _angles([r[mode]["with_frame"] for r in rows]),
                     "labels_alone": _angles([r[mode]["labels_alone"] for r in rows])}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--mode", action="append", metavar="NAME=MIN_FRAME_PX",
                        help="default: working=384 up512=512")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    modes = dict((m.split("=")[0], int(m.split("=")[1]))
                 for m in (args.mode or ["working=384", "up512=512"]))
    result: dict[str, Any] = {"model": str(args.model), "modes": modes, "sets": {}}
    for item in args.set:
        name, folder = item.split("=", 1)
        rows = run_set(args.model, Path(folder), modes)
        result["sets"][name] = {"folder": folder, "summary": summarise(rows, list(modes)),
                                "frames": rows}
        print(json.dumps({name: result["sets"][name]["summary"]}, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
