"""SIGTERM (and SIGINT, SIGHUP) always ends the service, whatever its main thread is blocked in.

Python runs signal handlers in the main thread between bytecodes, so a main thread stuck in a
system call that never returns (a read on a dead network share) or in native code never sees
the stop request. The C-level handler still writes the signal number to the wake-up fd
(:func:`signal.set_wakeup_fd`); a thread waiting on that pipe logs ``stop_requested``, starts
the deadline and ends the process ``timeout_s`` later if it is still running. Before that it
marks the ledger's batches in flight as stopped (:func:`nwwatch.service.ledgerdb.mark_stopped`):
a batch slower than the deadline (a big stack on a CPU) was cut short by the operator, and the
next start must not charge its files an attempt as it does after a crash.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from nwwatch.service.ledgerdb import mark_stopped


class StopDeadline:
    """Armed on construction (main thread only), until :meth:`disarm`.

    ``stop``: set by the service's own handler (already set: the deadline starts at once);
    ``log``: a structlog logger (``stop_timeout`` is logged before exiting with status 1);
    ``ledger``: the ledger file whose batches in flight a timed-out stop marks as stopped.
    """

    def __init__(self, stop: threading.Event, timeout_s: float, log,
                 ledger: Path | None = None) -> None:
        self._done = False
        read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

        def wait() -> None:
            # The read end stays open while the deadline runs: a second Ctrl-C during the
            # wait below writes to the pipe too, and a closed read end made that write fail
            # with EPIPE, which Python reports as a traceback on stderr.
            with os.fdopen(read_fd, "rb", buffering=0) as wake:
                while not stop.is_set():
                    data = wake.read(64)
                    if not data or self._done:
                        return
                    if stops & set(data):
                        break
                # Logged here, not in the signal handler, which may interrupt a log write.
                log.info("stop_requested", stop_timeout_seconds=timeout_s,
                         action="finishing the batch in flight, then exiting")
                time.sleep(timeout_s)
                if self._done:
                    return
                released = 0
                try:
                    if ledger is not None and ledger.is_file():
                        released = mark_stopped(ledger)
                except Exception as exc:  # noqa: BLE001 - exiting matters more than the mark
                    log.warning("stop_not_recorded", error=str(exc))
                log.error("stop_timeout", seconds=timeout_s, batches_released=released,
                          action="exiting now; the batch in flight is processed again at "
                                 "the next start, its files charged no attempt")
                os._exit(1)

        threading.Thread(target=wait, name="nwwatch-stop-deadline", daemon=True).start()

    def disarm(self) -> None:
        """The service has stopped: restore the previous wake-up fd and end the thread."""
        self._done = True
        signal.set_wakeup_fd(self._previous)
        os.close(self._write_fd)
