"""Fewer, larger Parquet files: processed batches are held and written together by count or
time, one file per acquisition partition; the ledger counts rows done only once their file
is written, so a kill while rows are held loses and duplicates nothing."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from servicekit import (
    DaemonProcess,
    ledger_count,
    model,
    paint_insitu,
    wait_rows,
    write_config,
    write_small_tomogram,
)

from nwwatch.io import write_frame_tiff
from nwwatch.results.parquet import acquisition_partition, dataset_files
from nwwatch.segment.session import Segmenter
from nwwatch.service.flush import FlushPolicy, RowBuffer, write_held
from nwwatch.service.ledger import Ledger
from nwwatch.service.pipeline import Engine, process
from nwwatch.service.readiness import QueuedFiles

KEY = ["source", "frame"]
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


@pytest.fixture()
def onnx_model(tmp_path):
    return model(tmp_path)


def _engine(tmp_path, onnx_model, policy: FlushPolicy) -> Engine:
    out = tmp_path / "out"
    return Engine("insitu", Segmenter(onnx_model, providers=("cpu",), threads=1),
                  Ledger(out / "ledger.sqlite", out), out, batch_size=4,
                  buffer=RowBuffer(policy))


def _written(out) -> pd.DataFrame:
    files = dataset_files(out / "frames")
    if not files:
        return pd.DataFrame(columns=KEY)
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def _frames(folder, n, first=0):
    """``n`` frames with distinct content (acquisition times differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(first, first + n):
        write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(95.0 + i, size=48),
                         acquired_at=T0 + timedelta(seconds=i,
                                                    microseconds=sum(map(ord, folder.name))))
        paths.append(folder / f"f{i:03d}.tif")
    return paths


def test_batches_are_written_together_once_enough_rows_are_held(tmp_path, onnx_model):
    paths = _frames(tmp_path / "acq", 24)
    engine = _engine(tmp_path, onnx_model, FlushPolicy(max_rows=10, max_seconds=1e9))
    out = engine.results_dir
    for start in range(0, 24, 3):  # eight small batches, as a live acquisition gives
        report = process(paths[start:start + 3], engine)
        assert [f.state for f in report.files] == ["done"] * 3
        written = _written(out)
        # the ledger counts done exactly the rows that are in files; the rest are held
        assert engine.ledger.queries.counts()["done"] == len(written)
        assert len(written) + engine.buffer.rows == start + 3
        assert not written.duplicated(KEY).any()
    files = dataset_files(out / "frames")
    assert len(files) == 2  # 12 rows each, instead of eight files of 3
    assert all(f.parent.name == acquisition_partition(str(paths[0])) for f in files)
    assert engine.buffer.rows == 0 and sorted(_written(out).source) == sorted(map(str, paths))
    # the same content again is skipped, also while its rows are held
    more = _frames(tmp_path / "acq", 2, first=24)
    process(more, engine)
    shutil.copyfile(more[0], tmp_path / "acq" / "copy.tif")
    assert [f.state for f in process([tmp_path / "acq" / "copy.tif"], engine).files] == [
        "skipped"]
    write_held(engine, force=True)
    assert len(_written(out)) == 26 and not _written(out).duplicated(KEY).any()
    engine.ledger.close()


def test_rows_go_to_the_partition_of_their_acquisition(tmp_path, onnx_model):
    a = _frames(tmp_path / "in" / "a", 3)
    b = _frames(tmp_path / "in" / "b", 2)
    engine = _engine(tmp_path, onnx_model, FlushPolicy())
    process([a[0], b[0], a[1], b[1], a[2]], engine)  # one call, two acquisitions
    files = dataset_files(engine.results_dir / "frames")
    assert sorted(f.parent.name for f in files) == sorted(
        [acquisition_partition(str(a[0])), acquisition_partition(str(b[0]))])
    for f in files:
        sources = pq.read_table(f).column("source").to_pylist()
        assert len({os.path.dirname(s) for s in sources}) == 1
    rows = pd.read_parquet(engine.results_dir / "frames")  # hive: an acquisition column
    assert rows.groupby("acquisition", observed=True).size().sort_values().tolist() == [2, 3]
    engine.ledger.close()


