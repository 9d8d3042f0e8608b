"""Soak benchmark of the live service's memory: does resident memory stay flat over many frames?

A real ``nwwatch run`` process (the configuration of ``bench_replay.write_config``) watches a
folder; frames arrive in waves of ``--wave`` files, each wave in its own sub-folder (as an
acquisition creates run folders), written to a hidden name and renamed into place. After each
wave the bench waits until the ledger counts every frame done. The daemon's resident set size
(``VmRSS`` of ``/proc/PID/status``) is sampled every 0.5 s throughout.

Flat means: the largest RSS after the warm-up waves stays within ``--tolerance`` (10 %) of the
mean RSS over the first wave after warm-up.

Usage::

    nice -n 10 .venv/bin/python bench/bench_soak.py [--frames 20000] [--wave 1000]
        [--size 128] [--warmup-waves 2] [--model M.onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_replay import make_frames, pick_model, write_config  # noqa: E402


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def done_count(ledger: Path) -> int:
    from nwwatch.service.reporting import open_readonly

    if not ledger.is_file():
        return 0
    try:
        queries = open_readonly(ledger)
    except FileNotFoundError:
        return 0
    try:
        return queries.counts()["done"]
    finally:
        queries.close()


def soak(model: Path, source: Path, work: Path, frames: int, wave: int, threads: int,
         batch_size: int, warmup_waves: int, tolerance: float) -> dict:
    acq, res = work / "acq", work / "res"
    acq.mkdir()
    cfg = write_config(work / "soak.toml", acq, res, model, threads, batch_size)
    templates = [p.read_bytes() for p in sorted(source.glob("*.tif"))]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    log = open(work / "soak.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "nwwatch.service", "run", "--config",
                             str(cfg)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    samples: list[tuple[float, int, float]] = []  # (seconds, wave, MB)
    current_wave = [0]
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            value = rss_mb(proc.pid)
            if value is not None:
                samples.append((time.perf_counter() - t0, current_wave[0], value))
            stop.wait(0.5)

    waves = []
    try:
        while b'"ready"' not in (work / "soak.log").read_bytes():
            if proc.poll() is not None:
                raise RuntimeError((work / "soak.log").read_text())
            time.sleep(0.1)
        threading.Thread(target=sample, daemon=True).start()
        written = 0
        for w in range(0, frames // wave):
            current_wave[0] = w
            folder = acq / f"run-{w:03d}"
            folder.mkdir()
            t_wave = time.perf_counter()
            for i in range(wave):
                data = bytearray(templates[written % len(templates)])
                data += written.to_bytes(8, "little")  # distinct content, same image
                tmp = folder / f".f{i:05d}.tif.part"
                tmp.write_bytes(bytes(data))
                os.replace(tmp, folder / f"f{i:05d}.tif")
                written += 1
            while done_count(res / "ledger.sqlite") < written:
                if proc.poll() is not None:
                    raise RuntimeError((work / "soak.log").read_text()[-3000:])
                time.sleep(0.5)
            in_wave = [mb for _, k, mb in samples if k == w]
            waves.append({"wave": w, "frames_done": written,
                          "seconds": round(time.perf_counter() - t_wave, 1),
                          "rss_mean_mb": round(statistics.mean(in_wave), 1) if in_wave else None,
                          "rss_max_mb": round(max(in_wave), 1) if in_wave else None})
            print(json.dumps(waves[-1]), flush=True)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(60)
        log.close()
    base_wave = min(warmup_waves, len(waves) - 1)
    baseline = statistics.mean(mb for _, k, mb in samples if k == base_wave)
    after = [mb for _, k, mb in samples if k >= base_wave]
    growth = max(after) / baseline - 1
    return {
        "frames": frames, "wave": wave, "waves": waves,
        "seconds": round(time.perf_counter() - t0, 1),
        "rss_first_wave_mean_mb": round(statistics.mean(mb for _, k, mb in samples if k == 0), 1),
        "baseline_wave": base_wave, "rss_baseline_mb": round(baseline, 1),
        "rss_max_after_baseline_mb": round(max(after), 1),
        "rss_last_wave_mean_mb": waves[-1]["rss_mean_mb"],
        "growth_fraction": round(growth, 4), "tolerance": tolerance,
        "flat": growth <= tolerance,
        "samples": [(round(t, 1), k, round(mb, 1)) for t, k, mb in samples[::10]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--wave", type=int, default=1000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--warmup-waves", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nwwatch-soak-") as tmp:
        work = Path(tmp)
        model, model_note = pick_model(args.model, work)
        source = work / "source"
        source.mkdir()
        make_frames(source, 50, args.size)
        result = soak(model, source, work, args.frames, args.wave, args.threads,
                      args.batch_size, args.warmup_waves, args.tolerance)
    result.update(model=model_note, frame_size=args.size, threads=args.threads,
                  batch_size=args.batch_size,
                  finished_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    summary = {k: v for k, v in result.items() if k not in ("waves", "samples")}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
