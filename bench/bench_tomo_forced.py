"""A forced tomogram method against the label-free threshold: a flag that was tried and not
kept (rules and outcome: bench/results/tomo_forced_rule.txt, docs/tomography.md
"Tried, not kept: flagging a forced method").

The check tried: when the method is forced (``nwwatch train --volume --paradigm P``), also
cross-validate the label-free smoothed threshold on the same folds over the labeled patches
(the default workflow's folds, :mod:`training.volume_select`), and flag the model's masks
(``labels_favour_threshold``) when the forced network's held-out balanced accuracy is below
the threshold's by more than ``MARGIN``; with fewer than ``--min-patches`` whole patches (rule
2: 4; rule 1: 0, i.e. whenever folds exist) or no fold at all, flag ``method_unvalidated``.
The product does not do this; the check lives here.

For each family, seed and labeled rate (the volumes and labels of
:mod:`bench.bench_tomography`: ``simulate_tomogram``, 10x10 patches of the central slice):

- ``otsu-smooth``: the label-free bar of the benchmark (Otsu after a sigma 1 px blur);
- ``threshold``: the product's threshold candidate alone (``nwwatch train --volume
  --candidates threshold``), segmented as the service does;
- ``forced-P`` for each ``--paradigms`` P: the check, then ``nwwatch train --volume
  --paradigm P``'s training (:func:`training.engine.train`), segmented with
  ``segment_volume``. ``status_before`` / ``reason_code_before``: the product's verdict;
  ``status`` / ``reason_code``: with the check's flag added; the held-out scores and the CPU
  seconds of the check and of the training.

The records in bench/results/tomo_forced_*.json were measured with the check wired into the
product (commit e1688b2, reverted after the rules failed); this script
runs the same computation outside it.

``--check-default FILES``: apply the check to the kept method of every default-workflow
``auto`` record of FILES (their recorded held-out scores).

Usage::

    python -m bench.bench_tomo_forced --size 96 --seeds 5 6 --rates 0.06 0.25 \\
        --families default noise-limited saturated --out bench/out/tomo_forced.json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_tomography import iou_solid, otsu_mask, smooth_slices, write_inputs
from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomogram import simulate_tomogram
from training.config import VOLUME_DEFAULTS

#: The benchmark's volume families (bench/results/tomography_select_r0.02.json).
FAMILIES = {
    "default": {},
    "noise-limited": {"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1},
    "saturated": {"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1,
                  "saturation_px": 20},
}
#: The margin tried: the largest by which the default workflow keeps a candidate below the
#: best (training.volume_select.FOREST_MARGIN).
MARGIN = 0.05
#: The candidate name of each forced paradigm.
CANDIDATE_OF = {"supervised": "unet", "contrastive": "contrastive"}


def threshold_check(method: str, scores: dict[str, float], stopped: dict[str, float],
                    margin: float = MARGIN) -> bool:
    """Whether the held-out labeled pixels favour the threshold over ``method`` by more than
    ``margin`` (balanced accuracies 0..1; ``stopped``: upper bounds of early-stopped ones)."""
    threshold = scores.get("threshold", math.nan)
    kept = scores.get(method, math.nan)
    kept = stopped.get(method, math.nan) if math.isnan(kept) else kept
    if method == "threshold" or math.isnan(threshold) or math.isnan(kept):
        return False
    return kept < threshold - margin


def check_forced(config, min_patches: int) -> dict:
    """The check on ``config`` (a ``--volume`` TrainConfig of the forced paradigm): the
    threshold's and the forced network's held-out scores on the default workflow's folds, or
    ``grouping = "none"`` with fewer than ``min_patches`` patches or no fold. The network's
    folds stop once it is flagged whatever the remaining folds give."""
    from training.data import load_volume_slices
    from training.volume_candidates import CandidateTrainer
    from training.volume_folds import count_patches, make_folds, patch_groups
    from training.volume_models import Z_SIGMA_PX
    from training.volume_select import _cross_validate

    data = load_volume_slices(config.volume, [(config.slice_index, config.labels)])
    labels = [item.label for item in data.labeled]
    groups = patch_groups(labels)
    folds = make_folds(groups, labels, config.seed)
    method = CANDIDATE_OF[config.paradigm]
    scores, stopped = {"threshold": math.nan, method: math.nan}, {}
    if not folds or count_patches(labels) < min_patches:
        return {"grouping": "none", "cv_scores": scores, "cv_stopped": stopped,
                "flag": "method_unvalidated"}
    with tempfile.TemporaryDirectory(prefix="tomo_forced_check_") as work:
        trainer = CandidateTrainer(config, data, Path(work), Z_SIGMA_PX)
        scores["threshold"] = _cross_validate(trainer, "threshold", labels, groups, folds)[0]
        score, run = _cross_validate(trainer, method, labels, groups, folds,
                                     scores["threshold"] - MARGIN)
        if run < len(folds):
            stopped[method] = score
        else:
            scores[method] = score
    flagged = threshold_check(method, scores, stopped)
    return {"grouping": "patches", "cv_scores": scores, "cv_stopped": stopped,
            "flag": "labels_favour_threshold" if flagged else ""}


def _config(volume_path: Path, labels_path: Path, k: int, out: Path, paradigm: str,
            seed: int, size: int):
    from training.config import TrainConfig

    d = VOLUME_DEFAULTS
    return TrainConfig(
        out=str(out), paradigm=paradigm, arch=d["arch"], model_options=dict(d["model_options"]),
        volume=str(volume_path), slice_index=k, labels=str(labels_path), epochs=d["epochs"],
        steps_per_epoch=d["steps_per_epoch"], batch_size=d["batch_size"],
        crop=min(d["crop"], size), val_fraction=0.0, seed=seed, device="cpu",
        dice_weight=0.0, classifier_steps=d["classifier_steps"], exporter="legacy", lr=0.01,
        threads=1)


def _segment(model: Path, volume: np.ndarray, truth: np.ndarray, k: int,
             flag: str = "") -> dict:
    from nwwatch.segment.session import Segmenter
    from nwwatch.volume import segment_volume

    seg = segment_volume(Segmenter(model, providers=("cpu",), threads=1), volume)
    v = seg.verdict
    codes = [*v.reason_codes, *([flag] if flag and flag not in v.reason_codes else [])]
    return {"iou": iou_solid(seg.mask, truth, k), "status": "suspect" if codes else "ok",
            "reason_code": ",".join(codes), "status_before": v.status,
            "reason_code_before": v.reason_code, "solid_fraction": v.solid_fraction,
            "reference_solid_fraction": v.reference_solid_fraction}


def run_case(args, family: str, seed: int, rate: float, log) -> list[dict]:
    from training.engine import train
    from training.volume_folds import count_patches
    from training.volume_select import select_and_train

    sim = simulate_tomogram(args.size, seed=seed, **FAMILIES[family])
    volume, truth, k = sim.volume, sim.truth, args.size // 2
    rng = np.random.default_rng([seed, int(round(rate * 1000))])
    labels = patch_labels(truth[k], rate, rng, grain=sim.grain[k])
    base = {"family": family, "seed": seed, "rate": rate, "size": args.size,
            "patches": count_patches([labels]),
            "labeled_px": int(np.count_nonzero(labels != 255))}
    rows = [{**base, "method": "otsu-smooth",
             "iou": iou_solid(otsu_mask(smooth_slices(volume, 1.0)), truth, k)}]
    with tempfile.TemporaryDirectory(prefix="tomo_forced_") as work:
        folder = Path(work)
        volume_path, labels_path = write_inputs(folder, volume, labels, k, "forced")
        cpu = time.process_time()
        selection, model = select_and_train(
            _config(volume_path, labels_path, k, folder / "threshold.onnx", "supervised", seed,
                    args.size), ("threshold",))
        rows.append({**base, "method": "threshold", "cpu_s": time.process_time() - cpu,
                     "cv_scores": selection.scores, **_segment(model, volume, truth, k)})
        for paradigm in args.paradigms:
            config = _config(volume_path, labels_path, k, folder / f"{paradigm}.onnx",
                             paradigm, seed, args.size)
            cpu = time.process_time()
            check = check_forced(config, args.min_patches)
            check_cpu_s = time.process_time() - cpu
            result = train(config, progress=False)
            rows.append({**base, "method": f"forced-{paradigm}", "check_cpu_s": check_cpu_s,
                         "train_cpu_s": time.process_time() - cpu - check_cpu_s, **check,
                         **_segment(Path(result.out), volume, truth, k, check["flag"])})
    for row in rows:
        log(json.dumps(row))
    return rows


def check_default(paths: list[Path]) -> list[dict]:
    """The check on the kept method of every ``auto`` record of ``paths`` (recorded scores)."""
    out = []
    for path in paths:
        for row in json.loads(path.read_text())["records"]:
            if row.get("method") != "auto":
                continue
            scores = {k: (math.nan if v is None else v) for k, v in row["cv_scores"].items()}
            flagged = threshold_check(row["chosen"], scores, row.get("cv_stopped") or {})
            out.append({"file": path.name, "family": row.get("family"), "seed": row["seed"],
                        "rate": row["rate"], "chosen": row["chosen"],
                        "grouping": row.get("grouping"), "flagged": flagged})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 6])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.06, 0.25])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--paradigms", nargs="+", default=["supervised", "contrastive"],
                        choices=tuple(CANDIDATE_OF))
    parser.add_argument("--min-patches", type=int, default=4,
                        help="fewer whole labeled patches: method_unvalidated (rule 2: 4; "
                             "rule 1: 0)")
    parser.add_argument("--check-default", type=Path, nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/out/tomo_forced.json"))
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.check_default:
        rows = check_default(args.check_default)
        args.out.write_text(json.dumps({"settings": {"check_default": [
            str(p) for p in args.check_default]}, "records": rows}, indent=2))
        print(f"{sum(r['flagged'] for r in rows)} of {len(rows)} default-workflow runs flagged")
        return
    log_path = args.out.with_suffix(".log")

    def log(line: str) -> None:
        print(line, flush=True)
        with open(log_path, "a") as handle:
            handle.write(line + "\n")

    records: list[dict] = []
    for family in args.families:
        for seed in args.seeds:
            for rate in args.rates:
                records += run_case(args, family, seed, rate, log)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"settings": settings, "records": records}, indent=2))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
