"""The dashboard page's latest frame (its overlay picture), its tab title and its refused
frames, in a real headless browser (Debian chromium + chromedriver, ``tests/webdriver.py``)."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from dashkit import dashboard_thread, get_json, wait_for, write_frames
from servicekit import model
from test_dashboard_data import T0, frame_rows, write
from webdriver import Browser, require_browser


@pytest.fixture()
def serve():
    """``serve(results)`` -> base URL of a dashboard on ``results`` (stopped afterwards)."""
    with ExitStack() as stack:
        yield lambda results: stack.enter_context(dashboard_thread(results))[1]


def _open(browser, url: str, n_rows: int) -> dict:
    acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
    browser.get(f"{url}/?a={acq['id']}")
    wait_for(lambda: browser.execute("return document.getElementById('latest').textContent")
             .count("frame") >= 1 and int(browser.attribute("#chart", "data-points"))
             + int(browser.attribute("#chart", "data-refused") or 0) == n_rows, 30, "rows")
    return acq


@pytest.mark.parametrize("folder", ["qa", "qa#1 ?x", os.fsdecode(b"qa\xe9")],
                         ids=["plain", "uri-characters", "not-utf8"])
def test_the_latest_frame_shows_its_overlay_picture(tmp_path, serve, folder):
    """The latest frame was a text link to its overlay PNG: the picture is on the page now,
    scaled into its panel, and a click opens the full-size file; also from an overlays
    folder whose name holds '#' or '?' (the link ended there) or bytes that are not UTF-8
    (the replay failed writing its rows)."""
    from nwwatch.service import replay

    require_browser()
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frames(acq, [120.0, 125.0])
    out = tmp_path / "out"
    replay(acq, out, kind="insitu", model=model(tmp_path), overlays=folder)
    url = serve(out)
    with Browser(1024, 700) as browser:
        _open(browser, url, 2)
        wait_for(lambda: browser.execute(
            "const i = document.querySelector('#latest-overlay img');"
            "return i !== null && i.complete && i.naturalWidth > 0"), 30, "overlay loaded")
        src = browser.attribute("#latest-overlay img", "src")
        link = browser.attribute("#latest-overlay a", "href")
        assert "results/" in link and link.endswith(".png")
        # the panel asks for a copy scaled to its size; no larger picture is sent as it is
        base, _, query = src.partition("?max_px=")
        assert base == link and int(query) % 256 == 0 and int(query) >= 576
        assert browser.execute("return document.querySelector('#latest-overlay img')"
                               ".naturalWidth") == 96 * 6  # the 96 px frame drawn 6 times larger
        # scaled to fit its panel: no wider than the main column
        assert browser.execute(
            "const i = document.querySelector('#latest-overlay img');"
            "return i.getBoundingClientRect().width <= "
            "document.querySelector('main').clientWidth")
        assert browser.execute("return document.documentElement.scrollWidth <= "
                               "document.documentElement.clientWidth")


def test_the_live_service_shows_the_latest_overlay(tmp_path):
    """The same for the running service with ``[output] overlays = "all"``."""
    from dashkit import dashboard_url
    from servicekit import DaemonProcess, wait_rows, write_config

    require_browser()
    acq, res = tmp_path / "acq" / "run1", tmp_path / "res"
    acq.mkdir(parents=True)
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.3,
                       extra='[dashboard]\nlisten = "127.0.0.1:0"\n')
    cfg.write_text(cfg.read_text().replace("[output]", '[output]\noverlays = "all"'))
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        url = dashboard_url(daemon)
        daemon.wait_event("ready")
        write_frames(acq, [120.0, 125.0])
        wait_rows(res, 2, proc=daemon)
        with Browser(1024, 700) as browser:
            _open(browser, url, 2)
            wait_for(lambda: browser.execute(
                "const i = document.querySelector('#latest-overlay img');"
                "return i !== null && i.complete && i.naturalWidth > 0"), 30, "overlay loaded")
            assert "results/overlays/" in browser.attribute("#latest-overlay img", "src")
    finally:
        code, _ = daemon.terminate()
        assert code == 0


@pytest.mark.parametrize(("setting", "said"), [
    ("flagged", 'its status is ok, and the service draws only the frames whose status is not '
                'ok ([output] overlays = "flagged")'),
    ("none", 'the service writes none ([output] overlays = "none", the default)')])
def test_the_live_page_says_why_the_latest_frame_has_no_picture(tmp_path, setting, said):
    """Under ``overlays = "flagged"`` an ok latest frame said that the service writes
    pictures with "all" or "flagged" and that one that could not be written is in its log:
    the page knows the setting, and says that ok frames get none under "flagged" (and that
    the service writes none under "none")."""
    from dashkit import dashboard_url
    from servicekit import DaemonProcess, wait_rows, write_config

    require_browser()
    acq, res = tmp_path / "acq" / "run1", tmp_path / "res"
    acq.mkdir(parents=True)
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.3,
                       extra='[dashboard]\nlisten = "127.0.0.1:0"\n')
    cfg.write_text(cfg.read_text().replace("[output]", f'[output]\noverlays = "{setting}"'))
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        url = dashboard_url(daemon)
        daemon.wait_event("ready")
        write_frames(acq, [None, 120.0])  # a refused frame, then an ok one: the latest
        wait_rows(res, 2, proc=daemon)
        with Browser(1024, 700) as browser:
            _open(browser, url, 2)
            assert browser.execute("return document.getElementById('latest').textContent"
                                   ).startswith("frame_0001.tif frame 0: 1")  # an angle
            text = " ".join(browser.text("#latest-overlay").split())
            assert said in text, text
            assert "overlay_write_failed" not in text, text
    finally:
        code, _ = daemon.terminate()
        assert code == 0


def test_without_overlays_the_page_says_how_to_turn_them_on(tmp_path, serve):
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 101.0]))
    url = serve(results)
    with Browser(1024, 700) as browser:
        _open(browser, url, 2)
        text = browser.text("#latest-overlay")
        assert "[output] overlays" in text and "--overlays" in text, text
        assert browser.execute("return document.querySelector('#latest-overlay img')") is None


def test_the_tab_title_names_the_acquisition(tmp_path, serve):
    """Every tab was titled "nwwatch dashboard": with several open, none could be told apart.
    The title is text: a folder name with markup stays text."""
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/<b>run&1", [100.0, 101.0]))
    url = serve(results)
    with Browser(1024, 700) as browser:
        _open(browser, url, 2)
        wait_for(lambda: browser.execute("return document.title") ==
                 "acq/<b>run&1 (m) · nwwatch", 10, "title")
        assert browser.execute("return document.querySelector('title').children.length") == 0


@pytest.mark.parametrize("angles", [[None] * 4, [100.0, None, 102.0, None]],
                         ids=["all-refused", "mixed"])
def test_refused_frames_are_in_their_own_lane_not_at_an_angle(tmp_path, serve, angles):
    """With every frame refused, the refusal markers sat at about 5-10 deg on a 0-180 deg
    axis and read as angles. They have their own lane below the angle axis, labelled
    "refused", and no value on the angle scale. The lane's title stands beside the lane:
    uPlot's axis label was centred on the whole plot, beside the angles."""
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", angles))
    url = serve(results)
    n_refused = angles.count(None)
    with Browser(1024, 700) as browser:
        _open(browser, url, len(angles))
        assert browser.attribute("#chart", "data-refused") == str(n_refused)
        lane = browser.execute("""
            const u = window.nwPlot;
            const out = {angleSeries: [], laneSeries: []};
            u.series.forEach((s, i) => {
              if (i === 0) return;
              (s.scale === "refused" ? out.laneSeries : out.angleSeries).push(s.label);
            });
            const angleMin = Number(document.getElementById("chart").dataset.angleMin);
            const yBottom = u.valToPos(angleMin, "y");
            // the angle axis labels only angles at or above its lowest one
            out.angleTicks = u.axes[1]._values.filter((v) => v != null && v !== "");
            out.lowestTick = Math.min(...u.axes[1]._splits.filter(
              (v, i) => u.axes[1]._values[i] != null && u.axes[1]._values[i] !== ""));
            out.angleMin = angleMin;
            const laneTop = Math.min(...u.series.map((s, i) => s.scale === "refused" ?
              Math.min(...u.data[i].filter((v) => v != null).map((v) => u.valToPos(v, "refused")))
              : Infinity));
            out.below = laneTop > yBottom;
            // the title's ink, in canvas pixels, in the column uPlot keeps for the label
            const axis = u.axes.find((a) => a.scale === "refused");
            const x0 = Math.round(axis._lpos * devicePixelRatio);
            const width = Math.round(axis.labelSize * devicePixelRatio);
            const ink = u.ctx.getImageData(x0, 0, width, u.ctx.canvas.height).data;
            const inked = [];
            for (let y = 0; y < u.ctx.canvas.height; y++) {
              for (let x = 0; x < width; x++) {
                if (ink[(y * width + x) * 4 + 3] > 128) { inked.push(y); break; }
              }
            }
            out.titleRows = inked.length ? [inked[0], inked[inked.length - 1]] : null;
            u.ctx.save();
            u.ctx.font = axis.labelFont[0];
            out.titleLength = u.ctx.measureText("refused").width;
            u.ctx.restore();
            out.laneRows = [u.valToPos(angleMin, "y", true), u.bbox.top + u.bbox.height];
            out.plotMiddle = u.bbox.top + u.bbox.height / 2;
            return out;""")
        assert lane["laneSeries"] == ["fit_failed"], lane
        assert "fit_failed" not in lane["angleSeries"]
        assert lane["below"], lane  # every marker lies below the angle axis's lowest value
        assert lane["titleRows"] is not None, lane  # "refused", drawn
        (ink_top, ink_bottom), (lane_top, lane_bottom) = lane["titleRows"], lane["laneRows"]
        assert abs((ink_bottom - ink_top) - lane["titleLength"]) <= 4, lane  # the whole word
        # centred on the lane, not on the plot
        assert abs((ink_top + ink_bottom) / 2 - (lane_top + lane_bottom) / 2) <= 3, lane
        assert abs((ink_top + ink_bottom) / 2 - lane["plotMiddle"]) > 50, lane
        assert lane["lowestTick"] >= lane["angleMin"] >= 0, lane
        assert lane["angleTicks"] and all(t.endswith("°") for t in lane["angleTicks"]), lane
        if None not in angles[:1]:  # the mixed acquisition: its angles, not 0-180
            assert lane["angleMin"] == 80, lane


