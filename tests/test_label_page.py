"""The labelling page used as a scientist uses it: no console errors, a frame with no droplet,
"Back to the model's proposal", a reload or a second tab that would lose work, an edit made
while a save is on its way, saved labels of a frame of another size.

Browser tests (Debian chromium + chromedriver, ``tests/webdriver.py``) share one server and one
browser and load the page once each; the save-conflict and frame-size checks are plain HTTP.
"""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest
from label_helpers import http_json, serving
from webdriver import Browser, require_browser

from nwwatch.io import write_frame_tiff
from nwwatch.label.frames import frame_refs
from nwwatch.label.geometry import Circle, LabelGeometry
from nwwatch.label.server import LabelSession, _Handler
from nwwatch.label.store import load_geometry, save_labeled_frame
from nwwatch.synth import generate_insitu

READY = "return document.body.dataset.state === 'ready' && window.nwLabel.geometry !== null"
BLANK = 2  # index of the uniform frame: the model finds neither droplet nor wire


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labelpage")
    frames = tmp / "acquisition"
    generate_insitu(frames, 2, seed=3, size=256)
    write_frame_tiff(frames / "zblank.tif", np.full((200, 300), 1000, np.uint16),
                     pixel_size_nm=1.0)
    session = LabelSession(frame_refs(sorted(frames.glob("*.tif"))), tmp / "DATA")
    with serving(session) as url:
        yield session, url


@pytest.fixture(scope="module")
def browser():
    require_browser()
    with Browser() as b:
        yield b


def _open(browser: Browser, url: str, index: int = 0) -> None:
    browser.get(f"{url}?{index}")  # a fresh document per test
    browser.wait_for(READY)
    if index:
        browser.execute(f"const s = document.getElementById('frame-select'); s.value = "
                        f"'{index}'; s.dispatchEvent(new Event('change'))")
        browser.wait_for(f"return window.nwLabel.index === {index} && "
                         f"{READY.removeprefix('return ')}")


def _console_errors(browser: Browser) -> list[dict]:
    logs = browser.cmd("POST", "/se/log", {"type": "browser"})
    return [entry for entry in logs if entry["level"] == "SEVERE"]




def test_a_frame_without_droplet_or_wire_opens_without_console_errors(served, browser):
    _, url = served
    _console_errors(browser)  # drop what came before
    _open(browser, url, BLANK)
    geometry = browser.execute("return window.nwLabel.geometry")
    assert geometry["droplet"] is None and geometry["wire"] is None
    assert browser.text("#angle") == "-"
    assert browser.text("#angle-reason")  # says why there is no angle
    browser.click("#add-droplet")
    browser.wait_for(READY)
    assert browser.execute("return window.nwLabel.counts")["2"] > 0
    # The page asked for /favicon.ico (404) before it declared its own.
    assert _console_errors(browser) == []


def test_back_to_the_proposal_asks_first_and_resets_the_facet_box(served, browser):
    _, url = served
    _open(browser, url)
    proposed = browser.execute("return window.nwLabel.geometry.facet")
    browser.click("#explicit-facet")  # toggles the facet's own handles: an edit
    browser.wait_for(READY)
    assert (browser.execute("return window.nwLabel.geometry.facet") is None) == (
        proposed is not None)
    browser.execute("window.asked = []; window.confirm = (q) => { window.asked.push(q); "
                    "return false; }")
    browser.click("#reset")
    assert browser.execute("return window.asked.length") == 1  # it asked, was told no ...
    assert browser.execute("return window.nwLabel.dirty") is True  # ... and kept the edit
    browser.execute("window.confirm = () => true")
    browser.click("#reset")
    browser.wait_for("return window.nwLabel.origin === 'model' && window.nwLabel.geometry"
                     ".facet !== undefined && document.getElementById('status').textContent"
                     " === 'unsaved changes' && " + READY.removeprefix("return "))
    facet = browser.execute("return window.nwLabel.geometry.facet")
    assert (facet is None) == (proposed is None)
    # the box says whether the facet has its own handles, as after opening the frame
    assert browser.execute("return document.getElementById('explicit-facet').checked") is (
        facet is not None)


def test_unsaved_changes_guard_a_reload(served, browser):
    _, url = served
    _open(browser, url)
    script = ("const e = new Event('beforeunload', {cancelable: true}); "
              "window.dispatchEvent(e); return e.defaultPrevented")
    assert browser.execute(script) is False  # nothing to lose yet
    browser.click("#add-droplet")
    browser.wait_for(READY)
    assert browser.execute(script) is True


