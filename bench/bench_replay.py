"""Benchmark the service's processing path.

1. throughput: ``nwwatch replay`` frames/s, once per ``--streams`` setting (``[inference]
   streams``, with ``threads = --threads``), against bare ONNX Runtime inference of the same
   model on the same (pre-normalised) frames in two configurations: one session with T
   intra-op threads called from one thread (1xT), and one session with one intra-op thread
   called from T threads at once (Tx1); in ``--rounds`` interleaved rounds (bare(1xT),
   replay, bare(Tx1), replay, ...: a machine shared with other jobs slows all alike), after
   one untimed replay of ``--batch-size`` frames (one-off imports; bare inference has its
   warm-up run); the ratio of each replay to the faster bare configuration of its round;
   per stage, the
   milliseconds per frame outside the network: wall time from the replay's rows
   (``read_ms`` (read + normalise), ``measure_ms``, ``confidence_ms``; hashing and the
   Parquet write timed on the same files and rows), and CPU time (``time.thread_time``) of
   each stage run alone on the same frames (:func:`cpu_stages`);
2. latency: the daemon running, frames written one at a time (atomic rename, like a careful
   writer) at a steady rate; latency = time the writer's rename returned -> time of the
   daemon's ``rows_written`` log line for the file's batch (p50 / p95), with
   ``[output] flush_seconds = --flush-seconds``;
   and CPU time of the real replay path instrumented (:func:`pipeline_cpu`): the network,
   the measurement, the label queue and the rest;
3. memory: resident set size of a replay over many frames, sampled every 0.5 s (flat or
   not), per ``--streams`` setting, each in a fresh process.

Usage::

    .venv/bin/python bench/bench_replay.py [--model M.onnx] [--frames 200] [--size 512]
        [--threads 2] [--streams 1,auto] [--no-stages] [--rounds 3] [--latency-frames 40]
        [--flush-seconds 0]
        [--memory-frames 5000] [--frames-from DIR | --keep-frames DIR] [--stage-repeats 5]
        [--stages-only] [--json out.json]

Without ``--model``: the shipped default model when it exists, else an untrained UNet of the
training package exported on the fly (same compute, random weights; said in the output).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nwwatch.service.config import DEFAULT_MODELS  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pick_model(arg: str | None, workdir: Path) -> tuple[Path, str]:
    if arg:
        # resolved: the replay configuration written to a temporary folder refers to it
        return Path(arg).resolve(), f"given: {arg}"
    if DEFAULT_MODELS["insitu"].is_file():
        return DEFAULT_MODELS["insitu"], "shipped default model"
    from nwwatch.segment.contract import ModelMetadata
    from training.export import export_onnx
    from training.models import build_model

    model = build_model("unet")
    multiple = getattr(model, "size_multiple", 16)
    meta = ModelMetadata(kind="insitu", class_names=("background", "nanowire", "droplet"),
                         arch="unet", paradigm="untrained-benchmark", size_multiple=multiple)
    path = workdir / "unet-untrained.onnx"
    export_onnx(model, path, meta, exporter="legacy")
    return path, "untrained UNet (training.build_model('unet'), default options) - stand-in"


def make_frames(folder: Path, n: int, size: int) -> list[np.ndarray]:
    """Write the frames; return their ground-truth label images (kept out of the folder)."""
    from nwwatch.io.dataset import read_label_image
    from nwwatch.synth.insitu import generate_insitu

    generate_insitu(folder, n, video=True, seed=1, size=size)
    labels = [read_label_image(p) for p in sorted((folder / "labels").glob("*.png"))]
    shutil.rmtree(folder / "labels", ignore_errors=True)
    (folder / "truth.parquet").unlink(missing_ok=True)
    return labels


def measure_on_truth(labels: list[np.ndarray]) -> dict:
    """Cost of measure_contact_angle on realistic (ground-truth) label maps, ms per frame."""
    from nwwatch.measure import measure_contact_angle

    times = []
    for lab in labels:
        t = time.perf_counter()
        measure_contact_angle(lab)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}


def bare_ort(model: Path, folder: Path, threads: int, batch_size: int,
             streams: int = 1) -> float:
    """Frames/s of session.run alone on pre-read, pre-normalised, pre-padded batches: one
    session with ``threads`` intra-op threads called from one thread (``streams`` 1), or one
    session with ``threads`` intra-op threads called from ``streams`` threads at once, each
    taking the next batch (the concurrency of ``[inference] streams``)."""
    from concurrent.futures import ThreadPoolExecutor

    from nwwatch.io import read_frames
    from nwwatch.normalize import normalize_image
    from nwwatch.segment.session import Segmenter

    seg = Segmenter(model, providers=("cpu",), threads=threads)
    frames = [normalize_image(f.image) for p in sorted(folder.glob("*.tif"))
              for f in read_frames(p)]
    m = seg.metadata.size_multiple
    h, w = frames[0].shape
    ph, pw = (-h) % m, (-w) % m
    batches = []
    for i in range(0, len(frames), batch_size):
        b = np.stack(frames[i:i + batch_size])
        if ph or pw:
            b = np.pad(b, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        batches.append(np.ascontiguousarray(b[:, None]))
    session = seg._session

    def run(b: np.ndarray) -> None:
        session.run(["labels", "probabilities"], {"image": b})

    with ThreadPoolExecutor(max_workers=streams) as pool:
        list(pool.map(run, batches[:streams]))  # warm-up, every thread
        t0 = time.perf_counter()
        list(pool.map(run, batches))
        return len(frames) / (time.perf_counter() - t0)


def replay_fps(model: Path, folder: Path, out: Path, config: Path) -> tuple[float, int, str]:
    """Frames/s and rows of a replay with ``config``, and its streams x intra-op threads."""
    from nwwatch.segment.session import gpu_possible
    from nwwatch.service import replay
    from nwwatch.service.config import load_config

    summary = replay(folder, out, kind="insitu", model=model, config=config)
    inference = load_config(config).inference
    plan = inference.plan(gpu=gpu_possible(inference.providers))
    return summary.frames_per_s, summary.frames, f"{plan.streams}x{plan.stream_threads}"


def stage_ms(folder: Path, out: Path) -> dict:
    """Median CPU ms per frame of each stage outside the network, from a replay's rows
    (read + normalise, measure, confidence) and timed here on the same inputs (hash, the
    Parquet write of the rows)."""
    import pyarrow.parquet as pq

    from nwwatch.filehash import file_sha256
    from nwwatch.results.parquet import write_table_atomic

    rows = pq.read_table(out / "frames")
    stages = {name: statistics.median(v for v in rows.column(f"{name}_ms").to_pylist()
                                      if v is not None)
              for name in ("read", "segment", "measure", "confidence")}
    files = sorted(folder.glob("*.tif"))
    t = time.perf_counter()
    for f in files:
        file_sha256(f)
    stages["hash"] = (time.perf_counter() - t) * 1e3 / len(files)
    table = rows.drop_columns([c for c in ("acquisition",) if c in rows.column_names])
    t = time.perf_counter()
    write_table_atomic(table, out / "bench-write.parquet")
    stages["write"] = (time.perf_counter() - t) * 1e3 / table.num_rows
    (out / "bench-write.parquet").unlink()
    stages["outside_inference"] = sum(v for k, v in stages.items() if k != "segment")
    return stages


def cpu_stages(model: Path, folder: Path, threads: int, batch_size: int,
               repeats: int = 1) -> dict:
    """CPU milliseconds per frame of each stage outside the network (``time.thread_time``,
    so waiting for a core shared with other jobs is not counted), median over the frames:
    hash, read (decode + normalise), the Segmenter beyond one ``session.run`` (process CPU
    time of ``Segmenter.segment`` minus that of the bare run on the same batch: padding,
    slicing, the droplet-size check, a second pass where a droplet is outside the trained
    size range), measure, confidence, and the rows -> Arrow table -> Parquet file (per frame,
    one file for all rows, as replay writes them). With ``repeats`` > 1 each stage but the
    Segmenter's runs that many times per frame and its fastest run counts: on a machine shared
    with other jobs, the nearest figure to an idle core's (the same work each time)."""
    from nwwatch.classes import DROPLET
    from nwwatch.filehash import file_sha256
    from nwwatch.io import read_frames
    from nwwatch.measure import measure_contact_angle
    from nwwatch.normalize import normalize_image
    from nwwatch.results.parquet import rows_to_table, write_table_atomic
    from nwwatch.segment.confidence import frame_confidence
    from nwwatch.segment.session import Segmenter, pad_to_multiple
    from nwwatch.service.frames import FRAME_JOB

    seg = Segmenter(model, providers=("cpu",), threads=threads)
    files = sorted(folder.glob("*.tif"))
    spent: dict[str, list[float]] = {k: [] for k in (
        "hash", "read", "segmenter_beyond_network", "measure", "confidence", "rows_write")}
    rows, tables = [], []

    def cpu(fn, *a):
        best = math.inf
        for _ in range(repeats):
            t = time.thread_time()
            out = fn(*a)
            best = min(best, time.thread_time() - t)
        return out, best * 1e3

    for i in range(0, len(files), batch_size):
        chunk = files[i:i + batch_size]
        images, frames = [], []
        for f in chunk:
            spent["hash"].append(cpu(file_sha256, f)[1])
            (frame, x), ms = cpu(lambda p: (lambda fr: (fr, normalize_image(fr.image)))(
                read_frames(p)[0]), f)
            spent["read"].append(ms)
            frames.append(frame)
            images.append(x)
        batch = np.stack(images)
        feed = np.ascontiguousarray(pad_to_multiple(batch, seg.metadata.size_multiple)[:, None])
        t = time.process_time()  # all threads: ONNX Runtime's pool included
        seg._session.run(["labels", "probabilities"], {"image": feed})
        bare_ms = (time.process_time() - t) * 1e3
        t = time.process_time()
        out = seg.segment(batch)
        extra_ms = (time.process_time() - t) * 1e3 - bare_ms
        spent["segmenter_beyond_network"] += [extra_ms / len(chunk)] * len(chunk)
        batch_rows = []
        for j, frame in enumerate(frames):
            # With the raw frame, as the service measures (the facet line's refinement).
            result, ms = cpu(lambda labels, prob, frame: measure_contact_angle(
                labels, prob, frame.pixel_size_nm, image=frame.image),
                out.labels[j], out.probabilities[j, DROPLET], frame)
            spent["measure"].append(ms)
            conf, ms = cpu(frame_confidence, out.probabilities[j], out.labels[j],
                           result.angle_valid)
            spent["confidence"].append(ms)
            row = result.as_row()
            row.update(source=str(frame.source), frame=0, confidence=conf)
            batch_rows.append(row)
        table, ms = cpu(rows_to_table, batch_rows, FRAME_JOB.schema())
        spent["rows_write"] += [ms / len(batch_rows)] * len(batch_rows)
        tables.append(table)
        rows += batch_rows
    import pyarrow as pa

    target = folder.parent / "cpu-stages.parquet"
    _, ms = cpu(lambda: write_table_atomic(pa.concat_tables(tables), target))
    target.unlink()
    out = {k: statistics.median(v) for k, v in spent.items()}
    out["rows_write"] += ms / len(rows)
    out["outside_inference"] = sum(out.values())
    # The 10th percentile over the frames: closer to the cost on an idle core (on a shared
    # machine, cache and core contention inflate even CPU time).
    # (Not for the Segmenter's share: a difference of two runs, its low tail is noise.)
    p10 = {k: float(np.percentile(v, 10)) for k, v in spent.items()
           if k != "segmenter_beyond_network"}
    p10["rows_write"] += ms / len(rows)
    p10["outside_inference"] = sum(p10.values())
    out["p10"] = p10
    return out


