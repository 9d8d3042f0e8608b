"""The daemon's pause while results or the ledger cannot be written (a full disk, a read-only
mount): nothing is processed for ``backoff_seconds`` at a time, with one warning per period
and the reason in systemd's STATUS, until a write succeeds again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from nwwatch.dashboard import metrics as _metrics

if TYPE_CHECKING:
    from nwwatch.service.ledger import Ledger


class StoragePause:
    """Whether processing is paused, until when, and why. ``log``: the service's structlog
    logger; ``status``: a callable taking systemd's STATUS text."""

    def __init__(self, backoff_seconds: float, log, status) -> None:
        self.backoff_seconds = backoff_seconds
        self.log = log
        self.status = status
        self.until: float | None = None
        self.reason = ""
        #: The results folder whose write failed (probed before processing resumes), or None.
        self.folder: Path | None = None

    @property
    def paused(self) -> bool:
        return self.until is not None

    def due(self, now: float) -> bool:
        """True when processing may be tried at monotonic time ``now``: not paused, or the
        back-off period is over."""
        return self.until is None or now >= self.until

    def pause(self, exc: Exception) -> None:
        """Start (or extend) a pause because of the failed write ``exc``."""
        first = self.until is None
        self.reason = str(exc)
        self.folder = getattr(exc, "folder", None) or (None if first else self.folder)
        backoff = self.backoff_seconds
        self.until = time.monotonic() + backoff
        # One line per back-off period, without a traceback: a full disk is one condition.
        self.log.warning("storage_paused" if first else "storage_still_paused",
                         error=str(exc), backoff_s=backoff,
                         action=f"nothing written; trying again in {backoff:g} s")
        self.status(f"paused: cannot write results or ledger ({exc}); "
                    f"retrying every {backoff:g} s")
        # an alert needs no log parsing; the dashboard's page says why
        _metrics.set_storage_paused(True, reason=str(exc))

    def probe(self, ledger: Ledger) -> None:
        """Raise LedgerWriteError or ResultsWriteError while the ledger, or the results
        folder whose write failed, still cannot be written
        (:func:`nwwatch.atomic.probe_writable` of :data:`_PROBE_BYTES`)."""
        from nwwatch.atomic import probe_writable
        from nwwatch.service.flush import ResultsWriteError

        ledger.probe()
        if self.folder is not None:
            try:
                probe_writable(self.folder, _PROBE_BYTES)
            except OSError as exc:
                raise ResultsWriteError(f"{self.folder}: cannot write results ({exc})",
                                        folder=self.folder) from exc

    def resume(self) -> None:
        """A write succeeded: end the pause (logged once)."""
        if self.until is not None:
            self.log.info("storage_resumed", paused_because=self.reason)
            self.until, self.reason, self.folder = None, "", None
            _metrics.set_storage_paused(False)

    def status_text(self) -> str | None:
        """systemd's STATUS while paused, else None."""
        return f"paused: cannot write results or ledger ({self.reason})" if self.paused else None


#: Bytes the probe writes: more than an empty file, which a full disk may still create. The
#: results folder is probed besides the ledger: it may stay read-only or full on another file
#: system than the ledger, and resuming then would process the waiting files again every
#: back-off period.
_PROBE_BYTES = 4096
