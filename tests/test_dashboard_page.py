"""The dashboard page of a tomogram acquisition used from the keyboard alone, in a real
headless browser (Debian chromium + chromedriver, ``tests/webdriver.py``)."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest
from dashkit import dashboard_thread, get_json, wait_for
from test_dashboard_data import T0, frame_rows, write
from test_dashboard_server import Log
from webdriver import Browser, require_browser

from nwwatch.dashboard.server import DashboardThread
from nwwatch.dashboard.settings import DashboardConfig


def _volume_rows(results) -> list[dict]:
    """Masks of two volumes under RESULTS/masks and their rows (not written), the second
    processed a second after the first."""
    from nwwatch.io import write_volume_tiff

    (results / "masks").mkdir(parents=True)
    first = frame_rows("/x", [1.0])[0]["processed_at"]
    rows = []
    for k in range(2):
        mask = np.zeros((6, 20, 30), np.uint8)
        mask[:, 5:15, 5:25 - 10 * k] = 1
        write_volume_tiff(results / "masks" / f"v{k}.tif", mask)
        rows.append({"source": f"/acq/tomo/v{k}.tif", "status": "ok", "reason": "",
                     "mask_path": f"masks/v{k}.tif", "source_sha256": f"{k}" * 64,
                     "solid_fraction": 0.33 - 0.16 * k,
                     "processed_at": first + timedelta(seconds=k), "model_name": "t",
                     "provider": "CPUExecutionProvider"})
    return rows


@pytest.fixture()
def two_volumes(tmp_path):
    results = tmp_path / "res"
    rows = _volume_rows(results)
    for k, row in enumerate(rows):
        row.update(read_ms=5.0, segment_ms=20.0 + 10 * k, measure_ms=100.0,
                   confidence_ms=None)
    rows[0].update(status="suspect", reason_code="few_labeled_pixels,method_unvalidated",
                   reason="the model was trained on only 11 labeled solid pixels")
    write(results, "volumes-1.parquet", rows, kind="volumes")
    with dashboard_thread(results) as (_, url):
        yield url


def _open_volume_page(browser, url: str) -> None:
    """The acquisition of the two volumes, once both rows are on the page."""
    acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
    browser.get(f"{url}/?a={acq['id']}")
    wait_for(lambda: browser.execute(
        "return document.querySelectorAll('#volumes tr.pick').length") == 2, 30, "rows")


def test_a_volume_row_is_picked_with_the_keyboard_and_shows_which(two_volumes):
    require_browser()
    with Browser(1024, 700) as browser:
        _open_volume_page(browser, two_volumes)
        assert "/mask/1.png?m=masks%2Fv1.tif" in browser.attribute("#mask", "src")  # the last
        # Tab reaches the rows (they were not focusable); Enter picks the focused one.
        assert browser.execute("return document.querySelector('#volumes tr.pick').tabIndex") == 0
        browser.execute("document.querySelector('#volumes tr.pick').focus()")
        browser.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard",
                    "actions": [{"type": "keyDown", "value": "\ue007"},
                                {"type": "keyUp", "value": "\ue007"}]}]})
        browser.cmd("DELETE", "/actions")
        wait_for(lambda: "/mask/0.png?m=masks%2Fv0.tif" in browser.attribute("#mask", "src"), 10,
                 "mask of the first volume")
        assert browser.text("#mask-name") == "v0.tif"
        # which slice is which: three unlabelled black-and-white panels did not say
        heading = browser.execute("return document.getElementById('mask-name')"
                                  ".parentElement.textContent")
        assert "central z, y, x" in heading
        selected = browser.execute("return [...document.querySelectorAll('#volumes tr.pick')]"
                                   ".map((tr) => tr.getAttribute('aria-selected'))")
        assert selected == ["true", "false"]  # the table says which volume is shown


def test_a_second_volume_committed_later_reaches_the_open_page(tmp_path):
    """A tomogram folder's second volume, committed after the dashboard had read the first,
    raised in the dashboard's refresh (the first volume's rows, filtered to the new source,
    gave an untyped empty list): the live page and /api/acquisitions kept the one volume."""
    from dashkit import serve_results

    require_browser()
    results = tmp_path / "res"
    first, second = _volume_rows(results)
    write(results, "volumes-1.parquet", [first], kind="volumes")
    proc, url = serve_results(results)
    try:
        with Browser(1024, 700) as browser:
            acq = wait_for(lambda: get_json(f"{url}/api/acquisitions")["acquisitions"], 20,
                           "the first volume")[0]
            browser.get(f"{url}/?a={acq['id']}")
            wait_for(lambda: browser.text("#mask-name") == "v0.tif", 30, "the first volume")
            write(results, "volumes-2.parquet", [second], kind="volumes")
            wait_for(lambda: get_json(f"{url}/api/acquisitions")["acquisitions"][0]["n"] == 2,
                     20, "the second volume listed")
            wait_for(lambda: browser.execute(
                "return document.querySelectorAll('#volumes tr.pick').length") == 2, 30,
                "the second volume on the open page")
            wait_for(lambda: browser.text("#mask-name") == "v1.tif", 10, "its mask")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert "Traceback" not in out, out


def test_a_picked_volume_stays_while_other_acquisitions_get_rows(two_volumes, tmp_path):
    """Every new row anywhere in the results (frames of another folder, every second on a
    live service) sent the volume page an update, which rebuilt its table and showed the
    latest volume again: the mask a scientist had picked was gone within a second."""
    require_browser()
    results = tmp_path / "res"  # the fixture's
    with Browser(1024, 700) as browser:
        _open_volume_page(browser, two_volumes)
        browser.execute("document.querySelector('#volumes tr.pick').click()")
        wait_for(lambda: browser.text("#mask-name") == "v0.tif", 10, "the picked volume")
        for k in range(3):  # another acquisition's rows, one file at a time
            write(results, f"frames-{k}.parquet", frame_rows("/acq/run1", [100.0], start=k))
            wait_for(lambda k=k: [a["n"] for a in get_json(f"{two_volumes}/api/acquisitions")
                                  ["acquisitions"] if a["kind"] == "insitu"] == [k + 1],
                     10, "the new rows")
            time.sleep(1.5)  # the stream's next update (one refresh a second)
            assert browser.text("#mask-name") == "v0.tif"
            assert "/mask/0.png?m=masks%2Fv0.tif" in browser.attribute("#mask", "src")


def test_a_tomogram_page_shows_its_processing_time(two_volumes):
    """Volume rows carry read_ms, segment_ms and measure_ms as frames do, but the card said
    "—" on every tomogram page."""
    require_browser()
    with Browser(1024, 700) as browser:
        _open_volume_page(browser, two_volumes)
        cards = browser.execute("return Object.fromEntries([...document.querySelectorAll("
                                "'#cards .card')].map((c) => [c.querySelector('.k')"
                                ".textContent, c.querySelector('.v').textContent]))")
        assert cards["processing / volume"] == "130 ms", cards  # median of 125 and 135


def test_a_volume_processed_again_never_shows_another_volumes_mask(tmp_path):
    """A file processed again (a tomogram exported anew) sorts last: the indices of the rows
    move, and the page asked for ``mask/0.png`` for v0 before and for v1 after, one URL for
    two masks (kept by the browser for an hour, and not even fetched again when the picture
    already showed it). The page names the mask it shows; the server serves that one."""
    import urllib.request

    from nwwatch.io import write_volume_tiff

    results = tmp_path / "res"
    rows = _volume_rows(results)
    first = rows[0]["processed_at"]
    write(results, "volumes-1.parquet", rows, kind="volumes")

    def png(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read()

    with dashboard_thread(results) as (_, url):
        acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]["id"]
        base = f"{url}/api/acquisitions/{acq}/mask"
        v0, v1 = png(f"{base}/0.png"), png(f"{base}/1.png")
        assert v0 != v1
        # a page whose list is older than the server's asks by index and name: the name wins
        assert png(f"{base}/0.png?m=masks%2Fv1.tif") == v1
        # v0 exported anew: its new version sorts last, v1 is now row 0
        mask = np.zeros((6, 20, 30), np.uint8)
        mask[:, 2:18, 2:28] = 1
        write_volume_tiff(results / "masks" / "v0-new.tif", mask)
        again = dict(rows[0], mask_path="masks/v0-new.tif", source_sha256="2" * 64,
                     processed_at=first + timedelta(seconds=5))
        write(results, "volumes-2.parquet", [again], kind="volumes")
        wait_for(lambda: get_json(f"{url}/api/acquisitions/{acq}/series")["volumes"][0]
                 ["source"] == "/acq/tomo/v1.tif", 10, "the new order")
        assert png(f"{base}/0.png?m=masks%2Fv1.tif") == v1
        require_browser()
        with Browser(1024, 700) as browser:
            browser.get(f"{url}/?a={acq}")
            wait_for(lambda: browser.execute(
                "return document.querySelectorAll('#volumes tr.pick').length") == 2, 30, "rows")
            browser.execute("document.querySelector('#volumes tr.pick').click()")
            wait_for(lambda: browser.text("#mask-name") == "v1.tif", 10, "row 0 picked")
            assert "m=masks%2Fv1.tif" in browser.attribute("#mask", "src")


def test_a_mask_that_cannot_be_loaded_is_named_not_a_broken_picture(tmp_path):
    """A row whose mask is gone from RESULTS (or damaged) showed a broken-image icon."""
    results = tmp_path / "res"
    rows = _volume_rows(results)
    (results / "masks" / "v0.tif").unlink()
    write(results, "volumes-1.parquet", rows, kind="volumes")
    require_browser()
    with dashboard_thread(results) as (_, url), Browser(1024, 700) as browser:
        _open_volume_page(browser, url)
        browser.execute("document.querySelector('#volumes tr.pick').click()")  # v0
        wait_for(lambda: browser.text("#mask-missing") ==
                 "The mask masks/v0.tif could not be loaded (missing or unreadable under the "
                 "results folder).", 10, "the missing mask named")
        assert browser.execute("return document.getElementById('mask').hidden")
        browser.execute("document.querySelectorAll('#volumes tr.pick')[1].click()")  # v1
        wait_for(lambda: browser.execute("return !document.getElementById('mask').hidden && "
                                         "document.getElementById('mask-missing').hidden"),
                 10, "the next mask shown")


def test_a_suspect_volume_says_why(two_volumes):
    """The table showed `suspect` and nothing else: the operator could not see why (the row's
    reason_code and reason were in the data, and in the report, not on the page)."""
    require_browser()
    with Browser(1024, 700) as browser:
        _open_volume_page(browser, two_volumes)
        cells = browser.execute("return [...document.querySelectorAll('#volumes tr')]"
                                ".map((tr) => [...tr.children].map((td) => td.textContent))")
        column = cells[0].index("reason_code")
        assert [row[column] for row in cells[1:]] == ["few_labeled_pixels,method_unvalidated", ""]
        assert browser.execute("return document.documentElement.scrollWidth <= "
                               "document.documentElement.clientWidth")  # no sideways scroll
        assert browser.text("#mask-reason") == ""  # the last volume, ok
        browser.execute("document.querySelector('#volumes tr.pick').click()")
        wait_for(lambda: browser.text("#mask-reason") ==
                 "suspect: the model was trained on only 11 labeled solid pixels", 10, "reason")


def test_the_page_says_when_the_server_stops_answering(tmp_path):
    """The page's acquisition-list refresh (every 5 s) threw an uncaught error into the
    console each time once the server had stopped, and said nothing on the page."""
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 101.0]))
    log = Log()
    thread = DashboardThread(results, None, DashboardConfig(port=0), log, live=False)
    thread.start()
    url = log.wait("dashboard_listening")["url"].rstrip("/")
    with Browser(1024, 700) as browser:
        try:
            browser.get(f"{url}/")
            wait_for(lambda: browser.text("#conn") == "connected", 30, "connected")
        finally:
            thread.stop()
        # The refresh itself, as the 5-s timer runs it: it resolves and says what happened.
        assert browser.execute("return loadList().then(() => "
                               "document.getElementById('conn').textContent)") == (
            "server not answering")
        # ... and it stays said: the stream's retries (every 2 s) turned it back into
        # "reconnecting…" each time, so that the header flickered between the two
        browser.execute("window.__seen = []; new MutationObserver(() => window.__seen.push("
                        "document.getElementById('conn').textContent)).observe("
                        "document.getElementById('conn'), {childList: true});")
        time.sleep(5)
        assert "reconnecting…" not in browser.execute("return window.__seen")
        assert browser.text("#conn") == "server not answering"


def test_frames_without_an_acquisition_time_are_counted_not_plotted(tmp_path):
    """``acquired_at`` is nullable: such rows reached the page with a null time, sorted as
    1970 and stretched the time axis over 56 years. They are left out of the chart and
    counted in its legend. Frames sharing one time (a stack's pages without times of their
    own) are charted in one column, which the legend says."""
    require_browser()
    results = tmp_path / "res"
    rows = frame_rows("/acq/run1", [100.0, 101.0, None, 103.0])
    rows[1]["acquired_at"] = rows[2]["acquired_at"] = None
    write(results, "frames-1.parquet", rows)
    stack = frame_rows("/acq/run1", [105.0, 106.0, 107.0], start=10)
    for k, row in enumerate(stack):
        row.update(source="/acq/run1/stack.tif", frame=k, acquired_at=stack[0]["acquired_at"])
    write(results, "frames-2.parquet", stack)
    with dashboard_thread(results) as (_, url):
        acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
        with Browser(1024, 700) as browser:
            browser.get(f"{url}/?a={acq['id']}")
            wait_for(lambda: browser.attribute("#chart", "data-points") == "5", 30, "points")
            assert browser.attribute("#chart", "data-untimed") == "2"
            assert "no acquisition time: 2 (not plotted)" in browser.text("#legend")
            x = browser.execute("return window.nwPlot.data[0]")
            assert len(x) == 5 and all(t > 1.7e9 for t in x), x  # 2023 onwards, not 1970
            assert browser.attribute("#chart", "data-shared") == "3"
            assert "sharing one acquisition time with others: 3" in browser.text("#legend")
            # times in the browser's zone, named (the rows and the report: UTC)
            zone = browser.execute("return Intl.DateTimeFormat().resolvedOptions().timeZone")
            assert browser.text("#latest").endswith(f"({zone})"), browser.text("#latest")


def test_frames_timed_by_their_files_modification_time_are_drawn_apart_from_the_trend(
        tmp_path):
    """Among frames that declare their time, those timed by their file's modification time
    were drawn and trended as the others, with no word of it. They are drawn hollow and
    grey with no trend of theirs, and the legend and time axis say how many and that the
    trend leaves them out."""
    from test_dashboard_data import _mixed_time_rows

    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", _mixed_time_rows("/acq/mixed"))
    with dashboard_thread(results) as (_, url):
        acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
        with Browser(1024, 700) as browser:
            browser.get(f"{url}/?a={acq['id']}")
            wait_for(lambda: browser.attribute("#chart", "data-points") == "18", 30, "points")
            assert browser.attribute("#chart", "data-apart") == "9"
            legend = browser.text("#legend")
            assert "valid 9 (bars: uncertainty)" in legend, legend
            assert ("timed by file modification time: 9 (left out of the trend; valid ones "
                    "hollow)") in legend, legend
            drawn = browser.execute("""
                const u = window.nwPlot;
                const at = (label) => u.series.findIndex((s) => s.label.startsWith(label));
                const count = (i) => u.data[i].filter((v) => v != null).length;
                return {apart: count(at("angle (valid, file modification time")),
                        kept: count(at("angle (valid)")), trend: count(at("rolling median")),
                        axis: u.axes[0].label};""")
            assert drawn["apart"] == 9 and drawn["kept"] == 9 and drawn["trend"] == 9, drawn
            assert drawn["axis"].endswith(", some from file modification time)"), drawn


def _declared_with_stray_mtimes(folder: str) -> list[dict]:
    """15 frames declaring their time (T0 to T0 + 14 s, angles 100-107 deg) and two files
    timed by their modification time: a reference copied with its times kept (12.5 h
    before, valid 120 deg) and a blank written an hour after the frames' times (refused,
    no_wire), the last in time order."""
    rows = frame_rows(folder, [100.0 + 0.5 * k for k in range(15)])
    for row in rows:
        row["acquired_at_source"] = "metadata"
    reference, blank = frame_rows(folder, [120.0, None], start=15, codes=["", "no_wire"])
    reference.update(source=f"{folder}/reference.tif", acquired_at_source="mtime",
                     acquired_at=T0 - timedelta(hours=12.5))
    blank.update(source=f"{folder}/blank.tif", acquired_at_source="mtime",
                 acquired_at=T0 + timedelta(hours=1))
    return [*rows, reference, blank]


def test_stray_modification_times_set_neither_the_time_axis_nor_the_latest_frame(tmp_path):
    """Among frames that declare their time, one file timed by its modification time 12.5 h
    before them stretched the time axis over 12.5 h (the 15 s of real frames in one
    column), and one timed an hour after them stayed the "latest frame" while later frames
    arrived. The axis spans the declared times (those outside are counted in the legend,
    not plotted, also after a double click) and the latest frame is the last declared."""
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", _declared_with_stray_mtimes("/acq/rep"))
    span = "return [window.nwPlot.scales.x.min, window.nwPlot.scales.x.max]"
    with dashboard_thread(results) as (_, url):
        acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
        latest = get_json(f"{url}/api/acquisitions/{acq['id']}/series")["latest"]
        assert (latest["source"], latest["valid"]) == ("f0014.tif", True), latest
        with Browser(1024, 700) as browser:
            browser.get(f"{url}/?a={acq['id']}")
            wait_for(lambda: browser.attribute("#chart", "data-points") == "15", 30, "points")
            assert browser.attribute("#chart", "data-off-span") == "2"
            assert browser.attribute("#chart", "data-refused") == "0"  # the blank: off
            legend = browser.text("#legend")
            assert "timed by file modification time outside the declared times: 2 (not " \
                   "plotted)" in legend, legend
            assert browser.text("#latest").startswith("f0014.tif frame 0: 107.0°"), \
                browser.text("#latest")
            for _ in range(2):
                x_min, x_max = browser.execute(span)
                first, last = T0.timestamp(), T0.timestamp() + 14
                assert first - 2 < x_min < first and last < x_max < last + 2, (x_min, x_max)
                # a double click shows every row: still the declared times' span
                browser.execute("window.nwPlot.over.dispatchEvent(new MouseEvent('dblclick', "
                                "{bubbles: true}))")
                time.sleep(0.5)


def test_a_long_acquisition_of_200000_frames_is_charted(tmp_path):
    """The angle axis was ranged with ``Math.min(...angles)``: past some 120,000 valid rows
    (a 6-hour acquisition at 5 frames/s) the spread overflowed the call stack, and the
    chart stayed empty with an uncaught RangeError. The rows are made in the page (the same
    payload as the server's, lengthened) so that the test stays quick."""
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 101.0]))
    with dashboard_thread(results) as (_, url):
        acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
        with Browser(1024, 700) as browser:
            browser.get(f"{url}/?a={acq['id']}")
            wait_for(lambda: browser.attribute("#chart", "data-points") == "2", 30, "points")
            # the payload the server sent, lengthened to 200,000 rows (one in ten refused)
            result = browser.execute("""
                return fetch(`api/acquisitions/${acqId}/series`).then((r) => r.json())
                  .then((d) => {
                    const n = 200000, t0 = d.rows.t[0];
                    const seq = (f) => Array.from({length: n}, (_, i) => f(i));
                    d.rows = {t: seq((i) => t0 + 0.2 * i), angle: seq((i) => 100 + (i % 50) / 10),
                              unc: seq(() => 1), valid: seq((i) => i % 10 !== 0),
                              code: seq((i) => (i % 10 ? "ok" : "fit_failed")),
                              trend: seq(() => 102), source: seq((i) => `/acq/run1/f${i}.tif`),
                              frame: seq(() => 0)};
                    d.reset = true;
                    try { applyUpdate(d); return "ok"; } catch (err) { return String(err); }
                  });""")
            assert result == "ok", result
            assert browser.attribute("#chart", "data-points") == "180000"
            assert browser.attribute("#chart", "data-refused") == "20000"
            # the angle axis starts at 80 deg; the y scale reaches below it into the lane of
            # the refused frames
            assert browser.attribute("#chart", "data-angle-min") == "80"
            assert browser.execute("return window.nwPlot.scales.y.min") < 80


