"""A page still open while ``nwwatch label`` is started again with other frames: its Save is
refused (nothing written) instead of writing its shapes under the frame now at that place of
the list. With the same frames, the page's advice ("start it again on the same port, then
save") still works.

Browser test: Debian chromium + chromedriver (``tests/webdriver.py``); the browser fixture is
``test_label_page.py``'s.
"""

from __future__ import annotations

import test_label_page as page
from label_helpers import http_json as _http
from label_helpers import plain_params, render, serving, truth_geometry

from nwwatch.io import write_frame_tiff
from nwwatch.label.frames import frame_refs
from nwwatch.label.server import LabelSession

READY = page.READY
browser = page.browser  # the fixture (this module's own instance)


def _frames(tmp_path):
    params = plain_params(21, 0)
    paths = []
    for name, seed in (("a", 1), ("b", 2)):
        write_frame_tiff(tmp_path / f"{name}.tif", render(params, seed=seed)[0])
        paths.append(tmp_path / f"{name}.tif")
    return params, paths


def test_a_save_from_a_page_of_an_earlier_run_with_other_frames_is_refused(tmp_path, browser):
    # before: the page's Save went to frame 0 of the new run, b, and wrote a's shapes
    # (same size) under b's name.
    _, (a, b) = _frames(tmp_path)
    data = tmp_path / "DATA"
    first = LabelSession(frame_refs([a, b]), data)
    with serving(first, 0) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        browser.get(url)
        browser.wait_for(READY)
        browser.click("#add-droplet")  # an edit of frame a
        browser.wait_for(READY)
    with serving(LabelSession(frame_refs([b]), data), port):
        browser.click("#save")
        status = browser.wait_for("const s = document.getElementById('status').textContent;"
                                  " return s.startsWith('save') && s")  # failed, or saved
        assert status.startswith("save failed") and "listed other frames" in status
        assert browser.execute("return window.nwLabel.dirty") is True
    assert not (data / "geometry").exists()
    # Started again with the same frames, the same page saves.
    with serving(LabelSession(frame_refs([a, b]), data), port):
        browser.click("#save")
        assert browser.wait_for("return document.body.dataset.saved") == "a"
    assert sorted(p.name for p in (data / "geometry").iterdir()) == ["a.json"]


def test_the_server_refuses_a_frame_key_that_is_not_the_frame_at_that_place(tmp_path):
    params, (a, b) = _frames(tmp_path)
    session = LabelSession(frame_refs([b]), tmp_path / "DATA")
    [key_a] = [r.key for r in frame_refs([a])]
    geometry = truth_geometry(params).to_json()
    with serving(session, 0) as url:
        _, listing = _http("GET", url + "api/frames")
        assert listing["frames"][0]["key"] == session.frames[0].key != key_a
        status, doc = _http("POST", f"{url}api/frames/0/save?base=&frame={key_a}", geometry)
        assert status == 409 and doc["frame_changed"] and "conflict" not in doc
        assert not (tmp_path / "DATA" / "geometry").exists()
        status, doc = _http("POST", f"{url}api/frames/0/save?base=&frame={session.frames[0].key}",
                            geometry)
        assert status == 200 and doc["stem"] == "b"
