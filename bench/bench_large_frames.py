"""What one camera-sized frame costs outside the network: 2048² and 4096² 16-bit frames.

Per size, on a frame made here (a droplet cap on a wire, Poisson-like noise, 16-bit):

* ``stretch_s``: :func:`nwwatch.normalize.stretch_to_uint8` (the display stretch of the QA
  picture, the labelling page's picture and the queue's thumbnails);
* ``measure_s``: :func:`nwwatch.measure.measure_contact_angle` of the frame's exact labels
  with the frame;
* ``overlay_s`` / ``overlay_png_s`` / ``overlay_png_mb``: :func:`nwwatch.measure.draw_overlay`
  and the PNG encoding of the QA picture as the service writes it
  (``nwwatch.io.png.PICTURE_PNG_PARAMS``);
* ``rasterize_s``: :func:`nwwatch.label.raster.rasterize` of the labelling tool's geometry
  of the frame (the droplet circle and an 11-vertex wire polygon), what each preview and save
  of the labelling page costs.

Each timing is the fastest of ``--repeats`` calls (wall clock, one thread).

Usage::

    OMP_NUM_THREADS=1 python -m bench.bench_large_frames --json bench/results/large_frames.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from nwwatch.io.png import PICTURE_PNG_PARAMS
from nwwatch.label.geometry import Circle, LabelGeometry
from nwwatch.label.raster import rasterize
from nwwatch.measure import draw_overlay, measure_contact_angle
from nwwatch.normalize import stretch_to_uint8


def scene(size: int, rng: np.random.Generator) -> tuple[np.ndarray, LabelGeometry]:
    """(uint16 frame (size, size), its geometry): a vertical wire with a wider flared foot
    and a droplet cap of 110 deg on its top facet, scaled with the frame."""
    s = size / 512.0
    half, facet_row = 60.0 * s, 260.0 * s
    centre_col = size / 2.0
    radius = half / math.sin(math.radians(110.0))
    centre_row = facet_row - radius * math.cos(math.radians(180.0 - 110.0))
    wire = ((facet_row, centre_col - half), (facet_row, centre_col + half),
            (facet_row + 80 * s, centre_col + half + 2 * s),
            (facet_row + 150 * s, centre_col + half + 8 * s),
            (facet_row + 200 * s, centre_col + half + 20 * s),
            (size + 10.0, centre_col + half + 40 * s),
            (size + 10.0, centre_col - half - 40 * s),
            (facet_row + 200 * s, centre_col - half - 20 * s),
            (facet_row + 150 * s, centre_col - half - 8 * s),
            (facet_row + 80 * s, centre_col - half - 2 * s), (facet_row, centre_col - half))
    geometry = LabelGeometry((size, size), Circle((centre_row, centre_col), radius), wire[:-1])
    labels = rasterize(geometry)
    mean = np.choose(np.where(labels == 255, 0, labels), [3000.0, 1800.0, 1200.0])
    frame = rng.normal(mean, np.sqrt(mean) * 2.0).clip(0, 65535).astype(np.uint16)
    return frame, geometry


def fastest(fn, repeats: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run(sizes: list[int], repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    record: dict = {"sizes": {}, "repeats": repeats, "seed": seed}
    for size in sizes:
        frame, geometry = scene(size, rng)
        raster_s, labels = fastest(lambda g=geometry: rasterize(g), repeats)
        labels = np.where(labels == 255, 0, labels).astype(np.uint8)
        stretch_s, _ = fastest(lambda f=frame: stretch_to_uint8(f), repeats)
        measure_s, result = fastest(
            lambda lab=labels, f=frame: measure_contact_angle(lab, image=f), repeats)
        overlay_s, picture = fastest(
            lambda f=frame, lab=labels, r=result: draw_overlay(f, lab, r), repeats)
        png_s, data = fastest(
            lambda p=picture: cv2.imencode(".png", p, PICTURE_PNG_PARAMS)[1], repeats)
        record["sizes"][str(size)] = {
            "stretch_s": round(stretch_s, 3), "measure_s": round(measure_s, 3),
            "overlay_s": round(overlay_s, 3), "overlay_png_s": round(png_s, 3),
            "overlay_png_mb": round(len(data) / 1e6, 1), "rasterize_s": round(raster_s, 3),
            "status": result.status, "contact_angle_deg": result.contact_angle_deg}
        print(size, record["sizes"][str(size)], flush=True)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    record = run(args.sizes, args.repeats, args.seed)
    record["command"] = " ".join(["python -m bench.bench_large_frames", *argv])
    record["load_average_1min"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
