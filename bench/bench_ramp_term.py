"""Generator frames with their exact labels, measured with the frame: valid and within 2 sigma
with the ramp term of the facet refinement as shipped, and as measurement 2.2.14 charged it
(the centroid's first iteration, W r / (2 (1 + r))).

Usage::

    nwwatch synth insitu G --frames 400 --seed 7707
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_ramp_term G [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import nwwatch.measure.refine as refine
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.measure import measure_contact_angle
from nwwatch.normalize import normalize_image


def first_iteration_px(offsets: np.ndarray, profile: np.ndarray, sign: float,
                       jump: float) -> float:
    """The ramp term of measurement 2.2.14: the centroid's first iteration."""
    centred = offsets - offsets.mean()
    slope = float((centred * (profile - profile.mean())).sum() / (centred * centred).sum())
    ramp = max(0.0, sign * slope) * refine.WINDOW_PX / jump
    return refine.WINDOW_PX * ramp / (2.0 * (1.0 + ramp))


def score(frames: list[tuple]) -> dict[str, int]:
    """Valid frames and those within 2 sigma of the apparent true angle."""
    valid = within = 0
    for image, labels, truth_deg, pixel_size_nm in frames:
        r = measure_contact_angle(labels, None, pixel_size_nm, image=image)
        if r.angle_valid:
            valid += 1
            within += abs(r.contact_angle_deg - truth_deg) <= 2 * r.contact_angle_uncertainty_deg
    return {"valid": valid, "within_2sigma": within}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="written by nwwatch synth insitu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    truth = {Path(r["file"]).stem: r for r in
             pq.read_table(args.folder / "truth.parquet").to_pylist()}
    frames = []
    for stem, image_path, label_path in pair_folder(args.folder):
        image, labels = read_pair(image_path, label_path, 3)
        frames.append((normalize_image(image), labels, truth[stem]["theta_apparent_deg"],
                       truth[stem].get("pixel_size_nm")))
    report = {"command": "python -m bench.bench_ramp_term "
                         + " ".join(argv if argv is not None else sys.argv[1:]),
              "frames": len(frames), "shipped": score(frames)}
    shipped = refine.ramp_bias_px
    refine.ramp_bias_px = first_iteration_px
    try:
        report["first_iteration_2.2.14"] = score(frames)
    finally:
        refine.ramp_bias_px = shipped
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
