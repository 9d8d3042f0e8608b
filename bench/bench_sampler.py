"""Speed of the training sampler alone (batches/s) with ``--workers`` 0, 1, 2 ... threads.

The batches of ``nwwatch train`` on DATA (``load_folder``) at ``--batch-size`` and ``--crop``,
augmented, from the epoch generators of seed 0 (``--steps-per-epoch`` batches each; the
batches of one epoch take their draws one after the other), made by
:class:`training.sampler.BatchStream` and consumed as fast as they come (no training step).
The first ``--warmup`` batches of each run are not timed; runs alternate between the workers
values (``--repeats`` rounds), so a machine shared with other jobs weighs on all alike.
Also checks that every run gave the same batches as the first.

Usage::

    nwwatch synth insitu /tmp/syn --frames 40 --size 512
    OMP_NUM_THREADS=1 python -m bench.bench_sampler /tmp/syn --workers 0 1 2 --repeats 3 \
        --batches 60 --json bench/results/sampler_workers.json
    # the same with --steps-per-epoch 2 (this data's default: 32 training frames / 16)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from training.data import load_folder
from training.sampler import BatchSampler, BatchStream, make_batch, run_batches


def _digest(digest, images, labels) -> None:
    # Without copies (hashlib reads the arrays and releases the GIL): the consumer should
    # cost the sampler's threads as little as possible.
    digest.update(images.numpy().data)
    digest.update(labels.numpy().data)


def measure(sampler: BatchSampler, workers: int, batches: int, warmup: int,
            steps_per_epoch: int) -> dict:
    """batches/s of one run after ``warmup`` batches, and a digest of all its batches."""
    digest = hashlib.sha256()
    load_1min = os.getloadavg()[0]
    total = warmup + batches
    steps = steps_per_epoch or total
    specs = run_batches(sampler, 0, range(-(-total // steps)), steps)
    with BatchStream(specs, workers) as stream:
        for _ in range(warmup):
            images, labels, _ = next(stream)
            _digest(digest, images, labels)
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(batches):
            images, labels, _ = next(stream)
            _digest(digest, images, labels)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    # cpu_seconds / seconds: the cores the process kept busy (all its threads)
    return {"workers": workers, "batches": batches, "seconds": round(seconds, 3),
            "batches_per_s": round(batches / seconds, 2),
            "cores_busy": round(cpu_seconds / seconds, 2), "load_1min_before": load_1min,
            "sha256": digest.hexdigest()}


def parts(sampler: BatchSampler, batches: int) -> dict:
    """CPU ms per batch of the draws alone (the drawing thread's share, which caps the
    batches/s of any number of workers) and of applying them, one thread."""
    rng = np.random.default_rng([0, 0])
    started = time.process_time()
    draws = [sampler.draw(rng) for _ in range(batches)]
    drawing = time.process_time() - started
    started = time.process_time()
    for draw in draws:
        make_batch(draw)
    applying = time.process_time() - started
    return {"draw_cpu_ms_per_batch": round(drawing / batches * 1e3, 1),
            "apply_cpu_ms_per_batch": round(applying / batches * 1e3, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=384)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=0,
                        help="batches per epoch (one generator each); 0: one epoch of all")
    parser.add_argument("--repeats", type=int, default=2, help="runs per workers value")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    data = load_folder(args.data)
    sampler = BatchSampler(data.labeled, [], args.crop, args.batch_size)
    runs = [measure(sampler, workers, args.batches, args.warmup, args.steps_per_epoch)
            for _ in range(args.repeats) for workers in args.workers]
    split = parts(sampler, 20)
    print(f"one thread: draws {split['draw_cpu_ms_per_batch']} ms, applying them "
          f"{split['apply_cpu_ms_per_batch']} ms of CPU per batch")
    reference = runs[0]["sha256"]
    for run in runs:
        run["same_batches_as_first"] = run["sha256"] == reference
        print(f"workers {run['workers']}: {run['batches_per_s']:.1f} batches/s "
              f"({run['batches']} batches in {run['seconds']:.2f} s, {run['cores_busy']:.2f} "
              f"cores busy, load {run['load_1min_before']:.1f} before)"
              f"{'' if run['same_batches_as_first'] else '  DIFFERENT BATCHES'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "data": str(args.data), "images": len(data.labeled), "batch_size": args.batch_size,
            "steps_per_epoch": args.steps_per_epoch or args.warmup + args.batches,
            "crop": args.crop, "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "one_thread": split,
            "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
