"""Serving the dashboard: a supervised uvicorn thread inside the service, or the foreground
server of ``nwwatch dashboard``.

Inside the service the dashboard must never endanger processing: it runs in a daemon thread
with its own event loop, reads only committed files (at lower CPU priority), and whatever
happens to it — the port taken, an exception in the server — is logged as
``dashboard_crashed`` with the traceback and the server is started again after a back-off
(1 s, doubling to 60 s); the processing loop never waits for it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nwwatch.dashboard.settings import DashboardConfig, is_loopback, url_host

if TYPE_CHECKING:
    from nwwatch.stopsignals import StopEvent

#: Longest wait between two restarts of a crashing dashboard.
MAX_BACKOFF_S = 60.0
#: A server that ran this long before crashing starts again after the shortest back-off.
HEALTHY_S = 60.0
#: ``nwwatch dashboard``: the longest wait for the server to stop (it gives its connections
#: 2 s) after a stop signal.
STOP_WAIT_S = 5.0


def lower_priority() -> None:
    """Nice the calling thread by 10 (Linux: niceness is per thread), so that the dashboard's
    threads never take CPU from processing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (OSError, AttributeError):
        pass


class ListenError(OSError):
    """The dashboard's address cannot be bound (in use, not this machine's): a setting to
    change, not a fault of the code."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); :class:`ListenError` (e.g. address in use)
    names both."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") \
            from None
    sock.set_inheritable(True)
    return sock


def listen_hint(exc: OSError, settings) -> str:
    """What to change when the dashboard cannot listen on ``settings``' address."""
    where = f"{settings.host}:{settings.port}"
    if exc.errno in (errno.EACCES, errno.EPERM) and 0 < settings.port < 1024:
        # the unit gives the service no capability: CAP_NET_BIND_SERVICE is not among them
        return (f"port {settings.port} is below 1024, which only a privileged process may "
                "listen on (the unit grants the service none): change [dashboard] listen to "
                "a port of 1024 or more, e.g. 127.0.0.1:8765")
    return (f"another program listens on {where}, or it is not an address of this machine: "
            "change [dashboard] listen (or stop the other program)")


def _server(app, sock: socket.socket):
    import uvicorn

    # No uvicorn logging set-up (the service logs JSON); no access log; SSE streams end
    # when the app's `stopping` flag is set, the rest within 2 s.
    config = uvicorn.Config(app, log_config=None, access_log=False, log_level="warning",
                            timeout_graceful_shutdown=2, lifespan="on")
    return uvicorn.Server(config)


