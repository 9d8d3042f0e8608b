"""Speed and truth accuracy of the synthetic generators.

In-situ part: render time of a 512x512 frame (median over frames of different seeds),
the time per frame of ``generate_insitu`` including the TIFF/PNG writes, and how well a
geometric circle fit on the rendered *labels* recovers the true contact angle (tilt 0),
per droplet base half-width ``a``.

Run: OMP_NUM_THREADS=2 .venv/bin/python bench/bench_synth.py [--quick]   (about 1 min)
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import measure

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.synth.geometry import axis_vectors
from nwwatch.synth.insitu import frame_params, generate_insitu, render_insitu_frame
from nwwatch.synth.params import frame_rng, sample_frame_params


def _fit_circle(points: np.ndarray) -> tuple[float, float, float]:
    r, c = points[:, 0], points[:, 1]
    sol, *_ = np.linalg.lstsq(np.column_stack([r, c, np.ones_like(r)]), r**2 + c**2, rcond=None)
    cr, cc = sol[0] / 2, sol[1] / 2
    rad = math.sqrt(sol[2] + cr**2 + cc**2)
    for _ in range(50):
        dr, dc = r - cr, c - cc
        dist = np.hypot(dr, dc)
        jac = np.column_stack([-dr / dist, -dc / dist, -np.ones_like(dist)])
        step, *_ = np.linalg.lstsq(jac, rad - dist, rcond=None)
        cr, cc, rad = cr + step[0], cc + step[1], rad + step[2]
        if np.abs(step).max() < 1e-10:
            break
    return cr, cc, rad


def _theta_from_labels(labels: np.ndarray, truth: dict) -> float:
    contours = measure.find_contours(np.pad((labels == DROPLET).astype(float), 1), 0.5)
    pts = np.concatenate(contours) - 1.0
    wire_near = cv2.dilate((labels == NANOWIRE).astype(np.uint8), np.ones((5, 5), np.uint8))
    (d_row, d_col), _ = axis_vectors(truth["wire_axis_deg"])
    height = (pts[:, 0] - truth["facet_row"]) * d_row + (pts[:, 1] - truth["facet_col"]) * d_col
    h, w = labels.shape
    ri = np.clip(np.rint(pts[:, 0]).astype(int), 0, h - 1)
    ci = np.clip(np.rint(pts[:, 1]).astype(int), 0, w - 1)
    keep = (height > 2) & (wire_near[ri, ci] == 0) & (pts[:, 0] > 1) & (pts[:, 0] < h - 2) \
        & (pts[:, 1] > 1) & (pts[:, 1] < w - 2)
    cr, cc, rad = _fit_circle(pts[keep])
    s = (cr - truth["facet_row"]) * d_row + (cc - truth["facet_col"]) * d_col
    return math.degrees(math.acos(max(-1.0, min(1.0, -s / rad))))


def bench_insitu(quick: bool = False) -> None:
    n = 4 if quick else 12
    params = [frame_params(100, k, 512) for k in range(n)]
    render_insitu_frame(params[0], frame_rng(100, 0, 2))  # warm-up (imports, FFT plans)
    times, cpu = [], []
    for k, p in enumerate(params):
        start, start_cpu = time.perf_counter(), time.process_time()
        render_insitu_frame(p, frame_rng(100, k, 2))
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    # CPU time is the fairer number on a shared machine (the renderer is single-threaded
    # apart from numpy internals).
    print(f"insitu render 512x512 (S={params[0].supersample}): wall median "
          f"{statistics.median(times) * 1e3:.0f} ms (max {max(times) * 1e3:.0f}), CPU median "
          f"{statistics.median(cpu) * 1e3:.0f} ms (max {max(cpu) * 1e3:.0f}) over {n} frames")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_insitu(Path(tmp), n // 2, seed=5, size=512)
        per = (time.perf_counter() - start) / (n // 2)
        print(f"generate_insitu 512x512 with writes: {per * 1e3:.0f} ms/frame")
        start = time.perf_counter()
        generate_insitu(Path(tmp) / "v", n // 2, seed=5, size=512, video=True)
        per = (time.perf_counter() - start) / (n // 2)
        print(f"generate_insitu --video 512x512 with writes: {per * 1e3:.0f} ms/frame")

    rng = np.random.default_rng(0)
    for a_px in (15.0, 30.0, 60.0):
        errors = []
        for _ in range(4 if quick else 10):
            # The textbook geometry: the fit's heights run along the wire axis, which is the
            # facet normal only for an uninclined facet on a straight wire of radius a.
            p = sample_frame_params(rng, 384, theta_deg=float(rng.uniform(90, 140)),
                                    a_px=a_px, tilt_deg=0.0, truncation_px=0.0,
                                    droplet_cut=False, n_distractors=0, scale_bar=False,
                                    placement="centred", facet_incline_deg=0.0,
                                    wire_profile="straight", base_ratio=1.0)
            _, labels, truth = render_insitu_frame(p, rng)
            errors.append(_theta_from_labels(labels, truth) - truth["theta_deg"])
        rms = math.sqrt(statistics.fmean(e * e for e in errors))
        print(f"label circle fit vs truth, a = {a_px:.0f} px: RMS {rms:.3f} deg, "
              f"max |err| {max(abs(e) for e in errors):.3f} deg ({len(errors)} frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer frames")
    args = parser.parse_args()
    bench_insitu(args.quick)
    # Tomogram part: add its benchmark here (bench_tomogram), owned by the tomogram module.


if __name__ == "__main__":
    main()
