"""The dashboard and /metrics against the real service (a child process with a tiny ONNX
model): frames arrive, the metrics count them, the data endpoint returns the series, server-
sent events deliver new rows and catch a reconnecting client up, a real headless browser
draws the chart, and a dashboard that cannot start does not stop processing.

The browser is Debian's chromium driven by its chromedriver through the stdlib client
``tests/webdriver.py``; the browser tests fail (naming ``make browser``) when they are missing."""

from __future__ import annotations

import re
import shutil
import socket

import numpy as np
import pytest
from dashkit import (
    EventStream,
    dashboard_url,
    get,
    get_json,
    serve_results,
    start_service,
    wait_for,
    write_frames,
)
from servicekit import frames_table, wait_rows
from webdriver import Browser, require_browser

# A droplet whose contact angle drifts from 100 to 130 degrees with some scatter; every
# seventh frame is background only (refused).
_rng = np.random.default_rng(3)
ANGLES = [None if k % 7 == 3 else round(100 + k + float(_rng.normal(0, 2.5)), 1)
          for k in range(30)]
N_VALID = sum(a is not None for a in ANGLES)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    acq, res = tmp / "acq" / "run1", tmp / "res"
    acq.mkdir(parents=True)
    daemon = start_service(tmp, acq, res)
    try:
        url = dashboard_url(daemon)
        daemon.wait_event("ready")
        write_frames(acq, ANGLES)
        (acq / "empty.tif").write_bytes(b"")  # quarantined
        wait_rows(res, len(ANGLES), proc=daemon)
        daemon.wait_event("file_quarantined")
        yield daemon, url, acq, res
    finally:
        code, _ = daemon.terminate()
        assert code == 0


def code_of_refused(res) -> str:
    """The reason code of the refused frames as stored (reason_code, else status)."""
    table = frames_table(res)
    refused = table[~table["angle_valid"]].iloc[0]
    return refused["reason_code"] if "reason_code" in table.columns else refused["status"]


def _acquisition(url: str) -> dict:
    acqs = get_json(f"{url}/api/acquisitions")["acquisitions"]
    assert len(acqs) == 1, acqs
    return acqs[0]


def test_metrics_count_the_frames(live):
    daemon, url, acq, res = live

    def counted():
        status, body = get(f"{url}/metrics")
        assert status == 200
        text = body.decode()
        values = dict(re.findall(r'^nwwatch_frames_processed_total\{outcome="(\w+)"\} (\S+)$',
                                 text, re.M))
        ok = {k: float(v) for k, v in values.items()} == {
            "ok": N_VALID, "flagged": len(ANGLES) - N_VALID, "quarantined": 1.0}
        return text if ok else None

    text = wait_for(counted, what="metrics counting the frames")
    for name in ("nwwatch_stage_seconds_bucket", "nwwatch_file_latency_seconds_count",
                 "nwwatch_queue_depth_files", "nwwatch_in_flight_frames",
                 "nwwatch_last_frame_processed_timestamp_seconds"):
        assert re.search(rf"^{name}\b", text, re.M), name
    for stage in ("read", "segment", "measure", "confidence", "write"):
        count = re.search(rf'^nwwatch_stage_seconds_count\{{kind="insitu",stage="{stage}"\}} '
                          r'(\S+)$', text, re.M)
        assert count and float(count.group(1)) > 0, stage
    assert re.search(r'^nwwatch_model_info\{.*name="model".*provider="CPUExecutionProvider"'
                     r'.*\} 1\.0$', text, re.M)
    assert "frame_0" not in text and "empty.tif" not in text and str(acq) not in text


def test_data_endpoint_returns_the_series(live):
    daemon, url, acq, res = live
    a = _acquisition(url)
    assert a["folder"] == str(acq) and a["kind"] == "insitu" and a["n"] == len(ANGLES)
    assert a["quarantined"] == 1 and a["stats"]["n_valid"] == N_VALID
    # The refused frame is named by its reason code (reason_code where the rows have that
    # column, else status), whatever code the measurement gave it.
    code = code_of_refused(res)
    assert a["stats"]["refused"] == {code: len(ANGLES) - N_VALID}
    data = get_json(f"{url}/api/acquisitions/{a['id']}/series")
    rows = data["rows"]
    assert rows["valid"] == [x is not None for x in ANGLES]
    stored = frames_table(res).sort_values("acquired_at")
    for got, want in zip(rows["angle"], stored["contact_angle_deg"], strict=True):
        assert (got is None) if np.isnan(want) else got == pytest.approx(want)
    assert np.nanmedian(np.array(rows["angle"], float)) == pytest.approx(
        a["stats"]["median_deg"])
    assert rows["code"][3] == code and rows["t"] == sorted(rows["t"])
    assert data["quarantined"][0]["path"].endswith("empty.tif")
    assert data["quarantined"][0]["gone"] is False  # still there: not "deleted since"
    assert data["live"]["live"] and data["live"]["models"][0]["provider"]
    # Nothing after the cursor: no rows.
    again = get_json(f"{url}/api/acquisitions/{a['id']}/series?since={data['cursor']}")
    assert not again["reset"] and again["rows"]["t"] == []