def test_a_kill_while_rows_are_held_loses_and_duplicates_nothing(tmp_path):
    onnx = model(tmp_path)
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    held_cfg = write_config(tmp_path / "held.toml", acq, res, onnx, flush_seconds=600)
    daemon = DaemonProcess(held_cfg, tmp_path / "held.log")
    daemon.wait_event("ready")
    names = [f"f{i}.tif" for i in range(6)]
    for i, name in enumerate(names):
        write_frame_tiff(acq / name, paint_insitu(100.0 + 3 * i, size=48),
                         acquired_at=T0 + timedelta(seconds=i))
    daemon.wait_event("file_processed", timeout=60, count=len(names))
    assert dataset_files(res / "frames") == []  # processed, held in memory
    daemon.kill()  # SIGKILL: the held rows are lost with the process
    # the next start releases the held batches without an attempt and processes them again
    again = DaemonProcess(write_config(tmp_path / "run.toml", acq, res, onnx),
                          tmp_path / "run.log")
    table = wait_rows(res, len(names), timeout=60, proc=again)
    code, _ = again.terminate()
    assert code == 0
    assert sorted(os.path.basename(s) for s in table.source) == names
    assert not table.duplicated(KEY).any()
    reconciled = [e for e in again.events() if e.get("event") == "reconciled_after_crash"]
    assert reconciled and reconciled[0]["removed"] and not reconciled[0]["adopted"]
    ledger = Ledger(res / "ledger.sqlite", res)
    try:
        counts = ledger.queries.counts()
        assert counts["done"] == len(names) and counts["quarantined"] == 0
        attempts = ledger._db.execute("SELECT MAX(attempts) FROM items").fetchone()[0]
        assert attempts == 0  # a held batch had finished: no file was charged for the kill
    finally:
        ledger.close()


def test_sigterm_writes_the_held_rows(tmp_path):
    onnx = model(tmp_path)
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    daemon = DaemonProcess(write_config(tmp_path / "c.toml", acq, res, onnx,
                                        flush_seconds=600), tmp_path / "log")
    daemon.wait_event("ready")
    for i in range(5):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(110.0 + i, size=48),
                         acquired_at=T0 + timedelta(seconds=i))
    daemon.wait_event("file_processed", timeout=60, count=5)
    assert dataset_files(res / "frames") == []
    code, _ = daemon.terminate()
    assert code == 0
    files = dataset_files(res / "frames")
    assert len(files) == 1 and pq.read_metadata(files[0]).num_rows == 5


HOLD = FlushPolicy(max_rows=10**9, max_seconds=1e9)  # rows stay held until written by hand


def _rows_per_content(out) -> pd.Series:
    return _written(out).groupby("source_sha256").size()


def test_the_same_content_in_two_watched_folders_is_written_once(tmp_path, onnx_model):
    """Watches share the ledger and so one row buffer: a copy in another folder, arriving
    while the first one's rows are held, is skipped, not processed into a second row."""
    from nwwatch.logsetup import get_logger
    from nwwatch.service.config import TomogramSettings
    from nwwatch.service.engines import EngineSpec, build_engines
    from nwwatch.service.inference import InferenceConfig

    out = tmp_path / "out"
    ledger = Ledger(out / "ledger.sqlite", out)
    a_files = _frames(tmp_path / "a" / "acq", 3)
    b_folder = tmp_path / "b" / "acq"
    b_folder.mkdir(parents=True)
    for p in a_files:
        shutil.copy2(p, b_folder / p.name)
    specs = [EngineSpec("insitu", onnx_model, "watch[0].model"),
             EngineSpec("insitu", onnx_model, "watch[1].model")]
    ea, eb = build_engines(specs, ledger, out, inference=InferenceConfig(providers=("cpu",)),
                           max_attempts=3, tomogram=TomogramSettings(), log=get_logger(),
                           flush=HOLD)
    assert [f.state for f in process(a_files, ea).files] == ["done"] * 3
    assert [f.state for f in process(sorted(b_folder.iterdir()), eb).files] == ["skipped"] * 3
    write_held(ea, force=True)
    write_held(eb, force=True)
    per = _rows_per_content(out)
    assert len(per) == 3 and (per == 1).all()
    ledger.close()


