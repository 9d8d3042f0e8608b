"""Benchmark what the dashboard costs.

1. reading: :class:`nwwatch.dashboard.data.ResultsStore` on a synthetic results folder of
   ``--files`` Parquet files of ``--rows`` frame rows each (one acquisition): the first
   refresh, a refresh that finds nothing new, a refresh after one new file, the series and
   summary of the acquisition, and the JSON payload (full, and after a cursor);
2. interference: the service live (the shipped in-situ model), ``--live-frames`` frames
   written one at a time at ``--rate`` Hz, latency file complete -> committed row (the
   ``latency_ms`` of its log line), without a dashboard, and with the dashboard plus a
   page's load: one event stream, ``/api/acquisitions`` every 5 s and ``/metrics`` every
   second (``--runs`` alternating runs of each).

Usage::

    .venv/bin/python bench/bench_dashboard.py [--files 2000] [--rows 8] [--live-frames 60]
        [--rate 8] [--size 256] [--runs 2] [--json bench/results/dashboard.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nwwatch.dashboard.app import Dashboard  # noqa: E402
from nwwatch.dashboard.data import ResultsStore, acquisition_summary, frame_series  # noqa: E402
from nwwatch.service.config import DEFAULT_MODELS  # noqa: E402

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def _rows(start: int, n: int, rng) -> pa.Table:
    angle = 110 + rng.normal(0, 3, n)
    ok = rng.random(n) > 0.1
    return pa.table({
        "source": [f"/acq/run1/frame_{start + k:06d}.tif" for k in range(n)],
        "frame": pa.array([0] * n, pa.int32()),
        "status": ["ok" if v else "fit_failed" for v in ok],
        "angle_valid": ok,
        "contact_angle_deg": np.where(ok, angle, np.nan),
        "contact_angle_uncertainty_deg": np.full(n, 1.0),
        "acquired_at": [T0 + timedelta(seconds=start + k) for k in range(n)],
        "processed_at": [T0 + timedelta(seconds=start + n)] * n,
        "read_ms": np.full(n, 1.0), "segment_ms": np.full(n, 20.0), "measure_ms": np.full(n, 4.0),
        "model_name": ["m"] * n, "provider": ["CPUExecutionProvider"] * n,
    })


def _ms(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def reading(workdir: Path, files: int, rows: int) -> dict:
    rng = np.random.default_rng(0)
    folder = workdir / "res" / "frames"
    folder.mkdir(parents=True)
    for i in range(files):
        pq.write_table(_rows(i * rows, rows, rng), folder / f"frames-{i:06d}.parquet")
    store = ResultsStore(workdir / "res")
    out = {"files": files, "rows": files * rows}
    out["first_refresh_ms"] = _ms(store.refresh)
    out["refresh_nothing_new_ms"] = _ms(store.refresh, 3)
    pq.write_table(_rows(files * rows, rows, rng), folder / "frames-new.parquet")
    out["refresh_one_new_file_ms"] = _ms(store.refresh)
    acq = next(iter(store.snapshot.values()))
    out["series_first_ms"] = _ms(lambda: frame_series(acq))
    out["summary_ms"] = _ms(lambda: acquisition_summary(acq, time.time(), 120.0), 3)
    dash = Dashboard(workdir / "res", None, live=False, stale_after_s=None)
    dash.store = store
    full = dash.payload(acq, None)
    out["payload_full_ms"] = _ms(lambda: json.dumps(dash.payload(acq, None)), 3)
    out["payload_full_kb"] = round(len(json.dumps(full)) / 1024, 1)
    gen, _, refresh = full["cursor"].rpartition(":")
    since = (gen, int(refresh) - 1)  # the rows of the last refresh only (the new file)
    out["payload_after_cursor_ms"] = _ms(lambda: json.dumps(dash.payload(acq, since)), 3)
    dash.close()
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def _config(path: Path, acq: Path, res: Path, dashboard: bool) -> Path:
    path.write_text(f"""
