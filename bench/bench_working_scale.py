"""Any frame size: one in-situ model on synthetic frames rendered at several sizes.

For each size S, ``--frames`` frames of ``nwwatch synth insitu --size S --seed SEED`` (object
sizes scale with the frame: wire radius 3-30 % of S) are segmented through the runtime
(:class:`nwwatch.segment.session.Segmenter`) twice:

- ``working``: the model's working scale (:mod:`nwwatch.segment.scale`): frames larger than
  the model's frame size are scaled down, results mapped back to the frame;
- ``native``: every frame at its own size (``WorkingScale(None)``);
- ``working_no_whole_droplet``: the working scale without the second pass for droplets larger
  than the network saw whole (``whole_droplet_radius_px`` None);
- ``up384`` / ``up512``: the working scale with ``min_frame_px`` 384 / 512 (smaller frames
  scaled up to it).

Reported per size and mode (:func:`nwwatch.evaluate.evaluate_folder`): mIoU, share of
frames with a valid contact angle from the predicted labels, their RMSE and largest error
against the true apparent angle, and the runtime's milliseconds per frame (one thread).

Usage::

    python -m bench.bench_working_scale MODEL.onnx --sizes 256 512 1024 2048 --frames 12 \\
        --json bench/results/working_scale.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from nwwatch.evaluate import evaluate_folder
from nwwatch.segment.scale import WorkingScale
from nwwatch.segment.session import Segmenter
from nwwatch.synth.insitu import generate_insitu


def run(model: Path, sizes: list[int], frames: int, seed: int, work: Path,
        threads: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        folder = work / f"size{size}-seed{seed}-n{frames}"
        if not (folder / "truth.parquet").is_file():
            generate_insitu(folder, frames, seed=seed, size=size)
        own = Segmenter(model, providers=("cpu",), threads=1).working_scale
        modes = (("working", None), ("native", WorkingScale(None)),
                 ("working_no_whole_droplet",
                  dataclasses.replace(own, whole_droplet_radius_px=None)),
                 ("up384", dataclasses.replace(own, min_frame_px=384)),
                 ("up512", dataclasses.replace(own, min_frame_px=512)))
        for mode, scale in modes:
            if mode.startswith("up") and size >= int(mode[2:]):
                continue
            report = evaluate_folder(model, folder, threads=threads, working_scale=scale)
            angles = report.angles

            def clean(value: float) -> float | None:
                return None if value != value else round(value, 3)  # NaN -> null
            rows.append({
                "size_px": size, "mode": mode, "frames": frames,
                "miou": round(report.metrics.mean_iou, 4),
                "angle_valid": angles.valid if angles else None,
                "angle_rmse_deg": clean(angles.rmse_deg) if angles else None,
                "angle_max_abs_deg": clean(angles.max_abs_deg) if angles else None,
                "angle_failures": angles.failures if angles else None,
                "ms_per_frame": round(1000.0 * report.seconds_per_image, 1),
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("bench/out/working_scale"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = run(args.model, args.sizes, args.frames, args.seed, args.work, args.threads)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "seed": args.seed,
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
