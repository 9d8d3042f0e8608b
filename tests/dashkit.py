"""Helpers for the dashboard tests: plain HTTP (urllib), a server-sent-events reader, and a
live service with the dashboard on a free port."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servicekit import DaemonProcess, model, paint_insitu, write_config

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> dict:
    status, body = get(url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


class EventStream:
    """A server-sent-events connection; :meth:`next_event` blocks (up to ``timeout``)."""

    def __init__(self, base: str, path: str, last_event_id: str | None = None,
                 timeout: float = 30.0) -> None:
        host, port = base.removeprefix("http://").rstrip("/").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("content-type").startswith("text/event-stream")

    def next_event(self, name: str = "update") -> dict:
        """The next event called ``name``: {"id", "event", "data" (parsed JSON)}."""
        event: dict = {}
        while True:
            line = self.resp.readline()
            if not line:
                raise AssertionError("event stream closed")
            line = line.decode().rstrip("\r\n")
            if not line:
                if event.get("event") == name:
                    event["data"] = json.loads(event["data"])
                    return event
                event = {}
                continue
            field, _, value = line.partition(": ")
            if field in ("id", "event", "data"):
                event[field] = value

    def close(self) -> None:
        self.conn.close()


def write_frames(folder: Path, angles: list[float | None], start: int = 0,
                 size: int = 96, half_width: int = 24, top: int | None = None) -> list[Path]:
    """One single-frame TIFF per angle (None: a frame with no wire, refused), acquired one
    second apart from :data:`T0`; written atomically (rename), as a careful writer does.

    The wire is ``2 * half_width`` px wide: droplets on narrower painted wires are refused
    as ``angle_uncertain`` by the measurement below about 97 degrees."""
    import numpy as np

    from nwwatch.io import write_frame_tiff

    paths = []
    for k, angle in enumerate(angles, start=start):
        if angle is None:
            image = np.full((size, size), 200, np.uint8)  # background only
        else:
            image = paint_insitu(angle, size=size, half_width=half_width, top=top)
        path = folder / f"frame_{k:04d}.tif"
        write_frame_tiff(path, image, acquired_at=T0 + timedelta(seconds=k))
        paths.append(path)
    return paths


def start_service(tmp: Path, acq: Path, res: Path, listen: str = "127.0.0.1:0",
                  stale_after_s: float = 120.0, flush_seconds: float = 0.2) -> DaemonProcess:
    extra = f'[dashboard]\nlisten = "{listen}"\nstale_after_s = {stale_after_s}\n'
    cfg = write_config(tmp / "c.toml", acq, res, model(tmp), settle=0.3, extra=extra,
                       flush_seconds=flush_seconds)
    return DaemonProcess(cfg, tmp / "log")


def dashboard_url(daemon: DaemonProcess, timeout: float = 30.0) -> str:
    return daemon.wait_event("dashboard_listening", timeout)["url"].rstrip("/")


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout} s")


def serve_results(results: Path, port: int = 0):
    """``nwwatch dashboard RESULTS`` as a child process; returns (process, base URL)."""
    import re
    import subprocess
    import sys

    from servicekit import REPO

    proc = subprocess.Popen([sys.executable, "-c", "from nwwatch.cli import main; main()",
                             "dashboard", str(results), "--listen", f"127.0.0.1:{port}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    line = proc.stdout.readline()
    served = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if not served:
        proc.kill()
        raise AssertionError(f"nwwatch dashboard did not start: {line}{proc.stdout.read()}")
    return proc, served.group(1)


@contextmanager
def dashboard_thread(results: Path, port: int = 0) -> Iterator[tuple[object, str]]:
    """The dashboard of ``results`` in a thread of this process (as the service runs it, not
    live), on ``port`` (0: a free one); yields (the thread, its base URL) and stops it on
    leaving (stopping it earlier is allowed)."""
    from test_dashboard_server import Log

    from nwwatch.dashboard.server import DashboardThread
    from nwwatch.dashboard.settings import DashboardConfig

    log = Log()
    thread = DashboardThread(results, None, DashboardConfig(port=port), log, live=False)
    thread.start()
    try:
        yield thread, log.wait("dashboard_listening")["url"].rstrip("/")
    finally:
        thread.stop()