def test_a_reload_opens_the_frame_worked_on_again(served, browser):
    # Was: a reload opened the first frame, whatever frame was being worked on.
    _, url = served
    _open(browser, url, 1)
    stem = browser.execute("return window.nwLabel.frames[1].stem")
    assert browser.execute("return location.hash") == f"#{stem}"
    browser.execute("window.beforeReload = true; location.reload()")
    browser.wait_for("return !window.beforeReload && window.nwLabel && "
                     "document.body.dataset.state === 'ready' "
                     "&& window.nwLabel.geometry !== null")  # the page loaded again
    assert browser.execute("return window.nwLabel.index") == 1
    assert browser.execute("return document.getElementById('frame-select').value") == "1"
    browser.get(f"{url}?other#no-such-frame")  # an unknown stem: the first frame
    browser.wait_for(READY)
    assert browser.execute("return window.nwLabel.index") == 0


def test_an_edit_made_while_saving_stays_unsaved(served, browser):
    session, url = served
    _open(browser, url, 1)
    browser.click("#add-droplet")
    browser.wait_for(READY)
    # save() sends the geometry as it is now; the wire removed meanwhile is not in the file.
    dirty = browser.execute("const saving = save(); "
                            "document.getElementById('remove-wire').click(); "
                            "return saving.then(() => window.nwLabel.dirty)")
    assert dirty is True
    assert "unsaved" in browser.text("#status")
    saved = json.loads((session.data_dir / "geometry" / f"{session.frames[1].stem}.json")
                       .read_text())
    assert saved["wire"] is not None


def test_a_second_tab_does_not_overwrite_a_newer_save(served):
    session, url = served
    api = f"{url}api/frames/0"
    status, tab_a = http_json("GET", f"{api}/geometry")
    assert status == 200
    _, tab_b = http_json("GET", f"{api}/geometry")
    assert tab_a["saved_token"] == tab_b["saved_token"]
    status, first = http_json("POST", f"{api}/save?base={tab_a['saved_token']}",
                          tab_a["geometry"])
    assert status == 200 and first["saved_token"] != tab_a["saved_token"]
    edited = dict(tab_b["geometry"], droplet=None)
    status, refused = http_json("POST", f"{api}/save?base={tab_b['saved_token']}", edited)
    assert status == 409 and "another tab" in refused["error"]
    stem = session.frames[0].stem
    assert json.loads((session.data_dir / "geometry" / f"{stem}.json").read_text())[
        "droplet"] is not None  # tab A's save kept
    # Saving twice from the same tab works: each save returns the token of its own file.
    status, second = http_json("POST", f"{api}/save?base={first['saved_token']}",
                           tab_a["geometry"])
    assert status == 200


def test_a_saved_frame_keeps_its_acquisition_time(served):
    from nwwatch.io import read_frames

    session, url = served
    for index, declared in ((0, True), (BLANK, False)):
        status, doc = http_json("GET", f"{url}api/frames/{index}/geometry")
        assert status == 200
        status, _ = http_json("POST", f"{url}api/frames/{index}/save?base={doc['saved_token']}",
                          doc["geometry"])
        assert status == 200
        original = read_frames(session.frames[index].path)[0]
        saved = read_frames(session.data_dir / "images" / f"{session.frames[index].stem}.tif")[0]
        assert saved.pixel_size_nm == pytest.approx(original.pixel_size_nm)
        if declared:  # the acquisition software's time, to the microsecond
            assert original.acquired_at_source == "metadata"
            assert (saved.acquired_at, saved.acquired_at_source) == (original.acquired_at,
                                                                     "metadata")
        else:  # a file's modification time is not written as an acquisition time
            assert original.acquired_at_source == saved.acquired_at_source == "mtime"


def test_saved_labels_of_another_frame_of_another_size_are_kept_and_not_opened(served):
    session, url = served
    stem = session.frames[BLANK].stem  # the frame is 200 x 300
    old = LabelGeometry((256, 256), Circle((100.0, 100.0), 30.0), None)
    save_labeled_frame(session.data_dir, stem, np.zeros((256, 256), np.uint16), old)
    status, doc = http_json("GET", f"{url}api/frames/{BLANK}/geometry")
    assert status == 200
    assert doc["geometry"]["shape"] == [200, 300] and doc["origin"] == "model"
    # another frame's pair (its pixels are not this frame's): kept, this one saved apart
    assert f"DATA holds another frame as {stem}" in doc["note"] and "it is kept" in doc["note"]
    status, saved = http_json("POST", f"{url}api/frames/{BLANK}/save?base={doc['saved_token']}",
                          doc["geometry"])
    assert status == 200 and saved["stem"] != stem
    assert load_geometry(session.data_dir, stem) == old