def test_force_then_kill_while_held_leaves_the_earlier_rows_done(tmp_path, onnx_model):
    """replay --force holds new rows; killed before they are written, the earlier rows (still
    in the earlier file) stay done, so a later run neither adds them again nor loses them."""
    out = tmp_path / "out"
    files = _frames(tmp_path / "in" / "acq", 3)
    seg = Segmenter(onnx_model, providers=("cpu",), threads=1)
    ledger = Ledger(out / "ledger.sqlite", out)
    process(files, Engine("insitu", seg, ledger, out, batch_size=4))  # written at once
    process(files, Engine("insitu", seg, ledger, out, batch_size=4, buffer=RowBuffer(HOLD)),
            force=True)
    ledger.close()  # as kill -9: the held rows are lost with the process
    ledger = Ledger(out / "ledger.sqlite", out)
    ledger.reconcile(3)
    again = process(files, Engine("insitu", seg, ledger, out, batch_size=4))
    assert [f.state for f in again.files] == ["skipped"] * 3
    process(files, Engine("insitu", seg, ledger, out, batch_size=4), force=True)
    per = _rows_per_content(out)
    assert len(per) == 3 and (per == 1).all()
    ledger.close()


def test_an_interrupt_after_the_rename_does_not_write_the_rows_again(tmp_path, onnx_model,
                                                                      monkeypatch):
    """Ctrl-C between the file's rename and the folder's fsync: the written file is adopted
    (at once by the next settle, or at the next start), never written under a second name."""
    import nwwatch.atomic as atomic

    out = tmp_path / "out"
    files = _frames(tmp_path / "in" / "acq", 3)
    ledger = Ledger(out / "ledger.sqlite", out)
    engine = Engine("insitu", Segmenter(onnx_model, providers=("cpu",), threads=1), ledger,
                    out, batch_size=4, buffer=RowBuffer(HOLD))
    process(files, engine)
    real, calls = atomic.fsync_folder, []

    def interrupted(folder):
        if "acquisition=" in str(folder) and not calls:
            calls.append(folder)
            raise KeyboardInterrupt
        return real(folder)

    monkeypatch.setattr(atomic, "fsync_folder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_held(engine, force=True)
    assert calls and not engine.buffer.batches
    assert write_held(engine, force=True) is None  # what replay's Ctrl-C handler does
    ledger.close()
    ledger = Ledger(out / "ledger.sqlite", out)
    assert ledger.reconcile(3).adopted
    per = _rows_per_content(out)
    assert len(per) == 3 and (per == 1).all() and len(dataset_files(out / "frames")) == 1
    ledger.close()


def test_batches_released_while_the_ledger_cannot_be_written_are_settled_later(tmp_path,
                                                                               monkeypatch):
    """A file that cannot be written and a ledger that cannot record the release: the batch
    leaves the process's memory anyway, so the next settle (the daemon's retry or a clean
    stop) releases it instead of leaving it ``writing``."""
    from nwwatch.service.ledgerdb import ItemKey, LedgerWriteError

    out = tmp_path / "out"
    ledger = Ledger(out / "ledger.sqlite", out)
    key = ItemKey("a" * 64, "m" * 64, "1")
    ledger.claim("b1", "insitu", None, [(key, "acq/f.tif")])
    ledger.hold("b1", [key], [], 3)
    assert ledger.unfinished_batches() == []  # its rows are held in memory

    def unwritable():
        raise LedgerWriteError("disk full")

    with monkeypatch.context() as m:
        m.setattr(ledger, "_tx", unwritable)
        with pytest.raises(LedgerWriteError):
            ledger.release_held(["b1"])
    assert ledger.unfinished_batches() == ["b1"]
    assert ledger.settle("b1", 3) is False  # no file: released
    assert ledger.unfinished_batches() == [] and ledger.item(key) is None
    ledger.close()


class _Log:
    """A logger that keeps (event, fields) of every call."""

    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda event, **fields: self.lines.append((event, fields))


def test_a_flush_failing_partway_reports_the_part_it_committed(tmp_path, onnx_model,
                                                              monkeypatch):
    """Two partitions held, the second file cannot be written: the first is committed, and
    its rows are in /metrics and in a ``rows_written`` line all the same."""
    import nwwatch.service.flush as flush
    from nwwatch.dashboard import metrics
    from nwwatch.service.flush import ResultsWriteError

    a, b = _frames(tmp_path / "in" / "a", 2), _frames(tmp_path / "in" / "b", 3)
    engine = _engine(tmp_path, onnx_model, HOLD)
    engine.log = _Log()
    process(a + b, engine)
    real, calls = flush.write_table_atomic, []

    def second_fails(table, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(table, path)

    before = metrics.snapshot()
    monkeypatch.setattr(flush, "write_table_atomic", second_fails)
    with pytest.raises(ResultsWriteError):
        write_held(engine, force=True)
    after = metrics.snapshot()
    committed = _written(engine.results_dir)
    assert len(committed) == 2 and engine.ledger.queries.counts()["done"] == 2
    counted = sum(after.get(f"frames_{o}", 0) - before.get(f"frames_{o}", 0)
                  for o in ("ok", "flagged", "quarantined"))
    assert counted == 2
    lines = [f for e, f in engine.log.lines if e == "rows_written"]
    assert len(lines) == 1 and lines[0]["rows"] == 2
    assert lines[0]["files"] == [str(calls[0].relative_to(engine.results_dir))]
    engine.ledger.close()


def _service(tmp_path, onnx_model, policy: FlushPolicy):
    """The service's processing loop in this process (:meth:`Daemon._work`, no observer):
    the daemon, its one watch and its set of queued paths; a ``_Log`` keeps the lines."""
    from nwwatch.service.config import load_config
    from nwwatch.service.daemon import Daemon
    from nwwatch.service.watches import Watch

    (tmp_path / "in").mkdir(exist_ok=True)
    config = load_config(write_config(tmp_path / "c.toml", tmp_path / "in", tmp_path / "out",
                                      onnx_model, batch_size=8,
                                      extra="backoff_seconds = 0.5"))
    engine = _engine(tmp_path, onnx_model, policy)
    engine.batch_size = 8
    daemon = Daemon(config)
    daemon.log = engine.log = _Log()
    daemon.ledger = engine.ledger
    watch = Watch(0, config.watches[0], engine, watcher=None)
    daemon._watches, daemon._queued = [watch], QueuedFiles()
    return daemon, watch, daemon._queued


def _queue(daemon, watch, queued, paths) -> None:
    """``paths`` ready in ``watch``, due for a batch at once."""
    import time

    from nwwatch.io import inspect_tiff
    from nwwatch.service.readiness import ReadyFile

    for p in paths:
        st = p.stat()
        watch.files.append(ReadyFile(p, 0, st.st_size, st.st_mtime_ns, inspect_tiff(p),
                                     time.time()))
        queued.add(p)
    watch.since = 0.0


def _file_fails(monkeypatch, nth: int = 2):
    """The next flush cannot write its ``nth`` file (a full disk)."""
    import nwwatch.service.flush as flush

    real, calls = flush.write_table_atomic, []

    def nth_fails(table, path):
        calls.append(path)
        if len(calls) == nth:
            raise OSError(28, "No space left on device")
        return real(table, path)

    monkeypatch.setattr(flush, "write_table_atomic", nth_fails)
    return calls


def _processed(daemon) -> list[str]:
    return sorted(os.path.relpath(f["source"], daemon.config.watches[0].path)
                  for e, f in daemon.log.lines if e == "file_processed")


@pytest.mark.parametrize("failing", [2, 1])
def test_the_service_counts_once_the_files_a_failed_flush_committed(tmp_path, onnx_model,
                                                                    monkeypatch, failing):
    """One batch of two acquisitions (a, then b); its flush cannot write one of the two files:
    the files whose rows were committed (the first file written) or stay held (the file not
    tried yet) are counted and logged once now, only those of the failed file go back to the
    queue, and after the pause every file is counted once."""
    import time

    a, b = _frames(tmp_path / "in" / "a", 2), _frames(tmp_path / "in" / "b", 3)
    daemon, watch, queued = _service(tmp_path, onnx_model,
                                     FlushPolicy(max_rows=1, max_seconds=1e9))
    _queue(daemon, watch, queued, a + b)
    finished, failed = (a, b) if failing == 2 else (b, a)
    with monkeypatch.context() as m:
        calls = _file_fails(m, failing)
        assert daemon._work([watch], queued, time.monotonic()) is False  # paused
    assert len(calls) == failing
    assert len(_written(daemon.config.results)) == (2 if failing == 2 else 0)
    assert daemon.tally.processed_files == len(finished)
    assert daemon.tally.processed_rows == len(finished)
    assert [f.path for f in watch.files] == failed and queued == set(failed)
    daemon._work([watch], queued, time.monotonic())  # the pause is over
    assert not daemon.pause.paused and not watch.files and not queued
    written = _written(daemon.config.results)
    assert len(written) == 5 and not written.duplicated(KEY).any()
    assert daemon.tally.processed_files == 5 and daemon.tally.processed_rows == 5
    assert _processed(daemon) == sorted(f"{p.parent.name}/{p.name}" for p in a + b)
    daemon.ledger.close()


def test_the_service_counts_a_batch_committed_beside_a_released_held_one(tmp_path, onnx_model,
                                                                       monkeypatch):
    """A held batch of two acquisitions, then a batch of the first: its flush writes the
    first acquisition's file and cannot write the second's. The batch in flight is counted
    once; the held files of the second leave the counts and come back to the queue."""
    import time

    a, b = _frames(tmp_path / "in" / "a", 2), _frames(tmp_path / "in" / "b", 2)
    daemon, watch, queued = _service(tmp_path, onnx_model,
                                     FlushPolicy(max_rows=4, max_seconds=1e9))
    _queue(daemon, watch, queued, [a[0], *b])
    daemon._work([watch], queued, time.monotonic())
    assert daemon.tally.processed_files == 3 and watch.engine.buffer.rows == 3  # held
    _queue(daemon, watch, queued, [a[1]])
    with monkeypatch.context() as m:
        _file_fails(m)
        assert daemon._work([watch], queued, time.monotonic()) is False
    assert len(_written(daemon.config.results)) == 2  # a[0] and a[1]
    assert daemon.tally.processed_files == 2 and daemon.tally.processed_rows == 2
    assert sorted(f.path for f in watch.files) == b and queued == set(b)
    requeued = [f["source"] for e, f in daemon.log.lines if e == "file_requeued"]
    assert sorted(requeued) == sorted(map(str, b))
    daemon._work([watch], queued, time.monotonic())
    assert not watch.files and not queued
    assert daemon.tally.processed_files == 4 and daemon.tally.processed_rows == 4
    write_held(watch.engine, force=True)
    assert len(_written(daemon.config.results)) == 4
    daemon.ledger.close()


def test_metrics_keep_frames_and_volumes_apart_when_one_flush_writes_both(tmp_path, onnx_model):
    """Watches of both kinds share one row buffer; /metrics gave a volume's seconds and a
    frame's milliseconds one histogram per stage, so neither could be read."""
    from nwwatch.dashboard import metrics
    from nwwatch.logsetup import get_logger
    from nwwatch.service.config import TomogramSettings
    from nwwatch.service.engines import EngineSpec, build_engines
    from nwwatch.service.inference import InferenceConfig

    out = tmp_path / "out"
    ledger = Ledger(out / "ledger.sqlite", out)
    frames = _frames(tmp_path / "frames" / "acq", 3)
    volumes = tmp_path / "tomo" / "acq"
    volumes.mkdir(parents=True)
    write_small_tomogram(volumes / "v.tif")
    specs = [EngineSpec("insitu", onnx_model, "watch[0].model"),
             EngineSpec("tomogram", model(tmp_path / "t", kind="tomogram"), "watch[1].model")]
    ei, et = build_engines(specs, ledger, out, inference=InferenceConfig(providers=("cpu",)),
                           max_attempts=3, tomogram=TomogramSettings(), log=get_logger(),
                           flush=HOLD)

    def count(stage: str, kind: str) -> float:
        return metrics.REGISTRY.get_sample_value("nwwatch_stage_seconds_count",
                                                 {"stage": stage, "kind": kind})

    before = {(s, k): count(s, k) for s in ("segment", "write") for k in metrics.KINDS}
    assert [f.state for f in process(frames, ei).files] == ["done"] * 3
    assert [f.state for f in process([volumes / "v.tif"], et).files] == ["done"]
    write_held(ei, force=True)  # the shared buffer: both files written by one flush
    gained = {key: count(*key) - n for key, n in before.items()}
    assert gained == {("segment", "insitu"): 3, ("segment", "tomogram"): 1,
                      ("write", "insitu"): 1, ("write", "tomogram"): 1}
    with pytest.raises(ValueError, match="not one of insitu, tomogram"):
        metrics.observe_commit([], {}, kind="frames")
    ledger.close()


def test_held_rows_are_written_before_a_batch_that_would_outlast_flush_seconds():
    # Rows are written between batches: held rows waited for a whole batch whatever
    # flush_seconds said. Before a batch of the watch, they are written when the batch, at
    # the watch's last seconds per frame, would end past their time (always before a
    # watch's first tomogram batch: its time is not known beforehand; a backlog of fast
    # tomograms is not written one Parquet file each).
    import time
    from types import SimpleNamespace

    import pyarrow as pa

    from nwwatch.service.daemon import Daemon
    from nwwatch.service.flush import HeldBatch
    from nwwatch.service.watches import Watch

    buffer = RowBuffer(FlushPolicy(max_rows=10_000, max_seconds=10.0))
    buffer.add(HeldBatch("b1", "frames", "acquisition=a", pa.table({"frame": [0]}), {},
                         held_since=time.monotonic() - 5.0))  # 5 s of its 10 left
    files = [SimpleNamespace(path=f"f{i}", info=SimpleNamespace(n_pages=n))
             for i, n in enumerate((1, 2, 3, 1))]
    watch = Watch(0, SimpleNamespace(kind="insitu"), SimpleNamespace(buffer=buffer,
                                                                     batch_size=4),
                  None, files=files)
    assert watch.next_batch_frames() == 3  # the first two files: 1 + 2 of at most 4
    written = []
    loop = SimpleNamespace(_write_due=lambda w, force=False: written.append(force))

    def before(kind: str, seconds_per_frame: float | None) -> bool:
        written.clear()
        watch.config.kind, watch.seconds_per_frame = kind, seconds_per_frame
        Daemon._write_before_batch(loop, watch)
        return written == [True]

    assert not before("insitu", None)  # no batch measured yet
    assert not before("insitu", 0.1)  # 0.3 s: ends well within the rows' time
    assert before("insitu", 3.0)  # 9 s: would end past it
    assert before("tomogram", None)  # a watch's first tomogram: its time is not known
    assert not before("tomogram", 0.001)  # a fast one: written once their time has come
    assert before("tomogram", 3.0)
    assert [f.path for f in watch.take()] == ["f0", "f1"]
    buffer.batches.clear()
    assert not before("tomogram", None)  # nothing held


def test_a_stop_during_the_write_before_a_batch_does_not_start_the_batch(tmp_path, onnx_model,
                                                                        monkeypatch):
    # The held rows are written right before a batch that may outlast flush_seconds (a
    # tomogram: minutes), and the stop was looked at only after the batch: a SIGTERM during
    # that write started the batch all the same, which outlasted stop_timeout_seconds (exit
    # 1, stop_timeout). The batch is not started; its files stay queued, unclaimed (no
    # attempt charged), and are processed once when the service goes on.
    import time

    import nwwatch.service.flush as flush
    from nwwatch.stopsignals import StopEvent

    a, b = _frames(tmp_path / "in", 2), _frames(tmp_path / "in", 2, first=2)
    daemon, watch, queued = _service(tmp_path, onnx_model,
                                     FlushPolicy(max_rows=10_000, max_seconds=3600.0))
    _queue(daemon, watch, queued, a)
    daemon._work([watch], queued, time.monotonic())
    assert watch.engine.buffer.rows == 2 and len(_written(daemon.config.results)) == 0
    _queue(daemon, watch, queued, b)
    watch.seconds_per_frame = 3600.0  # the next batch would end past the rows' time
    real = flush.write_table_atomic

    def stop_while_writing(table, path):
        daemon._stop.set()  # SIGTERM arrives during the write before the batch
        return real(table, path)

    monkeypatch.setattr(flush, "write_table_atomic", stop_while_writing)
    daemon._work([watch], queued, time.monotonic())
    monkeypatch.setattr(flush, "write_table_atomic", real)
    assert sorted(_written(daemon.config.results).source) == sorted(map(str, a))
    assert [f.path for f in watch.files] == b and queued == set(b)
    assert not watch.engine.buffer.batches
    assert ledger_count(daemon.config.results, "items", "1") == 2  # b: not claimed
    assert ledger_count(daemon.config.results, "batches", "state != 'committed'") == 0
    daemon._stop = StopEvent()  # the service goes on (as the next start would)
    daemon._work([watch], queued, time.monotonic())
    write_held(watch.engine, force=True)
    written = _written(daemon.config.results)
    assert sorted(written.source) == sorted(map(str, a + b))
    assert ledger_count(daemon.config.results, "items", "state = 'done' AND attempts = 0") == 4
    daemon.ledger.close()


def test_seconds_per_frame_counts_only_the_frames_processed(tmp_path, onnx_model, monkeypatch):
    # The estimate that decides whether held rows are written before a batch was the whole
    # batch's time over all its frames, files skipped as done included: a batch of three
    # done files and one new one read as a quarter of the new frame's time. (A clock that
    # the batch moves by 8 s: no real timing.)
    import time
    from types import SimpleNamespace

    import nwwatch.service.daemon as daemon_module

    done, new = _frames(tmp_path / "in", 3), _frames(tmp_path / "in", 1, first=3)
    daemon, watch, queued = _service(tmp_path, onnx_model,
                                     FlushPolicy(max_rows=10_000, max_seconds=3600.0))
    _queue(daemon, watch, queued, done)
    daemon._work([watch], queued, time.monotonic())
    write_held(watch.engine, force=True)
    clock = [1000.0]
    real = daemon_module.process

    def eight_seconds(batch, engine):
        clock[0] += 8.0
        return real(batch, engine)

    monkeypatch.setattr(daemon_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(daemon_module, "process", eight_seconds)
    watch.seconds_per_frame = None
    _queue(daemon, watch, queued, done + new)
    daemon._run_batch(watch, queued)
    assert [f["source"] for e, f in daemon.log.lines if e == "file_processed"] \
        == [str(p) for p in done + new]  # the first three in the first batch
    assert watch.seconds_per_frame == 8.0  # one frame processed, not four
    _queue(daemon, watch, queued, done)  # nothing processed: the estimate is kept
    daemon._run_batch(watch, queued)
    assert watch.seconds_per_frame == 8.0
    daemon.ledger.close()
