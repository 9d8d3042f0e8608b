"""Does ``confidence`` still rank the badly segmented frames with the whole-droplet pass on?

For every labeled frame of a set (``nwwatch synth insitu`` layout, ``labels/``), through
:class:`nwwatch.segment.session.Segmenter` (one thread) with the model's working scale and
with the whole-droplet rule off: per-frame mIoU against the labels and the frame's
:func:`nwwatch.segment.confidence.frame_confidence` (angle taken as valid, so only the
softmax counts); Spearman rank correlation of the two, the ten lowest-confidence and
lowest-mIoU frames of each, and the triggered frames' values.

Usage::

    python -m bench.bench_whole_droplet_confidence nwwatch/models/insitu-default.onnx \\
        /work/em/eval_new --json bench/results/working_scale_whole_droplet_confidence.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.normalize import normalize_image
from nwwatch.segment.confidence import frame_confidence
from nwwatch.segment.metrics import confusion_matrix, metrics_from_confusion
from nwwatch.segment.session import Segmenter


def _lowest(values: np.ndarray, names: list[str], n: int = 10) -> list[str]:
    return sorted(names[i] for i in np.argsort(values, kind="stable")[:n])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    on = Segmenter(args.model, providers=("cpu",), threads=1)
    off = Segmenter(args.model, providers=("cpu",), threads=1)
    off.working_scale = dataclasses.replace(on.working_scale, whole_droplet_radius_px=None)
    names, rows = [], []
    for stem, image_path, label_path in pair_folder(args.folder):
        image, truth = read_pair(image_path, label_path, 3)
        normalised = normalize_image(image)
        row = []
        for segmenter in (on, off):
            out = segmenter.segment(normalised)
            miou = metrics_from_confusion(confusion_matrix(truth, out.labels[0], 3)).mean_iou
            row += [100 * miou, frame_confidence(out.probabilities[0], out.labels[0], True)]
        names.append(stem)
        rows.append(row)
    table = np.array(rows)
    report: dict = {"model": str(args.model), "folder": str(args.folder), "frames": len(names)}
    for way, col in (("rule_on", 0), ("rule_off", 2)):
        miou, conf = table[:, col], table[:, col + 1]
        report[way] = {"spearman_miou_confidence": round(float(spearmanr(miou, conf)[0]), 3),
                       "lowest_confidence": _lowest(conf, names),
                       "lowest_miou": _lowest(miou, names)}
        print(way, report[way])
    changed = [i for i in range(len(names)) if table[i, 1] != table[i, 3]
               or table[i, 0] != table[i, 2]]
    rank_on = np.argsort(np.argsort(table[:, 1], kind="stable"))
    rank_off = np.argsort(np.argsort(table[:, 3], kind="stable"))
    report["changed_frames"] = [
        {"file": names[i], "miou_on": round(table[i, 0], 2), "confidence_on": round(table[i, 1], 3),
         "rank_on": int(rank_on[i]), "miou_off": round(table[i, 2], 2),
         "confidence_off": round(table[i, 3], 3), "rank_off": int(rank_off[i])} for i in changed]
    for entry in report["changed_frames"]:
        print(entry)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
