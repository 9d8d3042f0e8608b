"""Seed 003's tables on synthetic tomograms with known truth, and the default workflow's choice.

For each seed: simulate a porous grain tilt series and reconstruct it
(:func:`nwwatch.synth.tomogram.simulate_tomogram`), label ``r`` of ONE central slice in whole
10x10 patches (:func:`nwwatch.synth.tomo_labels.patch_labels`, the paper's protocol), then
segment the whole volume with:

- ``otsu``: one global Otsu threshold of the volume (no labels);
- ``otsu-smooth``: the same after a Gaussian blur (sigma 1 px) of every slice, still without
  labels: the denoising any learned per-slice method can learn, so the bar a learned method
  must clear to be worth its labels;
- ``rf``: a random forest on scikit-image ``multiscale_basic_features`` of each slice (the
  strong classic few-label baseline; bench-only dependency);
- ``unet``: the same 2D UNet trained with cross-entropy that ignores unlabeled pixels
  (``nwwatch train --paradigm supervised``, Dice term off, as in the paper's baseline);
- ``contrastive``: seed 003's method (``--paradigm contrastive``);
- ``auto``: the product's default workflow, ``nwwatch train --volume`` without ``--paradigm``
  (:func:`training.volume_select.select_and_train`: the candidates cross-validated on the
  labeled patches, the best kept), segmented plain; the record names the kept method, every
  candidate's score, and the mask's verdict (``status``, ``reason_code``). The issue's target
  is checked per seed and rate (:func:`target_rows`): ``auto`` IoU >= max(otsu, otsu-smooth,
  rf) - 0.01, or the row is ``suspect``;
- ``oracle``: ceilings, not methods: the best global threshold chosen with the truth, on the
  volume, on the volume smoothed per slice (Gaussian sigma 1), and on the same grain
  reconstructed without noise or misalignment (what the missing wedge and blur alone allow).

The deep models are trained through the training package's Python API on the tomogram workflow
(``--volume V --slice K --labels L``: every other slice is unlabeled data) and run through
:func:`nwwatch.volume.segment_volume` exactly as the product does (mirror margin ``--margin``,
default the product's 16 px; ``--fusions triplanar flips triplanar+flips`` also records
``unet+triplanar``, ``contrastive+flips`` ...: the same models segmented with tri-planar
fusion, test-time flip averaging, or both). IoU of the solid class is
computed over every slice but the labeled one (the paper's eq. 8). Every deep-model record
also carries ``uncertain_fraction`` and ``threshold_agreement`` (the label-free warning signs
of the volume row) so that they can be compared with the IoU.

``--second-slice`` labels a second slice (``size // 4`` above the central one) at the same
rate, with the same protocol, for every method; IoU then skips both labeled slices.

The ablation (paper's Table 3) trains the contrastive paradigm with only the self-supervised
loss, only the supervised contrastive loss, or both; the 1x1 classifier is always trained with
the labels. A loss is switched off by its weight (``contrastive_supervised_weight``,
``contrastive_self_weight`` of :class:`training.config.TrainConfig`).

Timing: a ``--timing-size``^3 volume segmented by ``segment_volume`` with the trained
contrastive model on ``--threads`` CPU threads, and ``volume_metrics`` on its mask.

Usage::

    python -m bench.bench_tomography --size 96 --seeds 0 1 2 --out bench/out/tomography.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomogram import simulate_tomogram
from training.config import SELF_NEGATIVES, VOLUME_CANDIDATES, VOLUME_DEFAULTS

RATES = (0.02, 0.06, 0.12, 0.18, 0.25)
ABLATION_RATES = (0.06, 0.12, 0.18, 1.0)
ABLATION_VARIANTS = ("self-supervised", "supervised", "combined")
FUSIONS = ("triplanar", "flips", "triplanar+flips")
ORACLES = ("oracle-threshold", "oracle-threshold-smoothed", "oracle-threshold-noise-free")
UNLABELED_METHODS = ("otsu", "otsu-smooth")


def iou_solid(mask: np.ndarray, truth: np.ndarray,
              skip_slice: int | list[int] | None) -> float:
    keep = np.ones(truth.shape[0], dtype=bool)
    if skip_slice is not None:
        keep[skip_slice] = False
    pred, true = mask[keep].astype(bool), truth[keep].astype(bool)
    union = np.count_nonzero(pred | true)
    return float(np.count_nonzero(pred & true) / union) if union else 1.0


def otsu_mask(volume: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    return (volume > threshold_otsu(volume)).astype(np.uint8)


def best_threshold_iou(volume: np.ndarray, truth: np.ndarray,
                       skip_slice: int | list[int] | None) -> float:
    """Highest IoU of any single global threshold (chosen WITH the truth: an upper bound, not
    a method). 200 candidate thresholds between the volume's 50th and 99.9th percentiles."""
    candidates = np.quantile(volume, np.linspace(0.5, 0.999, 200))
    return max(iou_solid((volume > t).astype(np.uint8), truth, skip_slice) for t in candidates)


