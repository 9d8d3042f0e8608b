"""'10 frames -> your model': the default fine-tuning command on frames of a look the model has
not seen, labelled through the labelling tool's geometry code.

1. Frames of a "new microscope": synthetic frames (untilted, untruncated wires, no
   distractors, so the tool's circle + polygon describe them exactly) rendered with optics
   outside what the shipped model was trained on (:func:`new_look`): strong lattice fringes,
   over-focus, a steep illumination gradient, a noisy low dose and a heavy film texture.
2. Labelled programmatically the way the tool does it: truth -> droplet circle + wire polygon
   (:class:`nwwatch.label.geometry.LabelGeometry`) -> :func:`nwwatch.label.store.save_labeled_frame`
   (rasterised masks, geometry JSON, human angles in truth.parquet).
3. ``nwwatch train DATA --init insitu-default --out mine.onnx`` - nothing else - timed.
4. ``nwwatch evaluate`` of the shipped model and of mine.onnx on held-out frames of the look.

Usage::

    python bench/bench_finetune.py --out bench/out/finetune --threads 1 --record
    python bench/bench_finetune.py --out /tmp/ft --train 4 --test 4 --epochs 2   # smoke

Writes ``OUT/result.json`` (and, with ``--record``, bench/results/finetune_10frames.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 4242
LOOK = {"lattice_amplitude": 0.25, "lattice_period_px": 5.0, "defocus_scale": -3.0,
        "illumination_gradient": 0.6, "dose_e_per_px": 15.0, "film_phase_rad": 0.3}


def new_look(params):
    """``params`` rendered by a different microscope (see the module docstring)."""
    return dataclasses.replace(
        params, lattice_amplitude=LOOK["lattice_amplitude"],
        lattice_period_px=LOOK["lattice_period_px"],
        defocus_nm=params.defocus_nm * LOOK["defocus_scale"],
        illumination_gradient=LOOK["illumination_gradient"],
        dose_e_per_px=LOOK["dose_e_per_px"], film_phase_rad=LOOK["film_phase_rad"])


def _label_helpers():
    """The tests' textbook-frame helpers (one truth -> tool geometry in the repository)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import label_helpers

    return label_helpers


def make_frames(folder: Path, indices: range, size: int, labelled_by_tool: bool) -> None:
    """Render frames of the new look; training frames go through the tool's writer, test
    frames are written with the generator's exact labels and truth angles."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nwwatch.io import write_frame_tiff
    from nwwatch.label.store import save_labeled_frame, write_png
    from nwwatch.synth.insitu import render_insitu_frame

    helpers = _label_helpers()

    rows = []
    for k in indices:
        params = new_look(helpers.plain_params(SEED, k, size))
        image, labels, truth = render_insitu_frame(params, np.random.default_rng(k))
        stem = f"frame_{k:05d}"
        if labelled_by_tool:
            save_labeled_frame(folder, stem, image, helpers.truth_geometry(params),
                               {"synthetic": f"seed {SEED} frame {k}"})
        else:
            write_frame_tiff(folder / "images" / f"{stem}.tif", image,
                             pixel_size_nm=params.pixel_size_nm)
            write_png(folder / "labels" / f"{stem}.png", labels)
            rows.append({"file": f"{stem}.tif", "theta_apparent_deg":
                         truth["theta_apparent_deg"], "pixel_size_nm": params.pixel_size_nm})
    if rows:
        pq.write_table(pa.Table.from_pylist(rows), folder / "truth.parquet")


def evaluate(model: Path, data: Path) -> dict:
    from nwwatch.evaluate import evaluate_folder

    report = evaluate_folder(model, data, threads=1)
    out = {"mIoU": report.metrics.mean_iou,
           "iou": dict(zip(report.class_names, map(float, report.metrics.iou), strict=True))}
    if report.angles is not None:
        out["angles"] = report.angles.__dict__
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=10)
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the default epochs (smoke runs only)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads of the training run (an execution setting, "
                             "not part of the recipe; 1 on a machine shared with other jobs, "
                             "where spinning OpenMP threads slow a run many times)")
    parser.add_argument("--record", action="store_true",
                        help="also write bench/results/finetune_10frames.json")
    args = parser.parse_args(argv)
    out = args.out
    data, test = out / "DATA", out / "test"
    if not data.is_dir():
        make_frames(data, range(args.train), args.size, labelled_by_tool=True)
    if not test.is_dir():
        make_frames(test, range(1000, 1000 + args.test), args.size, labelled_by_tool=False)
    default_model = ROOT / "nwwatch" / "models" / "insitu-default.onnx"
    before = evaluate(default_model, test)
    mine = out / "mine.onnx"
    command = [sys.executable, "-c", "from nwwatch.cli import main; main()", "train", str(data),
               "--init", "insitu-default", "--out", str(mine)]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    wall_s = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # On a shared machine the wall time says more about the neighbours than about the run;
    # the CPU time (user + system) bounds the wall time of a quiet 2-core machine from above
    # by cpu_s and from below by cpu_s / 2.
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    after = evaluate(mine, test)
    result = {
        "command": " ".join(["nwwatch", "train", "DATA", "--init", "insitu-default", "--out",
                             "mine.onnx"] + (["--epochs", str(args.epochs)] if args.epochs
                                              else [])
                            + (["--threads", str(args.threads)] if args.threads else [])),
        "bench": " ".join(["python", "bench/bench_finetune.py", *(argv or sys.argv[1:])]),
        "look": LOOK, "seed": SEED, "train_frames": args.train, "test_frames": args.test,
        "size": args.size, "wall_s": wall_s, "cpu_s": cpu_s,
        "load_average_1min_after": os.getloadavg()[0], "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "before": before, "after": after,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1, default=float))
    if args.record:
        target = ROOT / "bench" / "results" / "finetune_10frames.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: result[k] for k in ("wall_s", "cpu_s", "before", "after")}, indent=1,
                     default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