def test_the_latest_overlay_is_the_latest_timed_frames(tmp_path, serve):
    """The overlay sent was the last row's, and rows with no acquisition time sort last: the
    page captioned the latest timed frame (the one it can place on the time axis) with another
    frame's picture, or with none."""
    results = tmp_path / "res"
    rows = frame_rows("/acq/run1", [100.0, 101.0, 102.0])
    rows[1]["overlay_path"] = "overlays/f0001.png"
    rows[2]["overlay_path"] = "overlays/f0002.png"
    rows[2]["acquired_at"] = None  # sorts after the timed rows
    rows[0]["overlay_path"] = None
    write(results, "frames-1.parquet", rows)
    url = serve(results)
    acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
    data = get_json(f"{url}/api/acquisitions/{acq['id']}/series")
    assert data["latest_overlay"] == "overlays/f0001.png"
    # with no timed row at all, the last row's
    for row in rows:
        row["acquired_at"] = None
    other = tmp_path / "res2"
    write(other, "frames-1.parquet", rows)
    url = serve(other)
    acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
    assert get_json(f"{url}/api/acquisitions/{acq['id']}/series")["latest_overlay"] == (
        "overlays/f0002.png")


def test_an_overlay_that_cannot_be_loaded_is_named(tmp_path, serve):
    """A row naming a picture that is not there showed a broken-image icon."""
    require_browser()
    results = tmp_path / "res"
    rows = frame_rows("/acq/run1", [100.0, 101.0])
    rows[0]["overlay_path"], rows[1]["overlay_path"] = None, "overlays/gone.png"
    write(results, "frames-1.parquet", rows)
    url = serve(results)
    with Browser(1024, 700) as browser:
        _open(browser, url, 2)
        wait_for(lambda: "could not be loaded" in browser.text("#latest-overlay"), 30,
                 "the page saying so")
        assert "overlays/gone.png" in browser.text("#latest-overlay")
        assert browser.execute("return document.querySelector('#latest-overlay img')") is None