def smooth_slices(volume: np.ndarray, sigma_px: float) -> np.ndarray:
    """2D Gaussian blur of every Z slice (the denoising a per-slice method could learn)."""
    return np.stack([cv2.GaussianBlur(s, (0, 0), sigma_px) for s in volume.astype(np.float32)])


def slice_features(volume: np.ndarray) -> np.ndarray:
    """float32 (Z, Y, X, F) 2D multiscale features of every slice (sigma 0.7 .. 5)."""
    from skimage.feature import multiscale_basic_features

    from nwwatch.normalize import intensity_range, normalize_image

    rng = intensity_range(volume)
    return np.stack([
        multiscale_basic_features(normalize_image(s, rng), intensity=True, edges=True,
                                  texture=True, sigma_min=0.7, sigma_max=5.0).astype(np.float32)
        for s in volume
    ])


def rf_mask(features: np.ndarray, labels: dict[int, np.ndarray], seed: int) -> np.ndarray:
    """Forest trained on the labeled pixels of the slices ``labels`` ({z: (Y, X) labels})."""
    from sklearn.ensemble import RandomForestClassifier

    x_train = np.concatenate([features[z][lab != 255] for z, lab in labels.items()])
    y_train = np.concatenate([lab[lab != 255] for lab in labels.values()])
    forest = RandomForestClassifier(n_estimators=100, max_depth=16, n_jobs=2,
                                    random_state=seed)
    forest.fit(x_train, y_train)
    z, y, x, f = features.shape
    solid_column = list(forest.classes_).index(1)
    prob = forest.predict_proba(features.reshape(-1, f))[:, solid_column]
    return (prob.reshape(z, y, x) > 0.5).astype(np.uint8)


def beyond_reference(volume: np.ndarray, mask: np.ndarray) -> float:
    """nwwatch.volume.crosscheck.solid_beyond_reference of ``mask`` against the label-free
    reference of ``volume`` (solid bright, as the benchmark's volumes)."""
    from nwwatch.volume.crosscheck import reference_mask, solid_beyond_reference

    return solid_beyond_reference(mask.astype(bool), reference_mask(volume, True))


def warning_signs(seg) -> dict[str, object]:
    """The volume row's label-free warning signs and verdict of a VolumeSegmentation."""
    return {"uncertain_fraction": seg.uncertain_fraction,
            "threshold_agreement": seg.threshold_agreement,
            "status": seg.verdict.status, "reason_code": seg.verdict.reason_code,
            "solid_fraction": seg.verdict.solid_fraction,
            "reference_solid_fraction": seg.verdict.reference_solid_fraction,
            "labels_solid_fraction": seg.verdict.labels_solid_fraction}