def test_a_page_with_no_results_yet_says_so_across_a_restart(tmp_path):
    """With no rows there is no stream to open: the header said "connecting…" for ever, and
    after the server had stopped and come back "server not answering" for ever."""
    require_browser()
    results = tmp_path / "res"
    results.mkdir()
    log = Log()
    thread = DashboardThread(results, None, DashboardConfig(port=0), log, live=False)
    thread.start()
    url = log.wait("dashboard_listening")["url"].rstrip("/")
    port = int(url.rsplit(":", 1)[1])
    conn = "return loadList().then(() => document.getElementById('conn').textContent)"
    try:
        with Browser(1024, 700) as browser:
            browser.get(f"{url}/")
            wait_for(lambda: browser.text("#conn") == "waiting for results", 30, "waiting")
            thread.stop()
            assert browser.execute(conn) == "server not answering"
            log = Log()
            thread = DashboardThread(results, None, DashboardConfig(port=port), log, live=False)
            thread.start()
            log.wait("dashboard_listening")
            assert browser.execute(conn) == "waiting for results"
            write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 101.0]))
            browser.execute("return loadList()")
            wait_for(lambda: browser.attribute("#chart", "data-points") == "2", 30, "points")
            assert browser.text("#conn") == "connected"
    finally:
        thread.stop()


