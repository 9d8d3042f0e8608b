"""'10 frames -> your model': the default fine-tuning command on frames of a look the model has
not seen, labelled through the labelling tool's geometry code.

1. Frames of a "new microscope": synthetic frames (untilted, untruncated wires, no
   distractors, so the tool's circle + polygon describe them exactly) of one of two looks
   (``--look``, :data:`LOOKS`):

   - ``hard`` (:func:`new_look`): optics outside what the shipped model was trained on -
     strong lattice fringes, 3x over-focus, a steep illumination gradient, a noisy 15 e-/px
     dose and a heavy film texture.
   - ``moderate`` (:func:`moderate_look`): a realistic microscope closer to the real frames
     (docs/synthetic-insitu.md) - 60-200 e-/px, a camera with another gain and offset
     (20 ADU/e-, 3000 ADU) and a gamma of 0.8, a fixed material contrast (droplet as
     absorbing per nm as the wire), resolved fringes, a burned-in scale bar, a 30 %
     illumination gradient, a bright halo round the droplet and a thin contamination layer
     on the sidewalls, droplet radius 40-150 px.
2. Labelled programmatically the way the tool does it: truth -> droplet circle + wire polygon
   (:class:`nwwatch.label.geometry.LabelGeometry`) -> :func:`nwwatch.label.store.save_labeled_frame`
   (rasterised masks, geometry JSON, human angles in truth.parquet).
3. ``nwwatch train DATA --init insitu-default --out mine.onnx`` - nothing else - timed.
4. ``nwwatch evaluate`` of the shipped model and of mine.onnx on held-out frames of the look
   (angles against the generator's exact apparent angle; also those measured on the exact
   labels, the ceiling of the measurement on that look).

Usage::

    python bench/bench_finetune.py --out bench/out/finetune --threads 1 --record
    python bench/bench_finetune.py --look moderate --out bench/out/finetune_moderate \
        --threads 1 --record
    python bench/bench_finetune.py --out /tmp/ft --train 4 --test 4 --epochs 2   # smoke

Writes ``OUT/result.json`` (and, with ``--record``, bench/results/finetune_10frames.json, or
bench/results/finetune_10frames_LOOK.json for another look; ``_valF`` and ``_Nepochs``
appended with ``--val-fraction F`` and ``--epochs N``).
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
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 4242
LOOK = {"lattice_amplitude": 0.25, "lattice_period_px": 5.0, "defocus_scale": -3.0,
        "illumination_gradient": 0.6, "dose_e_per_px": 15.0, "film_phase_rad": 0.3}
# A realistic microscope, fixed before any fine-tune on it was run (docs/training.md gives
# the reasons): the dose and droplet sizes of real growth videos, a camera outside the
# training draws (gain 1-16 ADU/e-, offset 100-2000 ADU), one material system's contrast.
MODERATE_LOOK = {
    "dose_e_per_px": [60.0, 200.0], "droplet_radius_px": [40.0, 150.0],
    "theta_deg": [95.0, 140.0], "gain_adu_per_e": 20.0, "offset_adu": 3000.0,
    "read_noise_adu": 8.0, "gamma": 0.8, "wire_transmission": 0.7,
    "liquid_mfp_over_wire": 1.0, "lattice_amplitude": 0.2, "lattice_period_px": 4.0,
    "stacking_contrast": 0.03, "illumination_gradient": 0.3, "vignette": 0.1,
    "film_phase_rad": 0.1, "blur_px": 1.0, "halo_droplet": 0.2, "halo_wire": 0.08,
    "halo_width_px": 4.0, "contamination_px": 3.0, "contamination_darkening": 0.08,
    "scale_bar": True,
}


def new_look(params):
    """``params`` rendered by a different microscope (see the module docstring)."""
    return dataclasses.replace(
        params, lattice_amplitude=LOOK["lattice_amplitude"],
        lattice_period_px=LOOK["lattice_period_px"],
        defocus_nm=params.defocus_nm * LOOK["defocus_scale"],
        illumination_gradient=LOOK["illumination_gradient"],
        dose_e_per_px=LOOK["dose_e_per_px"], film_phase_rad=LOOK["film_phase_rad"])


def moderate_look(seed: int, index: int, size: int):
    """Frame ``index`` of the ``moderate`` look: the tests' plain geometry (untilted,
    untruncated straight wire, facet square to it, no distractors) with theta uniform and the
    droplet radius log-uniform in the look's ranges, rendered with :data:`MODERATE_LOOK`
    (dose log-uniform per frame; the other settings fixed, as one microscope keeps them)."""
    from nwwatch.synth.params import frame_rng, sample_frame_params

    m = MODERATE_LOOK
    rng = np.random.default_rng([seed, index, 17])
    theta = float(rng.uniform(*m["theta_deg"]))
    radius_px = float(np.exp(rng.uniform(*np.log(m["droplet_radius_px"]))))
    dose = float(np.exp(rng.uniform(*np.log(m["dose_e_per_px"]))))
    params = sample_frame_params(
        frame_rng(seed, index, 0), size, frame_index=index, tilt_deg=0.0, truncation_px=0.0,
        n_distractors=0, scale_bar=m["scale_bar"], placement="centred",
        facet_incline_deg=0.0, wire_profile="straight", base_ratio=1.0, theta_deg=theta,
        a_px=radius_px * np.sin(np.radians(theta)), dose_e_per_px=dose)
    # Contrast of one material system: the thickest wire chord transmits 70 %, the droplet
    # absorbs as much per nm (darker than the wire only where it is thicker).
    mfp_wire_nm = 2.0 * params.wire.radius_px * params.pixel_size_nm / -np.log(
        m["wire_transmission"])
    appearance = dataclasses.replace(
        params.appearance, halo_droplet=m["halo_droplet"], halo_wire=m["halo_wire"],
        halo_width_px=m["halo_width_px"], contamination_px=m["contamination_px"],
        contamination_darkening=m["contamination_darkening"], contamination_droplet=False,
        gamma=m["gamma"], text_count=0, jpeg_quality=0)
    return dataclasses.replace(
        params, mfp_wire_nm=float(mfp_wire_nm),
        mfp_liquid_nm=float(mfp_wire_nm * m["liquid_mfp_over_wire"]),
        lattice_amplitude=m["lattice_amplitude"], lattice_period_px=m["lattice_period_px"],
        stacking_contrast=m["stacking_contrast"],
        illumination_gradient=m["illumination_gradient"], vignette=m["vignette"],
        film_phase_rad=m["film_phase_rad"], blur_px=m["blur_px"],
        gain_adu_per_e=m["gain_adu_per_e"], offset_adu=m["offset_adu"],
        read_noise_adu=m["read_noise_adu"], appearance=appearance)


def _hard_look(seed: int, index: int, size: int):
    return new_look(_label_helpers().plain_params(seed, index, size))


#: --look name -> (frame parameters of (seed, index, size), the settings recorded).
LOOKS = {"hard": (_hard_look, LOOK), "moderate": (moderate_look, MODERATE_LOOK)}


def _label_helpers():
    """The tests' textbook-frame helpers (one truth -> tool geometry in the repository)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import label_helpers

    return label_helpers


