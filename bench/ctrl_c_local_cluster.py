"""Ctrl-C (or no interrupt) of ``nwwatch replay --dask local:2``, repeated, optionally while
busy loops load the CPU: how often the replay's stderr shows a worker traceback or ERROR line.

The interrupt is sent as in tests/test_cluster.py's Ctrl-C test: SIGINT to the replay's whole
process group once a task's staged output exists. Prints one line per run and a JSON summary;
``--keep DIR`` keeps every run's stderr (and stdout) there.

    nice -n 10 python bench/ctrl_c_local_cluster.py --runs 20 --load 2
    nice -n 10 python bench/ctrl_c_local_cluster.py --runs 3 --no-interrupt
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

N_FRAMES = 24
#: What the ERROR lines seen so far were (a line of each, as distributed logs them).
KINDS = {"worker_heartbeat": "Failed to communicate with scheduler during heartbeat",
         "sync_cancel": "sync.<locals>.cancel",
         "scheduler_gather": "Couldn't gather keys"}


def make_inputs(tmp: Path) -> tuple[Path, Path]:
    """The Ctrl-C test's folder: N_FRAMES single-frame TIFFs, one bad file; and its model."""
    from servicekit import model, paint_insitu

    from nwwatch.io import write_frame_tiff

    folder = tmp / "acq"
    folder.mkdir()
    for i in range(N_FRAMES):
        write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(95 + 2 * i, size=64,
                                                                top=24 + i % 16))
    (folder / "bad.tif").write_bytes(b"not a TIFF at all\n" * 8)
    return folder, model(tmp)


def one_run(folder: Path, onnx: Path, results: Path, interrupt: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay", str(folder),
         "--out", str(results), "--model", str(onnx), "--dask", "local:2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    t0 = time.monotonic()
    try:
        if interrupt:
            while not list(results.glob(".cluster/*.parquet")) and proc.poll() is None:
                if time.monotonic() - t0 > 120:
                    raise TimeoutError("no task output in 120 s")
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {"rc": proc.returncode, "seconds": round(time.monotonic() - t0, 2),
            "traceback": "Traceback" in err, "error_line": " - ERROR - " in err,
            "kinds": sorted(kind for kind, text in KINDS.items() if text in err),
            "stdout": out, "stderr": err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--load", type=int, default=0, help="busy-loop processes while running")
    ap.add_argument("--no-interrupt", action="store_true", help="let each replay finish")
    ap.add_argument("--keep", type=Path, help="folder for each run's stdout and stderr")
    ap.add_argument("--json", type=Path, help="write the summary here too")
    args = ap.parse_args()
    loaders = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(args.load)]
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder, onnx = make_inputs(Path(tmp))
            for i in range(args.runs):
                r = one_run(folder, onnx, Path(tmp) / f"res{i}", not args.no_interrupt)
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / f"run{i:02d}.err").write_text(r["stderr"])
                    (args.keep / f"run{i:02d}.out").write_text(r["stdout"])
                print(f"run {i}: rc={r['rc']} {r['seconds']} s traceback={r['traceback']} "
                      f"error_line={r['error_line']} {','.join(r['kinds'])}", flush=True)
                runs.append({k: v for k, v in r.items() if k not in ("stdout", "stderr")})
    finally:
        for p in loaders:
            p.kill()
            p.wait()
    bad = sum(r["traceback"] or r["error_line"] for r in runs)
    summary = {"runs": len(runs), "load_processes": args.load,
               "interrupted": not args.no_interrupt, "with_traceback_or_error": bad,
               "by_kind": {k: sum(k in r["kinds"] for r in runs) for k in KINDS},
               "exit_codes": sorted({r["rc"] for r in runs}), "per_run": runs}
    print(json.dumps({k: v for k, v in summary.items() if k != "per_run"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
