"""``nwwatch report``: a static page with the angle plot and statistics per acquisition, on
hand-made results (in-situ and tomogram) and on a replay's results."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from dashkit import write_frames
from servicekit import model
from test_dashboard_data import frame_rows, write

from nwwatch.cli import main
from nwwatch.dashboard.report import write_report


def _angle_figures(monkeypatch) -> list:
    """The matplotlib figures the report draws of each acquisition's angles, in order (the
    list fills as :func:`nwwatch.dashboard.plots.angle_figure` is called)."""
    import nwwatch.dashboard.plots as plots

    figures = []
    real = plots.angle_figure

    def spy(*args, **kwargs):
        figures.append(real(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(plots, "angle_figure", spy)
    return figures


def test_report_of_insitu_and_tomogram_folders(tmp_path):
    from nwwatch.io import write_volume_tiff

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0, None, 120.0, 130.0],
                                                  codes=[""] * 2 + ["no_droplet"] + [""] * 2))
    mask = np.zeros((8, 16, 16), np.uint8)
    mask[:, 4:12, 4:12] = 1
    (results / "masks").mkdir()
    write_volume_tiff(results / "masks" / "vol-1.tif", mask)
    write(results, "volumes-1.parquet", [{
        "source": "/acq/tomo/vol.tif", "status": "ok", "reason_code": "ok", "reason": "",
        "mask_path": "masks/vol-1.tif", "solid_fraction": 0.25, "pore_count": 0,
        "acquired_at": None, "processed_at": frame_rows("/x", [1.0])[0]["processed_at"],
        "model_name": "t", "provider": "CPUExecutionProvider"}, {
        "source": "/acq/tomo/vol2.tif", "status": "suspect", "reason_code": "method_unvalidated",
        "reason": "the labels held no patch out <for validation>", "solid_fraction": 0.5,
        "pore_count": 0, "acquired_at": None,
        "processed_at": frame_rows("/x", [1.0])[0]["processed_at"],
        "model_name": "t", "provider": "CPUExecutionProvider"}], kind="volumes")
    out = write_report(results, tmp_path / "out" / "report.html")
    page = out.read_text()
    # a suspect volume says why: its reason code and reason (escaped)
    assert ("<td>suspect</td><td>method_unvalidated</td>"
            "<td>the labels held no patch out &lt;for validation&gt;</td>") in page, page[-3000:]
    assert "/acq/run1" in page and "/acq/tomo" in page
    # n, valid, refused by reason, median, IQR, mean ± sd of 100, 110, 120, 130
    assert re.search(r"<td>5</td><td>4</td><td>no_droplet 1</td><td>115\.0°</td>"
                     r"<td>107\.5–122\.5°</td><td>115\.0 ± 12\.9°</td>", page), page[-2000:]
    assert "<td>0.250</td>" in page  # the volume row
    assert page.count("data:image/png;base64,") == 2  # angle plot + mask slices, embedded
    pngs = sorted(p.name for p in (tmp_path / "out" / "report_files").iterdir())
    assert len(pngs) == 2 and all(p.endswith(".png") for p in pngs)
    for p in (tmp_path / "out" / "report_files").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_on_replay_results_from_the_command_line(tmp_path):
    from nwwatch.service import replay

    acq = tmp_path / "acq" / "run7"
    acq.mkdir(parents=True)
    write_frames(acq, [105.0, 110.0, None, 115.0])
    replay(acq, tmp_path / "res", model=model(tmp_path))
    result = CliRunner().invoke(main, ["report", str(tmp_path / "res"), "--out",
                                       str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert str(acq) in page
    table = pq.read_table(tmp_path / "res" / "frames").to_pandas()
    median = float(np.median(table.loc[table["angle_valid"], "contact_angle_deg"]))
    assert f"<td>{median:.1f}°</td>" in page


def test_report_of_named_acquisitions_only(tmp_path):
    """``--acquisition`` (repeatable) limits the page to those folders: a results folder of
    a long run holds many, each a plot to draw; a folder with no results is an error naming
    those that have some, not an empty page."""
    from nwwatch.service import replay

    onnx = model(tmp_path)
    for k, name in enumerate(("run1", "run2", "run3")):
        acq = tmp_path / "acq" / name
        acq.mkdir(parents=True)
        write_frames(acq, [105.0 + k, 110.0 + k])  # other bytes: not skipped as done
        replay(acq, tmp_path / "res", model=onnx)
    out = tmp_path / "r.html"
    args = ["report", str(tmp_path / "res"), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--acquisition", str(tmp_path / "acq" / "run3"),
                                       "--acquisition", str(tmp_path / "acq" / "run1")])
    assert result.exit_code == 0, result.output
    headings = re.findall(r"<h2>([^<]*)</h2>", out.read_text())
    assert headings == [str(tmp_path / "acq" / "run1"), str(tmp_path / "acq" / "run3")]
    result = CliRunner().invoke(main, [*args, "--acquisition", str(tmp_path / "acq" / "run9")])
    assert result.exit_code == 1
    assert f"no results of acquisition {tmp_path / 'acq' / 'run9'}" in result.output
    assert str(tmp_path / "acq" / "run2") in result.output


def test_report_of_a_folder_named_like_a_time_tree_level(tmp_path):
    """Files directly in a folder named ``Hour_01`` are that folder's acquisition: naming it
    gives its page (it was read as a Gatan recording's hour, the folder above, and refused)."""
    from nwwatch.service import replay

    acq = tmp_path / "acq" / "Hour_01"
    acq.mkdir(parents=True)
    write_frames(acq, [105.0, 110.0])
    replay(acq, tmp_path / "res", model=model(tmp_path))
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(tmp_path / "res"), "--out", str(out),
                                       "--acquisition", str(acq)])
    assert result.exit_code == 0, result.output
    assert re.findall(r"<h2>([^<]*)</h2>", out.read_text()) == [str(acq)]


def test_report_without_results_or_matplotlib_says_why(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "no frames/, volumes/" in result.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "pip install 'nwwatch[report]'" in result.output


def test_report_on_an_empty_frames_folder_says_what_is_there(tmp_path):
    """A results folder whose frames/ exists but holds nothing yet (a service that has not
    flushed) was reported as "no frames/, volumes/ or quarantine.parquet here"."""
    (tmp_path / "res" / "frames").mkdir(parents=True)
    result = CliRunner().invoke(main, ["report", str(tmp_path / "res")])
    assert result.exit_code == 1
    assert "frames/ holds no results yet" in result.output, result.output
    assert "no frames/" not in result.output and "volumes/" not in result.output


def test_report_names_results_files_it_could_not_read(tmp_path):
    """A damaged results file was left out of the report silently (and when it was the only
    one the command said "no frames/, volumes/ or quarantine.parquet here", frames/ present);
    the dashboard's JSON did not say either."""
    from dashkit import get_json
    from test_dashboard_server import Log

    from nwwatch.dashboard.server import DashboardThread
    from nwwatch.dashboard.settings import DashboardConfig

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    write(results, "frames-2.parquet", frame_rows("/acq/run1", [120.0]))
    damaged = results / "frames" / "frames-2.parquet"
    damaged.write_bytes(damaged.read_bytes()[:200])
    page = write_report(results, tmp_path / "r.html").read_text()
    assert "could not be read" in page and "frames-2.parquet" in page
    log = Log()
    thread = DashboardThread(results, None, DashboardConfig(port=0), log, live=False)
    thread.start()
    try:
        url = log.wait("dashboard_listening")["url"].rstrip("/")
        body = get_json(f"{url}/api/acquisitions")
    finally:
        thread.stop()
    assert [p.endswith("frames-2.parquet") for p in body["unreadable_files"]] == [True]
    (results / "frames" / "frames-1.parquet").unlink()
    result = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path / "s.html")])
    assert result.exit_code == 1 and "could not be read" in result.output, result.output
    assert "frames-2.parquet" in result.output


