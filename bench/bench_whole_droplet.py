"""Droplets larger than the network saw whole: per-frame mIoU against droplet size and scale.

For every labeled frame of each ``--set NAME=FOLDER`` (``nwwatch synth insitu`` layout with
``truth.parquet``), through :class:`nwwatch.segment.session.Segmenter` (one thread):

- the first pass alone at the frame's working scale times 1, 0.75 and 0.5 (the hypothesis:
  a droplet wider than the training crops is segmented better at a smaller scale);
- the runtime without the whole-droplet rule (``whole_droplet_radius_px`` None: what the
  runtime did before the rule) and with the model's own working scale (the rule on);
- the true droplet radius and whether the droplet is cut by the frame edge (truth table),
  the predicted droplet's equivalent radius in working pixels, whether the rule triggered,
  and the wall time of each runtime call.

Summaries per set: mean per-frame mIoU of each variant (all frames, triggered frames, frames
with a cut droplet), pooled mIoU without / with the rule, the median cost of a frame the rule
leaves alone and of one it triggers on.

``--cost-frame IMAGE`` instead times one frame (interleaved, median of ``--repeats``): the
runtime without and with the rule, and the network alone on the frame and on its 0.75 crop,
so the rule's overhead beyond the smaller pass is visible.

Usage::

    python -m bench.bench_whole_droplet nwwatch/models/insitu-default.onnx \\
        --set eval_new=/work/em/eval_new --json bench/results/working_scale_whole_droplet.json
    python -m bench.bench_whole_droplet nwwatch/models/insitu-default.onnx \
        --cost-frame /work/em/eval_new/frame_00020.tif --json OUT.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from nwwatch.io.dataset import pair_folder, read_image_2d, read_pair
from nwwatch.normalize import normalize_image
from nwwatch.segment.metrics import confusion_matrix, metrics_from_confusion
from nwwatch.segment.scale import largest_droplet_radius_px
from nwwatch.segment.session import Segmenter

SCALES = (1.0, 0.75, 0.5)


def _miou(label: np.ndarray, predicted: np.ndarray) -> float:
    return round(100 * metrics_from_confusion(confusion_matrix(label, predicted, 3)).mean_iou, 2)


def _timed(segmenter: Segmenter, image: np.ndarray) -> tuple[np.ndarray, float, list]:
    """Labels, wall ms and the input shapes of the network runs of one runtime call."""
    calls = []
    native = segmenter.segment_native
    segmenter.segment_native = lambda b, p=True: calls.append(b.shape) or native(b, p)
    try:
        started = time.perf_counter()
        labels = segmenter.segment(image, probabilities=True).labels[0]
        elapsed = 1000 * (time.perf_counter() - started)
    finally:
        segmenter.segment_native = native
    return labels, elapsed, [list(c) for c in calls]


def run_set(model: Path, folder: Path) -> list[dict[str, Any]]:
    rule = Segmenter(model, providers=("cpu",), threads=1)
    plain = Segmenter(model, providers=("cpu",), threads=1)
    plain.working_scale = dataclasses.replace(rule.working_scale, whole_droplet_radius_px=None)
    truth = {Path(r["file"]).stem: r for r in pq.read_table(folder / "truth.parquet").to_pylist()}
    rows = []
    for stem, image_path, label_path in pair_folder(folder):
        raw, label = read_pair(image_path, label_path, 3)
        image = normalize_image(raw)[None]
        factor = rule.working_scale.size_factor(*image.shape[1:])
        row: dict[str, Any] = {"file": stem, "R_px": round(float(truth[stem]["R_px"]), 1),
                               "droplet_cut": bool(truth[stem].get("droplet_cut", False))}
        for scale in SCALES:
            # The first pass alone, as the runtime runs it (resized, mapped back).
            first = rule._segment_at(image, factor * scale).labels[0]  # noqa: SLF001
            row[f"miou_scale_{scale}"] = _miou(label, first)
            if scale == 1.0:
                radius = largest_droplet_radius_px(first)
                row["predicted_radius_working_px"] = (None if radius is None
                                                      else round(radius * factor, 1))
        before, row["ms_without_rule"], passes_before = _timed(plain, image)
        after, row["ms_with_rule"], passes_after = _timed(rule, image)
        row["miou_without_rule"] = _miou(label, before)
        row["miou_with_rule"] = _miou(label, after)
        row["passes_without_rule"], row["passes_with_rule"] = passes_before, passes_after
        # The rule decided the second pass (another droplet rule may also run one).
        row["triggered"] = passes_after != passes_before
        row["confusion_without_rule"] = confusion_matrix(label, before, 3).tolist()
        row["confusion_with_rule"] = confusion_matrix(label, after, 3).tolist()
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("confusion")}),
              flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str, keep) -> float | None:
        values = [r[key] for r in rows if keep(r)]
        return round(float(np.mean(values)), 2) if values else None

    keys = [f"miou_scale_{s}" for s in SCALES] + ["miou_without_rule", "miou_with_rule"]
    groups = {"all": lambda r: True, "triggered": lambda r: r["triggered"],
              "not_triggered": lambda r: not r["triggered"],
              "droplet_cut": lambda r: r["droplet_cut"]}
    out: dict[str, Any] = {"frames": len(rows),
                           "triggered": sum(r["triggered"] for r in rows),
                           "changed_frames_not_triggered": sum(
                               r["miou_with_rule"] != r["miou_without_rule"]
                               for r in rows if not r["triggered"])}
    for name, keep in groups.items():
        out[f"mean_frame_miou_{name}"] = {k: mean(k, keep) for k in keys}
        out[f"n_{name}"] = sum(1 for r in rows if keep(r))
    for which in ("without_rule", "with_rule"):
        pooled = np.sum([r[f"confusion_{which}"] for r in rows], axis=0)
        m = metrics_from_confusion(pooled)
        out[f"pooled_{which}"] = {"miou": round(100 * m.mean_iou, 2),
                                  "iou": [round(100 * v, 2) for v in m.iou]}
    for which in ("ms_without_rule", "ms_with_rule"):
        out[f"median_{which}"] = {
            "not_triggered": median_or_none([r[which] for r in rows if not r["triggered"]]),
            "triggered": median_or_none([r[which] for r in rows if r["triggered"]])}
    out["triggered_frames"] = [
        {k: r[k] for k in ("file", "R_px", "droplet_cut", "predicted_radius_working_px",
                           "miou_without_rule", "miou_with_rule")}
        for r in rows if r["triggered"]]
    return out


def median_or_none(values: list[float]) -> float | None:
    """Median (ms) of ``values``, None when empty."""
    return round(float(np.median(values)), 1) if values else None


def cost(model: Path, image_path: Path, repeats: int) -> dict[str, Any]:
    """Median wall ms of the runtime without / with the rule and of bare network passes on
    ``image_path`` and on its top-left crop at 0.75 of the working size."""
    rule = Segmenter(model, providers=("cpu",), threads=1)
    plain = Segmenter(model, providers=("cpu",), threads=1)
    plain.working_scale = dataclasses.replace(rule.working_scale, whole_droplet_radius_px=None)
    image = normalize_image(read_image_2d(image_path))[None]
    rows, cols = (round(0.75 * n) for n in image.shape[1:])
    crop = np.ascontiguousarray(image[:, :rows, :cols])
    calls = {"runtime_without_rule": lambda: plain.segment(image),
             "runtime_with_rule": lambda: rule.segment(image),
             "network_full_frame": lambda: rule.segment_native(image),
             "network_0.75_frame": lambda: rule.segment_native(crop)}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for call in calls.values():  # warm-up
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - started))
    out = {k: round(float(np.median(v)), 1) for k, v in times.items()}
    out["rule_overhead_beyond_smaller_pass_ms"] = round(
        out["runtime_with_rule"] - out["runtime_without_rule"] - out["network_0.75_frame"], 1)
    return {"frame": str(image_path), "shape": list(image.shape[1:]), "repeats": repeats,
            "median_ms": out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--cost-frame", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.cost_frame is not None:
        result = cost(args.model, args.cost_frame, args.repeats)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return
    if not args.set:
        parser.error("give --set NAME=FOLDER (or --cost-frame IMAGE)")
    segmenter = Segmenter(args.model, providers=("cpu",), threads=1)
    report: dict[str, Any] = {"model": str(args.model), "sha256": segmenter.model_sha256,
                              "working_scale": segmenter.working_scale.to_dict(),
                              "scales": list(SCALES), "sets": {}}
    for spec in args.set:
        name, _, folder = spec.partition("=")
        rows = run_set(args.model, Path(folder))
        report["sets"][name] = {"folder": folder, "summary": summarise(rows),
                                "frames": [{k: v for k, v in r.items()
                                            if not k.startswith("confusion")} for r in rows]}
        print(name, json.dumps(report["sets"][name]["summary"], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