def auto_and_segment(args, volume_path: Path, ks: list[int], labels_paths: list[Path],
                     volume: np.ndarray, out: Path, seed: int) -> tuple[object, dict, dict]:
    """The default workflow: select_and_train with ``args.candidates``, then segment_volume
    (plain, and with each of ``args.fusions``). Returns (plain, info, {fusion: segmentation})."""
    from nwwatch.segment.session import Segmenter
    from nwwatch.volume import segment_volume
    from training.config import TrainConfig
    from training.volume_select import select_and_train

    config = TrainConfig(
        out=str(out), paradigm="contrastive", arch="unet-paper",
        model_options={"widths": list(args.widths), "dropout": 0.0},
        volume=str(volume_path), slice_index=ks, labels=[str(p) for p in labels_paths],
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        crop=min(args.crop, volume.shape[1]), val_fraction=0.0, seed=seed, device=args.device,
        dice_weight=0.0, classifier_steps=args.classifier_steps, exporter="legacy",
        lr=args.lr, temperature=args.temperature, threads=1)
    start, cpu_start = time.perf_counter(), time.process_time()
    selection, model = select_and_train(config, args.candidates, z_sigma_px=args.z_sigma_px,
                                        forest_slices=args.forest_slices)
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    segmenter = Segmenter(model, providers=("cpu",), threads=args.threads)
    start = time.perf_counter()
    seg = segment_volume(segmenter, volume, margin_px=args.margin)
    info = {"train_s": train_s, "train_cpu_s": train_cpu_s,
            "segment_s": time.perf_counter() - start, "load_avg_1min": os.getloadavg()[0],
            "chosen": selection.method, "grouping": selection.grouping,
            "cv_scores": selection.scores, "cv_stopped": selection.stopped,
            "label_warnings": selection.warnings,
            # The kept threshold's blur (chosen on the labels); None for the others.
            "threshold_sigma_px": segmenter.metadata.extra.get("model_config", {}).get(
                "sigma_px") if selection.method == "threshold" else None}
    fused = {fusion: segment_volume(segmenter, volume, margin_px=args.margin,
                                    triplanar="triplanar" in fusion, flips="flips" in fusion)
             for fusion in args.fusions}
    return seg, info, fused


def held_out_scores(args, volume_path: Path, ks: list[int], labels_paths: list[Path],
                    seed: int) -> list[dict]:
    """The cross-validation of the default workflow for each of ``args.candidates`` (the
    small ones: threshold, features), with the labeled components cut along the patch grid
    (the product's grouping) and whole: one row per (candidate, grouping) with its held-out
    balanced accuracy ``cv`` (every fold run, no early stop)."""
    from training.config import TrainConfig
    from training.data import load_volume_slices
    from training.volume_candidates import CandidateTrainer
    from training.volume_folds import BLOCK_PX, make_folds, patch_groups
    from training.volume_forest import FOREST_INPUT_SLICES
    from training.volume_models import Z_SIGMA_PX
    from training.volume_select import _cross_validate

    config = TrainConfig(out=str(volume_path.with_suffix(".cv.onnx")), volume=str(volume_path),
                         slice_index=ks, labels=[str(p) for p in labels_paths], seed=seed,
                         threads=1, val_fraction=0.0)
    data = load_volume_slices(config.volume, list(zip(ks, map(str, labels_paths), strict=True)))
    labels = [item.label for item in data.labeled]
    z_sigma = Z_SIGMA_PX if args.z_sigma_px is None else args.z_sigma_px
    rows = []
    with tempfile.TemporaryDirectory() as work:
        slices = FOREST_INPUT_SLICES if args.forest_slices is None else args.forest_slices
        trainer = CandidateTrainer(config, data, Path(work), z_sigma, slices)
        for grouping, block in (("grid", BLOCK_PX), ("components", 1 << 30)):
            groups = patch_groups(labels, block_px=block)
            folds = make_folds(groups, labels, seed)
            for candidate in args.candidates:
                score = _cross_validate(trainer, candidate, labels, groups, folds)[0] \
                    if folds else float("nan")
                rows.append({"method": f"cv-{candidate}", "grouping": grouping, "cv": score,
                             "folds": len(folds)})
    return rows


def loss_weights(variant: str) -> dict[str, float]:
    """The contrastive loss weights of an ablation variant (the paper's Table 3)."""
    return {"contrastive_supervised_weight": 0.0 if variant == "self-supervised" else 1.0,
            "contrastive_self_weight": 0.0 if variant == "supervised" else 1.0}