def test_report_out_that_is_another_file_is_not_replaced(tmp_path):
    # before: `nwwatch report RES --out DATA/images/f.tif` wrote the page over the labelled
    # frame (exit 0); `measure --out` and `evaluate --json` refuse such a file
    from nwwatch.io import write_frame_tiff

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    frame = tmp_path / "DATA" / "images" / "f.tif"
    write_frame_tiff(frame, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    before = frame.read_bytes()
    result = CliRunner().invoke(main, ["report", str(results), "--out", str(frame)])
    assert result.exit_code == 2, result.output
    assert (f"Invalid value for '--out': {frame} exists and is not an nwwatch report; it is "
            "not replaced") in " ".join(result.output.split())
    assert frame.read_bytes() == before and not (frame.parent / "f_files").exists()
    page = tmp_path / "r.html"
    for _ in range(2):  # an earlier report is replaced
        result = CliRunner().invoke(main, ["report", str(results), "--out", str(page)])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("where", ["file-in-the-way", "proc"])
def test_report_out_that_cannot_be_written_is_a_usage_error_before_the_work(tmp_path, where,
                                                                            monkeypatch):
    # as measure, evaluate and train: exit 2 naming --out, before the results are read
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    import nwwatch.dashboard.report as report_module

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    out = a_file / "r.html" if where == "file-in-the-way" else Path("/proc") / "r.html"

    def no_work(*args, **kwargs):
        raise AssertionError("the report was made before --out was checked")

    monkeypatch.setattr(report_module, "write_report", no_work)
    result = CliRunner().invoke(main, ["report", str(results), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a usage error, no traceback
    assert "Invalid value for '--out'" in result.output and str(out) in result.output
    assert "Traceback" not in result.output and a_file.read_text() == "x"


def test_report_without_a_valid_angle_says_so(tmp_path):
    """With no valid angle the statistics cells read "—°", "—–—°" and "—°" (dashes glued to
    degree signs); they say "no valid angle" instead."""
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [None, None],
                                                  codes=["no_droplet"] * 2))
    page = write_report(results, tmp_path / "r.html").read_text()
    assert "—–—" not in page and "—°" not in page, page[-2000:]
    assert re.search(r"<td>2</td><td>0</td><td>no_droplet 2</td>"
                     r"(<td>no valid angle</td>){3}", page), page[-2000:]


def test_report_renders_in_a_browser_within_its_width_and_loads_nothing_else(tmp_path):
    """Headless Chromium opens the report as a file: no console error, every picture
    decoded, no request outside the file (its pictures are data: URLs), and no table wider
    than the page (the volume table's ten columns overflowed it: the whole page scrolled
    sideways)."""
    from webdriver import Browser, require_browser

    from nwwatch.io import write_volume_tiff

    require_browser()
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, None, 120.0]))
    mask = np.zeros((8, 16, 16), np.uint8)
    mask[:, 4:12, 4:12] = 1
    (results / "masks").mkdir()
    write_volume_tiff(results / "masks" / "vol-1.tif", mask)
    write(results, "volumes-1.parquet", [{
        "source": "/acq/tomo/a_rather_long_volume_file_name_from_the_microscope.tif",
        "status": "suspect", "reason_code": "method_unvalidated",
        "reason": "the labels held no patch out for validation", "mask_path": "masks/vol-1.tif",
        "solid_fraction": 0.25, "porosity_envelope": 0.5, "pore_count": 1234,
        "surface_area_nm2": 123456.789, "uncertain_fraction": 0.02,
        "threshold_agreement": 0.9, "acquired_at": None,
        "processed_at": frame_rows("/x", [1.0])[0]["processed_at"], "model_name": "t",
        "provider": "CPUExecutionProvider"}], kind="volumes")
    out = write_report(results, tmp_path / "report.html")
    with Browser(1280, 900, logs=True) as browser:
        browser.get(out.as_uri())
        browser.wait_for("return document.readyState === 'complete'", 30)
        images = browser.execute("return [...document.images].map(i => i.naturalWidth)")
        assert len(images) == 2 and all(w > 0 for w in images), images
        # a small volume's mask slices (here 56 px wide) are drawn large enough to see, as on
        # the dashboard, not at one screen pixel a voxel
        drawn = browser.execute("const r = document.querySelector('img[alt=\"mask slices\"]')"
                                ".getBoundingClientRect(); return [r.width, r.height]")
        assert drawn[1] >= 240, drawn
        width = browser.execute("return [document.documentElement.scrollWidth,"
                                " document.documentElement.clientWidth]")
        assert width[0] <= width[1], width
        assert [m for m in browser.console() if m["level"] in ("SEVERE", "WARNING")] == []
        outside = [u for u in browser.requested_urls()
                   if u != out.as_uri() and not u.startswith("data:")]
        assert outside == []


def test_report_counts_one_row_in_the_singular(tmp_path):
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/one", [100.0]))
    write(results, "frames-2.parquet", frame_rows("/acq/two", [100.0, 110.0]))
    page = write_report(results, tmp_path / "r.html").read_text()
    assert "insitu, 1 row;" in page and "insitu, 2 rows;" in page, page[-2000:]
    # one valid angle has no sd: "100.0 ± —°" read as a value with a missing digit
    assert "± —" not in page and "100.0° (one angle: no sd)" in page


def test_report_reads_again_when_files_are_compacted_away_while_it_reads(tmp_path,
                                                                         monkeypatch):
    """`nwwatch compact` (or the end of a backfill) replaces files while the report lists
    and reads them: the vanished files are neither "could not be read (damaged?)" nor rows
    missing from the report; it reads the folder again."""
    import pyarrow as pa

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    write(results, "frames-2.parquet", frame_rows("/acq/run1", [120.0], start=2))
    read_schema = pq.read_schema
    compacted = []

    def compaction_meanwhile(path, *args, **kwargs):
        if not compacted:  # as a compaction: the rows into a new file, the old files gone
            old = sorted((results / "frames").glob("frames-*.parquet"))
            rows = pa.concat_tables([pq.read_table(p) for p in old])
            pq.write_table(rows, results / "frames" / "frames-3-compact.parquet")
            for p in old:
                p.unlink()
            compacted.append(path)
        return read_schema(path, *args, **kwargs)

    monkeypatch.setattr(pq, "read_schema", compaction_meanwhile)
    page = write_report(results, tmp_path / "r.html").read_text()
    assert compacted and "could not be read" not in page, page[-2000:]
    assert re.search(r"<td>3</td><td>3</td><td>none</td>", page), page[-2000:]


