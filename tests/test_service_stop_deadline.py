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


# A batch ends just before its deadline, then the rows held for the results are being written
# when the deadline runs out; the ledger is asked what was cut short (stop_batches, replaced:
# it says how long it was let wait for the ledger's lock, and when it was asked). Time is
# scaled down: the bounds are set small, in the same relation as the shipped ones.
# ``ledger_slow``: the ledger's lock is held elsewhere; ``done_meanwhile``: the wind-down ends
# (the rows written, the deadline disarmed) while the ledger is asked.
_LEDGER_HARNESS = """
import json, os, signal, sys, threading, time
from pathlib import Path
from nwwatch.service import stopping
from nwwatch.stopsignals import StopEvent

case, ledger = sys.argv[1], Path(sys.argv[2])
stopping.STOP_BOUND_S, stopping.WIND_DOWN_S = 1.5, 0.5
asked, finished = threading.Event(), threading.Event()

class Log:
    def _line(self, level, event, kw):
        print(json.dumps({"event": event, "level": level, **kw}), flush=True)
    def info(self, event, **kw): self._line("info", event, kw)
    def warning(self, event, **kw): self._line("warning", event, kw)
    def error(self, event, **kw): self._line("error", event, kw)

def stop_batches(path, timeout_s=2.0):
    log.info("ledger_asked", timeout_s=timeout_s, at_s=time.monotonic() - sent_at)
    asked.set()
    if case == "done_meanwhile":
        finished.wait(10)
        return 0, 1  # what the ledger said before the rows were written
    time.sleep(timeout_s)
    raise RuntimeError("database is locked")

stopping.stop_batches = stop_batches
log = Log()
stop = StopEvent()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
deadline = stopping.StopDeadline(stop, 0.3, log, ledger=ledger)
deadline.doing(stopping.BATCH)
sent_at = time.monotonic()
os.kill(os.getpid(), signal.SIGTERM)
stop.wait(10)
time.sleep(0.25)  # the batch in flight ends just before its deadline
deadline.doing(stopping.BETWEEN_BATCHES)
deadline.wind_down()
with deadline.during(stopping.HELD_ROWS):
    if case == "ledger_slow":
        time.sleep(10)  # a commit stuck in fsync
    asked.wait(10)
deadline.disarm()
log.info("stopped")
finished.set()
time.sleep(1)  # the deadline's thread would have ended the process by now
"""


def _run(case: str, tmp_path=None) -> tuple[int, list[dict]]:
    if tmp_path is None:
        args = [_HARNESS, case]
    else:
        (tmp_path / "ledger.sqlite").write_bytes(b"")
        args = [_LEDGER_HARNESS, case, str(tmp_path / "ledger.sqlite")]
    done = subprocess.run([sys.executable, "-c", *args], capture_output=True,
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


def test_a_stop_with_the_ledger_locked_ends_before_its_bound(tmp_path):
    # The ledger's mark waited its full 2 s for the lock after a deadline that ran out at
    # stop_timeout_seconds (25) + the wind-down's 4 s: the process ended ~31 s after SIGTERM,
    # past the unit's SIGKILL at TimeoutStopSec=30, stop_timeout never logged. The mark is
    # now let wait only until STOP_BOUND_S after the signal (here 1.5 s, the deadline 0.75 s).
    code, lines = _run("ledger_slow", tmp_path)
    asked = [line for line in lines if line["event"] == "ledger_asked"]
    assert code == 1 and len(asked) == 1, lines
    # at_s counts from before the signal was sent: the thread's own clock starts a little
    # after, so the sum may exceed the bound by that much
    assert asked[0]["at_s"] + asked[0]["timeout_s"] < 1.5 + 0.5, lines
    assert [line["event"] for line in lines][-2:] == ["stop_not_recorded", "stop_timeout"]


def test_a_wind_down_that_ends_while_the_ledger_is_asked_is_not_cut_short(tmp_path):
    # The deadline's thread asked the ledger, then ended the process with stop_timeout and
    # status 1 even when the wind-down had written the rows and stopped meanwhile.
    code, lines = _run("done_meanwhile", tmp_path)
    events = [line["event"] for line in lines]
    assert code == 0, lines
    assert events == ["stop_requested", "ledger_asked", "stopped"], lines