def pipeline_cpu(model: Path, folder: Path, out: Path, config: Path) -> dict:
    """CPU milliseconds per frame of a whole replay's processing, split by instrumenting the
    real code path: ``process()`` calls and the final write (process time: every thread),
    of which ``session.run`` (thread time of the calling thread: with one ONNX Runtime thread
    the network runs there), ``measure_contact_angle`` and the label queue's ``offer``
    (thread time). ``rest`` is the processing CPU outside the network and the measurement:
    hashing, ledger, reading, normalising, the Segmenter's own work, confidence, rows, Arrow,
    Parquet, label queue. Model loading and imports are outside ``process`` and not counted."""
    import onnxruntime as ort

    import nwwatch.results.label_queue as label_queue
    import nwwatch.service.flush as flush
    import nwwatch.service.frames as frames_mod
    import nwwatch.service.pipeline as pipeline
    from nwwatch.service import replay

    spent = {"pipeline": 0.0, "network": 0.0, "measure": 0.0, "label_queue": 0.0}
    lock = threading.Lock()

    def timed(fn, key, clock):
        def wrapper(*a, **k):
            t = clock()
            try:
                return fn(*a, **k)
            finally:
                with lock:
                    spent[key] += (clock() - t) * 1e3
        return wrapper

    patches = [(pipeline, "process", time.process_time, "pipeline"),
               (flush, "write_held", time.process_time, "pipeline"),
               (ort.InferenceSession, "run", time.thread_time, "network"),
               (frames_mod, "measure_contact_angle", time.thread_time, "measure"),
               (label_queue, "offer", time.thread_time, "label_queue")]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _, _ in patches]
    try:
        for obj, name, clock, key in patches:
            setattr(obj, name, timed(getattr(obj, name), key, clock))
        summary = replay(folder, out, kind="insitu", model=model, config=config)
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
    n = max(1, summary.frames)
    result = {k: v / n for k, v in spent.items()}
    result["rest"] = result["pipeline"] - result["network"] - result["measure"]
    result["rest_without_label_queue"] = result["rest"] - result["label_queue"]
    result["label_queue_frames_entered"] = _queue_files(out)
    return result