def test_report_says_when_files_keep_vanishing_while_it_reads(tmp_path, monkeypatch):
    import nwwatch.dashboard.report as report_module

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    write(results, "frames-2.parquet", frame_rows("/acq/run1", [120.0], start=2))
    read_schema = pq.read_schema

    def always_gone(path, *args, **kwargs):
        if str(path).endswith("frames-2.parquet"):
            raise FileNotFoundError(path)
        return read_schema(path, *args, **kwargs)

    monkeypatch.setattr(pq, "read_schema", always_gone)
    monkeypatch.setattr(report_module, "_READ_TRIES", 2)
    page = write_report(results, tmp_path / "r.html").read_text()
    assert "1 results file(s) were replaced while this report read them" in page
    assert "could not be read" not in page


def test_report_lists_frames_without_an_acquisition_time_instead_of_crashing(tmp_path):
    """``acquired_at`` is nullable (rows of another writer, say): the report raised a
    ValueError (NaN time) drawing the plot. Such frames are counted in the statistics,
    listed under the plot, not drawn; a folder with no time at all gets no plot."""
    results = tmp_path / "res"
    rows = frame_rows("/acq/run1", [100.0, 110.0, None, 120.0])
    rows[1]["acquired_at"] = rows[2]["acquired_at"] = None
    untimed = frame_rows("/acq/run2", [105.0, None])
    for row in untimed:
        row["acquired_at"] = None
    write(results, "frames-1.parquet", rows + untimed)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(results), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    run1, run2 = page.split("<h2>/acq/run2</h2>")  # sections in folder order
    assert "2 frames without an acquisition time" in run1
    assert "f0001.tif (frame 0), f0002.tif (frame 0)" in run1
    # all four rows counted: n, valid, refused, median of 100, 110, 120
    assert re.search(r"<td>4</td><td>3</td><td>fit_failed 1</td><td>110\.0°</td>", run1)
    assert "08:00:00 – 08:00:03 UTC; 2 without" in run1
    assert "<td>no acquisition time; 2 without</td>" in run2
    assert run1.count("data:image/png;base64,") == 1 and "data:image/png" not in run2
    assert len(list((tmp_path / "r_files").iterdir())) == 1


def test_report_span_names_the_last_date_when_the_acquisition_crosses_midnight(tmp_path):
    """The span printed the last time without its date, so frames of 23:59 and of 00:01 the
    next day (or of different months) read as one day running backwards."""
    from datetime import timedelta

    results = tmp_path / "res"
    rows = frame_rows("/acq/night", [100.0, 110.0])
    rows[1]["acquired_at"] = rows[0]["acquired_at"] + timedelta(days=1, minutes=5)
    write(results, "frames-1.parquet", rows + frame_rows("/acq/day", [100.0, 110.0]))
    page = write_report(results, tmp_path / "r.html").read_text()
    night, day = page.split("<h2>/acq/night</h2>")[1], page.split("<h2>/acq/day</h2>")[1]
    first = rows[0]["acquired_at"]
    last = rows[1]["acquired_at"]
    assert f"{first:%Y-%m-%d %H:%M:%S} – {last:%Y-%m-%d %H:%M:%S} UTC" in night, night[:2000]
    assert f"{first:%Y-%m-%d %H:%M:%S} – {first + timedelta(seconds=1):%H:%M:%S} UTC" in day
    # frames within one second (a fast camera's burst) are told apart
    burst = frame_rows("/acq/burst", [100.0, 110.0])
    burst[1]["acquired_at"] = burst[0]["acquired_at"] + timedelta(milliseconds=700)
    write(results, "frames-2.parquet", burst)
    page = write_report(results, tmp_path / "r2.html").read_text()
    assert f"{first:%Y-%m-%d %H:%M:%S}.000 – {first:%H:%M:%S}.700 UTC" in \
        page.split("<h2>/acq/burst</h2>")[1], page[-2000:]
    # ... and so are those across a second's end (seconds cut 0.78 s to "one second")
    late = frame_rows("/acq/late", [100.0, 110.0])
    late[0]["acquired_at"] = first + timedelta(milliseconds=900)
    late[1]["acquired_at"] = first + timedelta(milliseconds=1680)
    write(results, "frames-3.parquet", late)
    page = write_report(results, tmp_path / "r3.html").read_text()
    assert f"{first:%Y-%m-%d %H:%M:%S}.900 – {first + timedelta(seconds=1):%H:%M:%S}.680 UTC" \
        in page.split("<h2>/acq/late</h2>")[1]
    # ... with the second date past midnight
    from datetime import UTC, datetime

    from nwwatch.dashboard.report import _span

    t0 = datetime(2026, 1, 1, 23, 59, 59, 500000, tzinfo=UTC).timestamp()
    assert _span(np.array([t0, t0 + 0.8])) == \
        "2026-01-01 23:59:59.500 – 2026-01-02 00:00:00.300 UTC"


def test_frames_of_one_time_are_said_to_be_drawn_at_one_time(tmp_path):
    # A stack without a time per page: every page has the file's time, and the plot drew
    # them on top of each other at one x, the span reading "08:00:00 – 08:00:00", unexplained.
    results = tmp_path / "res"
    rows = frame_rows("/acq/stack", [100.0, 110.0, None, 120.0])
    for k, row in enumerate(rows):
        row["acquired_at"], row["frame"] = rows[0]["acquired_at"], k
    write(results, "frames-1.parquet", rows + frame_rows("/acq/timed", [100.0, 110.0]))
    page = write_report(results, tmp_path / "r.html").read_text()
    stack, timed = page.split("<h2>/acq/timed</h2>")
    assert "4 frames share their acquisition time with others" in stack
    assert "share their acquisition time" not in timed


def test_a_report_of_tomograms_alone_does_not_speak_of_frames_and_angles(tmp_path):
    """The page's first paragraph said "Refused frames are named by their reason code; the
    trend is a rolling median of the valid angles" above a table of volumes."""
    results = tmp_path / "res"
    write(results, "volumes-1.parquet", [{
        "source": "/acq/tomo/vol.tif", "status": "suspect", "reason_code": "method_unvalidated",
        "reason": "the labels held no patch out", "solid_fraction": 0.5, "pore_count": 0,
        "acquired_at": None, "processed_at": frame_rows("/x", [1.0])[0]["processed_at"],
        "model_name": "t", "provider": "CPUExecutionProvider"}], kind="volumes")
    page = write_report(results, tmp_path / "report.html").read_text()
    assert "angle" not in page and "Refused frames" not in page
    assert "Suspect volumes are named by their reason code" in page
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    page = write_report(results, tmp_path / "report.html").read_text()
    assert "rolling median of the valid angles" in page
    assert "Suspect volumes are named by their reason code" in page