def train_and_segment(args, paradigm: str, volume_path: Path, ks: list[int],
                      labels_paths: list[Path], volume: np.ndarray, out: Path, seed: int,
                      variant: str = "combined") -> tuple[object, dict, dict]:
    """(plain VolumeSegmentation, timings in s, {fusion: VolumeSegmentation})."""
    from nwwatch.segment.session import Segmenter
    from nwwatch.volume import segment_volume
    from training.config import TrainConfig
    from training.engine import train

    config = TrainConfig(
        out=str(out), paradigm=paradigm, arch="unet-paper",
        model_options={"widths": list(args.widths), "dropout": 0.0},
        volume=str(volume_path), slice_index=ks, labels=[str(p) for p in labels_paths],
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        crop=min(args.crop, volume.shape[1]), val_fraction=0.0, seed=seed, device=args.device,
        dice_weight=0.0, classifier_steps=args.classifier_steps, exporter="legacy",
        lr=args.lr, temperature=args.temperature, **loss_weights(variant),
        **({"self_negatives": args.self_negatives} if paradigm == "contrastive" else {}),
    )
    start = time.perf_counter()
    result = train(config, progress=False, echo=lambda *a, **k: None)
    train_s = time.perf_counter() - start
    segmenter = Segmenter(result.out, providers=("cpu",), threads=args.threads)
    start = time.perf_counter()
    seg = segment_volume(segmenter, volume, margin_px=args.margin)
    timing = {"train_s": train_s, "segment_s": time.perf_counter() - start}
    fused = {}
    # Fusions are recorded for the r-table's models only, not for the ablation variants.
    for fusion in (args.fusions if variant == "combined" else ()):
        start = time.perf_counter()
        fused[fusion] = segment_volume(segmenter, volume, margin_px=args.margin,
                                       triplanar="triplanar" in fusion,
                                       flips="flips" in fusion)
        timing[f"{fusion}_segment_s"] = time.perf_counter() - start
    return seg, timing, fused


def write_inputs(folder: Path, volume: np.ndarray, labels: np.ndarray, k: int, tag: str):
    from nwwatch.io import write_volume_tiff

    volume_path = folder / "volume.tif"
    if not volume_path.exists():
        write_volume_tiff(volume_path, volume.astype(np.float32))
    labels_path = folder / f"labels_{tag}.png"
    cv2.imwrite(str(labels_path), labels)
    return volume_path, labels_path