def make_frames(folder: Path, indices: range, size: int, labelled_by_tool: bool,
                look: str = "hard") -> None:
    """Render frames of ``look``; training frames go through the tool's writer, test
    frames are written with the generator's exact labels and truth angles."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nwwatch.io import write_frame_tiff
    from nwwatch.io.png import write_image_file
    from nwwatch.label.store import save_labeled_frame
    from nwwatch.synth.insitu import render_insitu_frame

    helpers = _label_helpers()

    rows = []
    for k in indices:
        params = LOOKS[look][0](SEED, k, size)
        image, labels, truth = render_insitu_frame(params, np.random.default_rng(k))
        stem = f"frame_{k:05d}"
        if labelled_by_tool:
            save_labeled_frame(folder, stem, image, helpers.truth_geometry(params),
                               {"synthetic": f"seed {SEED} frame {k}"})
        else:
            write_frame_tiff(folder / "images" / f"{stem}.tif", image,
                             pixel_size_nm=params.pixel_size_nm)
            write_image_file(folder / "labels" / f"{stem}.png", labels, durable=True)
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
    if report.angles_on_truth_labels is not None:
        out["angles_on_truth_labels"] = report.angles_on_truth_labels.__dict__
    return out


def training_summary(checkpoint: Path) -> dict:
    """The run's validation curve from its checkpoint: which epoch was exported (the best
    validation mIoU) and how the last epoch compared."""
    from training.checkpoint import load_checkpoint

    saved = load_checkpoint(checkpoint)
    history = saved["history"]
    key = "val_mean_iou" if "val_mean_iou" in history[-1] else "train_mean_iou"
    return {"split": saved["split"], "exported_epoch": saved["best"]["epoch"],
            "epochs": len(history), "curve_metric": key,
            "curve": [round(float(h[key]), 4) for h in history],
            "loss": [round(float(h["loss"]), 4) for h in history]}


class CheckpointWatcher(threading.Thread):
    """Keep every version of a run's checkpoint as a hard link (``<name>.v<N>``).

    The run rewrites ``MODEL.pt`` atomically after each epoch (a new file each time), and its
    final write holds the exported (best validation) weights in both ``state`` and
    ``inference_state``; the version written after the last epoch is the only one that still
    holds the last epoch's weights. Linking a path costs nothing and keeps that inode intact.
    """

    def __init__(self, path: Path, poll_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.path, self.poll_s, self.stop = path, poll_s, threading.Event()
        self.versions: list[Path] = []

    def run(self) -> None:
        seen = None
        while not self.stop.is_set():
            try:
                inode = self.path.stat().st_ino
                if inode != seen:
                    link = self.path.with_name(f"{self.path.name}.v{len(self.versions)}")
                    link.unlink(missing_ok=True)
                    os.link(self.path, link)
                    seen = link.stat().st_ino
                    self.versions.append(link)
                    # Only the newest few matter: drop older links.
                    for old in self.versions[:-3]:
                        old.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            self.stop.wait(self.poll_s)


def export_last_epoch(versions: list[Path], mine: Path, out: Path) -> Path | None:
    """Export the last epoch's weights (the run exports its best validation epoch) to ``out``
    with ``mine``'s metadata, to see what the choice of epoch is worth on held-out frames.
    ``versions``: checkpoint versions kept by :class:`CheckpointWatcher`; None when none
    holds the last epoch (the watcher missed it)."""
    from dataclasses import replace

    import torch

    from nwwatch.segment.session import Segmenter
    from training.checkpoint import load_checkpoint
    from training.export import export_onnx
    from training.paradigms.base import build_inference_model

    final = load_checkpoint(mine.with_suffix(".pt"))
    epochs = final["config"]["epochs"]
    state = None
    for version in versions:
        try:
            saved = load_checkpoint(version)
        except Exception:  # a version dropped while listed
            continue
        if saved["epoch"] == epochs and len(saved["history"]) == epochs:
            candidate = saved["state"]
            if saved["best"]["epoch"] == epochs or any(
                    not torch.equal(candidate[k], final["state"][k]) for k in candidate):
                state = candidate
    if state is None:
        return None
    # The supervised paradigm's modules hold the logits model under "model.".
    model = build_inference_model(final["inference"])
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    metadata = Segmenter(mine, providers=("cpu",), threads=1).metadata
    metadata = replace(metadata, validation_metrics={},
                       training_command=metadata.training_command + " (last epoch)")
    export_onnx(model.eval(), out, metadata, exporter="legacy")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--look", choices=sorted(LOOKS), default="hard",
                        help="the new microscope's look (module docstring)")
    parser.add_argument("--train", type=int, default=10)
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the default epochs (smoke runs only)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="passed to nwwatch train (a candidate recipe: 0 trains on every "
                             "frame and exports the last epoch)")
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
        make_frames(data, range(args.train), args.size, labelled_by_tool=True, look=args.look)
    if not test.is_dir():
        make_frames(test, range(1000, 1000 + args.test), args.size, labelled_by_tool=False,
                    look=args.look)
    default_model = ROOT / "nwwatch" / "models" / "insitu-default.onnx"
    before = evaluate(default_model, test)
    mine = out / "mine.onnx"
    command = [sys.executable, "-c", "from nwwatch.cli import main; main()", "train", str(data),
               "--init", "insitu-default", "--out", str(mine)]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.val_fraction is not None:
        command += ["--val-fraction", str(args.val_fraction)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # A previous run's files would pass for this run's versions.
    mine.unlink(missing_ok=True)
    mine.with_suffix(".pt").unlink(missing_ok=True)
    watcher = CheckpointWatcher(mine.with_suffix(".pt"))
    watcher.start()
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    watcher.stop.set()
    watcher.join()
    wall_s = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # On a shared machine the wall time says more about the neighbours than about the run;
    # the CPU time (user + system) bounds the wall time of a quiet 2-core machine from above
    # by cpu_s and from below by cpu_s / 2.
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    after = evaluate(mine, test)
    training = training_summary(mine.with_suffix(".pt"))
    last_model = export_last_epoch(watcher.versions, mine, out / "mine-last-epoch.onnx")
    last_epoch = evaluate(last_model, test) if last_model is not None else None
    for version in watcher.versions:
        version.unlink(missing_ok=True)
    result = {
        "command": " ".join(["nwwatch", "train", "DATA", "--init", "insitu-default", "--out",
                             "mine.onnx"] + (["--epochs", str(args.epochs)] if args.epochs
                                              else [])
                            + (["--val-fraction", str(args.val_fraction)]
                               if args.val_fraction is not None else [])
                            + (["--threads", str(args.threads)] if args.threads else [])),
        "bench": " ".join(["python", "bench/bench_finetune.py", *(argv or sys.argv[1:])]),
        "look_name": args.look, "look": LOOKS[args.look][1], "seed": SEED,
        "train_frames": args.train, "test_frames": args.test,
        "size": args.size, "wall_s": wall_s, "cpu_s": cpu_s,
        "load_average_1min_after": os.getloadavg()[0], "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "before": before, "after": after, "after_last_epoch": last_epoch,
        "training": training,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1, default=float))
    if args.record:
        name = "finetune_10frames" + ("" if args.look == "hard" else f"_{args.look}") + (
            "" if args.val_fraction is None else f"_val{args.val_fraction:g}") + (
            "" if args.epochs is None else f"_{args.epochs}epochs")
        target = ROOT / "bench" / "results" / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: result[k] for k in ("wall_s", "cpu_s", "before", "after")}, indent=1,
                     default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
