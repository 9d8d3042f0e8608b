"""The wire's reported axis and width against the generator's truth.

Two corpora, each made here with ``nwwatch synth insitu`` into ``--workdir``:

* exact labels: ``--frames`` independent frames per seed of ``--label-seeds`` (512², the
  last seed at 256²), measured from their label images alone;
* the default model's labels: ``--video-frames`` frames of a growth video per seed of
  ``--video-seeds`` (the realistic scene), segmented by the shipped model (kept in
  ``--workdir``) and measured with the droplet probability and the raw frame, as the
  service measures. A network's interface often bows into the wire; before measurement
  2.2.18 its sideways steps were fitted as side edges.

Counts the frames that give an axis, a width and a facet inclination (read against the
axis), and those more than ``--axis-deg``, ``--width-share`` and ``--inclination-deg`` off
(wire_axis_deg against the truth's, modulo 360; wire_width_px against its wire_width_px;
facet_inclination_deg against its facet_incline_deg), and keeps each row's (status,
reason_code, angle and the wire columns) to compare runs.

    python -m bench.bench_wire_columns --json bench/results/wire_columns_2.2.18.json

Run it from a copy of an earlier checkout (``PYTHONPATH=COPY``) for the code before.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import tifffile

from nwwatch.measure import MEASUREMENT_VERSION, measure_contact_angle


def synth(folder: Path, seed: int, frames: int, video: bool, size: int = 512) -> Path:
    if not (folder / "truth.parquet").exists():
        args = ["insitu", str(folder), "--frames", str(frames), "--seed", str(seed),
                "--size", str(size)] + (["--video"] if video else [])
        subprocess.run([sys.executable, "-m", "nwwatch", "synth", *args], check=True,
                       capture_output=True)
    return folder


def _labels(folder: Path, row: dict, model: bool):
    """(labels, droplet probability or None, raw frame or None) of one truth row."""
    if not model:
        return cv2.imread(str(folder / "labels" / (Path(row["file"]).stem + ".png")),
                          cv2.IMREAD_UNCHANGED), None, None
    image = tifffile.imread(folder / row["file"])
    cache = folder / "segmented" / (Path(row["file"]).stem + ".npz")
    if not cache.exists():
        from nwwatch.measure.cli import _FrameSegmenter

        labels, prob, _ = _FrameSegmenter(None)(image)
        cache.parent.mkdir(exist_ok=True)
        np.savez_compressed(cache, labels=labels, droplet=prob[2])
    z = np.load(cache)
    return z["labels"], z["droplet"], image


def score(folder: Path, model: bool, axis_deg: float, width_share: float,
          incl_deg: float) -> dict:
    out = {"frames": 0, "axis": 0, "axis_off": 0, "width": 0, "width_off": 0,
           "inclination": 0, "inclination_off": 0, "rows": []}
    for row in pq.read_table(folder / "truth.parquet").to_pylist():
        labels, droplet, image = _labels(folder, row, model)
        r = measure_contact_angle(labels, droplet, image=image)
        out["frames"] += 1
        out["rows"].append([r.status, r.reason_code, r.contact_angle_deg, r.wire_status,
                            r.wire_axis_deg, r.wire_width_px, r.facet_inclination_deg])
        if r.facet_inclination_deg is not None:  # against the wire's axis: it moves with it
            out["inclination"] += 1
            out["inclination_off"] += abs(r.facet_inclination_deg
                                          - row["facet_incline_deg"]) > incl_deg
        if r.wire_axis_deg is not None:
            out["axis"] += 1
            out["axis_off"] += abs((r.wire_axis_deg - row["wire_axis_deg"] + 180) % 360
                                   - 180) > axis_deg
        if r.wire_width_px is not None:
            out["width"] += 1
            out["width_off"] += abs(r.wire_width_px / row["wire_width_px"] - 1) > width_share
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path(__file__).parent / "out" / "wire")
    ap.add_argument("--label-seeds", type=int, nargs="*", default=[7, 9, 11, 10])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--video-seeds", type=int, nargs="*", default=[0, 21, 22])
    ap.add_argument("--video-frames", type=int, default=20)
    ap.add_argument("--axis-deg", type=float, default=10.0)
    ap.add_argument("--width-share", type=float, default=0.1)
    ap.add_argument("--inclination-deg", type=float, default=3.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    report = {"command": "python -m bench.bench_wire_columns " + " ".join(argv or sys.argv[1:]),
              "measurement_version": MEASUREMENT_VERSION, "sets": {}}
    last = args.label_seeds[-1] if args.label_seeds else None
    for seed in args.label_seeds:
        size = 256 if seed == last and len(args.label_seeds) > 1 else 512
        folder = synth(args.workdir / f"labels_{seed}_{size}", seed, args.frames, False, size)
        report["sets"][f"exact labels, seed {seed}, {size}²"] = score(
            folder, False, args.axis_deg, args.width_share, args.inclination_deg)
    for seed in args.video_seeds:
        folder = synth(args.workdir / f"video_{seed}", seed, args.video_frames, True)
        report["sets"][f"model labels, video seed {seed}"] = score(
            folder, True, args.axis_deg, args.width_share, args.inclination_deg)
    for name, s in report["sets"].items():
        print(f"{name}: {s['frames']} frames, axis {s['axis']} ({s['axis_off']} > "
              f"{args.axis_deg:g} deg off), width {s['width']} ({s['width_off']} > "
              f"{args.width_share:.0%} off), facet inclination {s['inclination']} "
              f"({s['inclination_off']} > {args.inclination_deg:g} deg off)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