def run_seed(args, seed: int, records: list[dict], log) -> Path | None:
    sim = simulate_tomogram(args.size, seed=seed, **args.volume_options)
    volume, truth = sim.volume, sim.truth
    k = args.size // 2
    # The labeled slices: the central one, and with --second-slice one a quarter further up.
    ks = [k] + ([k - args.size // 4] if args.second_slice else [])
    folder = Path(tempfile.mkdtemp(prefix=f"tomo{seed}_", dir=args.work))
    contrastive_model = None

    grain = sim.grain.astype(bool)

    def record(method, rate, mask, extra=None):
        solid, true = mask.astype(bool), truth.astype(bool)
        # Where the errors are: inside the grain (pores vs solid) or in the vacuum around it.
        in_grain = float(np.count_nonzero(solid & true & grain)
                         / max(1, np.count_nonzero((solid | true) & grain)))
        row = {"seed": seed, "method": method, "rate": rate, "family": args.family,
               "iou": iou_solid(mask, truth, ks), "iou_in_grain": in_grain,
               "solid_in_vacuum": float(solid[~grain].mean()), **(extra or {})}
        records.append(row)
        log(json.dumps(row))

    if "otsu" in args.methods:
        record("otsu", None, otsu_mask(volume))
    if "otsu-smooth" in args.methods:
        record("otsu-smooth", None, otsu_mask(smooth_slices(volume, 1.0)))
    if "oracle" in args.methods:
        # Ceilings, not methods (they pick the threshold with the truth): what a global
        # threshold reaches on the volume, after per-slice denoising, and on the same grain
        # reconstructed without noise and misalignment (the missing wedge and blur alone).
        clean = simulate_tomogram(args.size, seed=seed, **{
            **args.volume_options, "noise": False, "shift_sigma_px": 0.0}).volume
        for name, data in (("oracle-threshold", volume),
                           ("oracle-threshold-smoothed", smooth_slices(volume, 1.0)),
                           ("oracle-threshold-noise-free", clean)):
            row = {"seed": seed, "method": name, "rate": None,
                   "iou": best_threshold_iou(data, truth, ks)}
            records.append(row)
            log(json.dumps(row))
    start = time.perf_counter()
    features = slice_features(volume) if "rf" in args.methods else None
    features_s = time.perf_counter() - start  # once per volume, shared by every rate
    jobs = [(m, r, "combined") for r in args.rates
            for m in ("rf", "unet", "contrastive", "auto", "cv") if m in args.methods]
    if args.ablation:
        jobs += [("contrastive", r, v) for r in args.ablation_rates for v in ABLATION_VARIANTS
                 if ("contrastive", r, v) not in jobs]
    for method, rate, variant in jobs:
        labels = {}
        for i, z in enumerate(ks):  # the first slice's labels do not depend on --second-slice
            rng = np.random.default_rng([seed, int(round(rate * 1000))] + ([i] if i else []))
            labels[z] = patch_labels(truth[z], rate, rng, grain=sim.grain[z])
        tag = f"{method}_{rate}_{variant}"
        extra = {"labeled_fraction": float(np.mean([lab != 255 for lab in labels.values()])),
                 "labeled_slices": ks}
        if method == "rf":
            start = time.perf_counter()
            mask = rf_mask(features, labels, seed)
            extra["train_and_segment_s"] = time.perf_counter() - start
            extra["features_s"] = features_s
            record("rf", rate, mask, extra)
            continue
        paths = [write_inputs(folder, volume, lab, z, f"{tag}_z{z}") for z, lab in labels.items()]
        volume_path, labels_paths = paths[0][0], [path for _, path in paths]
        if method == "cv":
            for row in held_out_scores(args, volume_path, ks, labels_paths, seed):
                row = {"seed": seed, "rate": rate, "family": args.family, **row, **extra}
                records.append(row)
                log(json.dumps(row))
            continue
        if method == "auto":
            seg, info, fused = auto_and_segment(args, volume_path, ks, labels_paths, volume,
                                                folder / f"{tag}.onnx", seed)
            record("auto", rate, seg.mask, {**extra, **info, **warning_signs(seg),
                                            "solid_beyond_reference": beyond_reference(
                                                volume, seg.mask)})
            for fusion, fused_seg in fused.items():
                record(f"auto+{fusion}", rate, fused_seg.mask,
                       {**extra, **info, **warning_signs(fused_seg)})
            continue
        paradigm = "supervised" if method == "unet" else "contrastive"
        out = folder / f"{tag}.onnx"
        seg, timing, fused = train_and_segment(args, paradigm, volume_path, ks, labels_paths,
                                               volume, out, seed, variant)
        extra.update(timing)
        if variant == "combined":
            for fusion, fused_seg in fused.items():
                record(f"{method}+{fusion}", rate, fused_seg.mask,
                       {**extra, **warning_signs(fused_seg)})
        mask, extra = seg.mask, {**extra, **warning_signs(seg)}
        if method == "unet":
            record("unet", rate, mask, extra)
            continue
        # One combined contrastive run serves both the r-table and the ablation table.
        if variant == "combined" and rate in args.rates and "contrastive" in args.methods:
            record("contrastive", rate, mask, extra)
            if rate == min(args.rates):
                contrastive_model = out
        if args.ablation and rate in args.ablation_rates:
            record(f"contrastive[{variant}]", rate, mask, extra)
    return contrastive_model


def time_large(args, model: Path, log) -> dict:
    from nwwatch.segment.session import Segmenter
    from nwwatch.volume import segment_volume, volume_metrics

    sim = simulate_tomogram(args.timing_size, seed=99)
    segmenter = Segmenter(model, providers=("cpu",), threads=args.threads)
    out = {"size": args.timing_size, "threads": args.threads}
    out["arch"] = segmenter.metadata.arch
    out["z_sigma_px"] = segmenter.metadata.extra.get("z_sigma_px", 0.0)
    out["input_slices"] = segmenter.metadata.extra.get("input_slices", 1)
    start, cpu = time.perf_counter(), time.process_time()
    seg = segment_volume(segmenter, sim.volume, batch_size=8)
    out["segment_s"] = time.perf_counter() - start
    out["segment_cpu_s"] = time.process_time() - cpu
    out["iou"] = iou_solid(seg.mask, sim.truth, None)
    start, cpu = time.perf_counter(), time.process_time()
    metrics = volume_metrics(seg.mask, 1.0)
    out["metrics_s"] = time.perf_counter() - start
    out["metrics_cpu_s"] = time.process_time() - cpu
    out["load_avg_1min"] = os.getloadavg()[0]
    out["metrics"] = metrics.as_row()
    truth_metrics = volume_metrics(sim.truth, 1.0)
    out["truth_porosity_envelope"] = truth_metrics.porosity_envelope
    out["synthetic_porosity_in_grain"] = sim.porosity
    log(json.dumps({k: v for k, v in out.items() if k != "metrics"}))
    return out


def target_rows(records: list[dict], tolerance: float = 0.01) -> list[dict]:
    """Per (seed, rate) of ``auto``: its IoU against max(otsu, otsu-smooth, rf) of the same
    seed and rate; ``verdict`` is "met" (IoU >= that - tolerance), "flagged" (below it but the
    row is suspect), or "missed"."""
    out = []
    for row in records:
        if row["method"] != "auto":
            continue
        bars = {r["method"]: r["iou"] for r in records if r["seed"] == row["seed"]
                and r["method"] in ("otsu", "otsu-smooth", "rf")
                and r["rate"] in (None, row["rate"])}
        if not bars:
            continue
        bar = max(bars.values())
        met = row["iou"] >= bar - tolerance
        out.append({"seed": row["seed"], "rate": row["rate"], "auto": row["iou"],
                    "chosen": row.get("chosen"), "bar": bar,
                    "bar_method": max(bars, key=lambda k: bars[k]),
                    "status": row.get("status"), "reason_code": row.get("reason_code"),
                    "verdict": "met" if met else "flagged" if row.get("status") == "suspect"
                    else "missed"})
    return out


def summarise(records: list[dict], key: str = "iou") -> dict:
    """{method: {str(rate): {values, mean, std, n}}} of ``key`` over the records having it."""
    table: dict[str, dict[str, dict]] = {}
    for row in records:
        if key not in row:
            continue
        cell = table.setdefault(row["method"], {}).setdefault(str(row["rate"]), {"values": []})
        cell["values"].append(row[key])
    for cells in table.values():
        for cell in cells.values():
            values = np.asarray(cell["values"])
            cell.update(mean=float(values.mean()), std=float(values.std()), n=int(values.size))
    return table


def markdown(records: list[dict], rates: list[float], key: str = "iou") -> str:
    """The r-table and the ablation table of ``key`` as Markdown, mean ± std over seeds (n)."""
    table = summarise(records, key)

    def cell(method: str, rate) -> str:
        found = table.get(method, {}).get(str(rate))
        if not found:
            return "not run"
        return f"{found['mean']:.3f} ± {found['std']:.3f} ({found['n']})"

    lines = ["| method | " + " | ".join(f"r = {r:g}" for r in rates) + " |",
             "|---" * (len(rates) + 1) + "|"]
    deep = [f"{m}{f}" for m in ("unet", "contrastive") for f in ("", *(f"+{x}" for x in FUSIONS))]
    auto = ["auto", *(f"auto+{x}" for x in FUSIONS)]
    for method in (*UNLABELED_METHODS, "rf", *deep, *auto, *ORACLES):
        if method in table:
            # Otsu and the oracles use no labels: one value per seed, shown in every column.
            unlabeled = method in UNLABELED_METHODS or method in ORACLES
            lines.append(f"| {method} | " + " | ".join(
                cell(method, None if unlabeled else r) for r in rates) + " |")
    ablation_rates = sorted({row["rate"] for row in records
                             if "[" in row["method"] and key in row})
    if ablation_rates:
        lines += ["", "| losses | " + " | ".join(f"r = {r:g}" for r in ablation_rates) + " |",
                  "|---" * (len(ablation_rates) + 1) + "|"]
        for variant in ABLATION_VARIANTS:
            lines.append(f"| {variant} | " + " | ".join(
                cell(f"contrastive[{variant}]", r) for r in ablation_rates) + " |")
    return "\n".join(lines)


def target_markdown(rows: list[dict]) -> str:
    """The per-seed target check of :func:`target_rows` (rows may carry a ``family``)."""
    lines = ["| family | r | seed | auto (kept method) | max(otsu, otsu-smooth, rf) | status "
             "| verdict |", "|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r.get("family") or "", r["rate"], r["seed"])):
        code = f" ({row['reason_code']})" if row.get("reason_code") else ""
        lines.append(f"| {row.get('family') or ''} | {row['rate']:g} | {row['seed']} | "
                     f"{row['auto']:.3f} ({row['chosen']}) | {row['bar']:.3f} "
                     f"({row['bar_method']}) | {row['status']}{code} | {row['verdict']} |")
    margins: dict[tuple, list[float]] = {}
    for row in rows:
        margins.setdefault((row.get("family") or "", row["rate"]), []).append(
            row["auto"] - row["bar"])
    lines += ["", "| family | r | auto - bar, mean over seeds |", "|---|---|---|"]
    lines += [f"| {family} | {rate:g} | {np.mean(values):+.3f} (n = {len(values)}) |"
              for (family, rate), values in sorted(margins.items())]
    every = {rate: [v for (_, r), values in margins.items() if r == rate for v in values]
             for rate in sorted({rate for _, rate in margins})}
    lines += [f"| all | {rate:g} | {np.mean(values):+.3f} (n = {len(values)}) |"
              for rate, values in every.items()]
    return "\n".join(lines)


def render(paths: list[Path]) -> None:
    """Print the Markdown tables of result files, records pooled (a repeated (family, seed,
    method, rate) counts once, from the last file), and the target check of ``auto`` on the
    pooled records (so an ``auto``-only file is checked against the label-free and forest
    bars of an earlier file on the same volumes)."""
    unique: dict[tuple, dict] = {}
    rates: set[float] = set()
    for path in paths:
        result = json.loads(Path(path).read_text())
        family = result["settings"].get("family")
        for row in result["records"]:
            row = {"family": family, **row}
            unique[(row.get("family"), row["seed"], row["method"], row["rate"])] = row
        rates.update(result["settings"]["rates"])
    families = sorted({row.get("family") or "" for row in unique.values()})
    targets: list[dict] = []
    for family in families:
        rows = [r for r in unique.values() if (r.get("family") or "") == family]
        targets += [{"family": family, **row} for row in target_rows(rows)]
        for key in ("iou", "iou_in_grain", "solid_in_vacuum"):
            print(f"\n{family} {key}:\n")
            print(markdown(rows, sorted(rates), key))
    if targets:
        print("\ntarget (auto >= max(otsu, otsu-smooth, rf) - 0.01, or suspect):\n")
        print(target_markdown(targets))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--methods", nargs="+",
                        default=["otsu", "otsu-smooth", "rf", "unet", "contrastive"],
                        choices=("otsu", "otsu-smooth", "rf", "unet", "contrastive", "auto",
                                 "oracle", "cv", "none"),
                        help="auto: the default workflow (method chosen by cross-validation); "
                             "oracle: truth-chosen thresholds; cv: the held-out scores of "
                             "--candidates (small ones) with and without the patch grid; "
                             "none: only --ablation")
    parser.add_argument("--candidates", nargs="+", default=list(VOLUME_CANDIDATES),
                        choices=VOLUME_CANDIDATES, help="auto: the candidates")
    parser.add_argument("--z-sigma-px", type=float, default=None,
                        help="auto: the small candidates' blur along Z in slices (default: "
                             "the product's; 0: single slices)")
    parser.add_argument("--forest-slices", type=int, default=None,
                        help="auto: slices of the feature forest's input (default: the "
                             "product's, 1: single Z-blurred slices, 2-D features; 7: the "
                             "slab forest's 3-D features)")
    parser.add_argument("--family", default=None,
                        help="a name for --volume-options, stored in every record")
    parser.add_argument("--volume-options", type=json.loads, default={},
                        help='simulate_tomogram keywords as JSON, e.g. \'{"tilt_max_deg": 80}\'')
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--ablation-rates", type=float, nargs="+", default=list(ABLATION_RATES))
    # Training defaults: what `nwwatch train --volume` ships (training.config.VOLUME_DEFAULTS).
    parser.add_argument("--epochs", type=int, default=VOLUME_DEFAULTS["epochs"])
    parser.add_argument("--steps-per-epoch", type=int, default=VOLUME_DEFAULTS["steps_per_epoch"])
    parser.add_argument("--batch-size", type=int, default=VOLUME_DEFAULTS["batch_size"])
    parser.add_argument("--crop", type=int, default=VOLUME_DEFAULTS["crop"])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--classifier-steps", type=int,
                        default=VOLUME_DEFAULTS["classifier_steps"])
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="contrastive temperature (0.1 scatters the vacuum)")
    parser.add_argument("--self-negatives", default="all", choices=SELF_NEGATIVES,
                        help="contrastive: negatives of the self-supervised loss")
    parser.add_argument("--widths", type=int, nargs="+",
                        default=VOLUME_DEFAULTS["model_options"]["widths"])
    parser.add_argument("--second-slice", action="store_true",
                        help="label a second slice (size/4 above the central one) at the same "
                             "rate, for every method")
    parser.add_argument("--margin", type=int, default=16,
                        help="segment_volume's mirror margin in px (0: the bare border)")
    parser.add_argument("--fusions", nargs="+", default=[], choices=FUSIONS,
                        help="also record the deep methods segmented with these fusions")
    parser.add_argument("--triplanar", action="store_true",
                        help="the same as adding triplanar to --fusions")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime CPU threads")
    parser.add_argument("--device", default="cpu", help="training device: cpu, cuda, auto")
    parser.add_argument("--timing-size", type=int, default=0, help="0 skips the timing")
    parser.add_argument("--timing-model", type=Path, default=None,
                        help="ONNX model to time (default: the run's contrastive model)")
    parser.add_argument("--work", default=None, help="scratch folder (default: system temp)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/tomography.json"))
    parser.add_argument("--render", type=Path, nargs="+", default=None,
                        help="only print the Markdown tables of these result files")
    args = parser.parse_args(argv)
    if args.triplanar and "triplanar" not in args.fusions:
        args.fusions = ["triplanar", *args.fusions]
    if args.render:
        render(args.render)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.out.with_suffix(".log")

    def log(line: str) -> None:
        print(line, flush=True)
        with open(log_path, "a") as handle:
            handle.write(line + "\n")

    records: list[dict] = []
    model = None
    started = time.perf_counter()
    for seed in args.seeds:
        model = run_seed(args, seed, records, log) or model
    model = args.timing_model or model
    timing = time_large(args, model, log) if args.timing_size and model else None
    result = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "wall_s": time.perf_counter() - started,
        "records": records,
        "summary": {key: summarise(records, key)
                    for key in ("iou", "iou_in_grain", "solid_in_vacuum")},
        "timing": timing,
        "target": target_rows(records),
    }
    args.out.write_text(json.dumps(result, indent=2))
    log(markdown(records, args.rates))
    for row in result["target"]:
        log(json.dumps(row))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
