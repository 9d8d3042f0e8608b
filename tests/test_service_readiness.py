"""Readiness rules of the Tracker, with a controlled clock and a fake structural check."""

from __future__ import annotations

import os
import time
from pathlib import Path

from nwwatch.io import TruncatedTiffError
from nwwatch.service.readiness import Tracker


def _inspect_ok(path):
    return type("Info", (), {"n_pages": 1})()


def _write(path, data: bytes, mtime_s: float | None = None):
    path.write_bytes(data)
    if mtime_s is not None:
        os.utime(path, (mtime_s, mtime_s))


def test_unchanged_for_settle_time_makes_a_file_ready(tmp_path):
    f = tmp_path / "a.tif"
    _write(f, b"abc", mtime_s=time.time())
    t = Tracker()
    t.touch(f, 0, settle_s=2.0)
    assert t.poll(_inspect_ok, now=100.0) == ([], [])  # first look
    assert t.poll(_inspect_ok, now=101.0) == ([], [])  # not yet quiet long enough
    ready, bad = t.poll(_inspect_ok, now=102.1)
    assert [r.path for r in ready] == [f] and not bad and len(t) == 0


def test_growing_file_restarts_the_settle_clock(tmp_path):
    f = tmp_path / "a.tif"
    now = time.time()
    _write(f, b"abc", mtime_s=now)
    t = Tracker()
    t.touch(f, 0, settle_s=2.0)
    t.poll(_inspect_ok, now=100.0)
    _write(f, b"abcdef", mtime_s=now + 1)  # the writer goes on
    assert t.poll(_inspect_ok, now=101.9) == ([], [])
    assert t.poll(_inspect_ok, now=103.0) == ([], [])  # only 1.1 s since the change
    assert len(t.poll(_inspect_ok, now=104.0)[0]) == 1


def test_close_event_is_ready_at_once_but_truncated_waits_then_is_bad(tmp_path):
    f = tmp_path / "a.tif"
    _write(f, b"II*\x00partial", mtime_s=time.time())
    t = Tracker()
    t.touch(f, 0, settle_s=5.0, closed=True)  # a writer that closes between chunks

    def truncated(path):
        raise TruncatedTiffError(path, "pixel data end beyond the file")

    assert t.poll(truncated, now=100.0) == ([], [])  # not failed: maybe still written
    assert t.poll(truncated, now=102.0) == ([], [])
    ready, bad = t.poll(truncated, now=105.1)  # unchanged for the settle time: bad input
    assert not ready and [b.path for b in bad] == [f]
    assert isinstance(bad[0].error, TruncatedTiffError)


def test_close_event_with_complete_file_needs_no_settle_time(tmp_path):
    f = tmp_path / "a.tif"
    _write(f, b"complete", mtime_s=time.time())
    t = Tracker()
    t.touch(f, 0, settle_s=30.0, closed=True)
    assert len(t.poll(_inspect_ok, now=100.0)[0]) == 1


def test_old_file_found_by_a_scan_is_tried_at_once_and_deleted_files_are_forgotten(tmp_path):
    old, gone = tmp_path / "old.tif", tmp_path / "gone.tif"
    _write(old, b"x", mtime_s=time.time() - 3600)
    _write(gone, b"y")
    t = Tracker()
    t.touch(old, 0, settle_s=5.0)
    t.touch(gone, 0, settle_s=5.0)
    gone.unlink()
    ready, bad = t.poll(_inspect_ok, now=100.0)
    assert [r.path for r in ready] == [old] and not bad and len(t) == 0


def test_a_header_check_out_of_memory_is_bad_input_not_the_end_of_the_service(tmp_path,
                                                                               monkeypatch):
    """MemoryError (a header declaring absurd sizes that a library allocated before any
    check) passed out of the readiness poll and ended the service; systemd's restart met the
    same file again. The check's caller, the service or replay, now quarantines the file."""
    import nwwatch.io
    from nwwatch.io import InputError
    from nwwatch.service.engines import inspect_input

    f = tmp_path / "a.tif"
    _write(f, b"II*\x00" + b"\0" * 60)

    def absurd(path):
        raise MemoryError

    monkeypatch.setattr(nwwatch.io, "inspect_tiff", absurd)
    try:
        inspect_input(f, tmp_path)
    except InputError as exc:
        assert exc.path == f and "ran out of memory" in exc.reason
    else:
        raise AssertionError("no InputError")


