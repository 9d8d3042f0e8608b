"""What a rescan costs for input files already done (docs/service.md, Rescans).

A watched folder of ``--files`` small input files, every one listed as done in the ledger
(one item and one cached hash each, by path, size, mtime and ctime, as a run that processed
them leaves it; the rescan reads none of them): ``nwwatch run`` is started on it and the
figure is the time from its ``watching`` line to ``initial_scan`` (the start-up rescan,
which must find no candidate), and the service's CPU time over that span (sampled from
/proc every 5 ms). Each ``--code`` folder (another checkout's root: its ``nwwatch`` is run,
its ledger made by its own ``Ledger``) is measured in the same rounds, alternating with this
checkout, so that the figures compare under one load.

Usage::

    .venv/bin/python -m bench.bench_rescan [--files 20000] [--rounds 6]
        [--code NAME=FOLDER ...] [--json bench/results/rescan_done.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Run with the code folder as the working directory (its nwwatch first on sys.path): a
# ledger of that code's schema, every file of the folder done for the model.
_FILL = r'''
import json, sqlite3, sys
from pathlib import Path
import nwwatch
from nwwatch.measure import MEASUREMENT_VERSION
from nwwatch.segment.session import Segmenter
from nwwatch.service.config import one_folder_config
from nwwatch.service.ledger import Ledger
from nwwatch.service.names import path_key
work, acq, model = (Path(a) for a in sys.argv[1:4])
out = work / "out"
Ledger(out / "ledger.sqlite", out).close()
sha = Segmenter(model).model_sha256
files = sorted(acq.iterdir())
stats = [f.stat() for f in files]
with sqlite3.connect(out / "ledger.sqlite") as db:
    db.executemany(
        "INSERT INTO items (sha256, model_sha256, measurement_version, source, kind, state,"
        " first_seen, updated_at, processed_at, claimed_at, batch_id, n_rows)"
        " VALUES (?, ?, ?, ?, 'insitu', 'done', 1, 1, 1, 1, 'b', 1)",
        [(f"{i:064x}", sha, MEASUREMENT_VERSION, path_key(f)) for i, f in enumerate(files)])
    db.executemany("INSERT INTO seen VALUES (?, ?, ?, ?)",
                   [(path_key(f), s.st_size, s.st_mtime_ns, f"{i:064x}")
                    for i, (f, s) in enumerate(zip(files, stats))])
    db.executemany("INSERT INTO seen_ctime VALUES (?, ?, 1)",
                   [(path_key(f), s.st_ctime_ns) for f, s in zip(files, stats)])
(work / "c.toml").write_text(one_folder_config(acq, out, model, threads=1,
                                               rescan_seconds=3600.0))
print(json.dumps({"nwwatch": nwwatch.__file__}))
'''


def _events(log: Path) -> dict[str, dict]:
    """The first line of each event in the service's JSON log."""
    found: dict[str, dict] = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            found.setdefault(event.get("event"), event)
    return found


def _epoch_s(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def _cpu_samples(pid: int, stop: threading.Event, into: list[tuple[float, float]]) -> None:
    """(epoch s, the process's user + system CPU s) every 5 ms until ``stop``."""
    tick = os.sysconf("SC_CLK_TCK")
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return
        into.append((time.time(), (int(fields[11]) + int(fields[12])) / tick))
        time.sleep(0.005)


def one_start(template: Path, run: Path, code: Path) -> tuple[float, float]:
    """(seconds from ``watching`` to ``initial_scan``, the service's CPU s over them)."""
    shutil.copytree(template, run)
    config = run / "c.toml"
    config.write_text(config.read_text().replace(str(template), str(run)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    log = run / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nwwatch.service", "run", "--config",
                                 str(config)], cwd=code, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_cpu_samples, args=(proc.pid, stop, samples))
    sampler.start()
    try:
        deadline = time.monotonic() + 900
        while "initial_scan" not in (events := _events(log)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
    finally:
        stop.set()
        sampler.join()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    if events["initial_scan"]["candidates"] != 0:
        raise RuntimeError(f"the rescan found candidates: {events['initial_scan']}")

    def cpu_at(epoch_s: float) -> float:
        return max((c for t, c in samples if t <= epoch_s), default=float("nan"))

    start, end = _epoch_s(events["watching"]), _epoch_s(events["initial_scan"])
    shutil.rmtree(run)
    return end - start, cpu_at(end) - cpu_at(start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--code", action="append", default=[], metavar="NAME=FOLDER",
                        help="another checkout to measure in the same rounds")
    parser.add_argument("--model", help="ONNX model (default: the shipped one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.bench_replay import pick_model

    codes = {"this checkout": REPO}
    for entry in args.code:
        name, _, folder = entry.partition("=")
        codes[name] = Path(folder).resolve()
    work = Path(tempfile.mkdtemp(prefix="bench_rescan_"))
    try:
        model, model_note = pick_model(args.model, work)
        acq = work / "acq"
        acq.mkdir()
        for i in range(args.files):  # a TIFF header and a number: every file its own bytes
            (acq / f"frame_{i:06d}.tif").write_bytes(b"II*\x00" + i.to_bytes(8, "little"))
        templates = {}
        for n, (name, code) in enumerate(codes.items()):
            template = work / f"template-{n}"
            template.mkdir()
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)
            made = subprocess.run([sys.executable, "-c", _FILL, str(template), str(acq),
                                   str(model)], cwd=code, env=env, check=True,
                                  capture_output=True, text=True)
            imported = json.loads(made.stdout.strip().splitlines()[-1])["nwwatch"]
            if not Path(imported).is_relative_to(code):
                raise RuntimeError(f"{name}: nwwatch imported from {imported}, not {code}")
            templates[name] = template
        rounds = []
        for r in range(args.rounds):
            names = list(codes) if r % 2 == 0 else list(reversed(codes))
            for name in names:
                seconds, cpu_s = one_start(templates[name], work / "run", codes[name])
                rounds.append({"round": r, "code": name, "seconds": round(seconds, 3),
                               "service_cpu_s": round(cpu_s, 2),
                               "load_average": [round(x, 2) for x in os.getloadavg()]})
                print(json.dumps(rounds[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for name in codes:
        mine = sorted(x["seconds"] for x in rounds if x["code"] == name)
        cpu = sorted(x["service_cpu_s"] for x in rounds if x["code"] == name)
        summary[name] = {"seconds": [mine[0], mine[len(mine) // 2], mine[-1]],
                         "service_cpu_s": [cpu[0], cpu[len(cpu) // 2], cpu[-1]],
                         "us_per_file_median": round(mine[len(mine) // 2] / args.files * 1e6)}
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    result = {"command": " ".join([Path(sys.executable).name, "-m", "bench.bench_rescan",
                                   *sys.argv[1:]]), "this_checkout": commit,
              "files": args.files, "model": model_note, "cpus": os.cpu_count(),
              "codes": {k: str(v) for k, v in codes.items()}, "rounds": rounds,
              "summary_min_median_max": summary}
    print(json.dumps(result["summary_min_median_max"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