# Pixels of the valid points' colour (#1f5fbf) on the chart's canvas.
_COUNT_POINT_PIXELS = """
const c = document.querySelector('#chart canvas');
const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < px.length; i += 4) {
  if (Math.abs(px[i] - 31) < 30 && Math.abs(px[i + 1] - 95) < 30
      && Math.abs(px[i + 2] - 191) < 30 && px[i + 3] > 200) n++;
}
return n;
"""


def test_page_in_a_real_browser_draws_the_points(live):
    require_browser()
    daemon, url, acq, res = live
    with Browser(1280, 1000) as browser:
        browser.get(url + "/")
        n_valid = N_VALID
        wait_for(lambda: int(browser.attribute("#chart", "data-points") or 0) >= n_valid, 30,
                 "points in the chart")
        assert int(browser.attribute("#chart", "data-refused")) >= 1
        # uPlot drew them: a finite time axis and pixels of the valid points' colour.
        x_range = browser.execute("return [nwPlot.scales.x.min, nwPlot.scales.x.max]")
        assert None not in x_range and x_range[0] < x_range[1]
        blue = browser.execute(_COUNT_POINT_PIXELS)
        assert blue > 8 * n_valid, blue  # a 6-px point covers about 18 px of its colour
        legend = browser.text("#legend")
        assert re.search(rf"{code_of_refused(res)}: \d+", legend), legend
        assert "empty.tif" in browser.text("#quarantine")
        # the service's latency and queue are of every watched folder, and say so
        cards = browser.text("#cards")
        assert "latency p50 / p95 (all folders)" in cards, cards
        assert "queue / in flight (all folders)" in cards, cards


def test_events_push_new_rows_and_catch_up_after_reconnect(live):
    daemon, url, acq, res = live
    a = _acquisition(url)
    stream = EventStream(url, f"/api/acquisitions/{a['id']}/events")
    first = stream.next_event()
    assert first["data"]["reset"] and len(first["data"]["rows"]["t"]) == a["n"]
    cursor = first["id"]
    write_frames(acq, [125.0], start=100)
    update = stream.next_event()
    assert update["data"]["rows"]["source"] == ["frame_0100.tif"]
    stream.close()
    # A client that was away while two more frames came sends its last id: it gets only those.
    write_frames(acq, [130.0, None], start=101)
    wait_rows(res, a["n"] + 3, proc=daemon)
    back = EventStream(url, f"/api/acquisitions/{a['id']}/events", last_event_id=update["id"])
    missed = back.next_event()["data"]
    back.close()
    assert not missed["reset"]
    assert sorted(missed["rows"]["source"]) == ["frame_0101.tif", "frame_0102.tif"]
    assert update["id"] != cursor


def test_dashboard_that_cannot_start_does_not_stop_processing_and_warns_when_stale(tmp_path):
    require_browser()  # the banner is checked on the page
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    daemon = start_service(tmp_path, acq, res, listen=f"127.0.0.1:{port}", stale_after_s=3)
    try:
        crash = daemon.wait_event("dashboard_crashed")
        assert "address" in crash["error"].lower() or "in use" in crash["error"].lower()
        write_frames(acq, [110.0])
        wait_rows(res, 1, proc=daemon)  # processing goes on
        write_frames(acq, [120.0], start=1)
        wait_rows(res, 2, proc=daemon)  # a second commit: the acquisition looks active
        blocker.close()  # the port is free again: the next restart serves
        url = dashboard_url(daemon)
        assert url.endswith(f":{port}")
        acqs = wait_for(lambda: get_json(f"{url}/api/acquisitions")["acquisitions"], 20,
                        "the restarted dashboard serving the rows")
        # No new file for stale_after_s = 3 s: the warning, on the page too; a new frame ends it.
        wait_for(lambda: get_json(f"{url}/api/acquisitions")["acquisitions"][0]["stale"], 30,
                 "the stale warning")
        with Browser(1280, 1000) as browser:
            browser.get(url + "/")
            wait_for(lambda: browser.displayed("#stale"), 30, "the banner on the page")
            assert "No new file" in browser.text("#stale")
            write_frames(acq, [125.0], start=2)
            wait_for(lambda: not browser.displayed("#stale"), 30, "the banner going away")
        wait_for(lambda: not get_json(f"{url}/api/acquisitions")["acquisitions"][0]["stale"],
                 30, "the warning ending with a new frame")
        # An open event stream does not hold up SIGTERM (the service's stop limit is 10 s).
        stream = EventStream(url, f"/api/acquisitions/{acqs[0]['id']}/events")
        stream.next_event()
    finally:
        blocker.close()
        code, seconds = daemon.terminate()
    # exit 0: stopped cleanly (terminate() fails past its own 10 s)
    assert code == 0, seconds
    stream.close()


