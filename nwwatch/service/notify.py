"""systemd's notify protocol over ``$NOTIFY_SOCKET``, with the standard library only.

``READY=1`` once watching, ``STATUS=...`` for ``systemctl status``, ``WATCHDOG=1`` from the
processing loop (so a hung loop, not merely a live process, is what systemd checks) and
``STOPPING=1`` on shutdown. Without ``$NOTIFY_SOCKET`` (not under systemd) every call is a no-op.
"""

from __future__ import annotations

import errno
import os
import socket
import time

#: What a non-blocking send to a datagram socket whose queue is full fails with.
_QUEUE_FULL = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


class Notifier:
    """Send notifications to systemd; ``watchdog_interval_s`` is half of ``$WATCHDOG_USEC``."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        self._address = address or None
        self._socket: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 2e6 if enabled else None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, message: str) -> bool:
        """Send ``message``; False when it could not be sent. Never waits: a receiver whose
        queue is full (a datagram socket holds net.unix.max_dgram_qlen messages, 10 by
        default) loses this one rather than stopping the processing loop that sends it."""
        return self._send(message) == 0

    def _send(self, message: str) -> int:
        """0 when sent, else the error number (EAGAIN: the receiver's queue is full)."""
        if self._address is None:
            return 0
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                                         | socket.SOCK_NONBLOCK)
        try:
            self._socket.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:  # a full queue, or systemd gone (e.g. during shutdown)
            return exc.errno or -1
        return 0

    def ready(self, status: str = "", wait_s: float = 5.0) -> None:
        """``READY=1`` (with ``status``): the one message systemd must get (a start it never
        hears of ends in the unit's start timeout), tried again for ``wait_s`` while the
        receiver's queue is full (no receiver at all: not waited for)."""
        message = "READY=1" + (f"\nSTATUS={status}" if status else "")
        end = time.monotonic() + wait_s
        while self._send(message) in _QUEUE_FULL and time.monotonic() < end:
            time.sleep(0.05)

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self, now: float | None = None) -> None:
        """Ping if half of the watchdog period has passed since the last ping."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_interval_s and self.send("WATCHDOG=1"):
            self._last_ping = now  # (one not sent is tried again at the next call)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
