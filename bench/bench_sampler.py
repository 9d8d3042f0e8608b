"""Speed of the training sampler alone (batches/s) with ``--workers`` 0, 1, 2 ... threads.

The batches of ``nwwatch train`` on DATA (``load_folder``) at ``--batch-size`` and ``--crop``,
augmented, from the epoch generators of seed 0, made by :class:`training.sampler.BatchStream`
and consumed as fast as they come (no training step). The first ``--warmup`` batches of each
run are not timed. Also checks that every run gave the same batches as ``--workers 0``.

Usage::

    nwwatch synth insitu /tmp/syn --frames 40 --size 512
    OMP_NUM_THREADS=1 python -m bench.bench_sampler /tmp/syn --workers 0 1 2 \
        --json bench/results/sampler_workers.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

from training.data import load_folder
from training.sampler import BatchSampler, BatchStream, epoch_draws


def measure(sampler: BatchSampler, workers: int, batches: int, warmup: int) -> dict:
    """batches/s of one run after ``warmup`` batches, and a digest of all its batches."""
    digest = hashlib.sha256()
    with BatchStream(epoch_draws(sampler, 0, range(1), warmup + batches), workers) as stream:
        for _ in range(warmup):
            images, labels, _ = next(stream)
            digest.update(images.numpy().tobytes() + labels.numpy().tobytes())
        started = time.perf_counter()
        for _ in range(batches):
            images, labels, _ = next(stream)
            digest.update(images.numpy().tobytes() + labels.numpy().tobytes())
        seconds = time.perf_counter() - started
    return {"workers": workers, "batches": batches, "seconds": round(seconds, 3),
            "batches_per_s": round(batches / seconds, 2), "sha256": digest.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=384)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="runs per workers value")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    data = load_folder(args.data)
    sampler = BatchSampler(data.labeled, [], args.crop, args.batch_size)
    runs = [measure(sampler, workers, args.batches, args.warmup)
            for _ in range(args.repeats) for workers in args.workers]
    reference = runs[0]["sha256"]
    for run in runs:
        run["same_batches_as_first"] = run["sha256"] == reference
        print(f"workers {run['workers']}: {run['batches_per_s']:.1f} batches/s "
              f"({run['batches']} batches in {run['seconds']:.2f} s)"
              f"{'' if run['same_batches_as_first'] else '  DIFFERENT BATCHES'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "data": str(args.data), "images": len(data.labeled), "batch_size": args.batch_size,
            "crop": args.crop, "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