def test_frames_acquired_at_the_same_time_give_one_latest_frame(tmp_path, serve):
    """Two frames with the same acquisition time: the server picked the last by source name
    (its sort), the page the one of the highest frame number, so the caption named one frame
    and the overlay showed the other's picture. The server names the latest frame; the page
    captions that one."""
    require_browser()
    results = tmp_path / "res"
    rows = frame_rows("/acq/run1", [100.0, 110.0])
    rows[0].update(frame=5, overlay_path="overlays/f0000-5.png")
    rows[1].update(acquired_at=rows[0]["acquired_at"], overlay_path="overlays/f0001-0.png")
    write(results, "frames-1.parquet", rows)
    url = serve(results)
    acq = get_json(f"{url}/api/acquisitions")["acquisitions"][0]
    data = get_json(f"{url}/api/acquisitions/{acq['id']}/series")
    assert (data["latest"]["source"], data["latest"]["frame"]) == ("f0001.tif", 0)
    assert data["latest"]["angle"] == 110.0
    assert data["latest_overlay"] == "overlays/f0001-0.png"
    with Browser(1024, 700) as browser:
        _open(browser, url, 2)
        caption = browser.execute("return document.getElementById('latest').textContent")
        assert caption.startswith("f0001.tif frame 0: 110"), caption


