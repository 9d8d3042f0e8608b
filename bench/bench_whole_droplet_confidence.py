"""Does ``confidence`` still rank the badly segmented frames with the whole-droplet pass on?

For every labeled frame of each set (``nwwatch synth insitu`` layout, ``labels/``), through
:class:`nwwatch.segment.session.Segmenter` (one thread) with the model's working scale and
with the whole-droplet rule off: per-frame mIoU against the labels and the frame's
:func:`nwwatch.segment.confidence.band_margin` (the frame's confidence before measurement
2.2.3, with the angle taken as valid, so only the softmax counts; the whole-droplet pass
still caps this margin); Spearman rank correlation of the two, the ten lowest-confidence
and lowest-mIoU frames of each, and the triggered frames' values.

On a triggered frame the two passes' softmax and labels (the arguments of
:func:`nwwatch.segment.scale.keep_fine_boundaries`, as the runtime calls it) are recorded, and
the confidence is recomputed by each way of combining the passes in ``VARIANTS`` (the labels,
hence mIoU, are the runtime's in every variant; only the confidence changes). Per set and
variant: Spearman, each triggered frame's confidence and rank (0 = least confident, the head
of the labelling queue), and the median time of the confidence step on triggered frames.
``RUNTIME`` recomputed here must equal the runtime's own figure (checked per frame);
``BASELINE`` (the cap on every triggered frame) is what the rank check compares against.

Usage::

    python -m bench.bench_whole_droplet_confidence nwwatch/models/insitu-default.onnx \\
        eval_new=/work/em/eval_new seed304=/work/em/rescore/s304 \\
        --json bench/results/working_scale_whole_droplet_confidence_variants.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import nwwatch.segment.session as session_module
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.normalize import normalize_image
from nwwatch.segment.confidence import band_margin, cap_confidence
from nwwatch.segment.metrics import confusion_matrix, metrics_from_confusion
from nwwatch.segment.scale import CAP_DISAGREEMENT_FRACTION, passes_disagreement
from nwwatch.segment.session import Segmenter, class_argmax

#: Frames whose mIoU with the pass is below this (%) are "badly segmented" (rank check).
BAD_MIOU = 85.0


@dataclasses.dataclass
class Passes:
    """A triggered frame's two passes, float32 (C, H, W) softmax and uint8 (H, W) labels."""

    fine: np.ndarray
    coarse: np.ndarray
    fine_labels: np.ndarray
    coarse_labels: np.ndarray
    band_px: int


def _always_cap(p: Passes, merged: np.ndarray, labels: np.ndarray) -> float:
    ceiling = min(band_margin(p.fine, p.fine_labels),
                  band_margin(p.coarse, p.coarse_labels))
    return band_margin(cap_confidence(merged, labels, ceiling), labels)


def _merged(p: Passes, merged: np.ndarray, labels: np.ndarray) -> float:
    return band_margin(merged, labels)


def _disagreement(weight: float) -> Callable[[Passes, np.ndarray, np.ndarray], float]:
    def variant(p: Passes, merged: np.ndarray, labels: np.ndarray) -> float:
        d = passes_disagreement(p.fine_labels, p.coarse_labels, p.band_px)
        return band_margin(merged, labels) * max(0.0, 1.0 - weight * d)
    return variant


def _cap_if_disagree(threshold: float) -> Callable[[Passes, np.ndarray, np.ndarray], float]:
    def variant(p: Passes, merged: np.ndarray, labels: np.ndarray) -> float:
        if passes_disagreement(p.fine_labels, p.coarse_labels, p.band_px) > threshold:
            return _always_cap(p, merged, labels)
        return band_margin(merged, labels)
    return variant


def _cap_by_first(p: Passes, merged: np.ndarray, labels: np.ndarray) -> float:
    return min(band_margin(merged, labels),
               band_margin(p.fine, p.fine_labels))


#: Ways to give a triggered frame its confidence from its two passes.
VARIANTS: dict[str, Callable[[Passes, np.ndarray, np.ndarray], float]] = {
    "always_cap": _always_cap,                # cap at the lower of the two passes' values
    "merged": _merged,                        # the merged softmax as it is, no cap
    "disagree_x1": _disagreement(1.0),        # merged * (1 - d)
    "disagree_x2": _disagreement(2.0),        # merged * (1 - 2 d)
    "disagree_x4": _disagreement(4.0),        # merged * (1 - 4 d)
    "cap_if_disagree_0": _cap_if_disagree(0.0),      # always_cap only where d > 0
    "cap_if_disagree_1pct": _cap_if_disagree(CAP_DISAGREEMENT_FRACTION),  # d > 1 %: the runtime
    "cap_by_first": _cap_by_first,            # cap at the first (full-scale) pass's value
}
#: The variant :class:`Segmenter` computes, and the one every other is compared with.
RUNTIME = "cap_if_disagree_1pct"
BASELINE = "always_cap"


def _lowest(values: np.ndarray, names: list[str], n: int = 10) -> list[str]:
    return sorted(names[i] for i in np.argsort(values, kind="stable")[:n])


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable")


def _rho(miou: np.ndarray, conf: np.ndarray) -> float:
    return round(float(spearmanr(miou, conf)[0]), 3)