[[watch]]
path = "{acq}"
model = "{DEFAULT_MODELS['insitu']}"
settle_seconds = 2
[output]
results = "{res}"
[inference]
providers = ["cpu"]
threads = 2
batch_size = 8
max_batch_latency_ms = 20
""" + ('[dashboard]\nlisten = "127.0.0.1:0"\n' if dashboard else ""))
    return path


def _page_load(url: str, stop: threading.Event) -> None:
    """What an open dashboard page asks for: one event stream, the list every 5 s, and a
    Prometheus scrape every second (much more often than the usual 15 s)."""

    def stream():
        while not stop.is_set():
            try:
                acqs = json.load(urllib.request.urlopen(f"{url}/api/acquisitions"))
                if acqs["acquisitions"]:
                    aid = acqs["acquisitions"][0]["id"]
                    with urllib.request.urlopen(f"{url}/api/acquisitions/{aid}/events",
                                                timeout=5) as resp:
                        while not stop.is_set() and resp.readline():
                            pass
            except OSError:
                pass
            stop.wait(0.5)

    threading.Thread(target=stream, daemon=True).start()
    k = 0
    while not stop.is_set():
        urllib.request.urlopen(f"{url}/metrics").read()
        if k % 5 == 0:
            urllib.request.urlopen(f"{url}/api/acquisitions").read()
        k += 1
        stop.wait(1.0)


def live(workdir: Path, frames: Path, n: int, rate_hz: float, dashboard: bool) -> dict:
    workdir.mkdir(exist_ok=True)
    acq, res = workdir / "acq", workdir / "res"
    shutil.rmtree(acq, ignore_errors=True)
    shutil.rmtree(res, ignore_errors=True)
    acq.mkdir()
    log_path = workdir / "live.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "nwwatch.service", "run", "--config",
                             str(_config(workdir / "c.toml", acq, res, dashboard))], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OMP_NUM_THREADS="2"))
    stop = threading.Event()
    try:
        def events():
            return [json.loads(x) for x in log_path.read_text().splitlines()
                    if x.startswith("{")]

        while not any(e["event"] == "ready" for e in events()):
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.1)
        if dashboard:
            while not any(e["event"] == "dashboard_listening" for e in events()):
                time.sleep(0.1)
            url = next(e["url"] for e in events() if e["event"] == "dashboard_listening")
            threading.Thread(target=_page_load, args=(url.rstrip("/"), stop),
                             daemon=True).start()
        files = sorted(frames.glob("*.tif"))[:n]
        t0 = time.time()
        for i, f in enumerate(files):
            tmp = acq / f".{f.name}.part"
            shutil.copyfile(f, tmp)
            os.replace(tmp, acq / f.name)
            time.sleep(max(0.0, t0 + (i + 1) / rate_hz - time.time()))
        deadline = time.time() + 120
        while time.time() < deadline:
            lat = [e["latency_ms"] for e in events()
                   if e["event"] == "file_processed" and "latency_ms" in e]
            if len(lat) >= len(files):
                break
            time.sleep(0.2)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)
        log.close()
    lat = sorted(lat)
    return {"dashboard": dashboard, "n": len(lat), "p50_ms": round(statistics.median(lat), 1),
            "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--live-frames", type=int, default=60)
    ap.add_argument("--rate", type=float, default=8.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": " ".join(sys.argv), "cpus": os.cpu_count(),
              "load_avg_1min": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        result["reading"] = reading(workdir / "read", args.files, args.rows)
        print(json.dumps(result["reading"], indent=1), flush=True)
        if args.live_frames:
            from nwwatch.synth.insitu import generate_insitu

            frames = workdir / "frames"
            generate_insitu(frames, args.live_frames, video=True, seed=1, size=args.size)
            runs = []
            for _ in range(args.runs):
                for dashboard in (False, True):
                    runs.append(live(workdir / "live", frames, args.live_frames, args.rate,
                                     dashboard) | {"rate_hz": args.rate, "size": args.size})
                    print(json.dumps(runs[-1]), flush=True)
            result["live"] = runs
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
