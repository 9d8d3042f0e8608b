"""Peak resident memory of ``nwwatch replay --kind tomogram`` on a tiled 64 x 768 x 768
float32 volume, for the threshold model and the feature forest (docs/tomography.md, Memory).

Steps, all in ``--work``: ``nwwatch synth tomogram W/demo --size 64 --seed 0``; ``nwwatch
train --volume W/demo/volume.tif --slice 32 --labels W/demo/train/labels/slice_032.png
--candidates C`` for C in threshold, features; the volume tiled ``numpy.tile(volume, (1, 12,
12))`` and written with ``nwwatch.io.write_volume_tiff`` to W/input/big.tif; then
``/usr/bin/time -v nwwatch replay W/input/big.tif --kind tomogram --model M --out R`` with
``OMP_NUM_THREADS=1``. Records the peak
resident set ("Maximum resident set size"), wall and CPU time of each replay, the load average
before and after, and the replay's exit status.

Usage (about 5 minutes on 2 shared cores, most of it the forest's replay)::

    python -m bench.bench_tomo_memory --work /tmp/tomo_memory --json bench/results/tomo_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nwwatch.io import read_volume, write_volume_tiff

_CLI = [sys.executable, "-c",
        "import sys; from nwwatch.cli import main; sys.argv[0] = 'nwwatch'; main()"]
_TIME_FIELDS = {
    "peak_rss_kib": r"Maximum resident set size \(kbytes\): (\d+)",
    "user_s": r"User time \(seconds\): ([0-9.]+)",
    "system_s": r"System time \(seconds\): ([0-9.]+)",
    "wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)",
}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 3):
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{' '.join(args[3:])}: exit {proc.returncode}")
    return proc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--tile", type=int, default=12, help="Y and X repeats of the 64^3 volume")
    p.add_argument("--candidates", nargs="+", default=["threshold", "features"])
    args = p.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    work = args.work
    demo = work / "demo"
    if not (demo / "volume.tif").is_file():
        _run([*_CLI, "synth", "tomogram", str(demo), "--size", "64", "--seed", "0"], env)
    big = work / "input" / "big.tif"  # its own folder: replay refuses results inside it
    if not big.is_file():
        big.parent.mkdir(parents=True, exist_ok=True)
        volume = read_volume(demo / "volume.tif").data
        write_volume_tiff(big, np.tile(volume, (1, args.tile, args.tile)).astype(np.float32))
    rows = []
    for candidate in args.candidates:
        model = work / f"{candidate}.onnx"
        if not model.is_file():
            _run([*_CLI, "train", "--volume", str(demo / "volume.tif"), "--slice", "32",
                  "--labels", str(demo / "train" / "labels" / "slice_032.png"),
                  "--candidates", candidate, "--out", str(model)], env)
        out = work / f"results_{candidate}"
        load_before = os.getloadavg()
        start = time.perf_counter()
        proc = _run(["/usr/bin/time", "-v", *_CLI, "replay", str(big), "--kind", "tomogram",
                     "--model", str(model), "--out", str(out), "--force"], env)
        wall_s = time.perf_counter() - start
        row: dict = {"candidate": candidate, "model_bytes": model.stat().st_size,
                     "exit": proc.returncode, "wall_s": round(wall_s, 1),
                     "load_average_1_5_15_before": [round(x, 2) for x in load_before],
                     "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
                     "replay_last_line": proc.stdout.strip().splitlines()[-1:]}
        for key, pattern in _TIME_FIELDS.items():
            m = re.search(pattern, proc.stderr)
            row[key] = (m.group(1) if key == "wall" else float(m.group(1))) if m else None
        if row["peak_rss_kib"]:
            row["peak_rss_gib"] = round(row["peak_rss_kib"] / 2**20, 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    shape = list(read_volume(big).data.shape)
    record = {"command": "python -m bench.bench_tomo_memory " + " ".join(argv or sys.argv[1:]),
              "replay_command": "OMP_NUM_THREADS=1 /usr/bin/time -v nwwatch replay BIG.tif "
                                "--kind tomogram --model M --out R --force",
              "volume_shape_zyx": shape, "voxels": int(np.prod(shape)),
              "cpu_count": os.cpu_count(), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
