"""Wire/droplet interface offset of an in-situ model by kind of wire geometry.

For every frame of a synthetic folder (``nwwatch synth insitu``, with truth.parquet) the
mean signed offset of the predicted interface from the true one
(:func:`nwwatch.segment.metrics.interface_offsets_px`, px, + = into the true wire), grouped
by the frame's main wire: ``tilted`` (out of the image plane), ``trunc`` (untilted, truncated
corner), ``incl`` (untilted, inclined facet), ``plain`` (untilted, neither). Frames are
segmented through the runtime (:class:`nwwatch.segment.session.Segmenter`, one thread).

Usage::

    python -m bench.bench_interface_groups MODEL.onnx DATA [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.normalize import normalize_image
from nwwatch.segment.metrics import interface_offsets_px
from nwwatch.segment.session import Segmenter


def group_of(row: dict[str, Any]) -> str:
    """Geometry group of a truth-table row."""
    if row["tilt_deg"] > 0:
        return "tilted"
    if row["truncation_px"] > 0:
        return "trunc"
    return "incl" if abs(row.get("facet_incline_deg") or 0.0) > 0 else "plain"


def run(model: Path, data: Path) -> dict[str, dict[str, float]]:
    segmenter = Segmenter(model, providers=("cpu",), threads=1)
    truth = {Path(r["file"]).stem: r for r in pq.read_table(data / "truth.parquet").to_pylist()}
    means: dict[str, list[float]] = {}
    for stem, image_path, label_path in pair_folder(data):
        image, label = read_pair(image_path, label_path, 3)
        offsets = interface_offsets_px(label, segmenter.segment(normalize_image(image)).labels[0])
        if offsets.size:
            means.setdefault(group_of(truth[stem]), []).append(float(offsets.mean()))
    return {g: {"frames": len(v), "mean_px": round(float(np.mean(v)), 2),
                "median_px": round(float(np.median(v)), 2)} for g, v in sorted(means.items())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    groups = run(args.model, args.data)
    for name, g in groups.items():
        print(f"{name:>7}: {g['frames']:3d} frames, mean {g['mean_px']:+.2f} px, "
              f"median {g['median_px']:+.2f} px")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "data": str(args.data),
                                         "groups": groups}, indent=1) + "\n")


if __name__ == "__main__":
    main()