def score_set(on: Segmenter, off: Segmenter, folder: Path) -> dict:
    """Per-frame mIoU and confidence of ``folder`` with the pass on and off, and by variant."""
    recorded: list[Passes] = []
    original = session_module.keep_fine_boundaries

    def recording(fine, coarse, fine_labels, coarse_labels, band_px, band=None):
        # Copies: the runtime writes the merged softmax into the first pass's buffer.
        recorded.append(Passes(fine.copy(), coarse.copy(), fine_labels.copy(),
                               coarse_labels.copy(), band_px))
        return original(fine, coarse, fine_labels, coarse_labels, band_px, band=band)

    names, miou_on, conf_on, miou_off, conf_off = [], [], [], [], []
    by_variant: dict[str, list[float]] = {name: [] for name in VARIANTS}
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    triggered: list[int] = []
    disagreement: list[float] = []
    for stem, image_path, label_path in pair_folder(folder):
        image, truth = read_pair(image_path, label_path, 3)
        normalised = normalize_image(image)
        recorded.clear()
        session_module.keep_fine_boundaries = recording
        try:
            out = on.segment(normalised)
        finally:
            session_module.keep_fine_boundaries = original
        labels, probs = out.labels[0], out.probabilities[0]
        miou_on.append(100 * metrics_from_confusion(confusion_matrix(truth, labels, 3)).mean_iou)
        conf_on.append(band_margin(probs, labels))
        plain = off.segment(normalised)
        miou_off.append(100 * metrics_from_confusion(
            confusion_matrix(truth, plain.labels[0], 3)).mean_iou)
        conf_off.append(band_margin(plain.probabilities[0], plain.labels[0]))
        names.append(stem)
        if not recorded:
            for name in VARIANTS:
                by_variant[name].append(conf_on[-1])
            continue
        passes = recorded[0]
        triggered.append(len(names) - 1)
        merged = original(passes.fine, passes.coarse, passes.fine_labels, passes.coarse_labels,
                          passes.band_px)
        merged_labels = class_argmax(merged[None])[0]
        if not np.array_equal(merged_labels, labels):
            raise RuntimeError(f"{image_path}: recomputed labels differ from the runtime's")
        for name, variant in VARIANTS.items():
            start = time.perf_counter()
            value = variant(passes, merged, merged_labels)
            seconds[name].append(time.perf_counter() - start)
            by_variant[name].append(value)
        if abs(by_variant[RUNTIME][-1] - conf_on[-1]) > 1e-4:
            raise RuntimeError(f"{image_path}: {RUNTIME} recomputed {by_variant[RUNTIME][-1]} "
                               f"against the runtime's {conf_on[-1]}")
        disagreement.append(passes_disagreement(passes.fine_labels, passes.coarse_labels,
                                                passes.band_px))
    miou, miou_plain = np.array(miou_on), np.array(miou_off)
    report: dict = {"folder": str(folder), "frames": len(names), "triggered": len(triggered),
                    "spearman_rule_off": _rho(miou_plain, np.array(conf_off)),
                    "rule_off_lowest_confidence": _lowest(np.array(conf_off), names),
                    "lowest_miou": _lowest(miou, names), "variants": {}}
    ranks_baseline = _ranks(np.array(by_variant[BASELINE]))
    for name in VARIANTS:
        conf = np.array(by_variant[name])
        ranks = _ranks(conf)
        bad = [i for i in triggered if miou[i] < BAD_MIOU]
        report["variants"][name] = {
            "spearman": _rho(miou, conf),
            "lowest_confidence": _lowest(conf, names),
            "bad_triggered_rank_up": [names[i] for i in bad if ranks[i] > ranks_baseline[i]],
            "confidence_step_ms_median": round(1e3 * float(np.median(seconds[name])), 2)
            if triggered else None,
        }
    report["triggered_frames"] = [
        {"file": names[i], "miou_on": round(miou[i], 2), "miou_off": round(miou_plain[i], 2),
         "confidence_off": round(conf_off[i], 3), "rank_off": int(_ranks(np.array(conf_off))[i]),
         "outside_band_disagreement": round(disagreement[k], 4),
         **{f"confidence_{name}": round(by_variant[name][i], 3) for name in VARIANTS},
         **{f"rank_{name}": int(_ranks(np.array(by_variant[name]))[i]) for name in VARIANTS}}
        for k, i in enumerate(triggered)]
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("sets", nargs="+", help="NAME=FOLDER (a bare FOLDER is named by itself)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    on = Segmenter(args.model, providers=("cpu",), threads=1)
    off = Segmenter(args.model, providers=("cpu",), threads=1)
    off.working_scale = dataclasses.replace(on.working_scale, whole_droplet_radius_px=None)
    report: dict = {"model": str(args.model), "bad_miou_percent": BAD_MIOU, "runtime": RUNTIME,
                    "baseline": BASELINE,
                    "cap_disagreement_fraction": CAP_DISAGREEMENT_FRACTION, "sets": {}}
    for spec in args.sets:
        name, _, folder = spec.rpartition("=")
        result = score_set(on, off, Path(folder))
        report["sets"][name or folder] = result
        print(name or folder, "frames", result["frames"], "triggered", result["triggered"],
              "rule off", result["spearman_rule_off"])
        for variant, values in result["variants"].items():
            print(f"  {variant:22s} spearman {values['spearman']:.3f}  bad rank up "
                  f"{values['bad_triggered_rank_up']}  "
                  f"step {values['confidence_step_ms_median']} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
