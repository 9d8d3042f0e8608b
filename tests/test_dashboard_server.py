"""The dashboard server in-process (a real uvicorn thread on a free port): tomogram pages,
the results-file route, and the supervisor restarting a crashed server."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from dashkit import get, get_json, wait_for
from test_dashboard_data import frame_rows, write

from nwwatch.dashboard.server import DashboardThread
from nwwatch.dashboard.settings import DashboardConfig


class Log:
    """Collects structured log calls: (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []
        self.changed = threading.Event()

    def __getattr__(self, level):
        def record(event, **fields):
            self.events.append((level, event, fields))
            self.changed.set()
        return record

    def wait(self, event: str, count: int = 1, timeout: float = 30.0) -> dict:
        wait_for(lambda: sum(e == event for _, e, _ in self.events) >= count, timeout, event)
        return [f for _, e, f in self.events if e == event][count - 1]


@pytest.fixture()
def served(tmp_path):
    from nwwatch.io import write_volume_tiff

    results = tmp_path / "res"
    mask = np.zeros((6, 20, 30), np.uint8)
    mask[:, 5:15, 5:25] = 1
    (results / "masks").mkdir(parents=True)
    write_volume_tiff(results / "masks" / "v.tif", mask)
    processed = frame_rows("/x", [1.0])[0]["processed_at"]
    write(results, "volumes-1.parquet", [{
        "source": "/acq/tomo/v.tif", "status": "ok", "reason": "", "mask_path": "masks/v.tif",
        "solid_fraction": 0.33, "processed_at": processed, "model_name": "t",
        "provider": "CPUExecutionProvider"}], kind="volumes")
    rows = frame_rows("/acq/run1", [100.0])
    rows[0]["overlay_path"] = "overlays/f0000.png"
    write(results, "frames-1.parquet", rows)
    (results / "overlays").mkdir()
    (results / "overlays" / "f0000.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    log = Log()
    thread = DashboardThread(results, None, DashboardConfig(port=0), log, live=False)
    thread.start()
    url = log.wait("dashboard_listening")["url"].rstrip("/")
    yield url, log, thread
    thread.stop()
    log.wait("dashboard_stopped", timeout=5)  # stop() returns with the thread done


def test_tomogram_rows_and_mask_slices(served):
    url, log, _ = served
    acqs = {a["folder"]: a for a in get_json(f"{url}/api/acquisitions")["acquisitions"]}
    tomo = acqs["/acq/tomo"]
    assert tomo["kind"] == "tomogram" and tomo["n"] == 1
    data = get_json(f"{url}/api/acquisitions/{tomo['id']}/series")
    assert data["volumes"][0]["solid_fraction"] == 0.33
    status, png = get(f"{url}/api/acquisitions/{tomo['id']}/mask/0.png")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    import cv2

    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert picture.shape == (20, 30 + 4 + 30 + 4 + 20)  # z | y | x slices, 4-px gaps
    assert get(f"{url}/api/acquisitions/{tomo['id']}/mask/1.png")[0] == 404
    assert get(f"{url}/api/acquisitions/nope/series")[0] == 404


def test_results_route_serves_overlays_only(served):
    url, log, _ = served
    acqs = {a["folder"]: a for a in get_json(f"{url}/api/acquisitions")["acquisitions"]}
    data = get_json(f"{url}/api/acquisitions/{acqs['/acq/run1']['id']}/series")
    assert data["latest_overlay"] == "overlays/f0000.png"
    status, body = get(f"{url}/results/overlays/f0000.png")
    assert status == 200 and body.startswith(b"\x89PNG")
    assert get(f"{url}/results/frames/frames-1.parquet")[0] == 404  # not an image
    assert get(f"{url}/results/%2e%2e/%2e%2e/etc/passwd")[0] == 404
    assert get(f"{url}/")[0] == 200 and get(f"{url}/static/uPlot.iife.min.js")[0] == 200


def test_the_latest_frame_panel_gets_a_scaled_copy_of_a_large_overlay(served, tmp_path):
    """The panel loaded the full-size overlay whenever the latest frame changed: 3-6 MB of
    PNG for a 2048² frame, 22 MB for a 4096² one, shown a few hundred pixels wide."""
    import cv2

    url, _, _ = served
    results = tmp_path / "res"
    rng = np.random.default_rng(0)
    # a 2048² frame's overlay: the noisy frame above a caption band, as draw_overlay makes it
    picture = np.repeat(rng.integers(0, 256, (2552, 2048, 1), dtype=np.uint8), 3, axis=2)
    ok, png = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    (results / "overlays" / "big.png").write_bytes(png.tobytes())
    status, full = get(f"{url}/results/overlays/big.png")
    assert status == 200 and full == png.tobytes()  # the link: the file as written
    status, small = get(f"{url}/results/overlays/big.png?max_px=512")
    assert status == 200 and small[:3] == b"\xff\xd8\xff"  # JPEG
    decoded = cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (512, 411, 3)
    assert len(small) < len(full) / 20
    # a picture no larger than asked for, or one that cannot be decoded: the file itself
    assert get(f"{url}/results/overlays/big.png?max_px=4096") == (200, png.tobytes())
    assert get(f"{url}/results/overlays/f0000.png?max_px=256") == (
        200, b"\x89PNG\r\n\x1a\nfake")
    for bad in ("0", "abc", "100000"):
        status, body = get(f"{url}/results/overlays/big.png?max_px={bad}")
        assert status == 400 and b"max_px" in body
    assert get(f"{url}/results/frames/frames-1.parquet?max_px=512")[0] == 404


def test_a_crashing_server_is_logged_and_started_again(tmp_path, monkeypatch):
    import nwwatch.dashboard.app as app_module

    real = app_module.create_app
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom while building the app")
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "create_app", flaky)
    log = Log()
    thread = DashboardThread(tmp_path, None, DashboardConfig(port=0), log, live=False)
    thread.start()
    try:
        crash = log.wait("dashboard_crashed")
        assert "boom" in crash["error"] and crash["restart_in_s"] == 1.0
        assert crash["exc_info"] is not None  # the traceback goes to the log
        url = log.wait("dashboard_listening")["url"].rstrip("/")
        assert get_json(f"{url}/api/acquisitions")["acquisitions"] == []
        assert thread.crashes == 1
    finally:
        thread.stop()


def test_a_port_in_use_is_logged_as_a_setting_to_change_without_a_traceback(tmp_path):
    """`[dashboard] listen` on a port another program holds: each retry logged a full
    traceback (the bind's own frames) and did not say which setting to change."""
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    log = Log()
    thread = DashboardThread(tmp_path, None, DashboardConfig(port=port), log, live=False)
    thread.start()
    try:
        crash = log.wait("dashboard_crashed")
        assert "in use" in crash["error"] and crash.get("exc_info") is None
        assert f"127.0.0.1:{port}" in crash["hint"] and "[dashboard] listen" in crash["hint"]
    finally:
        thread.stop()
        blocker.close()


def test_events_of_an_unknown_acquisition_is_a_404_naming_it(served):
    """The events stream of an acquisition the results do not hold answered 200 and sent
    ``status`` events with a null summary for ever."""
    url, _, _ = served
    status, body = get(f"{url}/api/acquisitions/nope/events", timeout=5)
    assert status == 404 and b"nope" in body, (status, body[:200])
    status, body = get(f"{url}/api/acquisitions/nope/series")
    assert status == 404 and b"nope" in body


def test_the_page_of_an_unknown_acquisition_says_so(served):
    """``/?a=UNKNOWN`` (an old bookmark, a replaced results folder) showed an empty page
    saying "reconnecting…" for ever."""
    from webdriver import Browser, require_browser

    require_browser()
    url, _, _ = served
    with Browser(1024, 700) as browser:
        browser.get(url + "/?a=nope")
        wait_for(lambda: browser.displayed("#missing"), 30, "the missing-acquisition note")
        assert "nope" in browser.text("#missing")
        assert "reconnecting" not in browser.text("#conn")


def test_dashboard_refuses_a_folder_that_is_not_a_results_folder(tmp_path, monkeypatch):
    """`nwwatch dashboard ACQ` (the acquisition folder, not the results) served an empty page
    saying "No committed results yet"; it is refused as `ledger rebuild` refuses it."""
    from click.testing import CliRunner

    import nwwatch.dashboard.server as server
    from nwwatch.cli import main

    served_folders = []
    monkeypatch.setattr(server, "serve", lambda results, *a, **k: served_folders.append(results))
    acq = tmp_path / "acq"
    acq.mkdir()
    (acq / "frame_00001.tif").write_bytes(b"not read")
    r = CliRunner().invoke(main, ["dashboard", str(acq)])
    assert r.exit_code == 1 and f"{acq}: not a results folder" in r.output, r.output
    assert served_folders == []
    # a results folder with nothing committed yet (a service just started: its ledger) is fine
    res = tmp_path / "res"
    res.mkdir()
    (res / "ledger.sqlite").write_bytes(b"")
    assert CliRunner().invoke(main, ["dashboard", str(res)]).exit_code == 0
    assert served_folders == [res]


def test_dashboard_reads_the_ledger_the_results_are_kept_by(tmp_path, monkeypatch):
    """After `ledger rebuild RES --ledger OTHER` (or a moved [state] ledger) the dashboard of
    RES read RES/ledger.sqlite, left behind with counts stopped at that moment, without a
    word; it now reads the ledger recorded in RES/ledger.sqlite.elsewhere, and says so."""
    from click.testing import CliRunner

    import nwwatch.dashboard.server as server
    from nwwatch.cli import main
    from nwwatch.service.lock import elsewhere_path

    served = []
    monkeypatch.setattr(server, "serve", lambda results, ledger, *a, **k:
                        served.append((results, ledger)))
    res, other = tmp_path / "res", tmp_path / "state" / "ledger.sqlite"
    res.mkdir()
    other.parent.mkdir()
    (res / "ledger.sqlite").write_bytes(b"")  # the one left behind
    other.write_bytes(b"")
    elsewhere_path(res).write_text(f"{other}\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["dashboard", str(res)])
    assert r.exit_code == 0, r.output
    assert served == [(res, other)]
    assert f"the results are kept by the ledger {other}" in " ".join(r.output.split())
    r = CliRunner().invoke(main, ["dashboard", str(res), "--ledger", str(res / "ledger.sqlite")])
    assert served[-1] == (res, res / "ledger.sqlite")  # given by name: as given


def test_dashboard_refuses_a_ledger_that_does_not_exist(tmp_path):
    """`nwwatch dashboard RES --ledger TYPO` served the results without a word, the ledger's
    figures (files in flight) empty: a mistyped path is a usage error naming it."""
    import subprocess
    import sys

    from servicekit import REPO

    res = tmp_path / "res"
    write(res, "frames-1.parquet", frame_rows("/acq/run1", [100.0]))
    missing = tmp_path / "state" / "ledgr.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nwwatch", "dashboard", str(res), "--ledger", str(missing),
         "--listen", "127.0.0.1:0"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"served with a --ledger that does not exist: {out} {err}")
    assert proc.returncode == 2, (out, err)
    assert str(missing) in err and "does not exist" in err, err


def test_dashboard_on_a_port_in_use_says_so_and_how_to_get_a_free_one(tmp_path):
    """`nwwatch dashboard RES` with the port taken printed "[Errno 98] cannot listen on
    127.0.0.1:N: Address already in use": the errno is noise, and `nwwatch label` says what
    to do (a free port)."""
    import socket
    import subprocess
    import sys

    from servicekit import REPO

    res = tmp_path / "res"
    write(res, "frames-1.parquet", frame_rows("/acq/run1", [100.0]))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "nwwatch", "dashboard", str(res), "--listen",
                            f"127.0.0.1:{port}"], cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert r.returncode == 1, r
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
    assert "Errno" not in r.stderr and "--listen 127.0.0.1:0" in r.stderr, r.stderr


