"""Speed and difficulty of the synthetic tomogram generator.

Speed: ``simulate_tomogram`` (FBP and SIRT) and ``generate_tomogram`` (with every file) at
``--size``^3 on ``--threads`` threads (OpenCV and BLAS), median of ``--repeats`` runs.

Difficulty, per seed, IoU of the solid class over every slice but the labeled one:

- ``otsu``: one global Otsu threshold of the volume;
- ``otsu_smooth``: Otsu after a 2D Gaussian (sigma 1 px) on every slice, the cheapest denoiser;
- ``rf_2pct``: a random forest on scikit-image ``multiscale_basic_features`` (sigma 0.7-5)
  trained on the labels ``nwwatch synth tomogram`` writes (about 2 % of one slice in
  separate 9x9 patches in the cells of a 10 px grid), and the mean/min/max over ``--draws``
  other label draws of the same slice;
- ``rf_full``: the same forest trained on the whole slice: the ceiling of per-slice 2D filters
  on this volume.

Run: OMP_NUM_THREADS=2 .venv/bin/python bench/bench_synth_tomogram.py [--quick] [--out F.json]
The documentation figure: ... bench_synth_tomogram.py --figure docs/img/synthetic-tomogram.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile
from skimage.feature import multiscale_basic_features
from skimage.filters import threshold_otsu
from sklearn.ensemble import RandomForestClassifier

from nwwatch.classes import TOMOGRAM_CLASSES, UNLABELED
from nwwatch.io.dataset import read_label_image
from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomogram import PATCH_GAP_PX, generate_tomogram, simulate_tomogram


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    return float((pred & truth).sum() / max((pred | truth).sum(), 1))


def _features(image: np.ndarray) -> np.ndarray:
    return multiscale_basic_features(image, intensity=True, edges=True, texture=True,
                                     sigma_min=0.7, sigma_max=5.0, num_sigma=5)


def _rf_iou(features: list[np.ndarray], k: int, labels: np.ndarray, truth: np.ndarray,
            threads: int) -> float:
    labeled = labels != UNLABELED
    forest = RandomForestClassifier(n_estimators=100, max_depth=12, class_weight="balanced",
                                    n_jobs=threads, random_state=0)
    forest.fit(features[k][labeled], labels[labeled])
    others = [z for z in range(truth.shape[0]) if z != k]
    pred = np.stack([forest.predict(features[z].reshape(-1, features[z].shape[-1]))
                     .reshape(truth.shape[1:]) for z in others])
    return _iou(pred, truth[others])


def write_figure(path: Path, size: int, seed: int = 0) -> None:
    """XY and XZ slices of the default volume next to its truth, plus the training labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory() as tmp:
        summary = generate_tomogram(Path(tmp), size=size, seed=seed)
        volume = tifffile.imread(Path(tmp) / "volume.tif")
        truth = tifffile.imread(Path(tmp) / "truth.tif")
        labels = read_label_image(Path(tmp) / summary["files"]["train_labels"],
                                  len(TOMOGRAM_CLASSES))
    clean = simulate_tomogram(size, seed=seed, tilt_max_deg=90.0, tilt_step_deg=1.0,
                              noise=False, shift_sigma_px=0.0, blur_sigma_px=0.0).volume
    k, y = summary["labeled_slice"], size // 2
    low, high = np.percentile(volume, [0.5, 99.5])
    overlay = np.dstack([np.clip((volume[k] - low) / (high - low), 0, 1)] * 3)
    overlay[labels == 1] = 0.5 * overlay[labels == 1] + [0.5, 0.0, 0.0]
    overlay[labels == 0] = 0.5 * overlay[labels == 0] + [0.0, 0.0, 0.5]
    gray = {"vmin": low, "vmax": high}
    panels = [
        (volume[k], f"volume XY (z={k})", gray), (truth[k], "truth XY", {}),
        (overlay, f"labels: {summary['labeled_fraction']:.1%} (red solid, blue pore)", {}),
        (volume[:, y], f"volume XZ (y={y}): wedge along Z", gray), (truth[:, y], "truth XZ", {}),
        (clean[:, y], "same XZ, +-90 deg, no noise", {}),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.2))
    for ax, (image, title, scale) in zip(axes.ravel(), panels, strict=True):
        ax.imshow(image, cmap="gray", interpolation="nearest", **scale)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("X (px)", fontsize=8)
        ax.set_ylabel("Y (px)" if "XY" in title or "labels" in title else "Z (px)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"nwwatch synth tomogram --size {size} --seed {seed}: tilts "
                 f"{summary['tilt_min_deg']:g}..{summary['tilt_max_deg']:g} deg, "
                 f"{summary['counts_per_voxel']:g} counts/voxel, shifts "
                 f"{summary['shift_rms_px']:.1f} px rms, FBP", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--draws", type=int, default=5, help="extra label draws per seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="size 64, one seed, 2 draws")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--knobs", type=json.loads, default={},
                        help='difficulty knobs as JSON, e.g. \'{"tilt_max_deg": 70}\'')
    parser.add_argument("--no-timing", action="store_true", help="accuracy only")
    parser.add_argument("--figure", type=Path, help="only write the documentation figure here")
    args = parser.parse_args()
    if args.figure:
        write_figure(args.figure, args.size)
        return
    if args.quick:
        args.size, args.seeds, args.draws, args.repeats = 64, [0], 2, 1
    cv2.setNumThreads(args.threads)

    n = args.size
    timing: dict[str, float] = {}
    if not args.no_timing:
        timing["fbp_s"] = _timed(lambda: simulate_tomogram(n, seed=0), args.repeats)
        timing["sirt30_s"] = _timed(
            lambda: simulate_tomogram(n, seed=0, reconstruction="sirt"), 1)
        with tempfile.TemporaryDirectory() as tmp:
            timing["generate_with_files_s"] = _timed(
                lambda: generate_tomogram(Path(tmp) / "t", size=n, seed=0), args.repeats)
        print(f"{n}^3 on {args.threads} threads: simulate+FBP {timing['fbp_s']:.2f} s, "
              f"simulate+SIRT(30) {timing['sirt30_s']:.2f} s, generate with files "
              f"{timing['generate_with_files_s']:.2f} s")

    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            summary = generate_tomogram(Path(tmp), size=n, seed=seed, **args.knobs)
            volume = tifffile.imread(Path(tmp) / "volume.tif")
            truth = tifffile.imread(Path(tmp) / "truth.tif")
            k = summary["labeled_slice"]
            labels = read_label_image(Path(tmp) / summary["files"]["train_labels"],
                                      len(TOMOGRAM_CLASSES))
        grain = simulate_tomogram(n, seed=seed, **args.knobs).grain  # same seed, same phantom
        others = [z for z in range(n) if z != k]
        smooth = np.stack([cv2.GaussianBlur(s, (0, 0), 1.0) for s in volume])
        features = [_features(s) for s in volume]
        draws = [
            _rf_iou(features, k, patch_labels(truth[k], summary["labeled_fraction_requested"],
                                              np.random.default_rng([seed, 100 + d]),
                                              grain=grain[k], gap_px=PATCH_GAP_PX),
                    truth, args.threads)
            for d in range(args.draws)
        ]
        row = {
            "seed": seed,
            "porosity": summary["porosity"],
            "labeled_fraction": summary["labeled_fraction"],
            "otsu": _iou(volume[others] > threshold_otsu(volume), truth[others]),
            "otsu_smooth": _iou(smooth[others] > threshold_otsu(smooth), truth[others]),
            "rf_2pct": _rf_iou(features, k, labels, truth, args.threads),
            "rf_2pct_draws_mean": float(np.mean(draws)) if draws else None,
            "rf_2pct_draws_min": float(np.min(draws)) if draws else None,
            "rf_2pct_draws_max": float(np.max(draws)) if draws else None,
            "rf_full": _rf_iou(features, k, truth[k], truth, args.threads),
        }
        rows.append(row)
        print(json.dumps({key: round(v, 3) if isinstance(v, float) else v
                          for key, v in row.items()}))

    keys = ["otsu", "otsu_smooth", "rf_2pct", "rf_2pct_draws_mean", "rf_full"]
    if not args.draws:  # --draws 0: no extra label draws to average
        keys.remove("rf_2pct_draws_mean")
    means = {key: float(np.mean([r[key] for r in rows])) for key in keys}
    print("mean IoU (solid): " + ", ".join(f"{key} {value:.3f}" for key, value in means.items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "size": n, "threads": args.threads, "machine": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "timing": timing, "rows": rows,
            "means": means}, indent=2) + "\n")


if __name__ == "__main__":
    main()
