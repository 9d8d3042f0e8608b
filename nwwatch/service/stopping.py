"""SIGTERM (and SIGINT, SIGHUP) always ends the service, whatever its main thread is blocked in.

Python runs signal handlers in the main thread between bytecodes, so a main thread stuck in a
system call that never returns (a read on a dead network share) or in native code never sees
the stop request. The C-level handler still writes the signal number to the wake-up fd
(:func:`signal.set_wakeup_fd`); a thread waiting on that pipe starts the deadline and ends the
process if the service has not stopped by then.

The deadline is ``timeout_s`` after the signal for the batch in flight. Once the service's loop
has ended (no batch in flight), the wind-down — the rows held for the results written, the
dashboard and the folders' observers stopped, the ledger closed — has until that deadline or
:data:`WIND_DOWN_S` after the loop ended, whichever is later. What the process exits with
depends on what the deadline cut short: a batch (in flight, or its rows held and not yet
written) is an error, ``stop_timeout``, status 1; the batches in flight are marked stopped in the
ledger first (:func:`nwwatch.service.ledgerdb.stop_batches`, waited for no later than
:data:`STOP_BOUND_S` after the signal): a batch slower than the deadline
(a big stack on a CPU) was cut short by the operator, and the next start must not charge its
files an attempt as it does after a crash. Anything else (a start that hangs, a rescan on a dead
share, an observer that does not stop) cut nothing short: ``stop_overran``, a warning, and the
status the wind-down was going to give (0 after a stop).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from nwwatch.service.ledgerdb import stop_batches

#: What the service is doing (:meth:`StopDeadline.doing`), named in the stop's log lines as
#: ``during``. In these the deadline may cut a batch short: the ledger is asked which.
STARTING = "starting"
BETWEEN_BATCHES = "between batches"
BATCH = "the batch in flight"
HELD_ROWS = "writing the rows held"
#: Seconds the wind-down has at least, from the end of the loop.
WIND_DOWN_S = 3.0
#: Seconds after the signal by which the process has ended, the ledger's mark included:
#: the shipped unit's TimeoutStopSec=30 less time to log and exit, so systemd's SIGKILL never
#: comes first (a killed stop logs nothing and its batches are charged an attempt).
STOP_BOUND_S = 28.5
#: Seconds the ledger's mark is given at least, however late the deadline ran out: the
#: largest ``stop_timeout_seconds`` (25) plus :data:`WIND_DOWN_S` plus this is within
#: :data:`STOP_BOUND_S` (tests/test_service_config.py keeps them in step).
LEDGER_WAIT_MIN_S = 0.2
#: Seconds the ledger's mark waits at most for another connection's write lock.
LEDGER_WAIT_MAX_S = 2.0


class StopDeadline:
    """Armed on construction (main thread only), until :meth:`disarm`.

    ``stop``: set by the service's own handler (already set: the deadline starts at once);
    ``log``: a structlog logger; ``ledger``: the ledger file asked what a timed-out stop cut
    short (its batches in flight are marked stopped).
    """

    def __init__(self, stop, timeout_s: float, log, ledger: Path | None = None) -> None:
        self._stop, self._timeout_s, self._log, self._ledger = stop, timeout_s, log, ledger
        self._done = False
        self._stage = STARTING
        #: monotonic time the loop ended (the wind-down began), and the status a wind-down
        #: that overruns the deadline exits with when it cut nothing short (1: an error was
        #: unwinding the service without a wind-down)
        self._wind_down_at: float | None = None
        self._wind_down_status = 1
        self._changed = threading.Event()  # set from the main thread's code, never a handler
        self._requested_lock = threading.Lock()
        self._requested_logged = False
        read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._wait, args=(read_fd,), name="nwwatch-stop-deadline",
                         daemon=True).start()

    def doing(self, stage: str) -> None:
        """What the main thread does from now on (a stage above, or a step of the wind-down)."""
        self._stage = stage

    @contextlib.contextmanager
    def during(self, stage: str) -> Iterator[None]:
        """:meth:`doing` ``stage`` for the block, then what was done before."""
        before, self._stage = self._stage, stage
        try:
            yield
        finally:
            self._stage = before

    def wind_down(self, exit_status: int = 0) -> None:
        """The loop has ended, no batch is in flight: from now the deadline is the later of
        ``timeout_s`` after the signal and :data:`WIND_DOWN_S` from now; ``exit_status`` is
        the status should it run out with nothing cut short. Logs ``stop_requested`` if the
        deadline's thread has not yet (so it comes before the stop's summary). Once only."""
        if self._wind_down_at is not None:
            return
        self._wind_down_at = time.monotonic()
        self._wind_down_status = exit_status
        self._changed.set()
        if self._stop.is_set():
            self._log_requested()

    def disarm(self) -> None:
        """The service has stopped: restore the previous wake-up fd and end the thread."""
        self._done = True
        self._changed.set()
        signal.set_wakeup_fd(self._previous)
        os.close(self._write_fd)

    def _log_requested(self) -> None:
        # Logged under the lock: whichever thread notices the stop first logs it, and the
        # other's next line (the main thread's `stopping`) comes after it.
        with self._requested_lock:
            if self._requested_logged:
                return
            self._requested_logged = True
            action = ("finishing the batch in flight, then exiting" if self._stage == BATCH
                      else "exiting")
            # Logged here, not in the signal handler, which may interrupt a log write.
            self._log.info("stop_requested", stop_timeout_seconds=self._timeout_s,
                           action=action)

    def _wait(self, read_fd: int) -> None:
        stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        # The read end stays open while the deadline runs: a second Ctrl-C during the wait
        # below writes to the pipe too, and a closed read end made that write fail with
        # EPIPE, which Python reports as a traceback on stderr.
        with os.fdopen(read_fd, "rb", buffering=0) as wake:
            while not self._stop.is_set():
                data = wake.read(64)
                if not data or self._done:
                    return
                if stops & set(data):
                    break
            signalled_at = time.monotonic()
            self._log_requested()
            while not self._done:
                end = signalled_at + self._timeout_s
                if self._wind_down_at is not None:
                    end = max(end, self._wind_down_at + WIND_DOWN_S)
                left = end - time.monotonic()
                if left <= 0:
                    self._expire(signalled_at)
                self._changed.wait(left)
                self._changed.clear()  # then the deadline is computed again

    def _expire(self, signalled_at: float) -> None:
        """The deadline has run out: log what it cut short and end the process."""
        if self._done:  # the service stopped meanwhile
            return
        during = self._stage
        released = held = 0
        known = True
        if during in (BATCH, BETWEEN_BATCHES, HELD_ROWS):
            # Between batches too: rows may be held for the results, or a batch left
            # unfinished by a failed write. Asked of the ledger, which tells; its lock is
            # waited for only until STOP_BOUND_S after the signal (a commit stuck holding it
            # would otherwise keep the process past systemd's SIGKILL).
            wait_s = min(LEDGER_WAIT_MAX_S, signalled_at + STOP_BOUND_S - time.monotonic())
            try:
                if self._ledger is not None and self._ledger.is_file():
                    released, held = stop_batches(self._ledger,
                                                  timeout_s=max(LEDGER_WAIT_MIN_S, wait_s))
            except Exception as exc:  # noqa: BLE001 - exiting matters more than the mark
                self._log.warning("stop_not_recorded", error=str(exc))
                known = False
            if self._done:  # the wind-down finished while the ledger was asked
                return
        if during == BATCH or released or held or not known:
            said = []
            if during == BATCH or released:
                said.append("the batch in flight is processed again at the next start, its "
                            "files charged no attempt")
            if held:
                said.append("the rows held for the results are not written: their files "
                            "are processed again at the next start, charged no attempt")
            if not said:
                said.append("what was unfinished is settled at the next start")
            self._log.error("stop_timeout", seconds=self._timeout_s, during=during,
                            batches_released=released, batches_held=held,
                            action="exiting now; " + "; ".join(said))
            os._exit(1)
        status = self._wind_down_status if self._wind_down_at is not None else (
            0 if during in (STARTING, BETWEEN_BATCHES) else 1)
        self._log.warning("stop_overran", seconds=self._timeout_s, during=during,
                          exit_status=status,
                          action="exiting now; no batch was cut short: the rows of every "
                                 "file processed are written")
        os._exit(status)