def test_a_port_the_system_picks_is_logged_at_every_logging_level(tmp_path):
    """`listen = "127.0.0.1:0"` with `[logging] level = "warning"`: the port chosen was logged
    at info level only, so it was nowhere."""
    import re

    from servicekit import DaemonProcess, model, write_config

    acq = tmp_path / "acq"
    acq.mkdir()
    extra = '[dashboard]\nlisten = "127.0.0.1:0"\n[logging]\nlevel = "warning"\n'
    cfg = write_config(tmp_path / "c.toml", acq, tmp_path / "res", model(tmp_path), extra=extra)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        url = daemon.wait_event("dashboard_listening", 60)["url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and not url.endswith(":0/")
        assert all(e.get("level") != "info" for e in daemon.events())
    finally:
        daemon.terminate()


def test_an_overlay_under_a_results_folder_not_named_in_utf8_is_found(tmp_path):
    # the row's text of the overlay (\xNN) joined to a folder whose own name is not UTF-8:
    # before, an UnicodeEncodeError (500) instead of the picture
    import os

    from nwwatch.pathtext import path_of_text, path_text

    root = tmp_path / os.fsdecode(b"res\xff")
    folder = root / os.fsdecode(b"ov\xe9")
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"png")
    rel = path_text(os.fsdecode(b"ov\xe9/a.png"))
    assert rel == "ov\\xe9/a.png"
    assert path_of_text(str(root / rel)) == str(folder / "a.png")


