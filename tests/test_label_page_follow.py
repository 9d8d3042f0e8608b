"""The page while a handle is dragged: at most one preview on the server at a time (the latest
shapes win), and a header that keeps its height whatever the status line says (the frame
does not move under the pointer).

Browser tests: Debian chromium + chromedriver (``tests/webdriver.py``), the window 1280 x 800.
"""

from __future__ import annotations

import threading
import time

import pytest
from label_helpers import serving
from webdriver import Browser, require_browser

import nwwatch.label.server as server_module
from nwwatch.label.frames import frame_refs
from nwwatch.label.geometry import geometry_from_json
from nwwatch.label.server import LabelSession
from nwwatch.synth import generate_insitu

READY = "return document.body.dataset.state === 'ready' && window.nwLabel.geometry !== null"


class SlowPreview:
    """``nwwatch.label.server.preview`` taking ``delay_s`` longer, as at 4096 x 4096 (6 s),
    counting the previews on the server at once and keeping the shapes each was asked for."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.asked: list = []

    def reset(self, delay_s: float) -> None:
        with self.lock:
            self.delay_s, self.running, self.most, self.asked = delay_s, 0, 0, []

    def __call__(self, geometry):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.asked.append(geometry)
            delay = self.delay_s
        try:
            time.sleep(delay)
            return PREVIEW(geometry)
        finally:
            with self.lock:
                self.running -= 1


PREVIEW = server_module.preview


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labelfollow")
    frames = tmp / "acquisition-with-a-long-folder-name-as-on-a-microscope-pc"
    generate_insitu(frames, 2, seed=3, size=256)
    session = LabelSession(frame_refs(sorted(frames.glob("*.tif"))),
                           tmp / "DATA-of-the-session-with-a-long-name")
    slow = SlowPreview()
    patch = pytest.MonkeyPatch()
    patch.setattr(server_module, "preview", slow)
    try:
        with serving(session) as url:
            yield session, url, slow
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def browser():
    require_browser()
    with Browser(1280, 800) as b:
        yield b


def _open(browser: Browser, url: str) -> None:
    browser.get(url)
    browser.wait_for(READY)


def _idle(browser: Browser, slow: SlowPreview) -> None:
    browser.wait_for(READY)
    deadline = time.monotonic() + 60
    while slow.running and time.monotonic() < deadline:
        time.sleep(0.05)


def test_one_preview_at_a_time_and_the_latest_shapes_are_shown(served, browser):
    session, url, slow = served
    _open(browser, url)
    slow.reset(0.8)
    # Five edits 200 ms apart (each past the 120 ms debounce), as pauses in a drag: before,
    # each started its own preview and up to four ran on the server at once.
    browser.execute("window.edits = 0; for (let k = 1; k <= 5; k++) setTimeout(() => {"
                    "  window.nwLabel.geometry.droplet.radius_px += 2; changed();"
                    "  window.edits += 1; }, 200 * k)")
    # the page is busy from the first edit on: wait for the last edit, then for the page
    browser.wait_for("return window.edits === 5")
    _idle(browser, slow)
    assert slow.most == 1
    assert len(slow.asked) <= 3  # the first edit's, then the newest shapes once per answer
    final = geometry_from_json(browser.execute("return window.nwLabel.geometry"))
    assert slow.asked[-1] == final
    assert browser.execute("return window.nwLabel.counts") == {
        str(k): v for k, v in PREVIEW(final)["counts"].items()}


def test_a_frame_opened_while_a_preview_is_on_its_way_shows_its_own(served, browser):
    session, url, slow = served
    _open(browser, url)
    slow.reset(0.8)
    browser.execute("window.confirm = () => true; "
                    "window.nwLabel.geometry.droplet = null; changed(); "
                    "setTimeout(() => document.getElementById('next').click(), 300)")
    browser.wait_for("return window.nwLabel.index === 1 && window.nwLabel.shown.index === 1")
    _idle(browser, slow)
    assert slow.most == 1
    shown = geometry_from_json(browser.execute("return window.nwLabel.geometry"))
    assert shown.droplet is not None and slow.asked[-1] == shown
    assert browser.execute("return window.nwLabel.counts") == {
        str(k): v for k, v in PREVIEW(shown)["counts"].items()}


def _canvas_box(browser: Browser) -> dict:
    return browser.execute("const r = document.getElementById('canvas')"
                           ".getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, "
                           "h: r.height, header: document.querySelector('header')"
                           ".getBoundingClientRect().height}")


def test_the_frame_does_not_move_when_the_status_line_changes(served, browser):
    session, url, slow = served
    slow.reset(0.0)
    browser.cmd("POST", "/window/rect", {"width": 1280, "height": 800})
    _open(browser, url)
    before = _canvas_box(browser)
    assert before["header"] <= 40  # one line, even with this session's long folder names
    # The longest reason the page gives, and "unsaved changes": an edit moving the circle
    # away from the facet line.
    browser.execute("const g = window.nwLabel.geometry; g.droplet.center = [5, 5]; "
                    "g.droplet.radius_px = 3; changed()")
    browser.wait_for(READY)
    assert _canvas_box(browser) == before
    assert browser.execute("return document.getElementById('status').textContent") == (
        "unsaved changes")
    reason = browser.execute("return document.getElementById('angle-reason').textContent")
    assert reason.startswith("the circle (R = 3.0 px) does not reach the facet line")
    assert browser.attribute("#angle-reason", "title") == reason  # the whole of it
    long = ("save failed: no answer from the nwwatch label server (stopped?): the shapes are "
            "still on this page; start it again on the same port, then save")
    browser.execute(f"document.getElementById('status').textContent = {long!r}")
    assert _canvas_box(browser) == before
    assert browser.wait_for("return document.getElementById('status').title") == long


@pytest.mark.parametrize("width", [800, 1024])
def test_the_contact_angle_stays_visible_in_a_narrow_window(served, browser, width):
    # before: below about 900 px the header squeezed the angle to "contact a", the Save
    # button drawn over the number, while the status and the DATA folder kept their room.
    session, url, slow = served
    slow.reset(0.0)
    browser.cmd("POST", "/window/rect", {"width": width, "height": 600})
    try:
        _open(browser, url)
        browser.execute("const g = window.nwLabel.geometry; g.droplet.center = [5, 5]; "
                        "g.droplet.radius_px = 3; changed()")  # the longest reason
        browser.wait_for(READY)
        box = browser.execute(
            "const r = (id) => document.getElementById(id).getBoundingClientRect(); "
            "return {angle: r('angle').right, save: r('save').left, "
            "header: document.querySelector('header').getBoundingClientRect().right}")
        assert box["angle"] <= box["save"] and box["angle"] <= box["header"], box
        assert _canvas_box(browser)["header"] <= 40  # still one line
    finally:
        browser.cmd("POST", "/window/rect", {"width": 1280, "height": 800})
