"""The stop request the signal handlers of ``run``, ``label`` and ``dashboard`` set
(:class:`nwwatch.stopsignals.StopEvent`): set from a handler that interrupts its own ``wait``, it
never blocks. ``threading.Event.set`` does, inside ``Event.wait``: the handler waits for the
lock that the interrupted main thread holds, and a service stopped that way hung until its
stop deadline ended it with status 1 (a daemon test that saw it: exit 1 after SIGTERM)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from servicekit import REPO

from nwwatch.stopsignals import StopEvent

# The main thread waits on the event in a loop while a thread signals it every 0.2 ms, its
# handler setting the event: the handler runs at some point inside wait.
_HARNESS = """
import os, signal, sys, threading, time
from nwwatch.stopsignals import StopEvent
event = threading.Event() if sys.argv[1] == "threading" else StopEvent()
signal.signal(signal.SIGUSR1, lambda *_: event.set())
done = threading.Event()  # the signalling thread's own, never set by the handler
def signal_often():
    while not done.is_set():
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.0002)
threading.Thread(target=signal_often, daemon=True).start()
end = time.monotonic() + 1.5
while time.monotonic() < end:
    event.wait(0)
done.set()
print("finished")
"""


def _run(kind: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-c", _HARNESS, kind], capture_output=True,
                              text=True, timeout=20,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, -9, "", "timed out")


def test_set_from_a_handler_inside_wait_never_blocks():
    done = _run("stop")
    assert done.returncode == 0 and done.stdout.strip() == "finished", done.stderr[-2000:]
    # the same harness with threading.Event: the handler blocks on the event's lock (it
    # then nests in further signals' handlers until the recursion limit, or hangs)
    stuck = _run("threading")
    assert "finished" not in stuck.stdout, "the harness no longer provokes the deadlock"


def test_it_behaves_as_the_event_it_replaces():
    event = StopEvent()
    assert not event.is_set() and event.wait(0.01) is False
    woken: list[bool] = []
    waiters = [threading.Thread(target=lambda: woken.append(event.wait(30)))
               for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    event.set()
    event.set()  # again: no error
    for waiter in waiters:
        waiter.join(10)
    assert woken == [True, True, True]
    assert event.is_set() and event.wait() is True and event.wait(0) is True
