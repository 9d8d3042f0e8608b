"""Variants of the feature forest at a given labeled rate, against the shipped forest.

The forest is trained as ``nwwatch train --volume`` trains its ``features`` candidate
(:class:`training.volume_candidates.CandidateTrainer`: Z-blurred slices, vacuum pseudo-labels,
on every label of ONE central slice labeled in whole 10 x 10 patches as in
``bench_tomography``), and its solid probability of every slice is computed as the runtime does
(16 px mirror margin). Each variant's mask is cleaned as ``segment_volume`` cleans it and
scored by the IoU of the solid over every slice but the labeled one. Variants:

- ``smooth[sz,sxy]``: the probability blurred by a Gaussian of ``sz`` slices along Z and
  ``sxy`` px in-plane (cut at 3 sigma, mirrored ends), then thresholded at 0.5;
- ``threshold[t]``: the probability thresholded at ``t`` instead of 0.5;
- ``cv-smooth`` / ``cv-threshold``: the blur or the threshold chosen on the labeled pixels
  by the product's cross-validation (:func:`training.volume_folds.make_folds`, the 20 px
  grid): each fold's forest predicts the slices within ``CV_HALF_DEPTH`` of the labeled one,
  the blur is applied to that stack, and the setting with the best balanced accuracy on the
  held-out pixels (pooled over the folds; the first of equals in grid order) is kept;
- ``self-train``: the forest predicts the slices at ``SELF_TRAIN_OFFSETS`` of the depth from
  the labeled slice; voxels with p(solid) >= ``SELF_TRAIN_CONFIDENCE`` or <= 1 - that become
  solid / pore pseudo-labels (up to ``SELF_TRAIN_PIXELS`` per slice, drawn in the labels'
  class proportions), and the forest is refitted once on labels and pseudo-labels;
  ``self-train+smooth[0,1]`` adds the 1 px in-plane blur;
- ``oracle-smooth-threshold``: a ceiling, not a method: the blur and threshold of the
  grids above chosen together with the truth;
- ``threshold-model``: the ``threshold`` candidate alone, and ``mean[forest,threshold]``: the
  mean of its p(solid) and the forest's.

Usage::

    python -m bench.bench_tomography_variants --seeds 0 1 2 3 4 --rate 0.25 \\
        --out bench/out/tomography_variants.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from bench.bench_tomography import iou_solid, write_inputs
from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomogram import simulate_tomogram
from nwwatch.volume import clean_mask

FAMILIES = {
    "default": {},
    "noise-limited": {"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1},
    "saturated": {"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1,
                  "saturation_px": 20},
}
Z_SIGMAS_PX = (0.0, 0.7, 1.0, 1.5, 2.0)
XY_SIGMAS_PX = (0.0, 0.7, 1.0, 1.5)
THRESHOLDS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)
CV_HALF_DEPTH = 6
SELF_TRAIN_OFFSETS = (-0.25, -0.12, 0.12, 0.25)
SELF_TRAIN_CONFIDENCE = 0.9
SELF_TRAIN_PIXELS = 2000


def blur(prob: np.ndarray, z_sigma_px: float, xy_sigma_px: float) -> np.ndarray:
    if not (z_sigma_px or xy_sigma_px):
        return prob
    return ndi.gaussian_filter(prob, (z_sigma_px, xy_sigma_px, xy_sigma_px), mode="mirror",
                               truncate=3.0)


def probability(model, volume: np.ndarray, zs) -> np.ndarray:
    from training.volume_candidates import predict_solid

    return np.stack([predict_solid(model, volume[z]) for z in zs])


def balanced_accuracy(solid: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([np.mean(solid[labels == c] == bool(c)) for c in (0, 1)]))


def cross_validated_choices(trainer, labels: np.ndarray, seed: int, k: int) -> dict:
    """Held-out balanced accuracy of every blur and threshold, pooled over the folds."""
    from training.volume_folds import make_folds, patch_groups

    groups = patch_groups([labels])
    folds = make_folds(groups, [labels], seed)
    zs = range(max(0, k - CV_HALF_DEPTH), min(trainer.volume.shape[0], k + CV_HALF_DEPTH + 1))
    centre = k - zs.start
    held_labels, held_prob = [], {}
    for held in folds:
        mask = np.isin(groups[0], held)
        model = trainer.fit("features", [np.where(mask, 255, labels).astype(np.uint8)])
        stack = probability(model, trainer.volume, zs)
        held_labels.append(labels[mask])
        for sz in Z_SIGMAS_PX:
            for sxy in XY_SIGMAS_PX:
                held_prob.setdefault((sz, sxy), []).append(blur(stack, sz, sxy)[centre][mask])
    y = np.concatenate(held_labels)
    pooled = {key: np.concatenate(parts) for key, parts in held_prob.items()}
    smooth = {key: balanced_accuracy(p > 0.5, y) for key, p in pooled.items()}
    thresholds = {t: balanced_accuracy(pooled[(0.0, 0.0)] > t, y) for t in THRESHOLDS}
    return {"folds": len(folds), "smooth": max(smooth, key=smooth.get),
            "threshold": max(thresholds, key=thresholds.get),
            "smooth_scores": {f"{a},{b}": v for (a, b), v in smooth.items()},
            "threshold_scores": {str(t): v for t, v in thresholds.items()}}


def self_train(trainer, labels: np.ndarray, prob: np.ndarray, k: int, seed: int):
    """The forest refitted once with confident pseudo-labels of other slices."""
    from training.volume_forest import fit_feature_forest

    depth = prob.shape[0]
    rng = np.random.default_rng(seed)
    shares = {c: float(np.mean(labels[labels != 255] == c)) for c in (0, 1)}
    pairs = [(trainer.smoothed[0], labels)] + trainer._vacuum([(trainer.smoothed[0], labels)])
    for offset in SELF_TRAIN_OFFSETS:
        z = int(np.clip(k + round(offset * depth), 0, depth - 1))
        pseudo = np.full(prob.shape[1:], 255, np.uint8)
        for c, sure in ((1, prob[z] >= SELF_TRAIN_CONFIDENCE),
                        (0, prob[z] <= 1 - SELF_TRAIN_CONFIDENCE)):
            where = np.flatnonzero(sure)
            n = min(where.size, int(SELF_TRAIN_PIXELS * shares[c]) + 1)
            if n:
                pseudo.reshape(-1)[rng.choice(where, n, replace=False)] = c
        pairs.append((trainer.volume[z], pseudo))
    return fit_feature_forest(pairs, seed=seed)


def run_volume(family: str, seed: int, rate: float, size: int, work: Path) -> list[dict]:
    from training.config import TrainConfig
    from training.data import load_volume_slices
    from training.volume_candidates import CandidateTrainer

    sim = simulate_tomogram(size, seed=seed, **FAMILIES[family])
    volume, truth, k = sim.volume, sim.truth, size // 2
    rng = np.random.default_rng([seed, int(round(rate * 1000))])
    labels = patch_labels(truth[k], rate, rng, grain=sim.grain[k])
    folder = Path(tempfile.mkdtemp(prefix=f"variants_{family}_{seed}_", dir=work))
    volume_path, labels_path = write_inputs(folder, volume, labels, k, "r")
    config = TrainConfig(out=str(folder / "m.onnx"), volume=str(volume_path), slice_index=[k],
                         labels=[str(labels_path)], seed=seed, threads=1, val_fraction=0.0)
    data = load_volume_slices(config.volume, [(k, str(labels_path))])
    trainer = CandidateTrainer(config, data, folder, 1.0, 1)
    labels = data.labeled[0].label
    rows: list[dict] = []

    def record(variant: str, prob: np.ndarray, threshold: float = 0.5, **extra) -> None:
        mask = clean_mask(prob > threshold, 8).astype(np.uint8)
        rows.append({"family": family, "seed": seed, "rate": rate, "variant": variant,
                     "iou": iou_solid(mask, truth, [k]), **extra})

    start = time.process_time()
    prob = probability(trainer.fit("features", [labels]), trainer.volume, range(size))
    # Forest probabilities are vote shares: a voxel on exactly 0.5 is solid or pore by the
    # last bit of a float sum (ONNX Runtime and scikit-learn round it differently).
    record("forest", prob, train_cpu_s=time.process_time() - start,
           share_at_half=float(np.mean(prob == np.float32(0.5))))
    threshold_prob = probability(trainer.fit("threshold", [labels]), trainer.volume, range(size))
    record("threshold-model", threshold_prob)
    record("mean[forest,threshold]", (prob + threshold_prob) / 2)
    for sz in Z_SIGMAS_PX:
        for sxy in XY_SIGMAS_PX:
            if sz or sxy:
                record(f"smooth[{sz:g},{sxy:g}]", blur(prob, sz, sxy))
    for t in THRESHOLDS:
        if t != 0.5:
            record(f"threshold[{t:g}]", prob, t)
    # A ceiling, not a method: the blur and threshold chosen together with the truth.
    best = max(((sz, sxy, t) for sz in Z_SIGMAS_PX for sxy in XY_SIGMAS_PX for t in THRESHOLDS),
               key=lambda c: iou_solid(clean_mask(blur(prob, c[0], c[1]) > c[2], 8), truth, [k]))
    record("oracle-smooth-threshold", blur(prob, best[0], best[1]), best[2], chosen=list(best))
    start = time.process_time()
    cv = cross_validated_choices(trainer, labels, seed, k)
    cv_s = time.process_time() - start
    record("cv-smooth", blur(prob, *cv["smooth"]), chosen=list(cv["smooth"]), cv_cpu_s=cv_s,
           scores=cv["smooth_scores"], folds=cv["folds"])
    record("cv-threshold", prob, cv["threshold"], chosen=cv["threshold"],
           scores=cv["threshold_scores"], folds=cv["folds"])
    start = time.process_time()
    refit = probability(self_train(trainer, labels, prob, k, seed), trainer.volume, range(size))
    refit_s = time.process_time() - start
    record("self-train", refit, refit_cpu_s=refit_s)
    record("self-train+smooth[0,1]", blur(refit, 0.0, 1.0))
    return rows


def summary(records: list[dict]) -> dict:
    """Mean IoU gain of every variant over the shipped forest: overall and per family."""
    base = {(r["family"], r["seed"]): r["iou"] for r in records if r["variant"] == "forest"}
    gains: dict[str, dict[str, list[float]]] = {}
    for r in records:
        gain = r["iou"] - base[(r["family"], r["seed"])]
        cell = gains.setdefault(r["variant"], {})
        cell.setdefault("all", []).append(gain)
        cell.setdefault(r["family"], []).append(gain)
    return {v: {key: {"mean_gain": float(np.mean(g)), "min_gain": float(np.min(g)), "n": len(g)}
                for key, g in cells.items()} for v, cells in gains.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--work", default=None, help="scratch folder (default: system temp)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/tomography_variants.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="variants_", dir=args.work))
    records: list[dict] = []
    for family in args.families:
        for seed in args.seeds:
            start = time.perf_counter()
            rows = run_volume(family, seed, args.rate, args.size, work)
            records += rows
            best = max(rows, key=lambda r: r["iou"])
            print(f"{family} seed {seed}: forest {rows[0]['iou']:.4f}, "
                  + ", ".join(f"{r['variant']} {r['iou']:.4f}" for r in rows
                              if r["variant"].startswith(("cv-", "self-")))
                  + f"; best {best['variant']} {best['iou']:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({
                "settings": {"command": "python -m bench.bench_tomography_variants "
                             f"--size {args.size} --seeds {' '.join(map(str, args.seeds))} "
                             f"--rate {args.rate} (OMP_NUM_THREADS=1, nice -n 10)",
                             "families": {f: FAMILIES[f] for f in args.families}},
                "records": records, "summary": summary(records)}, indent=1))


if __name__ == "__main__":
    main()