def test_rows_committed_after_the_clock_was_set_back_reach_the_open_page(tmp_path, serve):
    """After the computer's clock was set back (an NTP step), rows committed later carry
    older ``processed_at`` times: the open page, asking for rows newer than the newest it had,
    got none of them, and its caption kept naming the frame before while the overlay panel
    showed the new latest frame's picture. The page gets the rows; caption and picture name
    one frame."""
    require_browser()
    results = tmp_path / "res"
    rows = frame_rows("/acq/run1", [100.0, 101.0], processed=T0 + timedelta(seconds=300))
    for row in rows:
        row["overlay_path"] = f"overlays/{row['source'].rsplit('/', 1)[1]}.png"
    write(results, "frames-1.parquet", rows)
    url = serve(results)
    caption = "return document.getElementById('latest').textContent"
    with Browser(1024, 700) as browser:
        _open(browser, url, 2)
        assert browser.execute(caption).startswith("f0001.tif frame 0: 101"), (
            browser.execute(caption))
        stepped = frame_rows("/acq/run1", [110.0], start=2, processed=T0)  # 300 s back
        stepped[0]["overlay_path"] = "overlays/f0002.tif.png"
        write(results, "frames-2.parquet", stepped)
        wait_for(lambda: browser.execute(
            "return document.getElementById('latest-overlay').dataset.href")
            .endswith("f0002.tif.png"), 30, "the new latest frame's picture")
        assert browser.execute(caption).startswith("f0002.tif frame 0: 110"), (
            browser.execute(caption))
        wait_for(lambda: browser.attribute("#chart", "data-points") == "3", 10, "the new row")


def test_long_folder_and_file_names_do_not_widen_the_page(tmp_path, serve):
    """A long acquisition path in the header, a long quarantined file name or a long latest
    file name (one word each: no space to break at) made the whole page scroll sideways at
    800 px. They wrap within the page."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    require_browser()
    results = tmp_path / "res"
    folder = "/data/microscope/" + "sample_" + "x" * 110
    rows = frame_rows(folder, [100.0, 101.0])
    rows[1]["source"] = f"{folder}/tilt_{'y' * 90}.tif"
    write(results, "frames-1.parquet", rows)
    pq.write_table(pa.Table.from_pylist([
        {"path": f"{folder}/empty_{'z' * 90}.tif", "reason": "file is empty",
         "error_type": "EmptyFileError", "attempts": 1}]), results / "quarantine.parquet")
    url = serve(results)
    with Browser(800, 700) as browser:
        _open(browser, url, 2)
        wait_for(lambda: browser.text("#qcount") == "(1)", 30, "the quarantined file")
        assert "y" * 90 in browser.text("#latest")
        wide = browser.execute(
            "const w = document.documentElement.clientWidth;"
            "return [...document.querySelectorAll('header *, main *')]"
            ".filter((e) => e.getBoundingClientRect().right > w + 1)"
            ".map((e) => e.tagName + '#' + e.id)")
        assert wide == [], wide
        assert browser.execute("return document.documentElement.scrollWidth <= "
                               "document.documentElement.clientWidth")
        # the header's pills stay on one line beside the wrapped path
        assert browser.execute("return document.getElementById('mode').getBoundingClientRect()"
                               ".height") < 24


def test_a_dragged_time_span_is_shown_and_kept_while_rows_arrive(tmp_path, serve):
    """Dragging across the chart drew uPlot's selection and then did nothing: the time
    axis's range function returned every row's span whatever was asked. The span dragged
    across is shown, kept while rows arrive; a double click shows every row again."""
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0 + k for k in range(20)]))
    url = serve(results)
    span = "return [window.nwPlot.scales.x.min, window.nwPlot.scales.x.max]"
    with Browser(1024, 700) as browser:
        acq = _open(browser, url, 20)
        full = browser.execute(span)
        browser.drag(".u-over", 120, 0)
        zoomed = wait_for(lambda: (s := browser.execute(span)) != full and s, 10, "the zoom")
        assert full[0] <= zoomed[0] < zoomed[1] <= full[1]
        assert zoomed[1] - zoomed[0] < 0.5 * (full[1] - full[0]), (zoomed, full)
        # rows of this acquisition and of another arrive: the span stays
        later = T0 + timedelta(seconds=30)  # committed after the rows the page has
        write(results, "frames-2.parquet", frame_rows("/acq/run1", [130.0], start=20,
                                                      processed=later))
        write(results, "frames-3.parquet", frame_rows("/acq/run2", [90.0], processed=later))
        wait_for(lambda: browser.attribute("#chart", "data-points") == "21", 30, "the new row")
        time.sleep(1.5)
        assert browser.execute(span) == zoomed
        browser.execute("window.nwPlot.over.dispatchEvent(new MouseEvent('dblclick', "
                        "{bubbles: true}))")
        wait_for(lambda: browser.execute(span)[1] > full[1], 10, "every row again")
        assert get_json(f"{url}/api/acquisitions/{acq['id']}/series")["summary"]["n"] == 21


def test_the_time_axis_grows_with_rows_pushed_to_an_open_page(tmp_path, serve):
    """Rows pushed to an open page were added to the chart's data, but the time axis kept
    the span of the rows the chart was first drawn with: uPlot asks the range function for
    the span last shown when data change, which was taken for a drag. Later points fell
    outside the chart until a reload (or a new reason code rebuilt it)."""
    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 101.0, 102.0]))
    url = serve(results)
    shown = ("const u = window.nwPlot; "
             "return [u.scales.x.min, u.scales.x.max, u.data[0][u.data[0].length - 1]]")
    with Browser(1024, 700) as browser:
        _open(browser, url, 3)
        browser.execute("window.notReloaded = true")
        later = T0 + timedelta(seconds=30)
        write(results, "frames-2.parquet", frame_rows("/acq/run1", [110.0, 111.0], start=60,
                                                      processed=later))
        wait_for(lambda: browser.attribute("#chart", "data-points") == "5", 30, "pushed rows")
        x_min, x_max, newest = browser.execute(shown)
        assert newest == (T0 + timedelta(seconds=61)).timestamp()
        assert x_min < T0.timestamp() and x_max > newest, (x_min, x_max, newest)
        assert browser.execute("return window.notReloaded") is True


def _quarantined_only(tmp_path: Path, folder: str) -> Path:
    """RESULTS whose only entry is an empty file of ``folder`` quarantined (no rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    results = tmp_path / "res"
    (results / "frames").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"path": f"{folder}/bad.tif", "reason": "file is empty",
         "error_type": "EmptyFileError", "attempts": 1}]), results / "quarantine.parquet")
    return results


