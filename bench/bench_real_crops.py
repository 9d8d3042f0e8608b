"""In-situ models on the real frames we have: the crops of the reference figures.

``bench/data/real`` holds fig6 (one real frame, 368 x 369 px after cropping the plot axes)
and the three panels of fig1 (119 x 124-127 px), with labels drawn by hand
(``bench/data/real/draw_labels.py``; 255 = unsure, a +-2 px band around every boundary and
fig6's coloured overlay). Few as they are, they are the only real frames in the repository.

For each model: per-image mIoU and per-class IoU, and the pooled figures over all four
(pixels of fig6 dominate the pooled numbers, so the per-image mean is reported too), through
the runtime (:class:`nwwatch.segment.session.Segmenter`, working scale included), with and
without flip averaging.

Usage::

    python -m bench.bench_real_crops nwwatch/models/insitu-default.onnx NEW.onnx \\
        --json bench/results/real_crops.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.normalize import normalize_image
from nwwatch.segment.metrics import confusion_matrix, metrics_from_confusion
from nwwatch.segment.session import Segmenter

DATA = Path(__file__).resolve().parent / "data" / "real"


def score(model: Path, data: Path, flip_average: bool,
          min_frame_px: int | None = None) -> dict[str, Any]:
    segmenter = Segmenter(model, providers=("cpu",), threads=1, flip_average=flip_average)
    if min_frame_px is not None:
        segmenter.working_scale = dataclasses.replace(segmenter.working_scale,
                                                      min_frame_px=min_frame_px)
    names = segmenter.metadata.class_names
    pooled = np.zeros((len(names), len(names)), np.int64)
    images = {}
    for stem, image_path, label_path in pair_folder(data):
        image, label = read_pair(image_path, label_path, len(names))
        predicted = segmenter.segment(normalize_image(image)).labels[0]
        confusion = confusion_matrix(label, predicted, len(names))
        pooled += confusion
        m = metrics_from_confusion(confusion)
        images[stem] = {"miou": round(m.mean_iou, 4),
                        "iou": {n: round(v, 4) for n, v in zip(names, m.iou, strict=True)}}
    m = metrics_from_confusion(pooled)
    return {"model": str(model), "sha256": segmenter.model_sha256, "flip_average": flip_average,
            "working_scale": segmenter.working_scale.to_dict(),
            "pooled_miou": round(m.mean_iou, 4),
            "pooled_iou": {n: round(v, 4) for n, v in zip(names, m.iou, strict=True)},
            "mean_image_miou": round(float(np.mean([v["miou"] for v in images.values()])), 4),
            "images": images}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--min-frame-px", type=int, nargs="*", default=[],
                        help="Also run with the working scale's min_frame_px set to these.")
    args = parser.parse_args(argv)
    rows = []
    for model in args.models:
        for smallest in (None, *args.min_frame_px):
            for flip in (False, True):
                rows.append(score(model, args.data, flip, smallest))
                r = rows[-1]
                smallest_px = r["working_scale"]["min_frame_px"]
                print(f"{model} min_frame_px={smallest_px} flip={flip}: pooled mIoU "
                      f"{r['pooled_miou']:.4f}, mean per image {r['mean_image_miou']:.4f}, "
                      + ", ".join(f"{k} {v['miou']:.3f}" for k, v in r["images"].items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