def test_a_storage_pause_is_on_the_page_not_a_stale_warning(tmp_path):
    """Results that cannot be written (a full disk: processing paused, /metrics
    ``nwwatch_storage_paused`` 1) never showed on the dashboard, and after ``stale_after_s``
    the page asked whether the microscope was still writing. The page says that results
    cannot be written, with the error the service logged, and no stale warning while the
    pause lasts; the banner goes once the service writes again."""
    import resource
    import time

    from servicekit import DaemonProcess, model, write_config

    require_browser()
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2,
                       extra='backoff_seconds = 0.5\n[dashboard]\nlisten = "127.0.0.1:0"\n'
                             "stale_after_s = 2")
    daemon = DaemonProcess(cfg, tmp_path / "log", pipe=True)  # its log is not limited
    _, hard = resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE)
    try:
        url = dashboard_url(daemon)
        write_frames(acq, [110.0])
        wait_rows(res, 1, proc=daemon)
        write_frames(acq, [112.0], start=1)
        wait_rows(res, 2, proc=daemon)  # two commits: the acquisition looks active
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (1, hard))  # "disk full"
        write_frames(acq, [114.0], start=2)
        error = daemon.wait_event("storage_paused")["error"]
        paused = wait_for(lambda: get_json(f"{url}/api/acquisitions")["live"]
                          .get("storage_paused"), 30, "the pause in the live figures")
        assert paused["reason"] == error
        time.sleep(3.0)  # past stale_after_s + flush_seconds since the newest row
        # neither stale nor behind: the file waits (back in the queue) because nothing can
        # be written, which the page says
        summary = _acquisition(url)
        assert not summary["stale"] and not summary["behind"], summary
        with Browser(1280, 1000) as browser:
            browser.get(url + "/")
            wait_for(lambda: browser.displayed("#paused"), 30, "the banner")
            text = browser.text("#paused")
            assert "Results cannot be written" in text and error in text, text
            wait_for(lambda: browser.text("#conn") == "connected", 30, "the stream")
            time.sleep(1.0)
            assert not browser.displayed("#stale")
            resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
            daemon.wait_event("storage_resumed")
            wait_rows(res, 3, proc=daemon)
            wait_for(lambda: not browser.displayed("#paused"), 30, "the banner going away")
    finally:
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        code, _ = daemon.terminate()
    assert code == 0


