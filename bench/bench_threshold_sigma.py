"""The smoothed-threshold candidate's blur on the tomogram benchmark's volumes.

For each family, seed and rate (the labels of ``bench.bench_tomography``: ``r`` of the
central slice in whole 10x10 patches), fit the threshold candidate
(:func:`training.volume_models.fit_threshold`) on all labeled pixels at every blur of
``THRESHOLD_SIGMAS_PX`` alone, and record per blur the balanced accuracy on the labeled pixels
and the solid IoU of its mask against the truth (every slice but the labeled one), plus the
blur the product's rule keeps. No networks are trained: this is the threshold alone, as the
final model of ``nwwatch train --volume`` would be when the threshold is kept.

Usage::

    python -m bench.bench_threshold_sigma --size 96 --seeds 0 1 2 --out /tmp/sigma.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from bench.bench_tomography import iou_solid, write_inputs
from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomogram import simulate_tomogram

FAMILIES = {"default": {},
            "noise-limited": {"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1},
            "saturated": {"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1,
                          "saturation_px": 20}}


def probe(size: int, seed: int, family: str, rates: list[float]) -> list[dict]:
    from training.config import TrainConfig
    from training.data import load_volume_slices
    from training.volume_candidates import CandidateTrainer
    from training.volume_folds import count_patches
    from training.volume_models import (
        THRESHOLD_SIGMAS_PX,
        Z_SIGMA_PX,
        blurred_stack,
        fit_threshold,
    )

    sim = simulate_tomogram(size, seed=seed, **FAMILIES[family])
    k = size // 2
    rows = []
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        for rate in rates:
            rng = np.random.default_rng([seed, int(round(rate * 1000))])
            labels = patch_labels(sim.truth[k], rate, rng, grain=sim.grain[k])
            volume_path, labels_path = write_inputs(folder, sim.volume, labels, k,
                                                    f"{rate}")
            config = TrainConfig(out=str(folder / "m.onnx"), volume=str(volume_path),
                                 slice_index=[k], labels=[str(labels_path)], seed=seed,
                                 threads=1, val_fraction=0.0)
            data = load_volume_slices(config.volume, [(k, str(labels_path))])
            trainer = CandidateTrainer(config, data, folder, Z_SIGMA_PX, 1)
            lab = data.labeled[0].label
            labeled = [(trainer.smoothed[0], lab)]
            row = {"family": family, "seed": seed, "rate": rate,
                   "solid_px": int(np.count_nonzero(lab == 1)),
                   "pore_px": int(np.count_nonzero(lab == 0)),
                   "patches": count_patches([lab]), "by_sigma": {}}
            for sigma in THRESHOLD_SIGMAS_PX:
                model = fit_threshold(trainer.volume, labeled, sigmas_px=(sigma,),
                                      otsu_cache=trainer.otsu_cache)
                sign = 1.0 if model.solid_brighter else -1.0
                blurred = blurred_stack(trainer.volume, sigma)
                mask = (sign * (blurred - model.threshold) > 0).astype(np.uint8)
                pred = sign * (blurred[k][lab != 255] - model.threshold) > 0
                truth_lab = lab[lab != 255]
                bacc = float(np.mean([np.mean(pred[truth_lab == c] == bool(c)) for c in (0, 1)
                                      if np.any(truth_lab == c)]))
                row["by_sigma"][str(sigma)] = {"balanced_accuracy": bacc,
                                               "iou": iou_solid(mask, sim.truth, [k])}
            row["kept_sigma"] = fit_threshold(trainer.volume, labeled,
                                              otsu_cache=trainer.otsu_cache).config["sigma_px"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.25])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = [row for family in args.families for seed in args.seeds
            for row in probe(args.size, seed, family, args.rates)]
    args.out.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()},
                                    "records": rows}, indent=1))


if __name__ == "__main__":
    main()