def _queue_files(out: Path) -> int:
    """Thumbnails left in the label queue (frames that entered it and stayed)."""
    return len(list((out / "label-queue").glob("*/thumbs/*.png")))


def write_config(path: Path, watch: Path, results: Path, model: Path, threads: int,
                 batch_size: int, flush_seconds: float | None = None,
                 streams: int | str | None = None) -> Path:
    from nwwatch.service.config import one_folder_config

    path.write_text(one_folder_config(watch, results, model, settle_seconds=2, threads=threads,
                                      streams=streams, batch_size=batch_size,
                                      max_batch_latency_ms=20, flush_seconds=flush_seconds))
    return path


def latency(model: Path, source: Path, workdir: Path, n: int, rate_hz: float, threads: int,
            batch_size: int, flush_seconds: float | None,
            streams: int | str | None = None) -> dict:
    """Daemon live: write frames at ``rate_hz`` with tmp+rename; latency rename -> the
    ``rows_written`` line of the file's batch."""
    acq, res = workdir / "live_acq", workdir / "live_res"
    acq.mkdir()
    cfg = write_config(workdir / "live.toml", acq, res, model, threads, batch_size,
                       flush_seconds, streams=streams)
    log = open(workdir / "live.log", "wb")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.Popen([sys.executable, "-m", "nwwatch.service", "run", "--config",
                             str(cfg)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        while b'"ready"' not in (workdir / "live.log").read_bytes():
            if proc.poll() is not None:
                raise RuntimeError((workdir / "live.log").read_text())
            time.sleep(0.1)
        files = sorted(source.glob("*.tif"))[:n]
        closed: dict[str, float] = {}
        for i, f in enumerate(files):
            tmp = acq / f".{f.name}.part"
            shutil.copyfile(f, tmp)
            os.replace(tmp, acq / f.name)
            closed[str(acq / f.name)] = time.time()
            time.sleep(max(0.0, (i + 1) / rate_hz - (time.time() - next(iter(closed.values())))))
        deadline = time.time() + 120 + (flush_seconds or 10.0)
        done: dict[str, float] = {}
        while time.time() < deadline and len(done) < len(files):
            batch_of, written = {}, {}
            for line in (workdir / "live.log").read_text().splitlines():
                if '"file_processed"' in line or '"rows_written"' in line:
                    e = json.loads(line)
                    ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
                    if e["event"] == "file_processed":
                        batch_of[e["source"]] = e["batch_id"]
                    else:
                        written.update(dict.fromkeys(e["batch_ids"], ts.timestamp()))
            done = {s: written[b] for s, b in batch_of.items() if b in written}
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    from nwwatch.results.parquet import dataset_files

    lat = sorted((done[s] - closed[s]) * 1e3 for s in done if s in closed)
    return {"n": len(lat), "rate_hz": rate_hz, "flush_seconds": flush_seconds,
            "parquet_files": len(dataset_files(res / "frames")),
            "p50_ms": statistics.median(lat),
            "p95_ms": lat[int(0.95 * (len(lat) - 1))], "max_ms": lat[-1]}


def memory(model: Path, source: Path, workdir: Path, n: int, config: Path) -> dict:
    """RSS during a replay of ``n`` frames (the source frames copied under new names; each
    copy gets distinct bytes so every one is processed), in a fresh process (spawned), so
    that one setting's peak does not carry over into the next one's figures."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_memory, model, source, workdir, n, config).result()


def _memory(model: Path, source: Path, workdir: Path, n: int, config: Path) -> dict:
    from nwwatch.logsetup import configure_logging
    from nwwatch.service import replay

    configure_logging("error")

    folder = workdir / "mem_acq"
    folder.mkdir(parents=True)
    files = sorted(source.glob("*.tif"))
    for i in range(n):
        data = bytearray(files[i % len(files)].read_bytes())
        data += i.to_bytes(8, "little")  # trailing bytes: distinct content, same image
        (folder / f"m{i:05d}.tif").write_bytes(bytes(data))
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), rss_mb()))
            stop.wait(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    summary = replay(folder, workdir / "mem_res", kind="insitu", model=model, config=config)
    stop.set()
    thread.join()
    rss = [r for _, r in samples]
    k = max(1, len(rss) // 10)
    return {"frames": summary.frames, "seconds": time.perf_counter() - t0,
            "rss_first_10pct_mb": statistics.mean(rss[:k]),
            "rss_last_10pct_mb": statistics.mean(rss[-k:]), "rss_max_mb": max(rss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--stage-repeats", type=int, default=1,
                    help="also time each stage outside the network this many times per frame "
                         "and keep the fastest (cpu_ms_per_frame_fastest_of)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of bare inference and replay")
    ap.add_argument("--streams", default="1,auto",
                    help="comma-separated [inference] streams settings, each replayed in "
                         "every round (with threads = --threads)")
    ap.add_argument("--no-stages", dest="stages", action="store_false",
                    help="throughput only: skip the per-stage and CPU breakdowns")
    ap.add_argument("--stages-only", action="store_true",
                    help="only the CPU of each stage outside the network, run alone "
                         "(cpu_ms_per_frame_fastest_of with --stage-repeats): no replay, "
                         "bare inference, latency or memory test")
    ap.add_argument("--flush-seconds", type=float, default=None,
                    help="[output] flush_seconds of the daemon in the latency test "
                         "(default: the service's)")
    ap.add_argument("--latency-frames", type=int, default=40)
    ap.add_argument("--latency-rate", type=float, default=0.0,
                    help="frames/s written in the latency test (default: half the throughput)")
    ap.add_argument("--memory-frames", type=int, default=0)
    ap.add_argument("--memory-size", type=int, default=128)
    ap.add_argument("--frames-from", help="a folder of frames of an earlier run "
                    "(--keep-frames) instead of rendering --frames new ones")
    ap.add_argument("--keep-frames", help="copy the rendered frames to this folder")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from nwwatch.logsetup import configure_logging

    configure_logging("error")
    work = Path(tempfile.mkdtemp(prefix="nwwatch-bench-"))
    try:
        model, model_note = pick_model(args.model, work)
        frames = work / "frames"
        if args.frames_from:  # frames made by an earlier run (rendering 512² takes a while)
            shutil.copytree(args.frames_from, frames)
            truth_labels = []
        else:
            truth_labels = make_frames(frames, args.frames, args.size)
        if args.keep_frames:
            shutil.copytree(frames, args.keep_frames, dirs_exist_ok=True)
        if args.stages_only:
            stages = {"repeats": args.stage_repeats, **cpu_stages(
                model, frames, args.threads, args.batch_size, args.stage_repeats)}
            result = {"model": str(model), "model_note": model_note, "frame_size": args.size,
                      "frames": len(list(frames.glob("*.tif"))), "threads": args.threads,
                      "batch_size": args.batch_size, "command": " ".join(sys.argv),
                      "load_average_1min_at_end": os.getloadavg()[0],
                      "cpu_ms_per_frame_fastest_of": stages}
            print(json.dumps(result, indent=1), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=1))
            return
        settings = [v.strip() for v in args.streams.split(",") if v.strip()]
        cfgs = {v: write_config(work / f"replay-streams-{v}.toml", frames, work / "unused",
                                model, args.threads, args.batch_size,
                                streams=v if v == "auto" else int(v))
                for v in settings}
        cfg = cfgs[settings[-1]]  # stages, latency and memory: the last setting
        # One untimed replay of a few frames first: bare inference gets a warm-up run, and
        # round 1's first replay would otherwise also pay one-off imports in its timed
        # window (the service's modules, pandas through pyarrow's first conversion of lists:
        # 0.3-0.6 s of a 3-4 s replay on the 2-core machine).
        warm = work / "warm-up"
        warm.mkdir()
        for f in sorted(frames.glob("*.tif"))[:args.batch_size]:
            shutil.copy(f, warm)
        replay_fps(model, warm, work / "warm-up-out",
                   write_config(work / "warm-up.toml", warm, work / "unused", model,
                                args.threads, args.batch_size))
        bares = {f"1x{args.threads}": (args.threads, 1)}
        if args.threads > 1:
            bares[f"{args.threads}x1"] = (1, args.threads)
        rounds, n = [], args.frames
        for r in range(args.rounds):  # interleaved: all see the same load
            bare, fps_of, plans = {}, {}, {}
            # bare(1xT), replay(first), bare(Tx1), replay(second), ...
            order = [("bare", k) for k in bares]
            for i, v in enumerate(settings):
                order.insert(min(len(order), 2 * i + 1), ("replay", v))
            for what, key in order:
                if what == "bare":
                    bare[key] = bare_ort(model, frames, *bares[key][:1], args.batch_size,
                                         streams=bares[key][1])
                    continue
                out = work / f"replay_out{r}_{key}"
                fps, n, plans[key] = replay_fps(model, frames, out, cfgs[key])
                fps_of[key] = fps
                if key == settings[-1] and args.stages:
                    stages_out = out
                else:
                    shutil.rmtree(out, ignore_errors=True)
            best = max(bare.values())
            rnd = {"bare_ort_fps": bare, "replay_fps": fps_of, "replay_plan": plans,
                   "best_bare": max(bare, key=bare.get),
                   "ratio_to_best_bare": {k: v / best for k, v in fps_of.items()},
                   "ratio_to_bare": {f"{k}/{b}": v / bare[b] for k, v in fps_of.items()
                                     for b in bare}}
            if args.stages:
                rnd.update({
                    "stage_ms_per_frame": stage_ms(frames, stages_out),
                    "cpu_ms_per_frame": cpu_stages(model, frames, args.threads,
                                                   args.batch_size),
                    **({"cpu_ms_per_frame_fastest_of": {
                        "repeats": args.stage_repeats, **cpu_stages(
                            model, frames, args.threads, args.batch_size,
                            args.stage_repeats)}} if args.stage_repeats > 1 else {}),
                    "pipeline_cpu_ms_per_frame": pipeline_cpu(
                        model, frames, work / f"cpu_out{r}", cfg)})
                shutil.rmtree(work / f"cpu_out{r}", ignore_errors=True)
                shutil.rmtree(stages_out, ignore_errors=True)
            rounds.append(rnd)
            print(json.dumps(rounds[-1]), flush=True)
            print(f"round {r + 1}: " + ", ".join(
                [f"bare({k}) {v:.1f}" for k, v in bare.items()]
                + [f"replay(streams={k}: {plans[k]}) {v:.1f} frames/s, ratio to the best "
                   f"bare {v / best:.2f}" for k, v in fps_of.items()]), flush=True)
        result = {"model": str(model), "model_note": model_note, "frame_size": args.size,
                  "frames": n, "threads": args.threads, "batch_size": args.batch_size,
                  "streams_settings": settings,
                  "command": " ".join(sys.argv), "load_average_1min_at_end": os.getloadavg()[0],
                  "rounds": rounds,
                  "ratio_to_best_bare_median": {
                      v: statistics.median(r["ratio_to_best_bare"][v] for r in rounds)
                      for v in settings} if rounds else None,
                  "measure_on_truth_labels": (measure_on_truth(truth_labels)
                                              if truth_labels else None)}
        print(json.dumps(result, indent=1), flush=True)
        if rounds:
            med = statistics.median
            print("median of the rounds: " + ", ".join(
                [f"bare({k}) {med(r['bare_ort_fps'][k] for r in rounds):.1f}" for k in bares]
                + [f"replay(streams={v}) {med(r['replay_fps'][v] for r in rounds):.1f} "
                   f"frames/s, ratio to the best bare {result['ratio_to_best_bare_median'][v]:.2f}"
                   for v in settings]), flush=True)
        if args.latency_frames:
            rate = args.latency_rate or (max(0.5, rounds[-1]["replay_fps"][settings[-1]] / 2)
                                         if rounds else 5.0)
            result["latency"] = latency(model, frames, work, args.latency_frames, rate,
                                        args.threads, args.batch_size, args.flush_seconds,
                                        streams=(settings[-1] if settings[-1] == "auto"
                                                 else int(settings[-1])))
            result["latency"]["streams"] = settings[-1]
            print(json.dumps(result["latency"], indent=1), flush=True)
        if args.memory_frames:
            small = work / "small"
            make_frames(small, 50, args.memory_size)
            result["memory"] = {}
            for v in settings:  # the same frames through each setting
                mem = memory(model, small, work / f"mem-{v}", args.memory_frames, cfgs[v])
                mem["frame_size"] = args.memory_size
                result["memory"][v] = mem
                print(json.dumps({f"memory streams={v}": mem}, indent=1), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
