"""How much time the concurrent streams leave cores idle at the end of a ``process`` call
(docs/service.md, "Streams at the end of a call").

With ``[inference] streams`` N > 1 every concurrent network call runs on a session of one
intra-op thread. When a stream has no group left in the call while another still runs, the
one still running keeps its one thread and a core idles until the call ends. This replays
single-frame files with ``threads = T, streams = "auto"`` and records every network call
(thread, start, end) and the bounds of every ``process`` call; per call, the *tail* is the
time from the moment the first stream made its last network call of the call to the end of
the last one (during which fewer streams than cores ran the network). An upper bound on what
giving the last running call all T threads could save is ``tail x (1 - 1/speed-up)``, the
speed-up of one network batch on T threads against one, timed here on the same frames.

Usage::

    .venv/bin/python bench/bench_stream_tail.py [--frames 160] [--size 512] [--threads 2]
        [--rounds 3] [--frames-from DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_replay import make_frames, pick_model, write_config  # noqa: E402


def batch_speedup(model: Path, folder: Path, threads: int, batch_size: int,
                  repeats: int = 10) -> dict:
    """Median seconds of one network batch of ``batch_size`` frames on a session of 1 and of
    ``threads`` intra-op threads, and their ratio."""
    import numpy as np

    from nwwatch.io import read_frames
    from nwwatch.normalize import normalize_image
    from nwwatch.segment.session import Segmenter

    files = sorted(folder.glob("*.tif"))[:batch_size]
    images = np.stack([normalize_image(read_frames(f)[0].image) for f in files])
    sessions = {t: Segmenter(model, providers=("cpu",), threads=t) for t in (1, threads)}
    times: dict[int, list[float]] = {t: [] for t in sessions}
    for seg in sessions.values():
        seg.segment(images)  # warm-up
    for _ in range(repeats):  # interleaved: a shared machine slows both alike
        for t, seg in sessions.items():
            t0 = time.perf_counter()
            seg.segment(images)
            times[t].append(time.perf_counter() - t0)
    out = {t: statistics.median(v) for t, v in times.items()}
    return {"batch_s_1_thread": out[1], f"batch_s_{threads}_threads": out[threads],
            "speedup": out[1] / out[threads]}


def tails(model: Path, folder: Path, workdir: Path, threads: int, batch_size: int) -> dict:
    """One replay with ``streams = "auto"``: its seconds, and the tail of every call."""
    import nwwatch.segment.session as session
    import nwwatch.service.pipeline as pipeline
    from nwwatch.service import replay

    calls: list[tuple[str, float, float]] = []
    bounds: list[tuple[float, float]] = []
    lock = threading.Lock()
    segment, process = session.Segmenter.segment, pipeline.process

    def timed_segment(self, images):
        t0 = time.perf_counter()
        try:
            return segment(self, images)
        finally:
            with lock:
                calls.append((threading.current_thread().name, t0, time.perf_counter()))

    def timed_process(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return process(*args, **kwargs)
        finally:
            bounds.append((t0, time.perf_counter()))

    session.Segmenter.segment, pipeline.process = timed_segment, timed_process
    try:
        out = workdir / "out"
        shutil.rmtree(out, ignore_errors=True)
        config = write_config(workdir / "c.toml", folder, out, model, threads, batch_size,
                              streams="auto")
        t0 = time.perf_counter()
        summary = replay(folder, out, kind="insitu", model=model, config=config)
        seconds = time.perf_counter() - t0
    finally:
        session.Segmenter.segment, pipeline.process = segment, process
    per_call = []
    for start, end in bounds:
        inside = [c for c in calls if start <= c[1] <= end and c[0].startswith("nwwatch-stream")]
        last_end: dict[str, float] = {}
        for name, _, stop in inside:
            last_end[name] = max(stop, last_end.get(name, 0.0))
        tail = (max(last_end.values()) - min(last_end.values())) if len(last_end) > 1 else 0.0
        per_call.append({"seconds": end - start, "streams_used": len(last_end),
                         "network_calls": len(inside), "tail_s": tail})
    return {"frames": summary.frames, "seconds": seconds,
            "frames_per_s": summary.frames / seconds, "calls": per_call,
            "tail_s": sum(c["tail_s"] for c in per_call)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames-from", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model, model_note = pick_model(args.model, workdir)
        frames = workdir / "frames"
        if args.frames_from:
            shutil.copytree(args.frames_from, frames)
        else:
            make_frames(frames, args.frames, args.size)
        speed = batch_speedup(model, frames, args.threads, args.batch_size)
        print(f"one batch of {args.batch_size}: {speed['batch_s_1_thread']:.3f} s on 1 "
              f"thread, {speed[f'batch_s_{args.threads}_threads']:.3f} s on {args.threads} "
              f"(speed-up {speed['speedup']:.2f})")
        rounds = []
        for r in range(args.rounds):
            load = os.getloadavg()[0]
            res = tails(model, frames, workdir, args.threads, args.batch_size)
            bound = res["tail_s"] * (1 - 1 / speed["speedup"])
            res.update(load_average=load, saving_bound_s=bound,
                       saving_bound_share=bound / res["seconds"])
            rounds.append(res)
            print(f"round {r + 1}: load {load:.2f}, {res['frames']} frames in "
                  f"{res['seconds']:.2f} s ({res['frames_per_s']:.1f} frames/s), "
                  f"{len(res['calls'])} calls, tails {res['tail_s']:.3f} s "
                  f"({100 * res['tail_s'] / res['seconds']:.1f} % of the replay), at most "
                  f"{bound:.3f} s to gain ({100 * res['saving_bound_share']:.1f} %)")
        result = {"model": model_note, "frames": args.frames, "size": args.size,
                  "threads": args.threads, "batch_size": args.batch_size,
                  "speedup": speed, "rounds": rounds,
                  "command": " ".join(sys.argv)}
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
