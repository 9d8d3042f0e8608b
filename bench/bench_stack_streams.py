"""Throughput of ``nwwatch replay`` on one multi-page stack with each ``[inference] streams``
setting: a stack runs alone on the one-stream path with every thread, so the settings should
not differ beyond the run-to-run scatter.

The stack holds the first ``--frames`` frames of the growth video of bench_replay.py (seed 1,
512 px), written once under ``--work``; each round replays it with every setting of
``--streams`` (in reverse order every other round), ``threads = --threads``, into a fresh
results folder.

Usage::

    python bench/bench_stack_streams.py --frames 96 --rounds 3 --streams 1,auto \\
        --json bench/results/replay_stack_streams.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--streams", default="1,auto")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "stack_streams")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from nwwatch import DEFAULT_INSITU_MODEL
    from nwwatch.io import read_frames, write_stack_tiff
    from nwwatch.logsetup import configure_logging
    from nwwatch.service import replay
    from nwwatch.service.config import one_folder_config
    from nwwatch.synth.insitu import generate_insitu

    configure_logging("error")
    video, acq = args.work / "video", args.work / "acq"
    if len(list(video.glob("*.tif"))) < args.frames:
        shutil.rmtree(video, ignore_errors=True)
        generate_insitu(video, args.frames, video=True, seed=1, size=512)
    stack = acq / "movie.tif"
    if not stack.exists():
        frames = [f for p in sorted(video.glob("*.tif"))[:args.frames] for f in read_frames(p)]
        acq.mkdir(parents=True, exist_ok=True)
        write_stack_tiff(stack, np.stack([f.image for f in frames]),
                         pixel_size_nm=frames[0].pixel_size_nm)
    settings = [s if s == "auto" else int(s) for s in args.streams.split(",")]
    records = []
    for rnd in range(args.rounds):
        # The order alternates between rounds: the second replay of a round tends to be
        # faster (caches), which would otherwise favour the later setting.
        for streams in settings if rnd % 2 == 0 else settings[::-1]:
            out = args.work / f"out_{streams}"
            shutil.rmtree(out, ignore_errors=True)
            cfg = args.work / f"streams_{streams}.toml"
            cfg.write_text(one_folder_config(acq, out, DEFAULT_INSITU_MODEL,
                                             threads=args.threads, streams=streams))
            summary = replay(acq, out, kind="insitu", model=DEFAULT_INSITU_MODEL, config=cfg)
            row = {"round": rnd, "streams": streams, "frames": summary.frames,
                   "frames_per_s": summary.frames_per_s, "load_avg_1min": os.getloadavg()[0]}
            records.append(row)
            print(json.dumps(row), flush=True)
    medians = {str(s): statistics.median(r["frames_per_s"] for r in records
                                         if r["streams"] == s) for s in settings}
    print(json.dumps({"median_frames_per_s": medians}))
    if args.json:
        args.json.write_text(json.dumps({
            "command": "python bench/bench_stack_streams.py " + " ".join(sys.argv[1:]),
            "threads": args.threads, "records": records,
            "median_frames_per_s": medians}, indent=1) + "\n")


if __name__ == "__main__":
    main()
