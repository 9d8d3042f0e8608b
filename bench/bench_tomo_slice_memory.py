"""Peak memory of segmenting and measuring a tomogram against the area of its slices.

The memory check's constants (``nwwatch.volume.memory``) were measured on 768 x 768 px
slices, where a model call holds about a megapixel; a call never holds less than one slice
(``nwwatch.volume.runner.MAX_CALL_PIXELS``), so slices of several megapixels need far more
than their voxel count says. This bench trains a smoothed threshold, a feature forest and a
small U-Net on the 48^3 synthetic volume (``nwwatch synth tomogram``), then, in a fresh
process for each run, segments a volume of ``Z`` slices of ``side`` x ``side`` px (the
synthetic volume tiled) with ``nwwatch.volume.segment_volume`` and ``volume_metrics`` and
records the peak resident memory above what the process held before (``ru_maxrss``).

    python -m bench.bench_tomo_slice_memory --work W --json bench/results/tomo_slice_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

_RUN = """
import resource, sys, numpy as np, tifffile
from nwwatch.segment.session import Segmenter
from nwwatch.volume import segment_volume, volume_metrics
model, volume, z, side = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seg = Segmenter(model, providers=("cpu",), threads=1)
v = tifffile.imread(volume)
reps = -(-side // v.shape[1])
vol = np.ascontiguousarray(np.tile(v[20:20 + z], (1, reps, reps))[:, :side, :side],
                           dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
result = segment_volume(seg, vol)
volume_metrics(result.mask, 1.0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak - before)
"""

MODELS = {
    "smoothed-threshold": ["--candidates", "threshold"],
    "feature-forest": ["--candidates", "features"],
    "unet": ["--paradigm", "supervised", "--epochs", "1", "--steps-per-epoch", "2"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--sides", type=int, nargs="+", default=[768, 1024, 1536, 2048])
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nwwatch = [sys.executable, "-m", "nwwatch"]
    work = args.work
    demo = work / "demo"
    if not (demo / "volume.tif").is_file():
        subprocess.run([*nwwatch, "synth", "tomogram", str(demo), "--size", "48", "--seed", "0"],
                       check=True, env=env, capture_output=True)
    labels = demo / "train" / "labels" / "slice_024.png"
    runs = []
    for name, options in MODELS.items():
        model = work / f"{name}.onnx"
        if not model.is_file():
            subprocess.run([*nwwatch, "train", "--volume", str(demo / "volume.tif"), "--slice",
                            "24", "--labels", str(labels), *options, "--out", str(model)],
                           check=True, env=env, capture_output=True)
        for side in args.sides:
            out = subprocess.run([sys.executable, "-c", _RUN, str(model),
                                  str(demo / "volume.tif"), str(args.slices), str(side)],
                                 check=True, env=env, capture_output=True, text=True)
            peak = int(out.stdout.split()[-1])
            run = {"model": name, "slices": args.slices, "side_px": side,
                   "voxels": args.slices * side * side, "peak_above_bytes": peak}
            runs.append(run)
            print(json.dumps(run), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "runs": runs},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