def test_page_down_on_the_focused_frame_list_opens_the_next_frame_only(served, browser):
    _, url = served
    _open(browser, url)
    browser.execute("document.getElementById('frame-select').focus()")
    browser.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard", "actions": [
        {"type": "keyDown", "value": "\ue00f"}, {"type": "keyUp", "value": "\ue00f"}]}]})
    browser.cmd("DELETE", "/actions")
    browser.wait_for("return window.nwLabel.index !== 0 && " + READY.removeprefix("return "))
    assert browser.execute("return window.nwLabel.index") == 1  # not 2: one key, one frame
    assert browser.execute("return document.getElementById('frame-select').value") == "1"


def test_a_late_answer_for_a_frame_left_does_not_replace_the_frame_opened_after(served,
                                                                               browser):
    _, url = served
    _open(browser, url)
    # Frame 1's geometry answers 1.5 s late, as a slow proposal does; frame 2 is opened
    # meanwhile (PageDown pressed twice).
    browser.execute("const fetch0 = window.fetch; window.fetch = async (path, options) => {"
                    "  const response = await fetch0(path, options);"
                    "  if (String(path).startsWith('/api/frames/1/geometry'))"
                    "    await new Promise((resolve) => setTimeout(resolve, 1500));"
                    "  return response; };"
                    "openFrame(1); openFrame(2);")
    browser.wait_for("return window.nwLabel.index === 2 && " + READY.removeprefix("return "))
    browser.execute("return new Promise((resolve) => setTimeout(resolve, 2500))")
    assert browser.execute("return window.nwLabel.index") == 2
    assert browser.execute("return window.nwLabel.geometry.shape") == [200, 300]  # frame 2's


def test_a_request_the_page_dropped_is_not_reported_as_a_failure(served):
    """Opening frames quickly makes the page drop image requests; the server's write then
    meets a closed socket, which is no error (it printed two tracebacks)."""
    session, _ = served

    class Gone:
        def write(self, data: bytes) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    handler = object.__new__(type("H", (_Handler,), {"session": session}))
    handler.request_version, handler.requestline = "HTTP/1.1", "GET /api/frames/1/image.png"
    handler.command, handler.path = "GET", "/api/frames/1/image.png"
    handler.client_address, handler.wfile = ("127.0.0.1", 1), Gone()
    handler._send(200, b"png", "image/png")  # raised BrokenPipeError
    assert handler.close_connection is True


def test_buttons_with_nothing_to_act_on_are_disabled_and_view_sliders_show_their_value(
        served, browser):
    _, url = served
    _open(browser, url, BLANK)  # no circle, no polygon, no stroke
    disabled = "return document.getElementById('{}').disabled"
    for button in ("remove-droplet", "remove-wire", "undo-stroke"):
        assert browser.execute(disabled.format(button)) is True, button
    browser.click("#add-droplet")
    browser.wait_for(READY)
    assert browser.execute(disabled.format("remove-droplet")) is False
    assert browser.execute(disabled.format("remove-wire")) is True
    assert browser.text("#zoom-value") == "1.00" and browser.text("#opacity-value") == "35"
    browser.execute("const z = document.getElementById('zoom'); z.value = '2'; "
                    "z.dispatchEvent(new Event('input'))")
    assert browser.text("#zoom-value") == "2.00"


def test_a_new_zoom_keeps_the_middle_of_the_view(served, browser):
    # Was: the scroll offsets stayed as they were in screen pixels, so zooming in or out
    # moved the view towards the frame's top left corner.
    _, url = served
    _open(browser, url)
    centre = ("const w = document.getElementById('canvas-wrap'), "
              "r = document.querySelector('#frame-image').getBoundingClientRect(), "
              "b = w.getBoundingClientRect(), [h, fw] = window.nwLabel.geometry.shape; "
              "return [(b.top + w.clientHeight / 2 - r.top) / r.height * h, "
              "(b.left + w.clientWidth / 2 - r.left) / r.width * fw, "
              "w.scrollTop, w.scrollLeft]")
    zoom = ("const z = document.getElementById('zoom'); z.value = arguments[0]; "
            "z.dispatchEvent(new Event('input'))")
    browser.execute(zoom, "3")
    browser.wait_for(READY)
    # a point right of and below the frame's middle in the middle of the view
    browser.execute("const w = document.getElementById('canvas-wrap'); "
                    "w.scrollTop = (w.scrollHeight - w.clientHeight) * 0.6; "
                    "w.scrollLeft = (w.scrollWidth - w.clientWidth) * 0.6")
    row, col, top, left = browser.execute(centre)
    assert top > 0 and left > 0
    # (at a zoom whose view cannot be scrolled that far the browser clamps the offsets)
    for value in ("4", "2.5", "3"):
        browser.execute(zoom, value)
        browser.wait_for(READY)
        now = browser.execute(centre)
        assert abs(now[0] - row) < 1 and abs(now[1] - col) < 1, (value, now, row, col)