def test_seven_tabs_load_and_a_tab_shown_again_catches_up(tmp_path):
    """A browser opens at most 6 connections to one server, and every dashboard tab held one
    (its event stream): the seventh tab did not load at all. Hidden tabs now close their
    stream; shown again, a tab gets the rows it missed, without a reload."""
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 101.0]))
    with dashboard_thread(results) as (_, url):
        with Browser(1024, 700) as browser:
            browser.get(f"{url}/")
            wait_for(lambda: browser.attribute("#chart", "data-points") == "2", 30, "points")
            browser.execute("window.notReloaded = true")
            first = browser.cmd("GET", "/window")
            browser.cmd("POST", "/timeouts", {"pageLoad": 20000})  # a tab that cannot load
            for _ in range(6):
                tab = browser.cmd("POST", "/window/new", {"type": "tab"})["handle"]
                browser.cmd("POST", "/window", {"handle": tab})
                browser.get(f"{url}/")
                wait_for(lambda: browser.attribute("#chart", "data-points") == "2", 30,
                         "points in a new tab")
            write(results, "frames-2.parquet", frame_rows("/acq/run1", [102.0, 103.0], start=2,
                                                          processed=T0 + timedelta(seconds=5)))
            browser.cmd("POST", "/window", {"handle": first})
            wait_for(lambda: browser.attribute("#chart", "data-points") == "4", 30,
                     "the rows committed while the tab was hidden")
            assert browser.execute("return window.notReloaded") is True
            assert browser.text("#conn") == "connected"