def test_mask_slices_show_the_voxels_true_aspect():
    """A volume of 2 nm slices and 0.5 nm pixels was drawn voxel for pixel: its grain four
    times flatter in the y and x slices than it is."""
    from nwwatch.dashboard.masks import mask_slices

    mask = np.zeros((4, 8, 8), np.uint8)
    mask[1:3, 2:6, 2:6] = 1
    plain = mask_slices(mask)
    assert plain.shape == (8, 8 + 4 + 8 + 4 + 8)
    true = mask_slices(mask, (2.0, 0.5, 0.5))
    assert true.shape == (16, 8 + 4 + 8 + 4 + 8)  # the z and x slices 4 x 8 -> 16 x 8
    assert (true[:, 12:20] == 255).sum() == 8 * 4  # 2 slices x 4 columns -> 8 rows x 4
    # no stretch without a size, and at most MAX_STRETCH times
    assert mask_slices(mask, (1000.0, 0.5, 0.5)).shape[0] == 4 * 16


def test_a_new_folder_of_quarantined_files_only_is_listed_first(tmp_path):
    """The side bar lists acquisitions newest first, by their newest row: a new folder whose
    files were all quarantined (no row) came last, below folders finished hours before. The
    newest of a folder's rows and quarantined files orders it."""
    from datetime import timedelta

    from dashkit import dashboard_thread
    from test_dashboard_data import T0

    from nwwatch.results.quarantine import write_quarantine

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/old", [100.0], processed=T0))
    write(results, "frames-2.parquet", frame_rows("/acq/later", [100.0],
                                                  processed=T0 + timedelta(seconds=60)))

    def quarantined(path: str, seconds: float) -> dict:
        return {"path": path, "sha256": None, "reason": "file is empty",
                "error_type": "EmptyFileError", "attempts": 1,
                "quarantined_at": (T0 + timedelta(seconds=seconds)).timestamp()}

    write_quarantine([quarantined("/acq/new/bad.tif", 120)], results)
    with dashboard_thread(results) as (_, url):
        listed = [a["folder"] for a in get_json(f"{url}/api/acquisitions")["acquisitions"]]
        assert listed == ["/acq/new", "/acq/later", "/acq/old"], listed
        # a folder with rows whose file was quarantined since: by that time
        write_quarantine([quarantined("/acq/new/bad.tif", 120),
                          quarantined("/acq/old/bad.tif", 180)], results)
        listed = [a["folder"] for a in get_json(f"{url}/api/acquisitions")["acquisitions"]]
        assert listed == ["/acq/old", "/acq/new", "/acq/later"], listed


