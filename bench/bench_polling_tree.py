"""What a polling watch of a large tree costs the live service's processing.

A ``PollingObserver`` (network shares, ``polling = true``) lists and stats every file of the
watched tree at each poll, whatever the patterns, in a thread of the service's own process.
This bench gives a watched folder ``--old-files`` files of earlier runs (names the patterns
leave out, in ten run folders: they cost the poller what frames would) and ``--frames`` new
frames of the synthetic growth video, timed back in the past so the start-up scan finds them
ready. A real ``nwwatch run`` (the configuration of ``bench_replay.write_config``) processes
them with ``polling`` false (inotify) and true, in alternating rounds; the figure is frames/s
from the service's ``ready`` line to its last ``file_processed`` line, the process's CPU
time to the last frame, and a ``polling_slow`` line's poll duration and interval where the
service logged one.

Usage::

    .venv/bin/python -m bench.bench_polling_tree [--old-files 50000] [--frames 200]
        [--rounds 3] [--threads 1] [--json bench/results/polling_tree.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_replay import make_frames, pick_model, write_config  # noqa: E402


def _events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def _seconds(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def one_run(workdir: Path, acq: Path, model: Path, frames: int, threads: int,
            polling: bool) -> dict:
    res = workdir / "res"
    shutil.rmtree(res, ignore_errors=True)
    cfg = write_config(workdir / "c.toml", acq, res, model, threads, batch_size=4)
    text = cfg.read_text().replace('polling = "auto"', f"polling = {str(polling).lower()}")
    cfg.write_text(text)
    log = workdir / f"log-{polling}"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nwwatch.service", "run", "--config",
                                 str(cfg)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = [e for e in _events(log) if e.get("event") == "file_processed"]
            if len(done) >= frames:
                break
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.25)
        else:
            raise RuntimeError(f"{frames} frames not processed in 600 s")
        with open(f"/proc/{proc.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    events = _events(log)
    ready = next(e for e in events if e.get("event") == "ready")
    last = [e for e in events if e.get("event") == "file_processed"][frames - 1]
    seconds = _seconds(last) - _seconds(ready)
    mode = next(e for e in events if e.get("event") == "watching")["mode"]
    slow = next((e for e in events if e.get("event") == "polling_slow"), {})
    return {"polling": polling, "mode": mode, "seconds": round(seconds, 2),
            "frames_per_s": round(frames / seconds, 1),
            "process_cpu_s_to_last_frame": round(cpu_s, 2),
            "polling_slow": {k: slow[k] for k in ("poll_seconds", "interval_seconds")
                             if k in slow}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-files", type=int, default=50000)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nwwatch-polling-") as tmp:
        workdir = Path(tmp)
        model, model_name = pick_model(args.model, workdir)
        acq = workdir / "acq"
        for run in range(10):
            folder = acq / f"old-run{run}"
            folder.mkdir(parents=True)
            for i in range(args.old_files // 10):
                (folder / f"frame{i:06d}.txt").write_bytes(b"")
        new = acq / "new"
        make_frames(new, args.frames, args.size)
        past = time.time() - 3600
        for path in new.iterdir():
            os.utime(path, (past, past))
        rounds = []
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for polling in order:
                result = one_run(workdir, acq, model, args.frames, args.threads, polling)
                result["round"] = r
                rounds.append(result)
                print(json.dumps(result), flush=True)
    summary = {}
    for polling in (False, True):
        fps = sorted(r["frames_per_s"] for r in rounds if r["polling"] is polling)
        summary["polling" if polling else "inotify"] = {"frames_per_s_median": fps[len(fps) // 2],
                                                        "frames_per_s": fps}
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    out = {"command": "python -m bench.bench_polling_tree " + " ".join(argv or sys.argv[1:]),
           "code": commit,
           "model": model_name, "old_files": args.old_files, "frames": args.frames,
           "size": args.size, "threads": args.threads, "load_average": os.getloadavg(),
           "rounds": rounds, "summary": summary}
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