def test_files_waiting_behind_another_folders_burst_are_no_stale_warning(tmp_path):
    """A burst of files into another folder held this acquisition's next file in the queue,
    and after ``stale_after_s`` the page asked whether the microscope was still writing. Its
    files are seen and waiting: the page says the service is behind, and how many of the
    acquisition's files wait. (The burst's batch is made to hang, so that the backlog stays
    for as long as the test looks.)"""
    import time

    from servicekit import DaemonProcess, model, wait_batch_claimed, write_config

    require_browser()
    watch = tmp_path / "acq"
    run_e, run_f = watch / "runE", watch / "runF"
    run_e.mkdir(parents=True)
    run_f.mkdir()
    res = tmp_path / "res"
    # batches wait up to 1 s for more files: the burst and runE's file are queued together,
    # one batch
    cfg = write_config(tmp_path / "c.toml", watch, res, model(tmp_path), settle=0.2,
                       batch_size=8, latency_ms=1000, extra='[dashboard]\nlisten = "127.0.0.1:0"\n'
                       'stale_after_s = 2\n[service]\nstop_timeout_seconds = 1')
    daemon = DaemonProcess(cfg, tmp_path / "log", env={"NWWATCH_CRASH_AT": "in_batch:3"})
    try:
        url = dashboard_url(daemon)
        write_frames(run_e, [110.0])
        wait_rows(res, 1, proc=daemon)
        write_frames(run_e, [112.0], start=1)
        wait_rows(res, 2, proc=daemon)  # two commits: runE looks active
        write_frames(run_e, [114.0], start=2)
        write_frames(run_f, [100.0] * 4)  # the burst
        wait_batch_claimed(res)
        time.sleep(3.0)  # past stale_after_s + flush_seconds since runE's newest row
        (summary,) = get_json(f"{url}/api/acquisitions")["acquisitions"]
        assert summary["folder"] == str(run_e), summary
        assert not summary["stale"] and summary["behind"], summary
        assert summary["waiting_files"] == 1, summary
        with Browser(1280, 1000) as browser:
            browser.get(f"{url}/?a={summary['id']}")
            wait_for(lambda: browser.displayed("#stale"), 30, "the banner")
            text = browser.text("#stale")
            # runE's file is in the batch with the burst: the folder's count holds the
            # batch, and says so; the figures of all folders say where the files are (the
            # banner said "1 of its files waits …" beside "files waiting in all folders: 0")
            assert ("1 of its files is waiting or in the batch being processed: the service "
                    "is behind (all folders: 0 files waiting, 5 frames in the batch being "
                    "processed)") in text, text
            assert "microscope" not in text, text
            assert "processing behind" in browser.text("#acqs")
    finally:
        code, _ = daemon.terminate()
    assert code == 1 and daemon.wait_event("stop_timeout")  # the batch made to hang


def test_a_file_that_arrives_while_another_folders_batch_runs_counts_at_once(tmp_path):
    """A file that arrived in this acquisition while a long batch of another folder ran (a
    tomogram, a big CPU batch) was counted only once the batch ended, when the service
    updates its queue: after ``stale_after_s`` the page asked whether the microscope was
    still writing. The files seen and not yet queued count live: the acquisition is behind.
    (The other folder's batch is made to hang: a batch longer than ``stale_after_s``.)"""
    import time

    from servicekit import DaemonProcess, model, wait_batch_claimed, write_config

    watch = tmp_path / "acq"
    run_e, run_f = watch / "runE", watch / "runF"
    run_e.mkdir(parents=True)
    run_f.mkdir()
    res = tmp_path / "res"
    cfg = write_config(tmp_path / "c.toml", watch, res, model(tmp_path), settle=0.2,
                       latency_ms=1000, extra='[dashboard]\nlisten = "127.0.0.1:0"\n'
                       'stale_after_s = 2\n[service]\nstop_timeout_seconds = 1')
    daemon = DaemonProcess(cfg, tmp_path / "log", env={"NWWATCH_CRASH_AT": "in_batch:3"})
    try:
        url = dashboard_url(daemon)
        write_frames(run_e, [110.0])
        wait_rows(res, 1, proc=daemon)
        write_frames(run_e, [112.0], start=1)
        wait_rows(res, 2, proc=daemon)  # two commits: runE looks active
        write_frames(run_f, [100.0] * 4)
        wait_batch_claimed(res)  # runF's batch, the long one
        write_frames(run_e, [114.0], start=2)  # arrives meanwhile
        time.sleep(3.0)  # past stale_after_s + flush_seconds since runE's newest row
        data = get_json(f"{url}/api/acquisitions")
        (summary,) = data["acquisitions"]
        assert summary["folder"] == str(run_e), summary
        assert not summary["stale"] and summary["behind"], summary
        assert summary["waiting_files"] == 1, summary
        # the figures of all folders count it too: waiting, beside the batch in flight
        assert data["live"]["queue_depth_files"] == 1, data["live"]
        assert data["live"]["in_flight_frames"] == 4, data["live"]
    finally:
        code, _ = daemon.terminate()
    assert code == 1 and daemon.wait_event("stop_timeout")  # the batch made to hang


