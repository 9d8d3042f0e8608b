"""Benchmark ``nwwatch replay --dask`` against local replay on one machine.

On the same synthetic frame folder (single-frame TIFFs from ``nwwatch.synth``):

1. local replay (one process, ONNX Runtime with ``--threads`` intra-op threads);
2. the same replay on a Dask LocalCluster of ``--workers`` worker processes, one thread each
   (ONNX Runtime with ``threads / workers`` threads per worker), started before the timing
   (its start-up is reported separately), each worker loading the model on its first task;
3. rows of both compared (all columns except run-specific timing and batch ids);
4. the scheduler's own cost: round trips of empty tasks, one at a time and many at once.

Usage::

    nice -n 10 .venv/bin/python bench/bench_cluster.py [--frames 1000] [--size 512]
        [--distinct 100] [--workers 2] [--threads 2] [--rounds 1] [--model M.onnx]
        [--json out.json]

With ``--rounds N`` each replay runs N times in ABBA order (local, dask, dask, local, ...)
on the one cluster; the figures are means over the rounds, ``rounds`` lists each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_replay import make_frames, pick_model, write_config  # noqa: E402

RUN_COLUMNS = ["processed_at", "read_ms", "segment_ms", "measure_ms", "confidence_ms",
               "batch_id"]


def rows(results: Path):
    import pyarrow.dataset as ds

    table = ds.dataset(results / "frames", format="parquet").to_table().to_pandas()
    return table.sort_values(["source", "frame"]).reset_index(drop=True)


def copies(folder: Path, n: int) -> None:
    """Fill ``folder`` up to ``n`` frames with shifted copies of its rendered frames (a
    column roll: new content, so no file is a duplicate the ledger would skip)."""
    import numpy as np

    from nwwatch.io import read_frames, write_frame_tiff

    rendered = sorted(folder.glob("*.tif"))
    k = 0
    while len(rendered) + k < n:
        src = rendered[k % len(rendered)]
        frame = read_frames(src)[0]
        shift = 1 + k // len(rendered)
        write_frame_tiff(folder / f"{src.stem}-shift{shift}.tif",
                         np.roll(frame.image, shift, axis=1), pixel_size_nm=frame.pixel_size_nm)
        k += 1


def _noop(x: int) -> int:
    return x


def scheduler_overhead(client, n: int = 200) -> dict:
    """Milliseconds per empty task: sequential round trip, and amortised when many queue."""
    client.submit(_noop, -1, pure=False).result()  # warm-up
    t0 = time.perf_counter()
    for i in range(n // 4):
        client.submit(_noop, i, pure=False).result()
    sequential = (time.perf_counter() - t0) / (n // 4) * 1e3
    t0 = time.perf_counter()
    client.gather([client.submit(_noop, i, pure=False) for i in range(n)])
    queued = (time.perf_counter() - t0) / n * 1e3
    return {"empty_task_round_trip_ms": sequential, "empty_task_queued_ms": queued}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--distinct", type=int, default=100,
                    help="frames rendered; the others are shifted copies (rendering is slow)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="ORT threads of local replay")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1,
                    help="replays of each kind, in ABBA order (local, dask, dask, local, ...)")
    ap.add_argument("--json")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    from nwwatch.logsetup import configure_logging
    from nwwatch.service import replay

    configure_logging("error")
    work = Path(tempfile.mkdtemp(prefix="nwwatch-bench-cluster-"))
    try:
        model, model_note = pick_model(args.model, work)
        frames = work / "frames"
        t = time.perf_counter()
        distinct = min(args.distinct, args.frames)
        make_frames(frames, distinct, args.size)
        copies(frames, args.frames)
        print(f"{args.frames} frames of {args.size}² ({distinct} rendered) written in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        local_cfg = write_config(work / "local.toml", frames, work / "unused", model,
                                 args.threads, args.batch_size)
        per_worker = max(1, args.threads // args.workers)
        cluster_cfg = write_config(work / "cluster.toml", frames, work / "unused", model,
                                   per_worker, args.batch_size)

        t = time.perf_counter()
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0")
        client = Client(cluster)
        start_s = time.perf_counter() - t
        rounds = []
        try:
            # ABBA order (local, dask, dask, local, ...): a load that drifts over the run
            # (other jobs on a shared machine) weighs on both the same
            for k in range(args.rounds):
                walls: dict[str, float] = {}
                for way in (("local", "dask") if k % 2 == 0 else ("dask", "local")):
                    out = work / f"{way}{k}"
                    load = os.getloadavg()[0]
                    t = time.perf_counter()
                    if way == "local":
                        local = replay(frames, out, model=model, config=local_cfg)
                    else:
                        dask = replay(frames, out, model=model, config=cluster_cfg,
                                      dask=cluster.scheduler_address)
                    walls[way] = time.perf_counter() - t
                    walls[f"{way}_load"] = load
                    print(f"round {k}: {way} replay {args.frames} frames in {walls[way]:.1f} s "
                          f"(load {load:.1f})", flush=True)
                compaction_s = dask.compaction_seconds
                # wall time of the replay call, the final compaction excluded (local replay
                # does not compact)
                rounds.append({"local_wall_s": walls["local"], "dask_wall_s": walls["dask"],
                               "dask_final_compaction_s": compaction_s,
                               "load_before_local": walls["local_load"],
                               "load_before_dask": walls["dask_load"],
                               "throughput_ratio": walls["local"]
                               / (walls["dask"] - compaction_s)})
            overhead = scheduler_overhead(client)
        finally:
            client.close()
            cluster.close()
        local_wall = sum(r["local_wall_s"] for r in rounds) / len(rounds)
        dask_wall = sum(r["dask_wall_s"] for r in rounds) / len(rounds)
        compaction_s = sum(r["dask_final_compaction_s"] for r in rounds) / len(rounds)
        last = args.rounds - 1

        a = rows(work / f"local{last}").drop(columns=RUN_COLUMNS)
        b = rows(work / f"dask{last}").drop(columns=RUN_COLUMNS)
        identical = a.equals(b)
        s = dask.cluster
        tasks = max(1, s.tasks)
        result = {
            "model": str(model.relative_to(REPO) if model.is_relative_to(REPO) else model),
            "model_note": model_note, "frame_size": args.size, "frames": args.frames,
            "workers": args.workers, "ort_threads_local": args.threads,
            "ort_threads_per_worker": per_worker, "batch_size": args.batch_size,
            "cpu_count": os.cpu_count(),
            "rounds": rounds,
            # the means over the rounds
            "local_replay": {"rows": local.frames, "wall_s": local_wall,
                             "frames_per_s": local.frames / local_wall},
            "dask_replay": {"rows": dask.frames, "wall_s": dask_wall,
                            "frames_per_s": dask.frames / dask_wall,
                            "cluster_start_s": start_s,
                            "processing_s": dask.seconds,
                            "final_compaction_s": compaction_s,
                            "files_before_compaction": dask.compaction.files_before},
            "throughput_ratio": (dask.frames / (dask_wall - compaction_s))
            / (local.frames / local_wall),
            "rows_identical": identical,
            "tasks": s.tasks,
            "frames_per_task_median": statistics.median(s.frames_per_task or [0]),
            "worker_s_per_frame": s.worker_seconds / max(1, dask.frames),
            "worker_s_per_task_mean": s.worker_seconds / tasks,
            "driver_commit_ms_per_task": s.driver_commit_seconds / tasks * 1e3,
            "scheduler_bytes_sent_per_task": s.sent_bytes / tasks,
            "scheduler_bytes_received_per_task": s.received_bytes / tasks,
            "staged_parquet_bytes_per_task": s.staged_bytes / tasks,
            "staged_parquet_bytes_per_frame": s.staged_bytes / max(1, dask.frames),
            "input_bytes_per_frame": sum(p.stat().st_size for p in frames.glob("*.tif"))
            / args.frames,
            **overhead,
        }
        print(json.dumps(result, indent=1), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        if not identical:
            sys.exit("rows differ between local and dask replay")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