def test_the_side_panel_scrolls_up_and_down_only(served, browser):
    # Was: the View box (its slider rows do not wrap) was 1.4 px wider than the panel beside
    # its vertical scroll bar, and the panel had a horizontal scroll bar under the controls.
    _, url = served
    _open(browser, url)
    sizes = browser.execute("const a = document.querySelector('aside'); return [a.scrollWidth, "
                            "a.clientWidth, a.scrollHeight, a.clientHeight]")
    assert sizes[2] > sizes[3], sizes  # (the window is short enough to scroll: the case)
    assert sizes[0] <= sizes[1], sizes


def test_save_while_a_frame_opens_does_not_write_the_previous_frames_shapes(served, browser):
    _, url = served
    _open(browser, url)
    browser.click("input[name=mode][value=polygon]")
    image = {"element-6066-11e4-a52e-4f735466cecf": browser.find("#frame-image")}
    browser.cmd("POST", "/actions", {"actions": [{  # a polygon begun on frame 0 ...
        "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [{"type": "pointerMove", "duration": 0, "origin": image, "x": -60, "y": -60},
                    {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})
    browser.cmd("DELETE", "/actions")
    assert browser.execute("return window.nwLabel.draft.points.length") == 1
    # Frame 1's geometry answers 1.5 s late; Ctrl+S is pressed meanwhile.
    browser.execute("window.saves = []; const fetch0 = window.fetch;"
                    "window.fetch = async (path, options) => {"
                    "  if (String(path).includes('/save')) window.saves.push(String(path));"
                    "  const response = await fetch0(path, options);"
                    "  if (String(path).startsWith('/api/frames/1/geometry'))"
                    "    await new Promise((resolve) => setTimeout(resolve, 1500));"
                    "  return response; };"
                    "openFrame(1); save();")
    assert "not loaded" in browser.text("#status")
    browser.wait_for("return window.nwLabel.index === 1 && " + READY.removeprefix("return "))
    assert browser.execute("return window.saves") == []
    assert browser.execute("return window.nwLabel.draft") is None  # ... is not frame 1's


def test_a_save_after_the_server_stopped_says_what_happened(tmp_path, browser):
    frames = tmp_path / "acquisition"
    generate_insitu(frames, 1, seed=4, size=128)
    session = LabelSession(frame_refs(sorted(frames.glob("*.tif"))), tmp_path / "DATA")
    with serving(session) as url:
        browser.get(url)
        browser.wait_for(READY)
    browser.click("#add-droplet")  # an edit: its preview fails as well
    # Wait for that failure first: arriving after the save's, it would replace its message.
    browser.wait_for("return document.getElementById('status').textContent"
                     ".startsWith('error: no answer')")
    browser.click("#save")
    browser.wait_for("return document.getElementById('status').textContent"
                     ".startsWith('save failed')")
    assert "no answer from the nwwatch label server" in browser.text("#status")
    assert browser.execute("return window.nwLabel.dirty") is True


def test_a_save_the_disk_refuses_says_so_once_naming_the_file(tmp_path, browser):
    # Was: "save failed: save failed: …": the server's answer began with it, and the page
    # put it before the answer again.
    frames = tmp_path / "acquisition"
    generate_insitu(frames, 1, seed=4, size=128)
    data = tmp_path / "DATA"
    session = LabelSession(frame_refs(sorted(frames.glob("*.tif"))), data)
    with serving(session) as url:
        browser.get(url)
        browser.wait_for(READY)
        data.mkdir(exist_ok=True)
        (data / "labels").write_text("not a folder")  # labels/ cannot be made
        browser.click("#save")
        status = browser.wait_for("const s = document.getElementById('status').textContent; "
                                  "return s.startsWith('save failed') && s")
    assert status.startswith(f"save failed: {data / 'labels'}: "), status
    assert status.count("failed") == 1, status
    assert browser.execute("return window.nwLabel.dirty") is False  # (nothing was edited)
    assert not (data / "geometry").exists() or not any((data / "geometry").iterdir())


def test_unlabeled_paint_stands_out_on_a_grey_frame(served, browser):
    # Was: unlabeled was drawn grey (150, 150, 150) in the overlay and its stroke grey too:
    # at the page's 35 % over a mid-grey frame a stroke painted unlabeled could not be seen.
    _, url = served
    _open(browser, url)
    browser.execute("window.nwLabel.geometry.strokes.push({class: 255, brush_px: 6, points: "
                    "[[40, 40], [40, 90]]}); changed()")
    browser.wait_for(READY)
    mask = browser.attribute("#mask-image", "href")
    rgba = cv2.imdecode(np.frombuffer(base64.b64decode(mask.split(",", 1)[1]), np.uint8),
                        cv2.IMREAD_UNCHANGED)
    b, g, r, a = (int(v) for v in rgba[40, 65])
    assert a == 255 and max(r, g, b) - min(r, g, b) >= 100, (r, g, b)  # a colour, not grey
    stroke = browser.execute("return getComputedStyle(document.querySelector("
                             "'#strokes .stroke.c255')).stroke")
    r, g, b = (int(v) for v in stroke.removeprefix("rgb(").removesuffix(")").split(","))
    assert max(r, g, b) - min(r, g, b) >= 100, stroke


def test_back_to_the_proposal_answering_after_another_frame_opened_is_dropped(served, browser):
    # Was: the proposal of frame 0 became frame 1's shapes, "unsaved changes", and Save wrote
    # them under frame 1's name.
    _, url = served
    _open(browser, url)
    browser.execute("window.confirm = () => true; const fetch0 = window.fetch;"
                    "window.fetch = async (path, options) => {"
                    "  const response = await fetch0(path, options);"
                    "  if (String(path).includes('geometry?model=1'))"
                    "    await new Promise((resolve) => setTimeout(resolve, 1500));"
                    "  return response; };")
    browser.click("#reset")
    browser.execute("openFrame(1)")
    browser.wait_for("return window.nwLabel.index === 1 && " + READY.removeprefix("return "))
    own = browser.execute("return JSON.stringify(window.nwLabel.geometry)")
    browser.execute("return new Promise((resolve) => setTimeout(resolve, 2500))")
    assert browser.execute("return JSON.stringify(window.nwLabel.geometry)") == own
    assert browser.execute("return window.nwLabel.dirty") is False


def test_while_a_frame_opens_the_previous_frames_shapes_are_hidden_and_not_edited(
        served, browser):
    # Was: frame 0's overlay and handles stayed over frame 1's image, a brush stroke painted
    # then was taken (unsaved changes) and silently dropped when frame 1's shapes came.
    _, url = served
    _open(browser, url)
    browser.click("input[name=mode][value=brush]")
    browser.execute("const fetch0 = window.fetch; window.fetch = async (path, options) => {"
                    "  const response = await fetch0(path, options);"
                    "  if (String(path).startsWith('/api/frames/1/geometry'))"
                    "    await new Promise((resolve) => setTimeout(resolve, 2000));"
                    "  return response; }; openFrame(1);")
    hidden = browser.execute(
        "return ['mask-image', 'strokes', 'shapes', 'handles'].map((id) => "
        "getComputedStyle(document.getElementById(id)).visibility)")
    assert hidden == ["hidden"] * 4
    for button in ("add-droplet", "add-wire", "remove-droplet", "reset", "undo-stroke"):
        assert browser.execute(f"return document.getElementById('{button}').disabled"), button
    strokes = browser.execute("return window.nwLabel.geometry.strokes.length")
    image = {"element-6066-11e4-a52e-4f735466cecf": browser.find("#frame-image")}
    browser.cmd("POST", "/actions", {"actions": [{
        "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [{"type": "pointerMove", "duration": 0, "origin": image, "x": -20, "y": 0},
                    {"type": "pointerDown", "button": 0},
                    {"type": "pointerMove", "duration": 50, "origin": image, "x": 20, "y": 0},
                    {"type": "pointerUp", "button": 0}]}]})
    browser.cmd("DELETE", "/actions")
    assert browser.execute("return window.nwLabel.loading") is True  # (still opening)
    assert browser.execute("return window.nwLabel.geometry.strokes.length") == strokes
    assert browser.execute("return window.nwLabel.dirty") is False
    browser.wait_for("return window.nwLabel.index === 1 && " + READY.removeprefix("return "))
    assert browser.execute("return getComputedStyle(document.getElementById('handles'))"
                           ".visibility") == "visible"
    browser.click("input[name=mode][value=edit]")
