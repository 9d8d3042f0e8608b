"""The daemon's pause while results or the ledger cannot be written (a full disk, a read-only
mount): nothing is processed for ``backoff_seconds`` at a time, with one warning per period
and the reason in systemd's STATUS, until a write succeeds again."""

from __future__ import annotations

import time

from nwwatch.dashboard import metrics as _metrics


class StoragePause:
    """Whether processing is paused, until when, and why. ``log``: the service's structlog
    logger; ``status``: a callable taking systemd's STATUS text."""

    def __init__(self, backoff_seconds: float, log, status) -> None:
        self.backoff_seconds = backoff_seconds
        self.log = log
        self.status = status
        self.until: float | None = None
        self.reason = ""

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
        backoff = self.backoff_seconds
        self.until = time.monotonic() + backoff
        # One line per back-off period, without a traceback: a full disk is one condition.
        self.log.warning("storage_paused" if first else "storage_still_paused",
                         error=str(exc), backoff_s=backoff,
                         action=f"nothing written; trying again in {backoff:g} s")
        self.status(f"paused: cannot write results or ledger ({exc}); "
                    f"retrying every {backoff:g} s")
        _metrics.set_storage_paused(True)  # an alert needs no log parsing

    def resume(self) -> None:
        """A write succeeded: end the pause (logged once)."""
        if self.until is not None:
            self.log.info("storage_resumed", paused_because=self.reason)
            self.until, self.reason = None, ""
            _metrics.set_storage_paused(False)

    def status_text(self) -> str | None:
        """systemd's STATUS while paused, else None."""
        return f"paused: cannot write results or ledger ({self.reason})" if self.paused else None
