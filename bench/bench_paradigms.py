"""Seed 000's model comparison (A-F) plus seed 003's contrastive method (G) on synthetic data.

Few-label regime: ``--labeled`` labeled frames, ``--unlabeled`` unlabeled frames, a fresh test
set (other seeds). Every model is trained by ``training.engine.train`` (what ``nwwatch train``
runs), exported to ONNX, and scored by ``nwwatch.evaluate.evaluate_folder`` (what
``nwwatch evaluate`` runs): mIoU, pixel accuracy, mean Dice, contact-angle RMSE against the
synthetic truth with the failure count. The paper's published figures are printed beside ours
(their data: real frames, 200 labeled + 10,000 unlabeled, 50 epochs, error vs a human).

    A  pspnet      supervised
    B  pspnet      cct (all seven perturbations)
    C  pspnet      cct, ResNet frozen from A (weights + BatchNorm statistics)
    D  unet-paper  supervised
    E  unet-paper  cct (bottleneck: dropout, feature drop, feature noise)
    F  unet-paper  pseudo-label, teacher D
    G  unet-paper  contrastive (16-d embedding + 1x1 classifier)

Usage (the paper-sized setting needs a GPU; see docs/training.md for what was run here)::

    python bench/bench_paradigms.py --out /tmp/bench --labeled 40 --unlabeled 1000 --test 100
    python bench/bench_paradigms.py --out /tmp/bench-tiny --tiny      # smoke setting, minutes
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

#: The first paper's published figures: mIoU % and contact-angle MSE (deg^2).
PAPER = {
    "A": (92.0, 28.30), "B": (86.8, 61.46), "C": (92.1, 30.68),
    "D": (93.4, 3.88), "E": (94.7, 6.01), "F": (96.4, 3.26), "G": (None, None),
}
MODELS = {
    "A": dict(arch="pspnet", paradigm="supervised"),
    "B": dict(arch="pspnet", paradigm="cct"),
    "C": dict(arch="pspnet", paradigm="cct", frozen_encoder="A"),
    "D": dict(arch="unet-paper", paradigm="supervised"),
    "E": dict(arch="unet-paper", paradigm="cct"),
    "F": dict(arch="unet-paper", paradigm="pseudo-label", teacher="D"),
    "G": dict(arch="unet-paper", paradigm="contrastive"),
}


def make_data(root: Path, labeled: int, unlabeled: int, test: int, size: int) -> tuple[Path, Path]:
    """root/train (images + labels + unlabeled/) and root/test (with truth.parquet)."""
    from nwwatch.synth.insitu import generate_insitu

    train, test_dir = root / "train", root / "test"
    if not (train / "labels").is_dir():
        generate_insitu(train, labeled, seed=101, size=size)
    if unlabeled and not (train / "unlabeled").is_dir():
        scratch = root / "unlabeled-scratch"
        generate_insitu(scratch, unlabeled, seed=202, size=size)
        (train / "unlabeled").mkdir()
        for path in sorted(scratch.glob("*.tif")):
            path.rename(train / "unlabeled" / path.name)
        shutil.rmtree(scratch)
    if not (test_dir / "labels").is_dir():
        generate_insitu(test_dir, test, seed=303, size=size)
    return train, test_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labeled", type=int, default=40)
    parser.add_argument("--unlabeled", type=int, default=1000)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=None, help="iterations per epoch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--models", default="ABCDEFG")
    parser.add_argument("--pspnet-options", default="{}", help="JSON, e.g. smaller ResNet")
    parser.add_argument("--unet-arch", default="unet-paper", choices=("unet-paper", "unet"),
                        help="UNet of D-G: the paper's (default) or the lean one (CPU budgets)")
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0, help="training seed (data seeds are fixed)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and ONNX Runtime threads (1 is fastest on a busy machine)")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke setting: 4 labeled, 4 unlabeled, 2 test 64 px frames, "
                             "1 epoch of 2 steps, small PSPNet")
    args = parser.parse_args()
    if args.tiny:
        args.labeled, args.unlabeled, args.test, args.size = 4, 4, 2, 64
        args.epochs, args.steps, args.batch_size, args.crop = 1, 2, 2, 64
        args.pspnet_options = json.dumps({"layers": [1, 1, 1, 1], "base_width": 8,
                                          "ppm_channels": 16})

    import torch

    from nwwatch.evaluate import evaluate_folder
    from training.config import TrainConfig
    from training.engine import train

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train_dir, test_dir = make_data(args.out, args.labeled, args.unlabeled, args.test, args.size)
    rows = []
    for name in args.models:
        spec = dict(MODELS[name])
        if spec["arch"] == "unet-paper":
            spec["arch"] = args.unet_arch
        config = TrainConfig(
            out=str(args.out / "models" / f"{name}.onnx"), data=str(train_dir),
            paradigm=spec["paradigm"], arch=spec["arch"],
            model_options=json.loads(args.pspnet_options) if spec["arch"] == "pspnet" else {},
            epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size,
            crop=args.crop, optimizer=args.optimizer, lr=args.lr, val_fraction=0.2, seed=args.seed,
            exporter="legacy",
            frozen_encoder=str(args.out / "models" / f"{spec['frozen_encoder']}.pt")
            if "frozen_encoder" in spec else None,
            teacher=str(args.out / "models" / f"{spec['teacher']}.pt") if "teacher" in spec
            else None,
            command=f"bench/bench_paradigms.py model {name}",
        )
        started = time.monotonic()
        result = train(config, progress=False, echo=lambda line, n=name: print(f"[{n}] {line}"))
        seconds = time.monotonic() - started
        report = evaluate_folder(result.out, test_dir, threads=args.threads)
        m, a = report.metrics, report.angles
        t = report.angles_on_truth_labels  # the measurement alone, on the true labels
        rows.append({
            "model": name, **spec, "train_s": round(seconds, 1),
            "miou": m.mean_iou, "pixel_accuracy": m.pixel_accuracy, "dice": m.mean_dice,
            "iou_per_class": list(m.iou),
            "angle_rmse_deg": a.rmse_deg if a else None,
            "angle_valid": a.valid if a else None, "angle_failures": a.failures if a else None,
            "truth_label_angle_rmse_deg": t.rmse_deg if t else None,
            "truth_label_angle_valid": t.valid if t else None,
            "paper_miou": PAPER[name][0],
            "paper_angle_rmse_deg": math.sqrt(PAPER[name][1]) if PAPER[name][1] else None,
        })
        print(json.dumps(rows[-1]))
    (args.out / "results.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                                       "rows": rows}, indent=2, default=str))
    print("\n| model | arch | paradigm | mIoU % | pixel acc % | Dice % | angle RMSE deg "
          "(valid / failed) | paper mIoU % | paper angle RMSE deg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        failed = sum((r["angle_failures"] or {}).values())
        paper_rmse = f"{r['paper_angle_rmse_deg']:.2f}" if r["paper_angle_rmse_deg"] else "-"
        print(f"| {r['model']} | {r['arch']} | {r['paradigm']} | {100 * r['miou']:.1f} | "
              f"{100 * r['pixel_accuracy']:.1f} | {100 * r['dice']:.1f} | "
              f"{r['angle_rmse_deg'] or float('nan'):.2f} ({r['angle_valid']} / {failed}) | "
              f"{r['paper_miou'] or '-'} | {paper_rmse} |")


if __name__ == "__main__":
    main()
