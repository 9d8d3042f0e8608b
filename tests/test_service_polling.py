"""A polling watch (network shares) lists and stats the whole tree at each poll, in a thread
of the service's process. Polled every second whatever a poll cost, a large tree took a core
and slowed the processing (200,000 files of earlier runs beside the frames:
``python -m bench.bench_polling_tree``, ``bench/results/polling_tree_200k_before.json``).
Polls are now spaced by their cost (``paced_wait_seconds``), and a watch whose polls come
``SLOW_POLL_INTERVAL_S`` or more apart is named in ``polling_slow`` (docs/service.md,
Watching and readiness)."""

from __future__ import annotations

import os
import time

from servicekit import DaemonProcess, model, paint_insitu, wait_rows, write_config

from nwwatch.io import write_frame_tiff
from nwwatch.service import watcher as watcher_module
from nwwatch.service.watcher import PacedPollingObserver, paced_wait_seconds

# Loaded by the daemon's interpreter at start-up (the folder is first on its PYTHONPATH):
# every listing of the tree takes 1.5 s, as one of a large tree does.
_SITECUSTOMIZE = '''
import time

from watchdog.observers import polling

_Snapshot = polling.DirectorySnapshot


def _slow(*args, **kwargs):
    time.sleep(1.5)
    return _Snapshot(*args, **kwargs)


polling.DirectorySnapshot = _slow
'''


def test_polls_are_spaced_by_what_they_cost(tmp_path):
    from watchdog.events import FileSystemEventHandler

    starts: list[float] = []
    observer = PacedPollingObserver(timeout=0.2)
    observer.schedule(FileSystemEventHandler(), str(tmp_path))
    (emitter,) = observer.emitters
    listing = emitter._take_snapshot

    def slow_listing():
        starts.append(time.monotonic())
        time.sleep(0.25)
        return listing()

    emitter._take_snapshot = slow_listing
    observer.start()
    try:
        deadline = time.monotonic() + 15
        while len(starts) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        observer.stop()
        observer.join(5)
    assert len(starts) >= 4
    gaps = [b - a for a, b in zip(starts[1:], starts[2:], strict=False)]
    # each wait at least POLL_PACE (4) x 0.25 s, plus the poll itself (the first listing,
    # at the start, is timed too); watchdog's own pace (timeout=0.2): one every 0.45 s
    assert min(gaps) >= 0.25 + watcher_module.POLL_PACE * 0.25 - 0.05, gaps
    assert emitter.poll_seconds >= 0.25  # the slow listing's own time (a loaded machine adds)


def test_the_pace_follows_the_typical_poll_and_has_a_ceiling():
    from watchdog.observers.api import ObservedWatch
    from watchdog.observers.polling import PollingEmitter

    from nwwatch.service.watcher import _PacedPollingEmitter

    assert paced_wait_seconds(0.0) == 1.0 and paced_wait_seconds(0.1) == 1.0
    assert paced_wait_seconds(2.0) == 8.0
    assert paced_wait_seconds(600.0) == watcher_module.POLL_MAX_WAIT_S == 60.0
    emitter = _PacedPollingEmitter(None, ObservedWatch(".", recursive=False))
    assert isinstance(emitter, PollingEmitter) and emitter.poll_seconds == 0.0
    for seconds in (0.3, 45.0, 0.2):  # one stalled poll on a share among quick ones
        emitter.poll_durations.append(seconds)
    assert emitter.poll_seconds == 0.3
    emitter.poll_durations.append(0.25)  # three kept: the stall still counts, once
    assert emitter.poll_seconds == 0.25


def test_a_slow_polling_watch_is_named_and_its_files_still_processed(tmp_path):
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), polling=True,
                       settle=0.3, rescan=3600)
    daemon = DaemonProcess(cfg, tmp_path / "log", env={
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])})
    try:
        daemon.wait_event("ready", timeout=60)
        # named after three polls (the listing at the start is no typical poll): 6 s apart
        slow = daemon.wait_event("polling_slow", timeout=90)
        assert slow["path"] == str(acq) and slow["level"] == "warning"
        assert slow["poll_seconds"] >= 1.5
        write_frame_tiff(acq / "a.tif", paint_insitu(120.0))  # seen by a poll, not a rescan
        wait_rows(res, 1, timeout=60, proc=daemon)  # after more polls: logged once
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    assert len([e for e in daemon.events() if e.get("event") == "polling_slow"]) == 1