@pytest.mark.parametrize(("folder", "shown"), [
    ("/acq/tomo2", "bad.tif"),
    # a Gatan time tree's files share their names: three read "Frame_0001.tif" each
    ("/acq/tt/Hour_00/Minute_00/Second_01", "Hour_00/Minute_00/Second_01/bad.tif")])
def test_a_folder_with_quarantined_files_only_shows_no_chart(tmp_path, serve, folder, shown):
    """Its page showed an empty contact-angle chart and a "latest frame" advising to switch
    overlays on, whatever the folder held (a tomogram folder's first file quarantined). A
    quarantined file is named by its path in the acquisition."""
    require_browser()
    results = _quarantined_only(tmp_path, folder)
    url = serve(results)
    with Browser(1024, 700) as browser:
        browser.get(f"{url}/")
        wait_for(lambda: browser.text("#qcount") == "(1)", 30, "the quarantined file")
        assert browser.execute("return [document.getElementById('insitu').hidden, "
                               "document.getElementById('tomo').hidden]") == [True, True]
        assert shown in browser.text("#quarantine")


def test_the_page_follows_its_folder_when_its_first_rows_arrive(tmp_path, serve):
    """A folder whose first file was quarantined is listed with no rows (kind "unknown");
    its rows arriving give it another ID, and its open page said "No acquisition … in these
    results" until the user picked it from the list. The page follows the folder."""
    require_browser()
    results = _quarantined_only(tmp_path, "/acq/run3")
    url = serve(results)
    with Browser(1024, 700) as browser:
        browser.get(f"{url}/")
        wait_for(lambda: browser.text("#qcount") == "(1)", 30, "the quarantined file")
        first = browser.execute("return location.search")
        rows = frame_rows("/acq/run3", [100.0, 101.0])
        for row in rows:  # as the service writes them: the series of a model and version
            row.update(model_sha256="ab" * 32, measurement_version="2.2")
        write(results, "frames-1.parquet", rows)
        # read in one script call: the page reloads to follow its folder, and an element
        # found before the reload is stale when its attribute is asked for after it
        points = ("const c = document.getElementById('chart'); "
                  "return c ? c.getAttribute('data-points') : null")

        def shown() -> str | None:
            try:
                return browser.execute(points)
            except RuntimeError:  # a script sent while the page unloads
                return None

        wait_for(lambda: shown() == "2", 30, "the rows")
        assert browser.execute("return location.search") != first
        assert not browser.displayed("#missing")
        assert browser.text("#folder") == "/acq/run3" and browser.text("#qcount") == "(1)"
