"""A forced tomogram method against the label-free threshold (issue 18; the rule is
bench/results/tomo_forced_rule.txt).

For each family, seed and labeled rate (the volumes and labels of
:mod:`bench.bench_tomography`: ``simulate_tomogram``, 10x10 patches of the central slice):

- ``threshold``: the product's threshold candidate alone (``nwwatch train --volume
  --candidates threshold``), segmented as the service does;
- ``otsu-smooth``: the label-free bar of the benchmark (Otsu after a sigma 1 px blur);
- for each ``--paradigms`` P: ``nwwatch train --volume --paradigm P`` as the CLI runs it
  (:func:`training.volume_forced.check_forced`, then the training, then the record written
  into the model), segmented with ``segment_volume``. The record holds the IoU (every slice
  but the labeled one), the row's ``status`` / ``reason_code``, the status the same mask had
  before the check existed (``status_before``: the verdict without the selection record, as
  forced models had none), the held-out scores and the CPU seconds of the check and of the
  final training.

``--check-default FILES``: apply the check to the kept method of every default-workflow
``auto`` record of FILES (their recorded held-out scores), the rule's first criterion.

Usage::

    python -m bench.bench_tomo_forced --size 96 --seeds 3 4 --rates 0.02 0.06 0.25 \\
        --families default noise-limited saturated --out bench/out/tomo_forced.json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from argparse import Namespace
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


def _segment(model: Path, volume: np.ndarray, truth: np.ndarray, k: int) -> dict:
    from nwwatch.segment.session import Segmenter
    from nwwatch.volume import assess_mask, segment_volume

    segmenter = Segmenter(model, providers=("cpu",), threads=1)
    seg = segment_volume(segmenter, volume)
    v = seg.verdict
    extra = segmenter.metadata.extra
    before = assess_mask(v.solid_fraction, seg.uncertain_fraction, seg.threshold_agreement,
                         v.reference_solid_fraction, v.labels_solid_fraction,
                         extra.get("class_pixel_counts"), None)
    return {"iou": iou_solid(seg.mask, truth, k), "status": v.status,
            "reason_code": v.reason_code, "status_before": before.status,
            "reason_code_before": before.reason_code, "solid_fraction": v.solid_fraction,
            "reference_solid_fraction": v.reference_solid_fraction}


def run_case(args, family: str, seed: int, rate: float, log) -> list[dict]:
    from training.engine import train
    from training.volume_forced import check_forced
    from training.volume_select import add_selection, select_and_train

    sim = simulate_tomogram(args.size, seed=seed, **FAMILIES[family])
    volume, truth, k = sim.volume, sim.truth, args.size // 2
    rng = np.random.default_rng([seed, int(round(rate * 1000))])
    labels = patch_labels(truth[k], rate, rng, grain=sim.grain[k])
    from training.volume_folds import count_patches, labeled_patches

    patches = labeled_patches([labels])[0]
    per_class = {name: len({int(g) for g in np.unique(patches[labels == c])})
                 for c, name in enumerate(("pore", "solid"))}
    base = {"family": family, "seed": seed, "rate": rate, "size": args.size,
            "patches": count_patches([labels]), "patches_per_class": per_class,
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
            forced = check_forced(config, f"--paradigm {paradigm}")
            check_cpu_s = time.process_time() - cpu
            result = train(config, progress=False)
            add_selection(Path(result.out), forced)
            rows.append({**base, "method": f"forced-{paradigm}", "check_cpu_s": check_cpu_s,
                         "train_cpu_s": time.process_time() - cpu - check_cpu_s,
                         "grouping": forced.grouping, "cv_scores": forced.scores,
                         "cv_stopped": forced.stopped, "threshold_check": forced.threshold_check,
                         **_segment(Path(result.out), volume, truth, k)})
    for row in rows:
        log(json.dumps(row))
    return rows


def check_default(paths: list[Path]) -> list[dict]:
    """The check on the kept method of every ``auto`` record of ``paths`` (recorded scores)."""
    from training.volume_forced import threshold_check

    out = []
    for path in paths:
        for row in json.loads(path.read_text())["records"]:
            if row.get("method") != "auto":
                continue
            scores = {k: (math.nan if v is None else v) for k, v in row["cv_scores"].items()}
            check = threshold_check(row["chosen"], scores, row.get("cv_stopped") or {}, "")
            out.append({"file": path.name, "family": row.get("family"), "seed": row["seed"],
                        "rate": row["rate"], "chosen": row["chosen"],
                        "grouping": row.get("grouping"), "flagged": bool(check)})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.06, 0.25])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--paradigms", nargs="+", default=["supervised", "contrastive"],
                        choices=("supervised", "contrastive"))
    parser.add_argument("--check-default", type=Path, nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/out/tomo_forced.json"))
    args: Namespace = parser.parse_args(argv)
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
