"""A frame that cannot be opened any more: its file removed or rewritten after the page
started, or the model's proposal failing. The server answers a proper HTTP error naming the
file (no traceback); the page says which frame and why, leaves the loading state, stays on the
frame it showed with its unsaved edits (Save writes them under that frame's name, never the
failed one's) and opens other frames. Also the labelling queue with its thumbnails removed.

Browser tests: Debian chromium + chromedriver (``tests/webdriver.py``); the browser fixture is
``test_label_page.py``'s.
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import numpy as np
import pytest
import test_label_page as page
import tifffile
from label_helpers import http_json as _http
from label_helpers import serving
from webdriver import Browser

from nwwatch.filehash import file_sha256
from nwwatch.io import write_frame_tiff
from nwwatch.label.cli import _labelled_queue_last, queued_frames
from nwwatch.label.frames import frame_refs
from nwwatch.label.geometry import Circle, LabelGeometry
from nwwatch.label.server import LabelSession
from nwwatch.label.store import save_labeled_frame
from nwwatch.results.label_queue import THUMBS_DIR, Candidate, QueueEntry, offer, read_queue
from nwwatch.synth import generate_insitu

READY = page.READY
browser = page.browser  # the fixture (this module's own instance)


@pytest.fixture
def served(tmp_path):
    frames = tmp_path / "acquisition"
    generate_insitu(frames, 4, seed=5, size=128)
    session = LabelSession(frame_refs(sorted(frames.glob("*.tif"))), tmp_path / "DATA")
    with serving(session) as url:
        yield session, url


def _open_failed(b: Browser, index: int) -> str:
    """Open frame ``index`` (the user agrees to leave unsaved changes), wait for the failure."""
    b.execute("window.confirm = () => true; "
              "document.getElementById('status').textContent = ''; "
              f"openFrame({index})")
    return b.wait_for("const s = document.getElementById('status').textContent; "
                      "return s.startsWith('could not open') && "
                      "document.body.dataset.state === 'ready' && s")


def _saved_stems(session) -> list[str]:
    return sorted(p.stem for p in (session.data_dir / "geometry").glob("*.json"))


def test_a_frame_removed_after_start_keeps_the_shown_frames_edits(served, browser, caplog):
    session, url = served
    browser.get(url)
    browser.wait_for(READY)
    browser.click("#add-droplet")  # an unsaved edit of frame 0
    browser.wait_for(READY)
    edited = browser.execute("return window.nwLabel.geometry")
    draft = {"class": 2, "points": [[10.0, 10.0], [10.0, 30.0]]}  # a polygon being drawn
    browser.execute(f"window.nwLabel.draft = {json.dumps(draft)}")
    gone = session.frames[1]
    gone.path.unlink()
    with caplog.at_level(logging.WARNING, logger="nwwatch.label.server"):
        status = _open_failed(browser, 1)
    assert status.startswith(f"could not open {gone.stem}: {gone.path}: frame file not found")
    assert f"still showing {session.frames[0].stem}, its changes unsaved" in status
    state = browser.execute("return window.nwLabel")
    assert state["loading"] is False and state["index"] == 0 and state["dirty"] is True
    assert state["geometry"] == edited and state["draft"] == draft
    assert browser.execute("return document.getElementById('frame-select').value") == "0"
    assert browser.execute("return document.getElementById('frame-select').options[1]"
                           ".textContent") == f"\u2717 {gone.stem}"
    logged = [r for r in caplog.records if str(gone.path) in r.getMessage()]
    assert logged and not any(r.exc_info for r in logged)  # one line, no traceback
    # Save writes frame 0's shapes under frame 0's name, and nothing under frame 1's.
    browser.execute("return save()")
    assert browser.text("#status") == f"saved {session.frames[0].stem}"
    assert _saved_stems(session) == [session.frames[0].stem]
    saved = json.loads((session.data_dir / "geometry" / f"{session.frames[0].stem}.json")
                       .read_text())
    assert saved["droplet"] == edited["droplet"]
    # Next steps over the frame that failed; another frame opens.
    browser.click("#next")
    browser.wait_for("return window.nwLabel.index === 2 && " + READY.removeprefix("return "))
    assert browser.execute("return window.nwLabel.loading") is False
    assert browser.text("#status") == ""


def test_a_rewritten_frame_and_a_failing_proposal_are_http_errors_naming_the_file(served,
                                                                                 browser):
    session, url = served
    api = f"{url}api/frames"
    session.frames[1].path.write_bytes(b"not a tiff any more")
    for route in ("geometry", "image.png"):
        status, doc = _http("GET", f"{api}/1/{route}")
        assert status == 422 and doc["error"].startswith(f"{session.frames[1].path}: not a TIFF")
    session.frames[2].path.unlink()
    status, doc = _http("GET", f"{api}/2/geometry")
    assert status == 404 and str(session.frames[2].path) in doc["error"]

    class Broken:
        def segment(self, *args, **kwargs):
            raise RuntimeError("onnxruntime: out of memory")

    session._segmenter = Broken()
    status, doc = _http("GET", f"{api}/3/geometry")
    assert status == 500
    assert doc["error"] == (f"{session.frames[3].path} (page 0): the model's proposal failed: "
                            "RuntimeError: onnxruntime: out of memory")
    # The page: the first frame (its proposal fails too) opens nothing; Save says so;
    # a frame whose file is unreadable says why; once the model works, frame 0 opens.
    browser.get(url)
    status = browser.wait_for("const s = document.getElementById('status').textContent; "
                              "return s.startsWith('could not open') && s")
    assert status == (f"could not open {session.frames[0].stem}: {session.frames[0].path} "
                      "(page 0): the model's proposal failed: RuntimeError: onnxruntime: out "
                      "of memory \u2014 choose another frame")
    assert browser.execute("return window.nwLabel.loading") is False
    assert browser.execute("return document.getElementById('save').disabled") is True
    browser.execute("return save()")
    assert browser.text("#status") == "not saved: no frame is open"
    assert "not a TIFF file" in _open_failed(browser, 1)
    assert browser.execute("return window.nwLabel.geometry") is None
    session._segmenter = None  # the shipped model again
    assert "frame file not found" in _open_failed(browser, 2)
    browser.click("#next")
    browser.wait_for("return window.nwLabel.index === 3 && " + READY.removeprefix("return "))
    assert browser.execute("return document.getElementById('save').disabled") is False
    assert browser.text("#status") == ""
    # The frame whose proposal failed opens from the list, and loses its cross.
    browser.execute("const s = document.getElementById('frame-select'); s.value = '0'; "
                    "s.dispatchEvent(new Event('change'))")
    browser.wait_for("return window.nwLabel.index === 0 && " + READY.removeprefix("return "))
    assert browser.execute("return document.getElementById('frame-select').options[0]"
                           ".textContent") == session.frames[0].stem
    assert _saved_stems(session) == []


def test_the_queue_opens_without_its_thumbnails_and_names_a_vanished_frame(tmp_path):
    acq = tmp_path / "acq"
    generate_insitu(acq, 2, seed=6, size=128)
    results = tmp_path / "results"
    sources = sorted(acq.glob("*.tif"))
    offer(results, [Candidate(QueueEntry(str(path), 0, file_sha256(path), 0.1 * k),
                              np.zeros((8, 8))) for k, path in enumerate(sources)])
    for entry in read_queue(results):
        shutil.rmtree(f"{entry.folder}/{THUMBS_DIR}", ignore_errors=True)
    paths, pages, infos, warnings = queued_frames(results)
    assert paths == sources and warnings == []  # the thumbnails are for browsing only
    session = LabelSession(frame_refs(paths, infos, pages), tmp_path / "DATA")
    with serving(session) as url:
        api = f"{url}api/frames"
        assert _http("GET", f"{api}/0/geometry")[0] == 200
        sources[1].unlink()  # a queued frame removed after the page started
        status, doc = _http("GET", f"{api}/1/geometry")
        assert status == 404
        assert doc["error"] == (f"{sources[1]}: frame file not found (removed or renamed "
                                "after the labelling started?)")


def test_a_stack_rewritten_with_fewer_pages_and_broken_saved_labels_name_the_file(tmp_path):
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((2, 64, 64), np.uint16), photometric="minisblack")
    session = LabelSession(frame_refs([stack]), tmp_path / "DATA")
    write_frame_tiff(stack, np.zeros((64, 64), np.uint16))  # rewritten: one page
    broken = tmp_path / "DATA" / "geometry" / f"{session.frames[0].stem}.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")  # and page 0's saved labels damaged
    with serving(session) as url:
        api = f"{url}api/frames"
        status, doc = _http("GET", f"{api}/1/image.png")
        assert status == 422
        assert doc["error"] == (f"{stack}: page 1 out of range (0..0): the file changed after "
                                "the labelling started")
        status, doc = _http("GET", f"{api}/0/geometry")
        assert status == 422 and doc["error"].startswith(f"{broken}: ")


def test_a_frame_opened_before_its_file_changed_is_read_again_when_opened_again(tmp_path):
    # before: the frames opened last were kept in memory and served as they were read: a file
    # removed or rewritten after its frame was first opened still opened (200), its old pixels
    acq = tmp_path / "acq"
    generate_insitu(acq, 3, seed=5, size=128)
    session = LabelSession(frame_refs(sorted(acq.glob("*.tif"))), tmp_path / "DATA")
    with serving(session) as url:
        api = f"{url}api/frames"
        opened = [_http("GET", f"{api}/{i}/geometry") for i in range(3)]
        assert [status for status, _ in opened] == [200, 200, 200]
        session.frames[0].path.write_bytes(b"not a tiff any more")
        for route in ("geometry", "image.png"):
            status, doc = _http("GET", f"{api}/0/{route}")
            assert status == 422, doc
            assert doc["error"].startswith(f"{session.frames[0].path}: not a TIFF")
        session.frames[1].path.unlink()
        status, doc = _http("GET", f"{api}/1/geometry")
        assert status == 404 and "frame file not found" in doc["error"]
        # A save of shapes drawn before the file changed writes the pixels the page showed.
        shown = tifffile.imread(session.frames[2].path)
        write_frame_tiff(session.frames[2].path, np.zeros((64, 64), np.uint16))
        _, doc = opened[2]
        status, saved = _http("POST", f"{api}/2/save?base={doc['saved_token']}",
                              doc["geometry"])
        assert status == 200, saved
        stem = session.frames[2].stem
        assert np.array_equal(tifffile.imread(session.data_dir / "images" / f"{stem}.tif"),
                              shown)
        status, doc = _http("GET", f"{api}/2/geometry")  # opened again: the new 64 x 64 frame
        assert status == 200 and doc["geometry"]["shape"] == [64, 64] and doc["note"]


def test_the_queue_entries_show_their_rank_and_confidences_that_differ(tmp_path, browser):
    # before: "(queue, confidence 0.40)" for each of 0.4012, 0.4014 and 0.4049: a queue of
    # one model's frames, within 0.01 of each other, read alike. Now as many decimals as
    # tell them apart (4 here: 0.401 twice with 3), and the rank.
    acq = tmp_path / "acq"
    generate_insitu(acq, 4, seed=6, size=128)
    sources = sorted(acq.glob("*.tif"))
    results = tmp_path / "results"
    confidences = (0.4012, 0.4014, 0.4049)
    offer(results, [Candidate(QueueEntry(str(path), 0, file_sha256(path), c), np.zeros((8, 8)))
                    for path, c in zip(sources, confidences, strict=False)])
    paths, pages, infos, _ = queued_frames(results)
    data = tmp_path / "DATA"
    refs = frame_refs([*paths, sources[3]], [*infos, {}], [*pages, None], data_dir=data)
    shown = _frame_list(LabelSession(refs, data), browser)
    assert shown == [f"{path.stem} (queue rank {k + 1} of 3, confidence {c})"
                     for k, (path, c) in enumerate(zip(paths, ("0.4012", "0.4014", "0.4049"),
                                                       strict=True))] + [sources[3].stem]
    # The least confident frame labelled: listed after the other queued frames, and the
    # first entry says rank 2, not place 2 of the list (it read "queue 2 of 3" there).
    save_labeled_frame(data, refs[0].stem, tifffile.imread(paths[0]),
                       LabelGeometry((128, 128), Circle((40.0, 64.0), 20.0)))
    refs, note = _labelled_queue_last(
        frame_refs([*paths, sources[3]], [*infos, {}], [*pages, None], data_dir=data), data)
    assert note.startswith("1 of the 3 queued frames are labelled")
    shown = _frame_list(LabelSession(refs, data), browser)
    assert shown == [f"{paths[1].stem} (queue rank 2 of 3, confidence 0.4014)",
                     f"{paths[2].stem} (queue rank 3 of 3, confidence 0.4049)",
                     f"\u2713 {paths[0].stem} (queue rank 1 of 3, confidence 0.4012)",
                     sources[3].stem]


def _frame_list(session: LabelSession, browser: Browser) -> list[str]:
    """The entries of the page's frame list, served from ``session``."""
    with serving(session) as url:
        browser.get(url)
        browser.wait_for(READY)
        return browser.execute("return [...document.getElementById('frame-select').options]"
                               ".map((o) => o.textContent)")