def test_side_bar_counts_one_row_in_the_singular(tmp_path):
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/one", [100.0]))
    write(results, "frames-2.parquet", frame_rows("/acq/two", [100.0, 101.0]))
    with dashboard_thread(results) as (_, url), Browser() as browser:
        browser.get(url)
        wait_for(lambda: browser.execute(
            "return document.querySelectorAll('#acqs li').length") == 2, 30, "side bar")
        text = browser.text("#acqs")
        assert "insitu, 1 row," in text and "insitu, 2 rows," in text, text


def test_side_bar_and_header_tell_two_models_of_one_name_apart(tmp_path):
    """A model retrained into the configured path keeps its file's name: the side bar said
    "mine" for both series and the header's model card too; each carries its hash's start."""
    require_browser()
    results = tmp_path / "res"
    old, new = "0a1b2c3d4e5f" + "0" * 52, "f5e4d3c2b1a0" + "1" * 52
    for name, sha, minutes in (("frames-1.parquet", old, 0), ("frames-2.parquet", new, 5)):
        rows = frame_rows("/acq/a", [100.0, 101.0], processed=T0 + timedelta(minutes=minutes))
        for row in rows:
            row.update(model_name="mine", model_sha256=sha, measurement_version="2.2.9")
        write(results, name, rows)
    with dashboard_thread(results) as (_, url), Browser() as browser:
        browser.get(url)
        wait_for(lambda: browser.execute(
            "return document.querySelectorAll('#acqs li').length") == 2, 30, "side bar")
        text = browser.text("#acqs")
        assert "mine 0a1b2c3d4e5f" in text and "mine f5e4d3c2b1a0" in text, text
        # the newest series opens first, and its header names its model so
        wait_for(lambda: "mine f5e4d3c2b1a0" in browser.text("#cards"), 30, "model card")
        # and so does the tab's title (two tabs of the folder were titled alike)
        assert browser.execute("return document.title") == (
            "acq/a (mine f5e4d3c2b1a0, measurement 2.2.9) · nwwatch")
        assert browser.execute("return document.getElementById('newer').hidden")
        # a page left open on the earlier series (a live display across an update) says
        # where the folder's new rows are; it showed the old series without a word
        acqs = get_json(f"{url}/api/acquisitions")["acquisitions"]
        older = next(a["id"] for a in acqs if a["model_sha256"] == old)
        newer = next(a["id"] for a in acqs if a["model_sha256"] == new)
        browser.get(f"{url}/?a={older}")
        wait_for(lambda: not browser.execute(
            "return document.getElementById('newer').hidden"), 30, "newer banner")
        assert "newer rows, of mine f5e4d3c2b1a0" in browser.text("#newer")
        assert browser.execute(
            "return document.querySelector('#newer a').getAttribute('href')") == f"?a={newer}"


