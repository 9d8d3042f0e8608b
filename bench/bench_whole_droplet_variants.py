"""Ways to run a frame whose droplet is too large, or cut by the frame edge: mIoU and angles.

For the labeled frames of each ``--set NAME=FOLDER`` whose first-pass droplet is larger than
the model's ``whole_droplet_radius_px`` ("triggered") or whose droplet the truth table marks
as cut by the frame edge ("cut"), the softmax is built several ways from passes of
:class:`nwwatch.segment.session.Segmenter` (one thread) and scored: per-frame mIoU and the
contact angle measured as the service measures it (labels, droplet probability, raw frame).

- ``scale_S``: one pass at S times the working scale (1 = the first pass alone);
- ``average``: mean softmax of the passes at 1 and 0.75;
- ``band_W``: the 0.75 pass, with the first pass's softmax within W px of its class
  boundaries (:func:`nwwatch.segment.scale.keep_fine_boundaries`; W = 8 is the runtime's);
- ``pad_reflect`` / ``pad_edge``: one pass of the frame padded by 64 px on every side
  (reflected / edge values), cropped back: does context beyond a cut droplet help?

Usage::

    python -m bench.bench_whole_droplet_variants nwwatch/models/insitu-default.onnx \\
        --set eval_new=/work/em/eval_new --json bench/results/working_scale_variants.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.measure import VALID_STATUSES, measure_contact_angle
from nwwatch.normalize import normalize_image
from nwwatch.segment.metrics import confusion_matrix, metrics_from_confusion
from nwwatch.segment.scale import keep_fine_boundaries, largest_droplet_radius_px
from nwwatch.segment.session import Segmenter, class_argmax

SCALES = (1.0, 0.85, 0.75, 0.65, 0.6, 0.5)
BANDS = (2, 4, 8)
PAD_PX = 64


def _padded(segmenter: Segmenter, image: np.ndarray, mode: str) -> np.ndarray:
    padded = np.pad(image, ((0, 0), (PAD_PX, PAD_PX), (PAD_PX, PAD_PX)), mode=mode)
    probs = segmenter.segment_native(padded, True).probabilities
    return np.ascontiguousarray(probs[:, :, PAD_PX:-PAD_PX, PAD_PX:-PAD_PX])


def run_set(segmenter: Segmenter, folder: Path) -> list[dict[str, Any]]:
    truth = {Path(r["file"]).stem: r for r in pq.read_table(folder / "truth.parquet").to_pylist()}
    whole = segmenter.working_scale.whole_droplet_radius_px
    rows = []
    for stem, image_path, label_path in pair_folder(folder):
        raw, label = read_pair(image_path, label_path, 3)
        image = normalize_image(raw)[None]
        factor = segmenter.working_scale.size_factor(*image.shape[1:])
        passes = {s: segmenter._segment_at(image, factor * s)  # noqa: SLF001
                  for s in (1.0,)}
        radius = largest_droplet_radius_px(passes[1.0].labels[0])
        radius = None if radius is None else radius * factor
        t = truth[stem]
        triggered = whole is not None and radius is not None and radius > whole
        cut = bool(t.get("droplet_cut", False))
        if not (triggered or cut):
            continue
        for s in SCALES[1:]:
            passes[s] = segmenter._segment_at(image, factor * s)  # noqa: SLF001
        fine = np.asarray(passes[1.0].probabilities)[0]
        coarse = np.asarray(passes[0.75].probabilities)[0]
        variants = {f"scale_{s}": np.asarray(p.probabilities)[0] for s, p in passes.items()}
        variants["average"] = (fine + coarse) / 2
        for width in BANDS:
            variants[f"band_{width}"] = keep_fine_boundaries(
                fine, coarse, passes[1.0].labels[0], passes[0.75].labels[0],
                max(1, round(width / factor)))
        for mode in ("reflect", "edge"):
            variants[f"pad_{mode}"] = _padded(segmenter, image, mode)[0]
        true_angle = float(t.get("theta_apparent_deg") or t["theta_deg"])
        row: dict[str, Any] = {"file": stem, "R_px": round(float(t["R_px"]), 1),
                               "triggered": triggered, "droplet_cut": cut,
                               "predicted_radius_working_px": radius and round(radius, 1)}
        for name, probs in variants.items():
            labels = class_argmax(probs[None])[0]
            found = measure_contact_angle(labels, probs[2], t.get("pixel_size_nm"), image=raw)
            valid = found.status in VALID_STATUSES and found.contact_angle_deg is not None
            row[name] = {
                "miou": round(100 * metrics_from_confusion(
                    confusion_matrix(label, labels, 3)).mean_iou, 2),
                "angle_error_deg": round(found.contact_angle_deg - true_angle, 2)
                if valid else None}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = [k for k in rows[0] if isinstance(rows[0][k], dict)] if rows else []
    out: dict[str, Any] = {}
    for group, keep in (("triggered", lambda r: r["triggered"]),
                        ("droplet_cut", lambda r: r["droplet_cut"])):
        chosen = [r for r in rows if keep(r)]
        out[group] = {"frames": len(chosen)}
        for name in names:
            errors = [r[name]["angle_error_deg"] for r in chosen
                      if r[name]["angle_error_deg"] is not None]
            out[group][name] = {
                "mean_frame_miou": round(float(np.mean([r[name]["miou"] for r in chosen])), 2)
                if chosen else None,
                "angles_valid": len(errors),
                "angle_rmse_deg": round(float(np.sqrt(np.mean(np.square(errors)))), 2)
                if errors else None,
                "angle_max_abs_deg": round(float(np.max(np.abs(errors))), 2) if errors else None}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER",
                        required=True)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    segmenter = Segmenter(args.model, providers=("cpu",), threads=1)
    report: dict[str, Any] = {"model": str(args.model), "sha256": segmenter.model_sha256,
                              "working_scale": segmenter.working_scale.to_dict(), "sets": {}}
    everything = []
    for spec in args.set:
        name, _, folder = spec.partition("=")
        rows = run_set(segmenter, Path(folder))
        everything += rows
        report["sets"][name] = {"folder": folder, "summary": summarise(rows), "frames": rows}
    report["all_sets"] = summarise(everything)
    print(json.dumps(report["all_sets"], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