def test_a_mask_missing_or_unreadable_is_named_not_left_out(tmp_path):
    """A volume whose mask was deleted or damaged got no picture and no word on the page."""
    from nwwatch.io import write_volume_tiff

    results = tmp_path / "res"
    (results / "masks").mkdir(parents=True)
    mask = np.zeros((8, 16, 16), np.uint8)
    mask[:, 4:12, 4:12] = 1
    write_volume_tiff(results / "masks" / "good-1.tif", mask)
    (results / "masks" / "bad-1.tif").write_bytes(b"garbage")
    at = frame_rows("/x", [1.0])[0]["processed_at"]
    write(results, "volumes-1.parquet", [
        {"source": f"/acq/tomo/{name}.tif", "status": "ok", "reason_code": "ok", "reason": "",
         "mask_path": f"masks/{name}-1.tif", "solid_fraction": 0.25, "pore_count": 0,
         "acquired_at": None, "processed_at": at, "model_name": "t",
         "provider": "CPUExecutionProvider"} for name in ("good", "gone", "bad")],
        kind="volumes")
    page = write_report(results, tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "good.tif: central z, y, x slices of the mask" in page
    assert "gone.tif: its mask masks/gone-1.tif is missing in the results folder" in page
    assert "bad.tif: its mask masks/bad-1.tif is unreadable in the results folder" in page


def test_the_reports_trend_is_centred_on_each_frame(tmp_path, monkeypatch):
    """A finished acquisition's trend has no lag: on a steadily rising angle the report's
    rolling median is the angle itself away from the ends (the dashboard's causal median
    trails it by half a window)."""
    import nwwatch.dashboard.plots as plots

    drawn = {}
    real = plots.angle_figure

    def spy(series, title, *args, **kwargs):
        drawn["series"], drawn["title"] = series, title
        drawn["label"] = args[0] if args else kwargs.get("trend_label")
        return real(series, title, *args, **kwargs)

    monkeypatch.setattr(plots, "angle_figure", spy)
    angles = [100.0 + k for k in range(20)]
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", angles))
    write_report(results, tmp_path / "report.html")
    series = drawn["series"]
    assert np.array_equal(series["trend"][4:-4], series["angle"][4:-4])
    assert drawn["label"] == "rolling median of 9 valid, centred"
    # fewer valid angles than the window: the line is their median, said so (the legend
    # read "of 9 valid" over 5); the model in the title, a picture of one model's series
    write(results, "frames-1.parquet", frame_rows("/acq/run1", angles[:5]))
    write_report(results, tmp_path / "report2.html")
    assert drawn["label"] == "rolling median of 9 valid, centred (here 5: their median)"
    assert np.all(drawn["series"]["trend"] == np.median(angles[:5]))
    assert drawn["title"] == "/acq/run1 (m)"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", angles[:6]))
    write_report(results, tmp_path / "report3.html")  # 6: the ends' windows differ
    assert drawn["label"] == "rolling median of 9 valid, centred"
    assert len(set(drawn["series"]["trend"])) > 1


def test_the_reports_refused_frames_sit_in_a_lane_of_their_own_not_at_an_angle(tmp_path,
                                                                                monkeypatch):
    """Refused frames have no angle: the report draws them below the angle axes, in a lane
    labelled by reason code with no degree ticks, as the dashboard does; on the angle axis
    they sat at 70-100° and read as measured angles (every frame refused: at 72°)."""
    figures = _angle_figures(monkeypatch)
    results = tmp_path / "res"
    write(results, "frames-1.parquet",
          frame_rows("/acq/run1", [120.0, None, 125.0, None, 130.0],
                     codes=["", "no_droplet", "", "angle_uncertain", ""]))
    write(results, "frames-2.parquet",
          frame_rows("/acq/run2", [None] * 4, codes=["angle_uncertain"] * 4))
    write_report(results, tmp_path / "report.html")
    assert len(figures) == 2
    for fig in figures:
        angle_axes = [ax for ax in fig.axes if ax.get_ylabel() == "contact angle (°)"]
        assert len(angle_axes) == 1
        on_angle_axis = [line.get_label() for line in angle_axes[0].get_lines()]
        assert not any(label.startswith("refused") for label in on_angle_axis), on_angle_axis
        lanes = [ax for ax in fig.axes if ax.get_ylabel() == "refused"]
        assert len(lanes) == 1
        lane = lanes[0]
        drawn = {line.get_label().split(" (")[0].removeprefix("refused: "): len(line.get_xdata())
                 for line in lane.get_lines() if line.get_label().startswith("refused")}
        ticks = {t.get_text() for t in lane.get_yticklabels()}
        assert ticks == set(drawn), (ticks, drawn)  # codes, not degrees
    run1, run2 = figures
    lane1 = next(ax for ax in run1.axes if ax.get_ylabel() == "refused")
    assert {t.get_text() for t in lane1.get_yticklabels()} == {"angle_uncertain", "no_droplet"}
    assert run1.axes[0].get_ylim()[0] >= 100.0  # the angle axis spans the valid angles


def test_a_volume_without_voxel_size_shows_its_surface_area_in_pixels(tmp_path):
    # The table showed surface_area_nm2 only: "—" for a volume without a voxel size, whose
    # row holds surface_area_px2, read as no surface at all.
    results = tmp_path / "res"
    base = {"status": "ok", "reason_code": "ok", "reason": "", "mask_path": None,
            "solid_fraction": 0.25, "porosity_envelope": 0.5, "pore_count": 3,
            "uncertain_fraction": 0.02, "threshold_agreement": 0.9, "acquired_at": None,
            "processed_at": frame_rows("/x", [1.0])[0]["processed_at"], "model_name": "t",
            "provider": "CPUExecutionProvider"}
    write(results, "volumes-1.parquet", [
        {**base, "source": "/acq/tomo/calibrated.tif", "surface_area_nm2": 4321.5,
         "surface_area_px2": 1080.4},
        {**base, "source": "/acq/tomo/bare.tif", "surface_area_nm2": None,
         "surface_area_px2": 2222.25}], kind="volumes")
    page = write_report(results, tmp_path / "r.html").read_text()
    assert "<td>4321.5 nm²</td>" in page and "<td>2222.2 px²</td>" in page, page[-3000:]


@pytest.mark.parametrize("inside", ["frames", "frames/acquisition=x", "volumes"])
def test_report_out_inside_the_results_datasets_is_refused(tmp_path, inside):
    # before: `--out RES/frames/report.html` was written, and pd.read_parquet("RES/frames"),
    # as the README reads the results, then failed on the page ("Parquet magic bytes not found")
    import pandas as pd

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    out = results / inside / "report.html"
    result = CliRunner().invoke(main, ["report", str(results), "--out", str(out)])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"{out} is inside {results / inside.split('/')[0]}" in said
    assert f"--out {results / 'report.html'}" in said
    assert not out.exists() and not (out.parent / "report_files").exists()
    assert len(pd.read_parquet(results / "frames")) == 2
    beside = results / "report.html"  # inside RESULTS but beside its datasets: fine
    result = CliRunner().invoke(main, ["report", str(results), "--out", str(beside)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(results / "frames")) == 2


def test_a_report_written_again_keeps_no_picture_of_the_earlier_one(tmp_path):
    # the pictures of an acquisition since gone (compacted away, deleted) stayed in
    # report_files/ beside the new report's
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    write(results, "frames-2.parquet", frame_rows("/acq/run2", [105.0, 115.0]))
    out = tmp_path / "report.html"
    write_report(results, out)
    files = tmp_path / "report_files"
    before = sorted(p.name for p in files.iterdir())
    assert len(before) == 2
    for p in (results / "frames").rglob("frames-2.parquet"):
        p.unlink()
    write_report(results, out)
    after = sorted(p.name for p in files.iterdir())
    assert len(after) == 1 and after[0] in before and "run1" in after[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left


def test_a_file_in_the_way_of_the_pictures_stops_the_report_before_it_is_written(tmp_path):
    # the page was written, then the command failed naming a '.report_files.partial' folder
    # it left behind
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    (tmp_path / "report_files").write_text("mine")
    result = CliRunner().invoke(main, ["report", str(results), "--out",
                                       str(tmp_path / "report.html")])
    assert result.exit_code == 1 and "report_files" in result.output, result.output
    assert "partial" not in result.output and "in the way" in result.output, result.output
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / "report_files").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report_files", "res"]


def test_reports_to_one_out_at_once_each_leave_all_their_pictures(tmp_path):
    # they shared one '.report_files.partial': one removed the other's pictures while it drew
    # them, one failed on 'File exists', and report_files/ kept a picture or two of six
    import os
    import subprocess
    import sys

    results = tmp_path / "res"
    for i in range(6):
        write(results, f"frames-{i}.parquet", frame_rows(f"/acq/run{i}", [100.0 + i, 110.0]))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    runs = [subprocess.Popen([sys.executable, "-m", "nwwatch.cli", "report", str(results),
                              "--out", "report.html"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(3)]
    outputs = [(run.wait(timeout=120), run.stdout.read()) for run in runs]
    assert [rc for rc, _ in outputs] == [0, 0, 0], outputs
    pictures = sorted(p.name for p in (tmp_path / "report_files").iterdir())
    assert len(pictures) == 6, pictures
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report_files", "res"]
    assert oct((tmp_path / "report_files").stat().st_mode & 0o777) == oct(
        (tmp_path / "res").stat().st_mode & 0o777)  # the umask's, as the results folder's


def test_the_reports_legend_covers_no_point(tmp_path, monkeypatch):
    """An acquisition whose angle falls has its highest points first, under the top left
    corner of the axes: the legend drawn there covered them."""
    figures = _angle_figures(monkeypatch)
    angles = [123.5 - 0.6 * k for k in range(40)]  # with its 1.5° bar: 5° below the top
    codes = [""] * 40
    for k in (5, 17):
        angles[k], codes[k] = None, "angle_uncertain"
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", angles, codes=codes))
    write_report(results, tmp_path / "report.html")
    (fig,) = figures
    fig.canvas.draw()
    legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend())]
    assert len(legends) == 1
    box = legends[0].get_window_extent()
    for ax in fig.axes:
        for line in ax.get_lines():
            xy = ax.transData.transform(np.column_stack(line.get_data(orig=False)))
            assert not any(box.contains(x, y) for x, y in xy), line.get_label()


def test_the_reports_time_axis_names_the_minute_of_its_frames(tmp_path, monkeypatch):
    """Frames seconds apart across a minute's end: matplotlib's concise labels gave the
    seconds alone ("20", "25", ...) under an offset naming the last tick's minute, so frames
    of one minute read as the next minute's."""
    from datetime import UTC

    figures = _angle_figures(monkeypatch)
    results = tmp_path / "res"
    rows = frame_rows("/acq/run1", [110.0 + 0.1 * k for k in range(50)], start=20)
    write(results, "frames-1.parquet", rows)
    write_report(results, tmp_path / "report.html")
    (fig,) = figures
    fig.canvas.draw()
    axis = fig.axes[-1].xaxis
    first = rows[0]["acquired_at"].astimezone(UTC)
    assert first.second == 20 and first.minute != rows[-1]["acquired_at"].minute
    assert first.strftime("%H:%M:%S") in [t.get_text() for t in axis.get_ticklabels()]
    # the date in the axis label (matplotlib's offset names the last tick's day)
    assert axis.get_major_formatter().get_offset() == ""
    assert fig.axes[-1].get_xlabel() == f"acquisition time (UTC, {first:%Y-%m-%d})"


def test_a_tomogram_folder_of_many_volumes_draws_the_suspect_masks_and_names_the_rest(
        tmp_path):
    # before: the masks of the last 6 volumes only, without a word: a suspect volume early
    # in a session, the one whose mask should be checked, had none and no line
    import pyarrow as pa

    from nwwatch.dashboard.data import Acquisition
    from nwwatch.dashboard.report import MAX_MASKS, _masks_to_draw, _tomogram_section

    rows = [{"source": f"/acq/t/vol{k}.tif", "status": "suspect" if k in (0, 1) else "ok",
             "reason_code": "", "reason": "", "mask_path": f"masks/vol{k}.tif"}
            for k in range(9)]
    assert MAX_MASKS == 6
    assert _masks_to_draw(rows) == [0, 1, 5, 6, 7, 8]  # both suspect, then the newest
    files = tmp_path / "files"
    files.mkdir()
    acq = Acquisition("id", "/acq/t", "tomogram", pa.Table.from_pylist(rows))
    page = _tomogram_section(acq, tmp_path, files)
    assert ("Mask slices of 6 of the 9 volumes: those not <code>ok</code> first, then the "
            "newest; not drawn: vol2.tif, vol3.tif, vol4.tif") in page
    for k in (0, 1, 5, 6, 7, 8):  # named (here missing), not silently left out
        assert f"vol{k}.tif: its mask masks/vol{k}.tif is missing" in page


def test_a_quarantined_file_deleted_since_is_said_to_need_nothing(tmp_path):
    # before: listed as any quarantined file, where `nwwatch status` says "deleted since,
    # nothing to do"
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0]))
    from nwwatch.pathtext import path_text

    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a TIFF")
    raw = Path(os.fsdecode(os.fsencode(tmp_path) + b"/q\xff.tif"))  # not UTF-8: still there
    raw.write_bytes(b"not a TIFF either")
    pq.write_table(pa.Table.from_pylist([
        {"path": str(bad), "reason": "not a TIFF", "error_type": "NotTiffError", "attempts": 1},
        {"path": path_text(raw), "reason": "short", "error_type": "NotTiffError",
         "attempts": 1},
        {"path": str(tmp_path / "gone.tif"), "reason": "file is empty",
         "error_type": "EmptyFileError", "attempts": 1}]), results / "quarantine.parquet")
    out = tmp_path / "report.html"
    write_report(results, out)
    page = out.read_text()
    assert "<td>not a TIFF</td>" in page and "<td>short</td>" in page
    assert "<td>file is empty; deleted since, nothing to do</td>" in page