def test_time_labels_under_the_ticks_do_not_run_into_each_other_across_midnight(tmp_path):
    """uPlot writes the date under the first tick and under the tick where the day changes:
    a minute of frames from 13 s before midnight put "11/21/26 11:59pm" and "11/22 12:00am"
    under neighbouring ticks 72 px apart, drawn 29 px into one another. The rows are made in
    the page around its own local midnight (uPlot's dates are local time)."""
    require_browser()
    # 60 frames 1 s apart from 13 s before midnight (JavaScript's Date carries -13 s back)
    ticks = time_ticks(tmp_path, 860, (2026, 10, 22, 0, 0, -13), 60, 1.0)
    shown = [tick for tick in ticks if tick["under"]]
    assert [tick["own"] for tick in ticks][:2] == [":50", ":00"], ticks
    midnight = next(tick for tick in ticks if tick["own"] == ":00")
    assert midnight["under"] == "11/22 12:00am", ticks  # the new day is named
    for left, right in zip(shown, shown[1:], strict=False):
        gap_px = (right["x"] - right["width"] / 2) - (left["x"] + left["width"] / 2)
        assert gap_px > 0, f"{left['under']!r} runs into {right['under']!r}: {ticks}"


def test_damaged_results_files_are_named_on_the_page_and_no_row_leaves_no_latest_frame(
        tmp_path):
    # Was: an acquisition whose only file was damaged vanished from the list, a damaged
    # quarantine list read "(none)", and nothing on the page said so (the API and `nwwatch
    # status` named the files). And an acquisition left without rows kept the caption of a
    # row that no longer counted.
    from nwwatch.results.quarantine import write_quarantine

    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0]))
    rows = frame_rows("/acq/b", [110.0])
    rows[0]["source_sha256"] = "b" * 64
    write(results, "frames-2.parquet", rows)
    with dashboard_thread(results) as (_, url), Browser() as browser:
        ids = {a["folder"]: a["id"] for a in get_json(f"{url}/api/acquisitions")["acquisitions"]}
        browser.get(f"{url}/?a={ids['/acq/b']}")
        wait_for(lambda: "f0000.tif frame 0" in browser.text("#latest"), 30, "latest frame")
        assert browser.execute("return document.getElementById('unreadable').hidden")
        # b's only file overwritten with a broken one: quarantined after its row
        write_quarantine([{"path": "/acq/b/f0000.tif", "sha256": None, "reason": "bad",
                           "error_type": "E", "attempts": 1,
                           "quarantined_at": (T0 + timedelta(hours=1)).timestamp()}], results)
        wait_for(lambda: browser.text("#latest") == "—", 30, "no latest frame")
        assert "No row" in browser.text("#latest-overlay")
        whole = (results / "frames" / "frames-1.parquet").read_bytes()
        (results / "frames" / "frames-3.parquet").write_bytes(whole[:len(whole) // 2])
        wait_for(lambda: not browser.execute(
            "return document.getElementById('unreadable').hidden"), 30, "banner")
        text = browser.text("#unreadable")
        assert "1 results file cannot be read (damaged?)" in text and "frames-3.parquet" in text


def time_ticks(tmp_path, width_px: int, start: tuple, n: int, step_s: float) -> list[dict]:
    """The time axis's ticks for n frames step_s apart from start (year, month from 0, day,
    hour, minute, second; local time), on a page width_px wide: each tick's own label, the
    line under it (or None), where the tick is drawn and how wide that line is (CSS pixels),
    and its hour and minute as "1:00am"."""
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 101.0]))
    with dashboard_thread(results) as (_, url):
        acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
        with Browser(width_px, 820) as browser:
            browser.get(f"{url}/?a={acq['id']}")
            wait_for(lambda: browser.attribute("#chart", "data-points") == "2", 30, "points")
            result = browser.execute("""
                const [start, n, step] = arguments;
                return fetch(`api/acquisitions/${acqId}/series`).then((r) => r.json())
                  .then((d) => {
                    const t0 = new Date(...start).getTime() / 1000;  // local
                    const seq = (f) => Array.from({length: n}, (_, i) => f(i));
                    d.rows = {t: seq((i) => t0 + i * step), angle: seq((i) => 100 + (i % 7)),
                              unc: seq(() => 1), valid: seq(() => true), code: seq(() => "ok"),
                              trend: seq(() => 102), source: seq((i) => `/acq/run1/f${i}.tif`),
                              frame: seq(() => 0)};
                    d.reset = true;
                    applyUpdate(d);
                    return "ok";
                  });""", list(start), n, step_s)
            assert result == "ok", result
            wait_for(lambda: browser.attribute("#chart", "data-points") == str(n), 30, "points")
            return browser.execute("""
                const u = window.nwPlot, axis = u.axes[0];
                const ctx = document.createElement("canvas").getContext("2d");
                ctx.font = axis.font[0];
                return axis._splits.map((t, k) => {
                  const d = new Date(t * 1000);
                  const h = d.getHours() % 12 || 12, ap = d.getHours() < 12 ? "am" : "pm";
                  const [own, under] = String(axis._values[k]).split("\\n");
                  return {own, under: under || null, x: u.valToPos(t, "x"),
                          width: under ? ctx.measureText(under).width / devicePixelRatio : 0,
                          clock: `${h}:${String(d.getMinutes()).padStart(2, "0")}${ap}`};
                });""")


