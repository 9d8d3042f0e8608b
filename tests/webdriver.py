"""A minimal W3C WebDriver client (standard library only) driving Debian's chromium headless.

Talks to ``/usr/bin/chromedriver`` over its HTTP API: nothing is downloaded (no driver
manager), no Python package is needed. The browser must be installed (``make browser``:
``apt-get install -y chromium chromium-driver``); :func:`require_browser` fails with that
instruction when it is not.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def require_browser() -> None:
    """Fail (not skip) with the install command when chromium or chromedriver is missing."""
    missing = [p for p in (CHROMEDRIVER, CHROMIUM) if not Path(p).exists()
               and shutil.which(Path(p).name) is None]
    if missing:
        pytest.fail(f"browser test needs {missing}: run `make browser` (as root: apt-get "
                    f"install -y chromium chromium-driver)", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless chromium session; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 820, logs: bool = False) -> None:
        """``logs``: record the console and the network requests (:meth:`console`,
        :meth:`requested_urls`)."""
        self.port = _free_port()
        driver = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
        self.proc = subprocess.Popen([driver, f"--port={self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                self._call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    raise RuntimeError("chromedriver did not start") from None
                time.sleep(0.1)
        binary = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"]}}}}
        if logs:
            caps["capabilities"]["alwaysMatch"]["goog:loggingPrefs"] = {
                "browser": "ALL", "performance": "ALL"}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webdriver {method} {path}: {exc.read()[:500]!r}") from None

    def cmd(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[_ELEMENT]

    def attribute(self, css: str, name: str) -> str | None:
        """The attribute ``name`` of the first element matching ``css`` (None when absent)."""
        return self.cmd("GET", f"/element/{self.find(css)}/attribute/{name}")

    def text(self, css: str) -> str:
        """The rendered text of the first element matching ``css``."""
        return self.cmd("GET", f"/element/{self.find(css)}/text")

    def displayed(self, css: str) -> bool:
        """Whether the first element matching ``css`` is visible on the page."""
        return bool(self.cmd("GET", f"/element/{self.find(css)}/displayed"))

    def click(self, css: str) -> None:
        self.cmd("POST", f"/element/{self.find(css)}/click", {})

    def drag(self, css: str, dx: int, dy: int) -> None:
        """Press on the element's centre, move by (dx, dy) screen pixels in steps, release."""
        element = {_ELEMENT: self.find(css)}
        moves = [{"type": "pointerMove", "duration": 0, "origin": element, "x": 0, "y": 0},
                 {"type": "pointerDown", "button": 0}]
        for k in range(1, 6):
            moves.append({"type": "pointerMove", "duration": 20, "origin": "pointer",
                          "x": round(dx / 5) if k < 5 else dx - 4 * round(dx / 5),
                          "y": round(dy / 5) if k < 5 else dy - 4 * round(dy / 5)})
        moves.append({"type": "pointerUp", "button": 0})
        self.cmd("POST", "/actions", {"actions": [
            {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
             "actions": moves}]})
        self.cmd("DELETE", "/actions")

    def wait_for(self, script: str, timeout: float = 120.0) -> Any:
        """Poll ``script`` (a JS expression body returning a value) until it is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.execute(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"browser: {script!r} still false after {timeout} s")
            time.sleep(0.1)

    def console(self) -> list[dict]:
        """Console messages since the last call (``level``, ``message``); needs ``logs``."""
        return self.cmd("POST", "/se/log", {"type": "browser"})

    def requested_urls(self) -> list[str]:
        """URLs the page requested since the last call (data: URLs included); needs
        ``logs``."""
        urls = []
        for entry in self.cmd("POST", "/se/log", {"type": "performance"}):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))
        return path

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.cmd("DELETE", "")
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