def test_a_folder_of_the_users_where_the_pictures_go_is_not_replaced(tmp_path):
    # `report --out notes.html` beside the user's notes_files/ (a browser's "Save page as"
    # makes one) replaced that folder whole, its files deleted without a word
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    pictures = tmp_path / "notes_files"
    pictures.mkdir()
    (pictures / "lab_notebook.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match=r"holds files no report wrote "
                                              r"\(lab_notebook\.txt\); it is not replaced"):
        write_report(results, tmp_path / "notes.html")
    assert (pictures / "lab_notebook.txt").read_text() == "my notes"
    assert not (tmp_path / "notes.html").exists()
    # an earlier report's pictures (PNGs alone) are replaced, as ever
    (pictures / "lab_notebook.txt").unlink()
    (pictures / "old-angle.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_report(results, tmp_path / "notes.html")
    assert "old-angle.png" not in [p.name for p in pictures.iterdir()]


def test_commands_that_write_files_keep_status_0_when_their_reader_leaves(tmp_path):
    # `nwwatch report RES --out r.html | true`, `nwwatch synth insitu ... | true`: complete
    # files, yet exit 1 (click's EPIPE handling), which a pipefail script took for a failure
    import subprocess
    import sys

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    for args in (["report", str(results), "--out", str(tmp_path / "r.html")],
                 ["synth", "insitu", str(tmp_path / "syn"), "--frames", "1", "--size", "64"]):
        proc = subprocess.Popen([sys.executable, "-c", "from nwwatch.cli import main; main()",
                                 *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
        proc.stderr.close()
        assert proc.returncode == 0, (args, err)
    assert (tmp_path / "r.html").is_file() and (tmp_path / "syn" / "truth.parquet").is_file()


def test_the_plot_of_odd_names_times_and_providers_says_what_they_are(tmp_path, monkeypatch):
    """A "$" pair in a folder name was matplotlib's math (a traceback, or a subscript); frames
    of one time got an axis of four years; an acquisition past midnight read as all of the
    second day; a series run partly on a GPU named only the last row's provider."""
    from datetime import timedelta

    import matplotlib.dates as mdates

    figures = _angle_figures(monkeypatch)
    results = tmp_path / "res"
    odd = frame_rows("/acq/Au$_2$Si run$^$x", [100.0, 110.0])
    stack = frame_rows("/acq/stack", [100.0, 110.0, 120.0])
    for k, row in enumerate(stack):
        row["acquired_at"], row["frame"] = stack[0]["acquired_at"], k
    night = frame_rows("/acq/night", [100.0, 110.0])
    night[1]["acquired_at"] = night[0]["acquired_at"] + timedelta(hours=23, minutes=50)
    night[1]["provider"] = "CUDAExecutionProvider"
    write(results, "frames-1.parquet", odd + stack + night)
    page = write_report(results, tmp_path / "r.html").read_text()
    titles = [f.axes[0].get_title() for f in figures]
    assert any("Au$_2$Si run$^$x" in t.replace("\\$", "$") for t in titles), titles
    by_title = {t.split("/acq/")[-1].split()[0]: f for t, f in zip(titles, figures, strict=True)}
    lo, hi = by_title["stack"].axes[0].get_xlim()
    assert (hi - lo) * 86400 == pytest.approx(60, abs=1)  # a minute, not years
    day0 = f"{night[0]['acquired_at']:%Y-%m-%d}"
    day1 = f"{night[1]['acquired_at']:%Y-%m-%d}"
    assert day0 != day1
    axes = by_title["night"].axes
    assert axes[-1].get_xlabel() == f"acquisition time (UTC, {day0} – {day1})"
    assert mdates.num2date(axes[0].get_xlim()[0]).date() <= night[0]["acquired_at"].date()
    section = page.split("<h2>/acq/night</h2>")[1]
    assert "CPUExecutionProvider (1 row), CUDAExecutionProvider (1 row)" in section[:600]


def test_times_from_the_files_modification_time_are_said_so(tmp_path, monkeypatch):
    """A file without a time nwwatch reads gets its modification time (acquired_at_source
    "mtime"): the report drew and listed those as acquisition times with no word of it."""
    figures = _angle_figures(monkeypatch)
    results = tmp_path / "res"
    every = frame_rows("/acq/fiji", [100.0, 110.0, 120.0])
    some = frame_rows("/acq/mixed", [100.0, 110.0, 120.0, 130.0])
    own = frame_rows("/acq/tagged", [100.0, 110.0])
    for row in every:
        row["acquired_at_source"] = "mtime"
    every[-1]["acquired_at"] = None  # the note on frames without a time kept beside it
    for k, row in enumerate(some + own):
        row["acquired_at_source"] = "mtime" if k == 0 else "metadata"
    write(results, "frames-1.parquet", every + some + own)
    page = write_report(results, tmp_path / "r.html").read_text()
    fiji = page.split("<h2>/acq/fiji</h2>")[1].split("<h2>")[0]
    mixed = page.split("<h2>/acq/mixed</h2>")[1].split("<h2>")[0]
    tagged = page.split("<h2>/acq/tagged</h2>")[1].split("<h2>")[0]
    assert "All frames' times come from their file's modification time" in fiji
    assert "1 frame without an acquisition time" in fiji
    assert "1 of the 4 frames' times come from their file's modification time" in mixed
    assert "modification time" not in tagged
    labels = [fig.axes[-1].get_xlabel() for fig in figures]  # sections in folder order
    assert labels[0].endswith(", file modification time)")
    # the others declare theirs: the trend leaves it out
    assert labels[1].endswith(", 1 of 4 from file modification time, not in the trend)")
    assert "modification" not in labels[2]
    # rows of another writer without the column: not known, said so
    write(tmp_path / "other", "frames-1.parquet", frame_rows("/acq/other", [100.0]))
    page = write_report(tmp_path / "other", tmp_path / "o.html").read_text()
    assert "1 frame carries no <code>acquired_at_source</code>" in page


def test_the_trend_and_span_are_of_the_declared_times_where_some_are_modification_times(
        tmp_path, monkeypatch):
    """Among frames that declare their time, those timed by their file's modification time
    (all of one copy's second, before every real frame) were in the centred trend, which
    read their angles at the declared frames, and stretched the "acquired" span back to
    that second. The trend is of the declared frames (the others drawn hollow, named in the
    legend and the note), the span of the declared times with the others named apart;
    where every frame is timed by its file the trend and span are theirs, as before."""
    from datetime import timedelta

    from test_dashboard_data import T0, _mixed_time_rows

    figures = _angle_figures(monkeypatch)
    results = tmp_path / "res"
    every = frame_rows("/acq/fiji", [100.0, 130.0, 102.0, 130.0])
    for row in every:
        row["acquired_at_source"] = "mtime"
    write(results, "frames-1.parquet", every + _mixed_time_rows("/acq/mixed"))
    page = write_report(results, tmp_path / "r.html").read_text()
    fiji_fig, mixed_fig = figures  # sections in folder order
    mixed = page.split("<h2>/acq/mixed</h2>")[1]
    fiji = page.split("<h2>/acq/fiji</h2>")[1].split("<h2>")[0]

    def trend(fig) -> np.ndarray:
        (line,) = [x for x in fig.axes[0].get_lines() if x.get_label().startswith("rolling")]
        return np.asarray(line.get_ydata(), dtype=float)

    declared = np.array([100.0 + 2 * k for k in range(9)])
    assert np.array_equal(trend(mixed_fig), rolling_median_centred(declared))
    labels = [text.get_text() for legend in mixed_fig.legends for text in legend.get_texts()]
    assert "valid (9)" in labels
    assert "valid, file modification time: not in the trend (9)" in labels
    assert mixed_fig.axes[-1].get_xlabel().endswith(
        ", 9 of 18 from file modification time, not in the trend)")
    assert "they are left out of the trend, which is of the declared frames" in mixed
    first, last, mtime = T0, T0 + timedelta(seconds=16), T0 - timedelta(seconds=1)
    assert (f"<td>{first:%Y-%m-%d %H:%M:%S} – {last:%H:%M:%S} UTC; 9 by file modification "
            f"time: {mtime:%Y-%m-%d %H:%M:%S} UTC</td>") in mixed
    # every frame timed by its file: their trend and span, the note as it was
    assert np.array_equal(trend(fiji_fig), rolling_median_centred(
        np.array([100.0, 130.0, 102.0, 130.0])))
    assert "left out of the trend" not in fiji
    assert f"<td>{T0:%Y-%m-%d %H:%M:%S} – {T0 + timedelta(seconds=3):%H:%M:%S} UTC</td>" in fiji


def rolling_median_centred(values: np.ndarray) -> np.ndarray:
    from nwwatch.dashboard.stats import rolling_median

    return rolling_median(values, np.ones(len(values), bool), centred=True)


def test_each_section_says_what_its_bars_refusals_version_and_scale_are(tmp_path,
                                                                        monkeypatch):
    """The page never said that the bars are 1 sigma, which sigma refuses an angle, which
    measurement version made the rows or at which pixel size(s)."""
    import nwwatch.measure.contact_angle as contact_angle
    from nwwatch.measure.result import MEASUREMENT_VERSION

    results = tmp_path / "res"
    one = frame_rows("/acq/one", [100.0, 110.0])
    bare = frame_rows("/acq/bare", [100.0])
    two = frame_rows("/acq/two", [100.0, 110.0, 120.0])
    for row in one + bare + two:  # this version's rows: their cut is the measurement's own
        row["measurement_version"] = MEASUREMENT_VERSION
    for row in one:
        row["pixel_size_nm"] = 0.2816
    two[0]["pixel_size_nm"], two[1]["pixel_size_nm"] = 0.25, 0.5
    write(results, "frames-1.parquet", one + bare + two)
    page = write_report(results, tmp_path / "r.html").read_text()
    sections = {name: page.split(f"<h2>/acq/{name}</h2>")[1].split("<h2>")[0]
                for name in ("one", "bare", "two")}
    cut = f"An angle whose 1σ exceeds {contact_angle.MAX_UNCERTAINTY_DEG:g}° is refused"
    for text in sections.values():
        assert "Error bars: 1σ of each angle." in text and cut in text
        assert f"measurement {MEASUREMENT_VERSION};" in text
    assert "pixel size 0.2816 nm." in sections["one"]
    assert "pixel size not calibrated (lengths in px)." in sections["bare"]
    assert "pixel sizes 0.25–0.5 nm (2 values), 1 frame not calibrated." in sections["two"]
    # the cut is the measurement's own, not a copy of its value
    monkeypatch.setattr(contact_angle, "MAX_UNCERTAINTY_DEG", 2.25)
    page = write_report(results, tmp_path / "r2.html").read_text()
    assert "An angle whose 1σ exceeds 2.25° is refused" in page


def test_the_caption_states_the_refusal_cut_of_the_rows_own_measurement_version(tmp_path):
    """Rows of measurement 1.0.0 (refused above 2.0°) got today's cut in the caption,
    "refused when 1σ exceeds 1.5°", beside their valid angles with 1.8° bars."""
    from nwwatch.measure.result import MEASUREMENT_VERSION

    results = tmp_path / "res"
    rows = []
    for name, version in (("old", "1.0.0"), ("now", MEASUREMENT_VERSION), ("later", "9.1.0")):
        for row in frame_rows(f"/acq/{name}", [100.0, 110.0]):
            row["measurement_version"], row["contact_angle_uncertainty_deg"] = version, 1.8
            rows.append(row)
    write(results, "frames-1.parquet", rows)
    page = write_report(results, tmp_path / "r.html").read_text()
    sections = {name: page.split(f"<h2>/acq/{name}</h2>")[1].split("<h2>")[0]
                for name in ("old", "now", "later")}
    assert "1.5°" not in sections["old"] and "1.5°" not in sections["later"]
    cut = "An angle is refused when its 1σ exceeds the cut of the measurement version that "
    assert (cut + "measured it: 2° for measurement 1.0.0 (status <code>fit_failed</code>);"
            in sections["old"])
    assert (cut + "measured it: for measurement 9.1.0, a cut this nwwatch does not know"
            in sections["later"])
    assert ("An angle whose 1σ exceeds 1.5° is refused (<code>angle_uncertain</code>)"
            in sections["now"])
    # each version's cut from the history of MAX_UNCERTAINTY_DEG; unknown ones not guessed
    from nwwatch.measure.contact_angle import max_uncertainty_deg_of

    assert [max_uncertainty_deg_of(v) for v in ("1.0.0", "2.0.0", "2.2.19", "2.3.0", "x",
                                                None)] == [2.0, 1.5, 1.5, None, None, None]


def test_one_pixel_size_written_as_float32_and_float64_is_one_value(tmp_path):
    """0.2816 nm and its float32 neighbour were a range of one value printed twice:
    "pixel sizes 0.2816–0.2816 nm (2 values)"."""
    results = tmp_path / "res"
    f32 = float(np.float32(0.2816))
    sizes = {"one": [0.2816, f32, 0.2816],
             # the float32 of 0.28165 rounds to 0.2817 at 4 digits, 0.28165 to 0.2816
             "edge": [0.28165, float(np.float32(0.28165))],
             "two": [0.2816, f32, 0.5]}
    rows = []
    for name, values in sizes.items():
        for row, size_nm in zip(frame_rows(f"/acq/{name}", [100.0] * len(values)), values,
                                strict=True):
            row["pixel_size_nm"], row["measurement_version"] = size_nm, "2.2.20"
            rows.append(row)
    write(results, "frames-1.parquet", rows)
    page = write_report(results, tmp_path / "r.html").read_text()
    sections = {name: page.split(f"<h2>/acq/{name}</h2>")[1].split("<h2>")[0]
                for name in sizes}
    assert "pixel size 0.2816 nm." in sections["one"]
    assert re.search(r"pixel size 0\.281[67] nm\.", sections["edge"])
    assert "pixel sizes 0.2816–0.5 nm (2 values)." in sections["two"]


def test_a_stack_of_one_time_gets_no_trend_line(tmp_path, monkeypatch):
    """A stack whose pages share the file's time: the rolling median was drawn as a vertical
    segment hidden behind the points, and listed in the legend."""
    figures = _angle_figures(monkeypatch)
    results = tmp_path / "res"
    stack = frame_rows("/acq/stack", [100.0, 110.0, None, 120.0])
    for k, row in enumerate(stack):
        row["acquired_at"], row["frame"] = stack[0]["acquired_at"], k
    write(results, "frames-1.parquet", stack + frame_rows("/acq/timed", [100.0, 110.0]))
    write_report(results, tmp_path / "r.html")
    stack_fig, timed_fig = figures  # sections in folder order

    def labels(fig) -> list[str]:
        return [text.get_text() for legend in fig.legends for text in legend.get_texts()]

    assert not [x for x in labels(stack_fig) if x.startswith("rolling median")]
    assert "valid (3)" in labels(stack_fig)
    assert [x for x in labels(timed_fig) if x.startswith("rolling median")]
    # the error bars' points alone: no trend line drawn behind them either
    assert [line.get_label() for line in stack_fig.axes[0].get_lines()
            if not line.get_label().startswith("_")] == []


def test_stray_modification_times_do_not_set_the_plots_time_axis(tmp_path, monkeypatch):
    """Among 15 frames that declare their time (14 s), a file timed by its modification time
    12.5 h before them and one an hour after stretched the PNG's time axis over 13.5 h, the
    real frames in one column. The axis spans the declared times, the two are not drawn and
    the axis label and the note count them; where every frame is timed by its file, all are
    drawn as before."""
    from datetime import timedelta

    from test_dashboard_data import T0
    from test_dashboard_page import _declared_with_stray_mtimes

    figures = _angle_figures(monkeypatch)
    results = tmp_path / "res"
    every = frame_rows("/acq/fiji", [100.0, 130.0])
    every[1]["acquired_at"] = T0 + timedelta(hours=5)
    for row in every:
        row["acquired_at_source"] = "mtime"
    write(results, "frames-1.parquet", every + _declared_with_stray_mtimes("/acq/rep"))
    page = write_report(results, tmp_path / "r.html").read_text()
    fiji_fig, rep_fig = figures  # sections in folder order

    def span_s(fig) -> float:
        import matplotlib.dates as mdates

        lo, hi = fig.axes[-1].get_xlim()
        return (mdates.num2date(hi) - mdates.num2date(lo)).total_seconds()

    assert 14 < span_s(rep_fig) < 20, span_s(rep_fig)
    drawn = sum(len(line.get_xdata()) for ax in rep_fig.axes for line in ax.get_lines()
                if line.get_marker() == "o")  # the points, not the trend
    assert drawn == 15  # the declared frames; the two others off the axis
    assert rep_fig.axes[-1].get_xlabel().replace("\n", " ").endswith(
        ", 2 of 17 from file modification time, not in the trend; 2 outside the declared "
        "times, not drawn)"), rep_fig.axes[-1].get_xlabel()
    rep = page.split("<h2>/acq/rep</h2>")[1]
    assert "2 of them lie outside the declared times and are not drawn" in rep
    # every frame timed by its file: the axis spans them all
    assert span_s(fiji_fig) > 5 * 3600
    assert "outside the declared times" not in fiji_fig.axes[-1].get_xlabel()


def test_the_time_axis_label_fits_its_figure(tmp_path, monkeypatch):
    """Four frames declaring their time (two refused) and a file timed by its modification
    time 12 h before them: the axis label names both notes and ran past the figure's left
    edge, its first letter cut (it is centred under the axes, which the reason codes on the
    right push left). It is broken into lines that lie within the figure; the note under
    the plot says "1 of them lies"."""
    from datetime import timedelta

    from test_dashboard_data import T0

    figures = _angle_figures(monkeypatch)
    results = tmp_path / "res"
    rows = frame_rows("/acq/acq2", [127.4, None, 132.9, None],
                      codes=["", "angle_uncertain", "", "angle_uncertain"])
    for row in rows:
        row["acquired_at_source"] = "metadata"
    (plain,) = frame_rows("/acq/acq2", [None], start=4, codes=["no_wire"])
    plain.update(source="/acq/acq2/plain.tif", acquired_at_source="mtime",
                 acquired_at=T0 - timedelta(hours=12))
    write(results, "frames-1.parquet", [*rows, plain])
    page = write_report(results, tmp_path / "r.html").read_text()
    (fig,) = figures
    label = fig.axes[-1].xaxis.label
    assert label.get_text().replace("\n", " ").endswith(
        "1 of 5 from file modification time, not in the trend; 1 outside the declared times, "
        "not drawn)"), label.get_text()
    fig.canvas.draw()
    box = label.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
    assert 0 <= box.y0, box
    assert "1 of them lies outside the declared times and is not drawn" in page


def _long_legend_figure():
    """A figure whose legend entries are long: a trend of few angles, the frames left out of
    it, three reason codes."""
    from nwwatch.dashboard.plots import angle_figure

    n = 60
    t = 1.7e9 + np.arange(n) * 2.0
    valid = np.zeros(n, bool)
    valid[[5, 7, 9]] = True
    code = np.array(["angle_uncertain"] * n, dtype=object)
    code[4::12], code[8::12] = "interface_not_line", "no_wire"
    code[valid] = "ok"
    in_trend = np.ones(n, bool)
    in_trend[9] = False
    series = {"t": t, "valid": valid, "angle": np.where(valid, 110.0, np.nan),
              "unc": np.full(n, 0.8), "code": code, "trend": np.full(n, 110.0),
              "in_trend": in_trend}
    return angle_figure(series, "/data/acq",
                        trend_label="rolling median of 9 valid, centred (here 2: their median)")


def test_the_reports_legend_fits_its_figure(tmp_path):
    """Long legend entries in four columns made the legend wider than the figure, cut at
    both edges. It takes as many rows as it needs."""
    fig = _long_legend_figure()
    fig.canvas.draw()
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 6  # every entry is there
    box = legend.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
    assert 0 <= box.y0 and box.y1 <= fig.bbox.height, (box, fig.bbox.height)


def test_fitting_the_reports_legend_does_not_draw_the_figure(monkeypatch):
    """Each number of legend columns tried was a full draw of the figure (seconds for an
    acquisition of 20,000 frames, up to four times per figure). The legend is measured
    without drawing; the figure is drawn once, when saved."""
    from matplotlib.figure import Figure

    draws = []
    full_draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda self, *a, **k: (draws.append(self),
                                                              full_draw(self, *a, **k))[1])
    fig = _long_legend_figure()
    assert draws == []
    assert len(fig.legends) == 1  # the columns tried before are gone