def test_standalone_dashboard_serves_finished_results(live, tmp_path):
    """``nwwatch dashboard RESULTS`` on a copy of the results: the series, no /metrics."""
    daemon, url, acq, res = live
    copy = tmp_path / "res"
    shutil.copytree(res / "frames", copy / "frames")
    proc, base = serve_results(copy)
    try:
        a = wait_for(lambda: get_json(f"{base}/api/acquisitions")["acquisitions"], 20, "rows")
        assert a[0]["n"] >= len(ANGLES) and a[0]["stale"] is False
        assert get(f"{base}/metrics")[0] == 404
        assert get(f"{base}/results/../../etc/passwd")[0] == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_page_catches_up_after_the_server_was_away(tmp_path):
    """A real browser keeps the page open while the dashboard is stopped, rows are committed,
    and the dashboard starts again: the page shows the new points without being reloaded."""
    from test_dashboard_data import frame_rows, write

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows(str(tmp_path / "acq"), [100.0, 101.0, 102.0]))
    require_browser()
    proc, base = serve_results(results)
    try:
        with Browser(1280, 1000) as browser:
            browser.get(base + "/")
            wait_for(lambda: browser.attribute("#chart", "data-points") == "3", 30, "3 points")
            browser.execute("window.notReloaded = true")
            proc.terminate()
            proc.wait(timeout=10)
            wait_for(lambda: browser.text("#conn") in ("reconnecting…", "server not answering"),
                     30, "the page noticing the server is gone")
            write(results, "frames-2.parquet", frame_rows(str(tmp_path / "acq"),
                                                          [103.0, 104.0], start=3))
            proc, _ = serve_results(results, port=int(base.rsplit(":", 1)[1]))
            wait_for(lambda: browser.attribute("#chart", "data-points") == "5", 30,
                     "5 points")
            assert browser.execute("return window.notReloaded") is True
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rows_held_for_flush_seconds_do_not_raise_the_stale_warning(tmp_path):
    """Rows are written up to ``flush_seconds`` after they are processed: while frames keep
    arriving the newest row on disk may be that old. With flush_seconds (4 s) above
    stale_after_s (3 s) the warning came on between writes of a healthy acquisition (a frame
    a second); it now waits for stale_after_s + flush_seconds, and still comes once the
    frames stop."""
    import time

    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    daemon = start_service(tmp_path, acq, res, stale_after_s=3, flush_seconds=4)
    try:
        url = dashboard_url(daemon)
        seen = []
        for k in range(16):  # a frame a second; rows written every 4 s or so
            write_frames(acq, [110.0 + k % 5], start=k)
            for _ in range(4):
                listed = get_json(f"{url}/api/acquisitions")["acquisitions"]
                if listed and listed[0]["n"] >= 2:  # two commits: the acquisition is active
                    summary = listed[0]
                    seen.append((summary["n"], summary["stale"],
                                 round(time.time() - summary["last_processed"], 1)))
                time.sleep(0.25)
        assert not any(stale for _, stale, _ in seen), seen
        assert len({n for n, _, _ in seen}) >= 2, seen  # rows were written meanwhile
        wait_for(lambda: get_json(f"{url}/api/acquisitions")["acquisitions"][0]["stale"], 30,
                 "the stale warning once the frames stop")
    finally:
        code, _ = daemon.terminate()
    assert code == 0


def test_an_acquisition_that_stopped_before_a_restart_is_not_stale(tmp_path):
    """After a restart every acquisition that had once received frames showed "No new file"
    for good: the warning is for an acquisition that goes quiet while the service runs, and
    comes again for one that receives frames after the restart, then stops."""
    import time

    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    daemon = start_service(tmp_path, acq, res, stale_after_s=2)
    try:
        url = dashboard_url(daemon)
        write_frames(acq, [110.0])
        wait_rows(res, 1, proc=daemon)
        write_frames(acq, [112.0], start=1)
        wait_rows(res, 2, proc=daemon)  # two commits: active
        wait_for(lambda: get_json(f"{url}/api/acquisitions")["acquisitions"][0]["stale"], 30,
                 "the warning while the service runs")
    finally:
        code, _ = daemon.terminate()
    assert code == 0
    again = tmp_path / "again"  # its own log: the first run's URL is closed
    again.mkdir()
    daemon = start_service(again, acq, res, stale_after_s=2)
    try:
        url = dashboard_url(daemon)
        time.sleep(3.0)  # past stale_after_s
        (summary,) = get_json(f"{url}/api/acquisitions")["acquisitions"]
        assert summary["n"] == 2 and not summary["stale"], summary
        write_frames(acq, [114.0], start=2)
        wait_rows(res, 3, proc=daemon)
        write_frames(acq, [116.0], start=3)
        wait_rows(res, 4, proc=daemon)
        wait_for(lambda: get_json(f"{url}/api/acquisitions")["acquisitions"][0]["stale"], 30,
                 "the warning once the frames stop again")
    finally:
        code, _ = daemon.terminate()
    assert code == 0
