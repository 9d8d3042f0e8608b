"""The service's stop deadline (:class:`nwwatch.service.stopping.StopDeadline`) in a child
process with a real SIGTERM: what it logs, in which order, and the status it ends the process
with when a stop runs out of time with no batch in flight. (The daemon's own stops, with a
batch made to hang, are in tests/test_service_stop_faults.py and test_service_faults.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from servicekit import REPO

# The main thread does what the service's does around a stop; the log prints JSON lines.
# ``slow_thread``: the deadline's thread logs a moment late (a loaded machine), so a line of
# the main thread's written meanwhile shows up first unless the order is kept.
_HARNESS = """
import json, os, signal, sys, threading, time
from nwwatch.service import stopping
from nwwatch.stopsignals import StopEvent

case = sys.argv[1]
lock = threading.Lock()

class Log:
    def _line(self, level, event, kw):
        if case == "slow_thread" and threading.current_thread().name != "MainThread":
            time.sleep(0.5)
        with lock:
            print(json.dumps({"event": event, "level": level, **kw}), flush=True)
    def info(self, event, **kw): self._line("info", event, kw)
    def warning(self, event, **kw): self._line("warning", event, kw)
    def error(self, event, **kw): self._line("error", event, kw)

log = Log()
stop = StopEvent()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
deadline = stopping.StopDeadline(stop, 0.2 if case == "stuck_between_batches" else 30, log)
doing = getattr(deadline, "doing", lambda stage: None)
doing(getattr(stopping, "BETWEEN_BATCHES", "between batches"))
os.kill(os.getpid(), signal.SIGTERM)
stop.wait(10)
if case == "stuck_between_batches":
    time.sleep(10)  # a rescan of a share that hangs: the deadline ends the process
getattr(deadline, "wind_down", lambda: None)()
log.info("stopping")
time.sleep(1)  # the deadline's thread has logged by now
deadline.disarm()
log.info("stopped")
"""


def _run(case: str) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-c", _HARNESS, case], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert not done.stderr.strip(), done.stderr[-2000:]
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_stop_requested_is_logged_once_and_before_the_stops_summary():
    # stop_requested was logged by the deadline's thread only, after it read the wake-up
    # pipe: on a loaded machine the main thread's `stopping` (the summary of the run) came
    # first. Whichever thread notices the stop first now logs it, once.
    code, lines = _run("slow_thread")
    events = [line["event"] for line in lines]
    assert code == 0 and events == ["stop_requested", "stopping", "stopped"], lines


def test_a_stop_that_runs_out_between_batches_cuts_nothing_short_and_exits_0():
    # The deadline cut a stop short that had no batch in flight (a rescan that hangs, a
    # start that takes long): it logged stop_timeout, "the batch in flight is processed
    # again at the next start", and exited 1, the status that says a batch was cut short.
    code, lines = _run("stuck_between_batches")
    events = [line["event"] for line in lines]
    assert "stop_timeout" not in events, lines
    assert code == 0, lines
    assert events == ["stop_requested", "stop_overran"], lines
    overran = lines[-1]
    assert overran["level"] == "warning" and overran["during"] == "between batches"
    assert overran["exit_status"] == 0 and overran["seconds"] == 0.2