class DashboardThread:
    """The service's dashboard (``[dashboard]``): :meth:`start` returns at once."""

    def __init__(self, results: Path, ledger: Path | None, settings: DashboardConfig, log,
                 live: bool = True) -> None:
        self.results, self.ledger, self.settings = Path(results), ledger, settings
        self.log, self.live = log, live
        self.port: int | None = None  # bound port (settings.port may be 0)
        # When the serving process started, kept across restarts of a crashed server: the
        # acquisitions it has processed rows of since are the ones that can go quiet.
        self.started_at = time.time()
        self.crashes = 0
        self._stopping = threading.Event()
        self._server = None
        self._thread = threading.Thread(target=self._supervise, name="nwwatch-dashboard",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the server to stop and wait up to ``timeout`` s (the thread is a daemon thread:
        the process never waits longer)."""
        self._stopping.set()
        server = self._server
        if server is not None:
            server.config.app.state.stopping = True
            server.should_exit = True
        self._thread.join(timeout)

    def _run_once(self) -> None:
        from nwwatch.dashboard.app import create_app

        sock = bind_socket(self.settings.host, self.settings.port)
        try:
            self.port = sock.getsockname()[1]
            app = create_app(self.results, self.ledger, live=self.live,
                             stale_after_s=self.settings.stale_after_s,
                             rows_held_s=self.settings.rows_held_s,
                             overlays=self.settings.overlays,
                             active_since=self.started_at,
                             loopback_only=is_loopback(self.settings.host))
            self._server = _server(app, sock)
            # A port picked by the system (port 0) is known from this line alone: a warning,
            # so that every [logging] level shows it
            say = self.log.warning if self.settings.port == 0 else self.log.info
            say("dashboard_listening", url=f"http://{url_host(self.settings.host)}:"
                f"{self.port}/", live=self.live)
            if self._stopping.is_set():
                return
            self._server.run(sockets=[sock])
        finally:
            sock.close()

    def _supervise(self) -> None:
        lower_priority()  # the event loop too yields the CPU to processing
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._run_once()
                if self._stopping.is_set():
                    break
                raise RuntimeError("the dashboard server stopped by itself")
            except BaseException as exc:  # noqa: B036 - SystemExit from uvicorn included
                if self._stopping.is_set():
                    break
                self.crashes += 1
                if time.monotonic() - started >= HEALTHY_S:
                    backoff = 1.0
                if isinstance(exc, ListenError):  # no traceback: the bind's own frames
                    self.log.error("dashboard_crashed", error=repr(exc), crashes=self.crashes,
                                   restart_in_s=backoff, hint=listen_hint(exc, self.settings),
                                   note="processing goes on; the dashboard is started again")
                else:
                    self.log.error("dashboard_crashed", error=repr(exc), crashes=self.crashes,
                                   restart_in_s=backoff, exc_info=exc,
                                   note="processing goes on; the dashboard is started again")
                self._stopping.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
        self.log.info("dashboard_stopped")


def serve(results: Path, ledger: Path | None, host: str, port: int,
          stale_after_s: float | None = None) -> int | None:
    """``nwwatch dashboard``: serve a finished (or replayed) results folder in the foreground
    until SIGINT (Ctrl-C, also in a background job), SIGTERM or SIGHUP (left ignored under
    ``nohup``); returns that
    signal's number (None: the server stopped by itself).

    The server runs in a thread of its own, where uvicorn leaves the signals alone (in the
    main thread it sets its own handlers, and after stopping delivers the signal again to the
    ones before: SIGTERM and SIGHUP then killed the process without a word, Ctrl-C became
    click's ``Aborted!``, exit 1)."""
    import signal

    from nwwatch.dashboard.app import create_app
    from nwwatch.stopsignals import (
        StopEvent,
        early_stop_signal,
        stop_handler_before,
        take_stop_handler,
    )

    stop = StopEvent()  # set by the signal handler: no lock
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        # a hang-up left ignored (nohup) stays so; SIGINT is taken also where a script's
        # shell left it ignored for a background job (`nwwatch dashboard RES &`, then
        # `kill -INT`), as `nwwatch label` takes it
        if signum != signal.SIGHUP or stop_handler_before(signum) is not signal.SIG_IGN:
            previous[signum] = take_stop_handler(signum, on_signal)
    early = early_stop_signal()  # one that came while the modules were imported
    if early is not None:
        on_signal(early, None)
    try:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        sock = bind_socket(host, port)
        try:
            app = create_app(results, ledger, live=False, stale_after_s=stale_after_s,
                             loopback_only=is_loopback(host))
            server = _server(app, sock)
            if not stop.is_set():
                _serve_until(server, app, sock, host, results, stop)
        finally:
            sock.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    return received[0] if received else None


def _serve_until(server, app, sock: socket.socket, host: str, results: Path,
                 stop: StopEvent) -> None:
    """Run ``server`` in a thread until ``stop`` is set (or the server ends by itself)."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            failed.append(exc)

    # a daemon thread: a server that does not stop within the join's limit is not waited for
    thread = threading.Thread(target=run, name="nwwatch-dashboard", daemon=True)
    thread.start()
    print(f"nwwatch dashboard: http://{url_host(host)}:{sock.getsockname()[1]}/ "
          f"(results {results}); Ctrl-C stops", flush=True)
    try:
        while thread.is_alive() and not stop.wait(0.5):
            pass
    finally:
        app.state.stopping = True  # event streams end, then the server within 2 s
        server.should_exit = True
        thread.join(STOP_WAIT_S)
    if failed:
        raise failed[0]