class _SlowSession(LabelSession):
    """A session whose frames' shapes (the model's proposal or the saved ones) take
    ``delay_s`` longer, as the proposal of a 4096 x 4096 frame does."""

    delay_s = 0.0

    def geometry(self, index, model=False):
        time.sleep(self.delay_s)
        return super().geometry(index, model)


def test_the_status_says_what_a_slow_opening_waits_for(tmp_path, browser, monkeypatch):
    # before: "loading..." for the whole proposal (4 s at 4096 x 4096), then the previous
    # frame's overlay over the new frame until its first preview answered (2-4 s more).
    import nwwatch.label.server as server_module

    frames = tmp_path / "acquisition"
    generate_insitu(frames, 2, seed=5, size=128)
    session = _SlowSession(frame_refs(sorted(frames.glob("*.tif"))), tmp_path / "DATA")
    preview = server_module.preview

    def slow_preview(geometry):
        time.sleep(session.delay_s)
        return preview(geometry)

    monkeypatch.setattr(server_module, "preview", slow_preview)
    status = "return document.getElementById('status').textContent"
    mask = "return document.getElementById('mask-image').getAttribute('href')"
    stem = session.frames[1].stem
    with serving(session) as url:
        browser.get(url)
        browser.wait_for(READY)
        assert browser.execute(mask)
        session.delay_s = 1.5
        browser.click("#next")
        browser.wait_for(f"{status} === 'opening {stem}: the model is proposing its labels...'")
        browser.wait_for("return window.nwLabel.shown.index === 1")
        assert browser.execute(status) == f"opening {stem}: drawing its labels..."
        assert browser.execute(mask) is None  # not frame 0's labels over frame 1
        browser.wait_for(READY)
        assert browser.execute(status) == ""
        assert browser.execute(mask)
        # An edit: until its preview answers, the angle shown is the previous shapes' (dimmed).
        dimmed = ("return getComputedStyle(document.querySelector('header .result')).opacity"
                  " < 1")
        assert not browser.execute(dimmed)
        browser.execute("window.nwLabel.geometry.droplet.radius_px += 3; changed()")
        assert browser.execute(dimmed)
        browser.wait_for(READY)
        assert not browser.execute(dimmed)
        browser.click("#save")
        browser.wait_for(f"{status} === 'saved {stem}'")
        session.delay_s = 0.0
        browser.click("#prev")
        browser.wait_for(READY + " && window.nwLabel.shown.index === 0")
        session.delay_s = 1.5
        browser.click("#next")
        browser.wait_for(f"{status} === 'opening {stem}: reading its saved shapes...'")
        browser.wait_for(READY + " && window.nwLabel.shown.index === 1")
        assert browser.execute(status) == ""


def test_a_brush_stroke_cut_by_a_frame_that_fails_to_open_is_not_given_back(served, browser):
    # Its release came while the frame opened: given back with the shown frame, the stroke
    # went on painting at every move of the mouse and the next click committed it.
    session, url = served
    browser.get(url)
    browser.wait_for(READY)
    strokes = browser.execute("return window.nwLabel.geometry.strokes.length")
    stroke = {"class": 2, "brush_px": 6, "points": [[10.0, 10.0]], "painting": True}
    browser.execute(f"window.nwLabel.draft = {json.dumps(stroke)}")
    session.frames[1].path.unlink()
    _open_failed(browser, 1)
    assert browser.execute("return window.nwLabel.draft") is None
    assert browser.execute("return window.nwLabel.geometry.strokes.length") == strokes