def clocks_said(ticks: list[dict]) -> str | None:
    """Checks that each line under a tick names the hour and minute of the ticks up to the
    next line; returns the last one said."""
    said = None
    for tick in ticks:
        if tick["under"]:
            said = tick["under"].split(" ")[-1]  # "1/1/26 1:00am" or "1:00am"
        assert said is None or said == tick["clock"], (tick, ticks)
    return said


def test_the_label_under_the_first_tick_does_not_name_the_minute_before_the_frames(tmp_path):
    """Frames at 1:00:00-1:00:14 local time: the axis spans from 0:59:59, its first tick's
    line read "1/1/26 12:59am" and the change of minute at the next tick ("1:00am"), running
    into it, was left out, so the ticks :00-:15 read as 12:59:00-12:59:15. Every line under
    a tick names the hour and minute of the ticks up to the next line; the date is still
    said."""
    require_browser()
    ticks = time_ticks(tmp_path, 1280, (2026, 0, 1, 1, 0, 0), 15, 1)  # ticks a second apart
    assert [tick["own"] for tick in ticks][:2] == [":59", ":00"], ticks
    assert clocks_said(ticks) == "1:00am", ticks
    assert any(tick["under"] and "1/1/26" in tick["under"] for tick in ticks), ticks


def test_the_first_tick_keeps_its_line_where_the_day_change_leaves_the_moved_one_out(tmp_path):
    """Frames 15 s apart from 23:58:34 on 31 December, on a page 860 px wide: the first
    tick's line gave way to the change of minute's (written with the date), which the change
    of day at midnight then left out, so the ticks before midnight had neither date nor
    hour (":30 | :00 | :30 | :00 1/1/26 12:00am"). The first tick keeps its own line where
    the moved one is left out."""
    require_browser()
    ticks = time_ticks(tmp_path, 860, (2025, 11, 31, 23, 58, 34), 17, 15)
    assert ticks[0]["under"] == f"12/31/25 {ticks[0]['clock']}", ticks  # date and hour
    midnight = next(k for k, tick in enumerate(ticks) if tick["clock"] == "12:00am")
    assert ticks[midnight]["under"] == "1/1/26 12:00am", ticks
    assert clocks_said(ticks[midnight:]) is not None, ticks
