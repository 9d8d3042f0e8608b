"""A volume-scope DATA folder's labeled slice normalised with its volume's range (what
``nwwatch train DATA`` does, the runtime's range) against its own range (docs/tomography.md).

For each seed: ``nwwatch synth tomogram W/sS --size 64 --seed S``; ``nwwatch train W/sS/train
--paradigm supervised --model-options '{"widths": [8, 16, 32]}' --epochs 20 --steps-per-epoch
10 --crop 64 --threads 1`` twice: as shipped, and with
:meth:`nwwatch.io.volumeranges.VolumeRanges.range_for` made to return None, so the slice is
normalised with its own range (``own_range``); each model replayed with ``nwwatch replay
W/sS/volume.tif --kind tomogram``, and the solid IoU of its mask against ``W/sS/truth.tif``
over the whole volume; and the two ranges (the labeled slice's own, the volume's 0.5 / 99.5
percentiles, :func:`nwwatch.normalize.intensity_range`).

Usage (about 20 s per seed on 2 shared cores, 3 minutes for the default seeds 0-7)::

    python -m bench.bench_volume_range --work /tmp/vr --json bench/results/volume_range.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import tifffile

from nwwatch.cli import main as cli
from nwwatch.io.volumeranges import VolumeRanges
from nwwatch.normalize import intensity_range


def _cli(args: list[str]) -> None:
    try:
        cli(args, standalone_mode=False)
    except SystemExit as stop:  # a command that ends with sys.exit(0)
        if stop.code:
            raise


def _rounded(pair: tuple[float, float]) -> list[float]:
    return [round(float(v), 3) for v in pair]


def _iou(results: Path, truth: np.ndarray) -> float:
    rows = pq.read_table(next((results / "volumes").rglob("*.parquet"))).to_pylist()
    mask = tifffile.imread(results / rows[0]["mask_path"]) > 0
    solid = truth > 0
    return float((mask & solid).sum() / max((mask | solid).sum(), 1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    rows = []
    for seed in args.seeds:
        folder = args.work / f"s{seed}"
        if not (folder / "volume.tif").is_file():
            _cli(["synth", "tomogram", str(folder), "--size", "64", "--seed", str(seed)])
        truth = tifffile.imread(folder / "truth.tif")
        labeled = next((folder / "train" / "images").glob("*.tif"))
        row: dict = {"seed": seed, "slice_own_range": _rounded(intensity_range(
                         tifffile.imread(labeled))),
                     "volume_range": _rounded(intensity_range(
                         tifffile.imread(folder / "volume.tif")))}
        for way in ("volume_range", "own_range"):
            model = args.work / f"s{seed}_{way}.onnx"
            start = time.process_time()
            if not model.is_file():
                train = ["train", str(folder / "train"), "--paradigm", "supervised",
                         "--model-options", '{"widths": [8, 16, 32]}', "--epochs", "20",
                         "--steps-per-epoch", "10", "--crop", "64", "--threads", "1",
                         "--seed", "0", "--out", str(model)]
                if way == "own_range":
                    with mock.patch.object(VolumeRanges, "range_for", lambda *a, **k: None):
                        _cli(train)
                else:
                    _cli(train)
            results = args.work / f"r{seed}_{way}"
            _cli(["replay", str(folder / "volume.tif"), "--kind", "tomogram", "--model",
                  str(model), "--out", str(results), "--force"])
            row[f"{way}_iou"] = round(_iou(results, truth), 4)
            row[f"{way}_cpu_s"] = round(time.process_time() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {
        "command": "python -m bench.bench_volume_range " + " ".join(argv or sys.argv[1:]),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
        "mean_volume_range_iou": round(float(np.mean([r["volume_range_iou"] for r in rows])), 4),
        "mean_own_range_iou": round(float(np.mean([r["own_range_iou"] for r in rows])), 4),
        "seeds_higher_with_volume_range": sum(r["volume_range_iou"] > r["own_range_iou"]
                                              for r in rows),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