def test_a_quarantine_never_lifts_an_older_models_series_above_the_current_one(tmp_path):
    """A folder processed again with a new model is one side-bar entry per model, each with
    the folder's quarantine list: a file quarantined since gave the old model's series the
    new one's place, and the page, which opens the first entry, opened the old model's rows.
    The quarantine orders the folder's newest series only: the current model's comes first,
    and the old one stays below folders processed after it."""
    from datetime import timedelta

    from dashkit import dashboard_thread
    from test_dashboard_data import T0

    from nwwatch.results.quarantine import write_quarantine

    results = tmp_path / "res"
    for name, model, hours, angles in (("frames-1.parquet", "old", 0, [100.0, 101.0]),
                                       ("frames-2.parquet", "new", 20, [110.0, 111.0])):
        rows = frame_rows("/acq/x", angles, processed=T0 + timedelta(hours=hours))
        for r in rows:
            r["model_name"], r["model_sha256"] = model, model[0] * 64
        write(results, name, rows)
    write(results, "frames-3.parquet", frame_rows("/acq/y", [100.0],
                                                  processed=T0 + timedelta(hours=10)))

    def listed(url: str) -> list[tuple[str, str]]:
        return [(a["folder"], a["model"])
                for a in get_json(f"{url}/api/acquisitions")["acquisitions"]]

    with dashboard_thread(results) as (_, url):
        assert listed(url) == [("/acq/x", "new"), ("/acq/y", "m"), ("/acq/x", "old")]
        write_quarantine([{"path": "/acq/x/bad.tif", "sha256": None, "reason": "file is empty",
                           "error_type": "EmptyFileError", "attempts": 1,
                           "quarantined_at": (T0 + timedelta(hours=21)).timestamp()}],
                         results)
        assert listed(url) == [("/acq/x", "new"), ("/acq/y", "m"), ("/acq/x", "old")]