def test_a_reader_that_fails_unexpectedly_on_a_file_makes_it_bad_input(tmp_path, monkeypatch):
    """Any exception but an OSError out of a reader's header check (a TypeError or an
    IndexError on bytes the reader does not handle) passed out of the readiness poll and
    ended the service, whose restart met the same file again. It is bad input now, logged
    with its traceback; replay quarantines the file and goes on with the others."""
    from structlog.testing import capture_logs

    import nwwatch.io
    from nwwatch.io import InputError
    from nwwatch.service.engines import inspect_input

    f = tmp_path / "a.tif"
    _write(f, b"II*\x00" + b"\0" * 60)
    real = nwwatch.io.inspect_tiff

    def buggy(path):
        if Path(path).name == "a.tif":
            return {}["no such key"]
        return real(path)

    monkeypatch.setattr(nwwatch.io, "inspect_tiff", buggy)
    with capture_logs() as logs:
        try:
            inspect_input(f, tmp_path)
        except InputError as exc:
            assert exc.path == f and "failed unexpectedly (KeyError" in exc.reason
        else:
            raise AssertionError("no InputError")
    (event,) = [e for e in logs if e["event"] == "inspect_crashed"]
    assert event["source"] == str(f) and event["exc_info"] is True
    # an OSError stays itself: the service retries it or names it as it always did
    monkeypatch.setattr(nwwatch.io, "inspect_tiff", lambda path: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")))
    try:
        inspect_input(f, tmp_path)
    except PermissionError:
        pass
    else:
        raise AssertionError("no PermissionError")


def test_a_backlog_is_looked_at_a_slice_at_a_time_within_the_budget(tmp_path):
    """The service's loop looks at waiting files for ``budget_s`` per turn: 40 files whose
    check takes 10 ms each come out over several polls, each file once, and ``due_left``
    says when some are still waiting (one poll of 30,000 files held the loop, its watchdog
    pings and its stop, for 35 s)."""
    old = time.time() - 3600
    files = []
    for i in range(40):
        files.append(tmp_path / f"f{i:02d}.tif")
        _write(files[-1], b"x", mtime_s=old)
    t = Tracker()
    for f in files:
        t.touch(f, 0, settle_s=1.0)

    def slow_inspect(path):
        time.sleep(0.01)
        return _inspect_ok(path)

    seen, polls = [], 0
    while t.due_left(100.0):
        ready, bad = t.poll(slow_inspect, now=100.0, budget_s=0.05)
        assert ready and not bad
        seen += [r.path for r in ready]
        polls += 1
        assert polls <= 40
    assert sorted(seen) == files and polls >= 2  # 0.4 s of checks in 0.05 s slices
    assert t.poll(slow_inspect, now=100.0) == ([], [])


def test_files_seen_and_queued_are_counted_per_acquisition(tmp_path):
    """The dashboard tells an acquisition whose files wait behind a backlog from one whose
    microscope stopped by its files seen and not yet done: the tracker's candidates and the
    files queued or in flight, counted per acquisition as they come and go (a Gatan time
    tree's files under its recording's folder)."""
    from nwwatch.service.readiness import QueuedFiles

    run_e, run_f = tmp_path / "runE", tmp_path / "runF"
    tree = run_f / "Hour_00" / "Minute_00" / "Second_01"
    tree.mkdir(parents=True)
    run_e.mkdir()
    for f in (run_e / "a.tif", run_e / "b.tif", tree / "c.tif"):
        _write(f, b"abc", mtime_s=time.time() - 60)
    t = Tracker()
    for f in (run_e / "a.tif", run_e / "b.tif", run_e / "b.tif", tree / "c.tif"):
        t.touch(f, 0, settle_s=1.0)  # b.tif twice: one candidate
    assert t.by_acquisition() == {str(run_e): 2, str(run_f): 1}
    t.forget(run_e / "a.tif")
    ready, _ = t.poll(_inspect_ok, now=100.0)
    assert sorted(r.path.name for r in ready) == ["b.tif", "c.tif"] and not t.by_acquisition()
    queued = QueuedFiles()
    for r in ready + ready:
        queued.add(r.path)
    assert queued.by_acquisition() == {str(run_e): 1, str(run_f): 1} and len(queued) == 2
    queued.discard(tree / "c.tif")
    queued.discard(tree / "c.tif")
    queued.discard(run_e / "gone.tif")
    assert queued.by_acquisition() == {str(run_e): 1} and queued == {run_e / "b.tif"}


def test_a_folders_files_seen_are_counted_live_until_the_loop_has_queued_them(tmp_path):
    """The dashboard reads a folder's files seen and not yet queued from the tracker, live
    (a file that arrives while a long batch runs, when the loop publishes no queue counts):
    one that :meth:`Tracker.poll` returned stays counted until the loop has queued it and
    published the queue's counts (``handed_over``), so that it is never counted nowhere."""
    run_e = tmp_path / "runE"
    run_e.mkdir()
    for name in ("a.tif", "b.tif"):
        _write(run_e / name, b"abc", mtime_s=time.time() - 60)
    t = Tracker()
    assert t.waiting_in(str(run_e)) == 0
    t.touch(run_e / "a.tif", 0, settle_s=1.0)
    assert t.waiting_in(str(run_e)) == 1 and t.waiting_in(str(tmp_path / "runF")) == 0
    ready, _ = t.poll(_inspect_ok, now=100.0)
    assert len(ready) == 1 and not t.by_acquisition()
    t.touch(run_e / "b.tif", 0, settle_s=1.0)
    assert t.waiting_in(str(run_e)) == 2  # a.tif handed to the loop, b.tif a candidate
    assert t.waiting() == 2 and len(t) == 1
    t.handed_over()
    assert t.waiting_in(str(run_e)) == 1 and t.waiting() == 1


def test_a_read_between_the_loops_two_steps_counts_a_waiting_file(tmp_path, monkeypatch):
    """The loop counts a file queued (``set_queue``) and then lets the tracker go of it
    (``handed_over``); the dashboard read the queue first and the tracker second, so a read
    that fell between the two steps counted the waiting file nowhere (a stale warning for a
    folder with a file waiting). It reads the tracker first: such a read counts it twice."""
    from nwwatch.dashboard import metrics
    from nwwatch.service.readiness import QueuedFiles, acquisition_key

    run_e = tmp_path / "runE"
    run_e.mkdir()
    _write(run_e / "a.tif", b"abc", mtime_s=time.time() - 60)
    folder = acquisition_key(run_e / "a.tif")
    t, queued = Tracker(), QueuedFiles()
    monkeypatch.setattr(metrics, "_seen_files", None)
    monkeypatch.setattr(metrics, "_queued_files", 0)
    monkeypatch.setattr(metrics, "_queued_by_acquisition", {})
    t.touch(run_e / "a.tif", 0, settle_s=1.0)
    ready, _ = t.poll(_inspect_ok, now=100.0)
    assert len(ready) == 1 and t.waiting_in(folder) == 1  # handed out, not yet queued

    class LoopStepsBetweenReads:  # the loop's two steps run inside the dashboard's read
        def waiting_in(self, acquisition):
            queued.add(run_e / "a.tif")
            metrics.set_queue(len(queued), queued.by_acquisition())
            t.handed_over()
            return t.waiting_in(acquisition)

        def waiting(self):
            return t.waiting()

    metrics.set_seen_files(LoopStepsBetweenReads())
    try:
        assert metrics.waiting_files(folder) >= 1
    finally:
        metrics.set_seen_files(None)
    assert metrics.waiting_files(folder) == 1  # queued, the tracker has let it go


def test_files_polled_when_a_quarantine_write_fails_are_not_counted_waiting_for_ever(
        tmp_path, monkeypatch):
    """A bad file's quarantine whose ledger write fails (a full disk) paused processing
    before the loop published the queue and let the tracker go of the files it had polled:
    they stayed counted as waiting after they were done (the folder 'behind' for ever)."""
    from types import SimpleNamespace as NS

    import numpy as np

    from nwwatch.dashboard import metrics
    from nwwatch.io import write_frame_tiff
    from nwwatch.service import daemon as daemon_module
    from nwwatch.service.daemon import Daemon
    from nwwatch.service.ledgerdb import LedgerWriteError
    from nwwatch.service.readiness import QueuedFiles, acquisition_key
    from nwwatch.service.storagepause import StoragePause
    from nwwatch.service.tally import Tally

    monkeypatch.setattr(daemon_module, "write_held", lambda *a, **k: None)
    for name, value in (("_seen_files", None), ("_queued_files", 0),
                        ("_queued_by_acquisition", {})):
        monkeypatch.setattr(metrics, name, value)
    run = tmp_path / "acq" / "runE"
    run.mkdir(parents=True)
    good, bad = run / "good.tif", run / "bad.tif"
    write_frame_tiff(good, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    bad.write_bytes(b"II*\0not a tiff")
    for p in (good, bad):
        os.utime(p, (time.time() - 600,) * 2)

    class Ledger:
        full = True

        def record_failures(self, failures, max_attempts):
            if self.full:
                raise LedgerWriteError("database or disk is full")

        def probe(self):
            pass

    class Log:
        def __getattr__(self, name):
            return lambda *a, **k: None

    buffer = NS(take_released=lambda: [])
    engine = NS(ledger=Ledger(), results_dir=tmp_path / "res", max_attempts=3, batch_size=8,
                buffer=buffer)

    class W:
        index = 0
        config = NS(kind="insitu", settle_seconds=0.0, path=tmp_path / "acq",
                    follow_symlinks=False)

        def __init__(self):
            self.files, self.since, self.engine = [], None, engine

        def left_out_as_export(self, p):
            return False

        def frames(self):
            return len(self.files)

    w = W()
    d = Daemon.__new__(Daemon)
    d.config = NS(inference=NS(max_batch_latency_ms=10**9), watches=[w.config],
                  backoff_seconds=0.0)
    d.log, d.ledger, d.tracker, d.tally, d._watches = Log(), engine.ledger, Tracker(), Tally(), [w]
    queued = d._queued = QueuedFiles()
    d.pause = StoragePause(0.0, d.log, lambda s: None)
    d._stop = NS(is_set=lambda: False)
    metrics.set_seen_files(d.tracker)
    try:
        folder = acquisition_key(good)
        d.tracker.touch(good, 0, 0.0)
        d.tracker.touch(bad, 0, 0.0)
        d._work([w], queued, time.monotonic())  # the quarantine's write fails: a pause
        assert d.pause.paused
        assert metrics.waiting_files(folder) == 1  # good.tif, queued; not counted twice
        # the good file's batch done (as _run_batch does), the bad file removed
        for f in w.files:
            queued.discard(f.path)
        w.files.clear()
        metrics.set_queue(0, queued.by_acquisition())
        assert metrics.waiting_files(folder) == 0
    finally:
        metrics.set_seen_files(None)
