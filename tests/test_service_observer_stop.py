"""watchdog's observer stop joins its threads without a time limit and can raise from its own
bookkeeping. The service stopped it on its main thread: a stop that raised ended SIGTERM in a
traceback and exit status 1, and one that never returned held the main thread until
``stop_timeout_seconds`` ended the process with status 1 (the exit that says a batch was cut
short). The observer is now stopped on a thread of its own, waited for a bounded time, and a
failure is logged as ``observer_stop_failed``; the service exits 0 (docs/service.md)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import types

import pytest
from servicekit import (
    DaemonProcess,
    frames_table,
    ledger_count,
    model,
    paint_insitu,
    wait_rows,
    write_config,
)

from nwwatch.io import write_frame_tiff
from nwwatch.service import watcher as watcher_module
from nwwatch.service.watcher import FolderWatcher

# Loaded by the daemon's interpreter at start-up (the folder is first on its PYTHONPATH):
# the inotify observer's teardown fails as the test asks, after doing its real work.
_SITECUSTOMIZE = '''
import os
import threading

from watchdog.observers import inotify

_real = inotify.InotifyObserver.on_thread_stop


def _failing(self):
    _real(self)
    if os.environ["NWWATCH_TEST_OBSERVER_STOP"] == "raise":
        raise KeyError(b"/acq/run1")
    threading.Event().wait()  # a join that never returns


inotify.InotifyObserver.on_thread_stop = _failing
'''


def _service_whose_observer_fails(tmp_path, fault: str, **config):
    """(acq, res, daemon): a service watching one frame, whose observer's stop does
    ``fault`` ("raise" or "hang"), not yet waited for."""
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    write_frame_tiff(acq / "a.tif", paint_insitu(110.0))
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), polling=False, **config)
    daemon = DaemonProcess(cfg, tmp_path / "log", env={
        "NWWATCH_TEST_OBSERVER_STOP": fault,
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])})
    return acq, res, daemon


@pytest.mark.parametrize("fault", ["raise", "hang"])
def test_sigterm_ends_the_service_with_0_when_the_observer_does_not_stop(tmp_path, fault):
    acq, res, daemon = _service_whose_observer_fails(
        tmp_path, fault, extra="[service]\nstop_timeout_seconds = 15\n")
    try:
        daemon.wait_event("ready", timeout=60)
        wait_rows(res, 1, timeout=60, proc=daemon)
    finally:
        code, seconds = daemon.terminate(timeout=40)
    log = daemon.log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    events = daemon.events()
    failed = [e for e in events if e.get("event") == "observer_stop_failed"]
    assert len(failed) == 1, log[-3000:]
    assert failed[0]["path"] == str(acq) and failed[0]["level"] == "warning"
    if fault == "raise":
        assert failed[0]["error"] == "KeyError: b'/acq/run1'"
        assert "Traceback" in failed[0]["traceback"]
    else:
        assert "did not stop in 5 s" in failed[0]["error"]
        assert seconds < 15  # the stop deadline's exit was not what ended it
    assert [e["event"] for e in events][-1] == "stopped"
    assert not [e for e in events if e.get("event") == "stop_timeout"]


def test_a_wind_down_longer_than_stop_timeout_cuts_no_batch_short_and_exits_0(tmp_path):
    # stop_timeout_seconds bounds the batch in flight. The deadline also ran through what
    # follows it (held rows written, dashboard and observers stopped, ledger closed): an
    # idle service whose wind-down took longer (here an observer that does not stop; a
    # dashboard's 0.2 s with stop_timeout_seconds = 0.1 did it too) logged stop_timeout,
    # "the batch in flight is processed again at the next start", batches_released 0, and
    # exited 1, the status that says a batch was cut short.
    # its rows are held (flush_seconds): processed, written only by the stop's wind-down
    acq, res, daemon = _service_whose_observer_fails(
        tmp_path, "hang", flush_seconds=600, extra="[service]\nstop_timeout_seconds = 1\n")
    try:
        daemon.wait_event("ready", timeout=60)
        deadline = time.monotonic() + 60
        while not ledger_count(res, "batches", "state='writing' AND held_at IS NOT NULL"):
            assert time.monotonic() < deadline and daemon.proc.poll() is None
            time.sleep(0.05)
    finally:
        code, _ = daemon.terminate(timeout=40)
    log = daemon.log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    events = daemon.events()
    names = [e.get("event") for e in events]
    assert "stop_timeout" not in names, log[-3000:]
    # the rows held when the stop came are written
    rows = frames_table(res)
    assert rows is not None and len(rows) == 1
    assert ledger_count(res, "batches", "state='writing'") == 0
    # the deadline ran out in the observers' stop (WIND_DOWN_S after the loop ended, before
    # their own 5 s wait): a warning that cut nothing short
    overran = [e for e in events if e.get("event") == "stop_overran"]
    assert len(overran) == 1, log[-3000:]
    assert overran[0]["level"] == "warning" and overran[0]["exit_status"] == 0
    assert overran[0]["during"] == "stopping the folders' observers"
    # the stop is logged once, before the summary of the stop
    assert names.count("stop_requested") == 1
    assert names.index("stop_requested") < names.index("stopping")


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event: str, **kw) -> None:
        self.lines.append((event, kw | {"level": "warning"}))

    def info(self, event: str, **kw) -> None:
        self.lines.append((event, kw | {"level": "info"}))


class _ObserverThatHangs:
    emitters: tuple = ()

    def stop(self) -> None:
        time.sleep(30)


class _ThreadThatDoesNotEnd:
    """stop() returns at once, the thread never ends (its event handler is stuck, or a poll
    of a share that hangs)."""

    def __init__(self, poll_seconds: float) -> None:
        self.emitters = (types.SimpleNamespace(poll_seconds=poll_seconds),)

    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        time.sleep(30 if timeout is None else timeout)


def _watcher(tmp_path, polling: bool) -> FolderWatcher:
    from nwwatch.service.config import load_config

    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir(parents=True, exist_ok=True)
    w = load_config(write_config(tmp_path / "c.toml", acq, res, model(tmp_path),
                                 polling=polling)).watches[0]
    return FolderWatcher(w, lambda p, closed: None, lambda p: None)


@pytest.mark.parametrize(("polling", "poll_seconds", "expected"), [
    (False, 0.0, ("observer_stop_failed", "warning")),
    (True, 0.5, ("observer_stop_slow", "info")),  # its poll in flight explains the wait
    (True, 0.01, ("observer_stop_failed", "warning")),  # quick polls: a share that hangs
])
def test_an_observer_whose_thread_does_not_end_is_named(tmp_path, monkeypatch, polling,
                                                        poll_seconds, expected):
    # The stop's own wait inside the thread once ended with the outer wait: a thread that
    # never ended could then pass as stopped, in silence (26 of 50 stops)
    monkeypatch.setattr(watcher_module, "OBSERVER_STOP_WAIT_S", 0.2)
    for _ in range(10):
        watcher = _watcher(tmp_path, polling)
        watcher._observer = _ThreadThatDoesNotEnd(poll_seconds)
        log = _Log()
        watcher.stop(log)
        assert len(log.lines) == 1, log.lines
        event, line = log.lines[0]
        assert (event, line["level"]) == expected
        if expected[0] == "observer_stop_slow":
            assert line["error"] == ("a poll in flight did not end in 0.2 s (polls take "
                                     "about 0.5 s)")


class _ObserverThatStopsWithTheOthers:
    """stop() returns once all the observers sharing ``together`` are stopping at once: one
    stopped while the others wait their turn hangs, and its stop fails."""

    emitters: tuple = ()

    def __init__(self, together: threading.Barrier) -> None:
        self.together = together

    def stop(self) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            self.together.wait(timeout=60)

    def join(self, timeout: float | None = None) -> None:
        pass


def test_the_service_stops_its_folders_observers_together(tmp_path, monkeypatch):
    """Four folders' observers each stop only while all four are stopping: stopped one
    after the other, the first would wait its OBSERVER_STOP_WAIT_S out and fail."""
    from nwwatch.service.watcher import stop_watchers

    monkeypatch.setattr(watcher_module, "OBSERVER_STOP_WAIT_S", 20.0)
    together = threading.Barrier(4)
    watchers = []
    for i in range(4):
        watcher = _watcher(tmp_path / str(i), polling=False)
        watcher._observer = _ObserverThatStopsWithTheOthers(together)
        watchers.append(watcher)
    log = _Log()
    try:
        stop_watchers(watchers, log)
    finally:
        together.abort()  # a failed run's stragglers end instead of waiting 60 s
    assert log.lines == []


def test_a_restart_is_not_held_by_an_observer_that_does_not_stop(tmp_path, monkeypatch):
    monkeypatch.setattr(watcher_module, "OBSERVER_STOP_WAIT_S", 0.3)
    watcher = _watcher(tmp_path, polling=False)
    watcher._observer = _ObserverThatHangs()
    log = _Log()
    t0 = time.monotonic()
    watcher.restart(log)
    try:
        assert time.monotonic() - t0 < 5
        assert watcher.alive() and watcher.restarts == 1  # a new observer watches the folder
        assert [event for event, _ in log.lines] == ["observer_stop_failed"]
        assert log.lines[0][1]["error"] == "watchdog's observer did not stop in 0.3 s"
    finally:
        watcher.stop(log)
    assert len(log.lines) == 1  # the new observer stopped without a word
