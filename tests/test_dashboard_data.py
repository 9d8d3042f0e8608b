"""The dashboard's and report's reading of committed results, without a service: grouping by
acquisition, reason codes (``reason_code`` when the column exists, else ``status``), the
rolling trend, angle statistics, cursors, the stale warning, ``[dashboard]`` validation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nwwatch.dashboard import metrics
from nwwatch.dashboard.data import ResultsStore, acquisition_summary, frame_series
from nwwatch.dashboard.settings import parse_listen
from nwwatch.dashboard.stats import angle_statistics, reason_codes, rolling_median
from nwwatch.service.config import ConfigError, parse_config

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def frame_rows(folder: str, angles: list[float | None], *, start: int = 0,
               processed: datetime = T0, codes: list[str] | None = None) -> list[dict]:
    """Rows as the service writes them; None: refused with status fit_failed (or ``codes``)."""
    rows = []
    for k, angle in enumerate(angles):
        refused = codes[k] if codes else "fit_failed"
        row = {"source": f"{folder}/f{start + k:04d}.tif", "frame": 0,
               "status": "ok" if angle is not None else refused,
               "reason": "" if angle is not None else "why",
               "angle_valid": angle is not None, "contact_angle_deg": angle,
               "contact_angle_uncertainty_deg": None if angle is None else 1.5,
               "acquired_at": T0 + timedelta(seconds=start + k), "processed_at": processed,
               "read_ms": 1.0, "segment_ms": 10.0, "measure_ms": 2.0,
               "model_name": "m", "provider": "CPUExecutionProvider"}
        rows.append(row)
    return rows


def write(results, name: str, rows: list[dict], kind: str = "frames") -> None:
    (results / kind).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), results / kind / name)


def test_rolling_median_is_causal_over_valid_values():
    rng = np.random.default_rng(0)
    values = rng.normal(110, 5, 40)
    valid = rng.random(40) > 0.2
    trend = rolling_median(values, valid, window=5)
    assert np.isnan(trend[~valid]).all()
    idx = np.flatnonzero(valid)
    for j, i in enumerate(idx):
        assert trend[i] == np.median(values[idx[max(0, j - 4):j + 1]])
    # One wild value does not move a median of five.
    spiky = np.full(10, 100.0)
    spiky[5] = 170.0
    assert rolling_median(spiky, np.ones(10, bool), window=5)[5] == 100.0


def test_centred_rolling_median_follows_a_ramp_without_lag():
    rng = np.random.default_rng(1)
    values = rng.normal(110, 5, 40)
    valid = rng.random(40) > 0.2
    trend = rolling_median(values, valid, window=5, centred=True)
    assert np.isnan(trend[~valid]).all()
    idx = np.flatnonzero(valid)
    for j, i in enumerate(idx):
        assert trend[i] == np.median(values[idx[max(0, j - 2):j + 3]])
    # A rising series: the causal median trails it by half a window, the centred one is on it
    ramp = np.arange(30, dtype=float)
    every = np.ones(30, bool)
    assert np.array_equal(rolling_median(ramp, every, window=9, centred=True)[4:-4], ramp[4:-4])
    assert np.array_equal(rolling_median(ramp, every, window=9)[8:], ramp[8:] - 4)


def test_angle_statistics():
    angles = np.array([100.0, 110.0, np.nan, 120.0, 130.0, np.nan])
    valid = np.isfinite(angles)
    s = angle_statistics(angles, valid, ["ok", "ok", "fit_failed", "ok", "ok", "no_droplet"])
    assert (s["n"], s["n_valid"]) == (6, 4)
    assert s["refused"] == {"fit_failed": 1, "no_droplet": 1}
    assert s["median_deg"] == 115.0 and s["q25_deg"] == 107.5 and s["q75_deg"] == 122.5
    assert s["mean_deg"] == 115.0 and s["sd_deg"] == pytest.approx(np.std([100, 110, 120, 130],
                                                                          ddof=1))
    empty = angle_statistics(np.array([np.nan]), np.array([False]), ["no_wire"])
    assert empty["median_deg"] is None and empty["refused"] == {"no_wire": 1}


def test_files_of_one_name_in_a_time_tree_stay_apart_in_the_series(tmp_path):
    # before: the series named each row by its file name alone; the page keys rows by
    # name and frame, so four frame.tif of four Second_NN folders drew as one point
    results = tmp_path / "res"
    rows = []
    for k, angle in enumerate([100.0, None, 104.0, 106.0]):
        (row,) = frame_rows(f"/acq/rec/Hour_00/Minute_00/Second_0{k}", [angle], start=k)
        row["source"] = row["source"].rsplit("/", 1)[0] + "/frame.tif"
        rows.append(row)
    write(results, "frames-1.parquet", rows)
    store = ResultsStore(results)
    assert store.refresh()
    (acq,) = store.snapshot.values()
    assert acq.folder == "/acq/rec"  # one acquisition: the time tree's root
    names = list(frame_series(acq)["source"])
    assert names == [f"Hour_00/Minute_00/Second_0{k}/frame.tif" for k in range(4)]


def test_reason_codes_prefer_reason_code_and_fall_back_to_status():
    valid = np.array([True, False, False, False])
    status = ["ok", "flagged", "fit_failed", "failed"]
    assert list(reason_codes(status, None, valid)) == ["ok", "flagged", "fit_failed", "failed"]
    codes = [None, "several_droplets", None, ""]
    assert list(reason_codes(status, codes, valid)) == ["ok", "several_droplets", "fit_failed",
                                                        "failed"]
    assert list(reason_codes([None], None, np.array([False]))) == ["unknown"]


@pytest.mark.parametrize("with_reason_code", [False, True])
def test_store_groups_by_folder_and_names_refusals(tmp_path, with_reason_code):
    results = tmp_path / "res"
    a_rows = frame_rows("/acq/a", [100.0, None, 104.0])
    if with_reason_code:  # the newer schema: status says flagged, reason_code says why
        for row in a_rows:
            row["reason_code"] = "" if row["angle_valid"] else "arc_too_short"
            row["status"] = "ok" if row["angle_valid"] else "flagged"
    write(results, "frames-1.parquet", a_rows)
    write(results, "frames-2.parquet", frame_rows("/acq/b", [120.0, 121.0]))
    write(results, ".frames-3.parquet.part", frame_rows("/acq/c", [1.0]))  # not committed
    store = ResultsStore(results)
    assert store.refresh()
    folders = {a.folder: a for a in store.snapshot.values()}
    assert sorted(folders) == ["/acq/a", "/acq/b"]
    s = frame_series(folders["/acq/a"])
    expected = "arc_too_short" if with_reason_code else "fit_failed"
    assert list(s["code"]) == ["ok", expected, "ok"]
    assert list(s["valid"]) == [True, False, True]
    assert list(s["source"]) == ["f0000.tif", "f0001.tif", "f0002.tif"]
    summary = acquisition_summary(folders["/acq/a"], T0.timestamp(), None)
    assert summary["stats"]["refused"] == {expected: 1}
    assert not store.refresh()  # nothing new: nothing re-read


def test_store_sees_new_files_and_replaced_rows(tmp_path):
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0, 101.0]))
    store = ResultsStore(results)
    store.refresh()

    def acquisition():
        (acq,) = store.snapshot.values()
        return acq

    gen = acquisition().generation
    write(results, "frames-2.parquet", frame_rows("/acq/a", [102.0], start=2))
    assert store.refresh() and acquisition().generation == gen  # appended: same generation
    assert len(acquisition()) == 3
    (results / "frames" / "frames-1.parquet").unlink()  # rows replaced (replay --force)
    assert store.refresh() and acquisition().generation == gen + 1
    assert len(acquisition()) == 1


def test_a_file_whose_rows_cannot_join_the_others_is_unreadable_until_replaced(tmp_path):
    """A results file whose columns cannot be combined with the rows read (acquired_at
    without a time zone, from another program) is named unreadable at every refresh, never
    recorded as read with its rows missing; written again properly, its rows come in."""
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0]))
    store = ResultsStore(results)
    store.refresh()
    naive = frame_rows("/acq/b", [110.0])
    naive[0]["acquired_at"] = naive[0]["acquired_at"].replace(tzinfo=None)
    write(results, "frames-2.parquet", naive)
    for _ in range(2):
        store.refresh()
        assert [p.rsplit("/", 1)[1] for p in store.unreadable] == ["frames-2.parquet"]
    (results / "frames" / "frames-1.parquet").unlink()  # a rebuild of what was read
    store.refresh()
    assert {a.folder: len(a) for a in store.snapshot.values()} == {}
    write(results, "frames-2.parquet", frame_rows("/acq/b", [110.0]))
    assert store.refresh() and not store.unreadable
    assert {a.folder: len(a) for a in store.snapshot.values()} == {"/acq/b": 1}


def test_quarantined_files_belong_to_their_folder(tmp_path):
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0]))
    pq.write_table(pa.Table.from_pylist([
        {"path": "/acq/a/bad.tif", "reason": "file is empty", "error_type": "EmptyFileError",
         "attempts": 1},
        {"path": "/acq/z/bad.tif", "reason": "not a TIFF", "error_type": "NotATiffError",
         "attempts": 1}]), results / "quarantine.parquet")
    store = ResultsStore(results)
    store.refresh()
    by_folder = {a.folder: a for a in store.snapshot.values()}
    assert [q["reason"] for q in by_folder["/acq/a"].quarantined] == ["file is empty"]
    assert len(by_folder["/acq/z"]) == 0 and len(by_folder["/acq/z"].quarantined) == 1


def test_a_quarantine_list_replaced_in_one_timestamp_tick_is_read_again(tmp_path):
    # before: keyed on size and mtime only, a same-size list written within one coarse
    # timestamp tick (about 4 ms before Linux 6.13) kept the old entries on the page
    import os

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0]))

    def quarantine(name: str) -> os.stat_result:
        pq.write_table(pa.Table.from_pylist([
            {"path": f"/acq/a/{name}.tif", "reason": "not a TIFF", "error_type": "NotATiffError",
             "attempts": 1}]), results / "q.tmp")
        os.replace(results / "q.tmp", results / "quarantine.parquet")
        return os.stat(results / "quarantine.parquet")

    first = quarantine("x")
    store = ResultsStore(results)
    store.refresh()
    quarantine("y")
    os.utime(results / "quarantine.parquet", ns=(first.st_atime_ns, first.st_mtime_ns))
    assert store.refresh()
    [acquisition] = store.snapshot.values()
    assert [q["path"] for q in acquisition.quarantined] == ["/acq/a/y.tif"]


def test_a_folder_processed_again_with_another_model_is_one_series_per_model(tmp_path):
    """The documented loop (fine-tune, point the service at the new model, restart) processes
    every frame again: the folder holds one row per frame of each model. The dashboard and
    report mixed them into one acquisition: every frame counted twice, the two models'
    angles one series, and "model" the name of whichever row sorted last."""
    results = tmp_path / "res"

    def rows(angles, model, sha, start=0):
        out = frame_rows("/acq/a", angles, start=start)
        for row in out:
            row.update(model_name=model, model_sha256=sha, measurement_version="2.2.5")
        return out

    write(results, "frames-1.parquet", rows([100.0, None, 104.0], "insitu-default", "d" * 64))
    pq.write_table(pa.Table.from_pylist([
        {"path": "/acq/a/bad.tif", "reason": "file is empty", "error_type": "EmptyFileError",
         "attempts": 1}]), results / "quarantine.parquet")
    store = ResultsStore(results)
    store.refresh()
    assert [len(a) for a in store.snapshot.values()] == [3]
    # the fine-tuned model's rows arrive later, as the restarted service writes them
    write(results, "frames-2.parquet", rows([110.0, 111.0, None], "mine", "m" * 64))
    assert store.refresh()
    by_model = {acquisition_summary(a, T0.timestamp(), None)["model"]: a
                for a in store.snapshot.values()}
    assert sorted(by_model) == ["insitu-default", "mine"]
    assert {a.folder for a in by_model.values()} == {"/acq/a"}
    assert len({a.id for a in by_model.values()}) == 2
    old, new = by_model["insitu-default"], by_model["mine"]
    assert list(frame_series(old)["angle"][[0, 2]]) == [100.0, 104.0] and len(old) == 3
    assert list(frame_series(new)["angle"][:2]) == [110.0, 111.0] and len(new) == 3
    assert acquisition_summary(new, T0.timestamp(), None)["stats"]["n_valid"] == 2
    # the folder's quarantined file is listed with each series
    assert [len(a.quarantined) for a in (old, new)] == [1, 1]
    from nwwatch.dashboard.report import write_report

    page = write_report(results, tmp_path / "r.html").read_text()
    assert page.count("<h2>/acq/a</h2>") == 2, page[-3000:]
    assert "insitu, 3 rows; model insitu-default" in page and "insitu, 3 rows; model mine" in page


def test_two_models_of_one_file_name_are_told_apart_by_their_hash(tmp_path):
    """A model retrained into the configured path (same file, same stem, new content): the
    folder's rows are two series, and the report and dashboard named both by the stem alone
    ("model mine" twice), so the new model's page could not be told from the old one's."""
    results = tmp_path / "res"

    def rows(angles, sha, processed):
        out = frame_rows("/acq/a", angles, processed=processed)
        for row in out:
            row.update(model_name="mine", model_sha256=sha, measurement_version="2.2.9")
        return out

    old, new = "0a1b2c3d4e5f" + "0" * 52, "f5e4d3c2b1a0" + "1" * 52
    write(results, "frames-1.parquet", rows([100.0, 101.0], old, T0))
    write(results, "frames-2.parquet", rows([110.0, None], new, T0 + timedelta(minutes=5)))
    store = ResultsStore(results)
    store.refresh()
    summaries = [acquisition_summary(a, T0.timestamp(), None) for a in store.snapshot.values()]
    assert sorted((s["model"], s["model_sha256"]) for s in summaries) == [
        ("mine", old), ("mine", new)]
    from nwwatch.dashboard.report import write_report

    page = write_report(results, tmp_path / "r.html").read_text()
    assert "insitu, 2 rows; model mine <code title='sha256 " + old + "'>0a1b2c3d4e5f</code>" \
        in page
    assert "insitu, 2 rows; model mine <code title='sha256 " + new + "'>f5e4d3c2b1a0</code>" \
        in page


def test_a_folder_with_only_quarantined_files_gives_way_to_its_rows(tmp_path):
    results = tmp_path / "res"
    results.mkdir()
    pq.write_table(pa.Table.from_pylist([
        {"path": "/acq/a/bad.tif", "reason": "file is empty", "error_type": "EmptyFileError",
         "attempts": 1}]), results / "quarantine.parquet")
    store = ResultsStore(results)
    store.refresh()
    assert [(len(a), len(a.quarantined)) for a in store.snapshot.values()] == [(0, 1)]
    rows = frame_rows("/acq/a", [100.0])
    rows[0].update(model_sha256="d" * 64, measurement_version="2.2.5")
    write(results, "frames-1.parquet", rows)
    assert store.refresh()
    assert [(len(a), len(a.quarantined)) for a in store.snapshot.values()] == [(1, 1)]


def test_stale_only_after_an_active_acquisition_stops(tmp_path):
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0, 101.0], processed=T0))
    store = ResultsStore(results)
    store.refresh()
    acq = next(iter(store.snapshot.values()))
    later = T0.timestamp() + 300
    # One commit only: it never looked active.
    assert not acquisition_summary(acq, later, 120.0)["stale"]
    write(results, "frames-2.parquet", frame_rows("/acq/a", [102.0], start=2,
                                                  processed=T0 + timedelta(seconds=5)))
    store.refresh()
    acq = next(iter(store.snapshot.values()))
    assert acquisition_summary(acq, later, 120.0)["stale"]
    assert not acquisition_summary(acq, T0.timestamp() + 60, 120.0)["stale"]  # not yet
    assert not acquisition_summary(acq, later, None)["stale"]  # finished results: no warning
    # Rows held for [output] flush_seconds before they are written: no silence until then.
    newest = T0.timestamp() + 5
    assert not acquisition_summary(acq, newest + 125.0, 120.0, rows_held_s=10.0)["stale"]
    assert acquisition_summary(acq, newest + 131.0, 120.0, rows_held_s=10.0)["stale"]
    # Stopped before the service (re)started: a finished acquisition, not one gone quiet
    # (every old acquisition that was once active showed the warning after a restart).
    assert not acquisition_summary(acq, later, 120.0, active_since=newest + 1.0)["stale"]
    assert acquisition_summary(acq, later, 120.0, active_since=newest - 1.0)["stale"]
    # Files still arriving but quarantined (broken ones every 2 s): not "no new file"
    acq.quarantined = [{"path": "/acq/a/bad.tif",
                        "quarantined_at": datetime.fromtimestamp(later - 30.0, UTC)}]
    assert not acquisition_summary(acq, later, 120.0)["stale"]
    acq.quarantined = [{"path": "/acq/a/bad.tif",
                        "quarantined_at": datetime.fromtimestamp(later - 200.0, UTC)}]
    assert acquisition_summary(acq, later, 120.0)["stale"]
    acq.quarantined = []
    # Rows per second: the second commit's one row, 5 s after the first commit.
    assert acquisition_summary(acq, later, None)["frames_per_s"] == pytest.approx(0.2)
    # Live, the minute before now: 0 once the files stopped (it said 0.2 for hours), and at
    # 10 s after the second commit, its one row over the 15 s since the first.
    assert acquisition_summary(acq, later, 120.0)["frames_per_s"] == 0.0
    assert acquisition_summary(acq, T0.timestamp() + 15, 120.0)["frames_per_s"] == (
        pytest.approx(1 / 15))


def _live_dashboard_of_a_quiet_folder(tmp_path, folder: str):
    """A live dashboard (``stale_after_s`` 120) of ``folder``'s two rows processed 5 min ago,
    refreshed: the folder reads stale unless something says otherwise. (dashboard, its
    acquisition)."""
    import time

    from nwwatch.dashboard.app import Dashboard

    results = tmp_path / "res"
    now = datetime.fromtimestamp(time.time(), UTC)
    write(results, "frames-1.parquet", frame_rows(folder, [100.0],
                                                  processed=now - timedelta(seconds=300)))
    write(results, "frames-2.parquet", frame_rows(folder, [101.0], start=1,
                                                  processed=now - timedelta(seconds=295)))
    dash = Dashboard(results, None, live=True, stale_after_s=120.0)
    dash.store.refresh()
    return dash, next(iter(dash.store.snapshot.values()))


def test_a_storage_pause_is_on_the_page_instead_of_a_stale_warning(tmp_path):
    """While results cannot be written (a full disk: nothing processed,
    ``nwwatch_storage_paused`` 1) the page was told nothing, and after ``stale_after_s``
    asked whether the microscope was still writing. The live figures carry the pause and
    its reason; no acquisition is stale while it lasts."""
    import time

    dash, acq = _live_dashboard_of_a_quiet_folder(tmp_path, "/acq/a")
    assert dash.summary(acq)["stale"] and dash.live_figures()["storage_paused"] is None
    reason = "/res/frames: cannot write results ([Errno 28] No space left on device)"
    try:
        metrics.set_storage_paused(True, reason=reason)
        paused = dash.live_figures()["storage_paused"]
        assert paused["reason"] == reason and paused["since"] <= time.time()
        assert not dash.summary(acq)["stale"]
        # a pause that goes on counts from its start; its reason is the latest
        metrics.set_storage_paused(True, reason="still full")
        assert dash.live_figures()["storage_paused"] == {"reason": "still full",
                                                          "since": paused["since"]}
    finally:
        metrics.set_storage_paused(False)
    assert dash.live_figures()["storage_paused"] is None and dash.summary(acq)["stale"]
    dash.close()


def test_files_waiting_behind_a_backlog_are_no_stale_acquisition(tmp_path):
    """The stale warning asked whether the microscope was still writing while the folder's
    files were there, queued behind a burst into another folder. With files of the folder
    seen and not yet done, the acquisition is behind, not stale; the count is its own."""
    from nwwatch.dashboard.app import Dashboard

    dash, acq = _live_dashboard_of_a_quiet_folder(tmp_path, "/acq/e")
    try:
        metrics.set_queue(160, {"/acq/f": 155})  # the burst's folder only
        summary = dash.summary(acq)
        assert summary["stale"] and not summary["behind"] and summary["waiting_files"] == 0
        metrics.set_queue(165, {"/acq/f": 155, "/acq/e": 5})
        summary = dash.summary(acq)
        assert not summary["stale"] and summary["behind"] and summary["waiting_files"] == 5
    finally:
        metrics.set_queue(0, {})
    assert dash.summary(acq)["stale"]
    finished = Dashboard(tmp_path / "res", None, live=False, stale_after_s=None)
    finished.store.refresh()
    summary = finished.summary(next(iter(finished.store.snapshot.values())))
    assert summary["waiting_files"] is None and not summary["behind"]
    dash.close()
    finished.close()


def test_files_seen_during_a_batch_count_at_once(tmp_path):
    """The folder's files seen and not yet queued reached the page only with the queue's
    counts, which the service sets between batches: a file that arrived during a long batch
    of another folder left the acquisition stale. They are read live from the service
    (its tracker), the queued and in-flight ones as last set."""
    dash, acq = _live_dashboard_of_a_quiet_folder(tmp_path, "/acq/e")
    seen = {"/acq/f": 3}

    class Tracker:  # the service's files seen and not yet queued, read live
        def waiting_in(self, folder: str) -> int:
            return seen.get(folder, 0)

        def waiting(self) -> int:
            return sum(seen.values())

    try:
        metrics.set_queue(4, {"/acq/f": 4})  # before the batch: the other folder's files
        metrics.set_seen_files(Tracker())
        assert dash.summary(acq)["stale"]
        seen["/acq/e"] = 1  # arrives while the batch runs: no queue update meanwhile
        summary = dash.summary(acq)
        assert not summary["stale"] and summary["behind"] and summary["waiting_files"] == 1
        assert dash.live_figures()["queue_depth_files"] == 8  # of all folders, as counted
        metrics.set_queue(5, {"/acq/f": 4, "/acq/e": 1})  # queued (seen no more)
        del seen["/acq/e"]
        assert dash.summary(acq)["waiting_files"] == 1
        assert dash.live_figures()["queue_depth_files"] == 8
    finally:
        metrics.set_seen_files(None)
        metrics.set_queue(0, {})
    assert dash.summary(acq)["stale"]
    dash.close()


def test_payload_cursor_sends_only_new_rows(tmp_path):
    from nwwatch.dashboard.app import Dashboard, parse_cursor

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0, None]))
    dash = Dashboard(results, None, live=False, stale_after_s=None)
    dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    first = dash.payload(acq, None)
    assert first["reset"] and first["rows"]["angle"] == [100.0, None]
    write(results, "frames-2.parquet", frame_rows("/acq/a", [103.0], start=2,
                                                  processed=T0 + timedelta(seconds=2)))
    dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    since = parse_cursor(first["cursor"])
    second = dash.payload(acq, since)
    assert not second["reset"] and second["rows"]["source"] == ["f0002.tif"]
    # A cursor of another generation (rows replaced, or another server) gets everything.
    for other in (f"{since[0]}7", "123-0"):
        again = dash.payload(acq, (other, since[1]))
        assert again["reset"] and len(again["rows"]["t"]) == 3
    assert parse_cursor("garbage") is None and parse_cursor(None) is None
    dash.close()


def test_rows_committed_after_the_clock_was_set_back_reach_an_open_page(tmp_path):
    """The cursor was the newest ``processed_at`` sent: after the computer's clock was set
    back (an NTP step), rows committed later carried older times and were never sent to an
    open page, until real time passed the old cursor. The cursor counts the store's
    refreshes; a compaction that rewrites the rows sends none of them again."""
    from nwwatch.dashboard.app import Dashboard, parse_cursor

    results = tmp_path / "res"
    before = frame_rows("/acq/a", [100.0, 101.0], processed=T0 + timedelta(seconds=300))
    write(results, "frames-1.parquet", before)
    dash = Dashboard(results, None, live=False, stale_after_s=None)
    dash.store.refresh()
    first = dash.payload(next(iter(dash.store.snapshot.values())), None)
    assert first["rows"]["source"] == ["f0000.tif", "f0001.tif"]
    stepped = frame_rows("/acq/a", [110.0], start=2, processed=T0)  # 300 s back
    write(results, "frames-2.parquet", stepped)
    dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    second = dash.payload(acq, parse_cursor(first["cursor"]))
    assert not second["reset"] and second["rows"]["source"] == ["f0002.tif"]
    assert second["latest"]["source"] == "f0002.tif" and second["latest"]["angle"] == 110.0
    assert dash.payload(acq, parse_cursor(second["cursor"]))["rows"]["source"] == []
    # the two files compacted into one: the same rows, nothing for the open page
    write(results, "frames-3.parquet", before + stepped)
    for name in ("frames-1.parquet", "frames-2.parquet"):
        (results / "frames" / name).unlink()
    assert dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    third = dash.payload(acq, parse_cursor(second["cursor"]))
    assert not third["reset"] and third["rows"]["source"] == []
    later = frame_rows("/acq/a", [111.0], start=3, processed=T0 + timedelta(seconds=1))
    write(results, "frames-4.parquet", later)
    dash.store.refresh()
    fourth = dash.payload(next(iter(dash.store.snapshot.values())),
                          parse_cursor(third["cursor"]))
    assert not fourth["reset"] and fourth["rows"]["source"] == ["f0003.tif"]
    dash.close()


def test_a_compaction_builds_each_rows_keys_once(tmp_path, monkeypatch):
    """A rebuilt snapshot (a compaction rewrote the files) tells, per acquisition, whether
    every row it had is still there and gives those their refresh numbers back: it built
    every row's key of both tables twice, once for each answer (about a second and a half
    for 300k rows, in the dashboard's thread). Each table's keys are built once."""
    from nwwatch.dashboard import data

    calls: list[int] = []
    row_keys = data._row_keys

    def counted(table: pa.Table):
        calls.append(table.num_rows)
        return row_keys(table)

    monkeypatch.setattr(data, "_row_keys", counted)
    results = tmp_path / "res"
    first = frame_rows("/acq/a", [100.0, 101.0], processed=T0)
    second = frame_rows("/acq/a", [102.0], start=2, processed=T0 + timedelta(seconds=5))
    write(results, "frames-1.parquet", first)
    write(results, "frames-2.parquet", second)
    store = ResultsStore(results)
    store.refresh()
    (acq,) = store.snapshot.values()
    arrivals = acq.arrivals.copy()
    write(results, "frames-3.parquet", first + second)  # compacted into one
    for name in ("frames-1.parquet", "frames-2.parquet"):
        (results / "frames" / name).unlink()
    calls.clear()
    assert store.refresh()
    (compacted,) = store.snapshot.values()
    assert calls == [3, 3]  # the old table's keys, the new table's
    assert compacted.generation == acq.generation
    assert np.array_equal(compacted.arrivals, arrivals)  # nothing sent to an open page again


def test_a_row_acquired_before_rows_the_page_holds_sends_their_new_trend(tmp_path):
    """A file retried, or arriving late, lands among rows the page has: their causal trend
    changes, and an open page gets it without a reload."""
    from nwwatch.dashboard.app import Dashboard, parse_cursor

    results = tmp_path / "res"
    angles = [100.0, 102.0, 104.0, 106.0, 108.0]
    rows = frame_rows("/acq/a", angles)
    late = rows.pop(1)  # f0001 comes later
    write(results, "frames-1.parquet", rows)
    dash = Dashboard(results, None, live=False, stale_after_s=None)
    dash.store.refresh()
    first = dash.payload(next(iter(dash.store.snapshot.values())), None)
    late["processed_at"] = T0 + timedelta(seconds=9)
    write(results, "frames-2.parquet", [late])
    dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    update = dash.payload(acq, parse_cursor(first["cursor"]))
    reload = dash.payload(acq, None)
    assert not update["reset"]
    assert update["rows"]["source"] == ["f0001.tif", "f0002.tif", "f0003.tif", "f0004.tif"]
    page = dict(zip(first["rows"]["source"], first["rows"]["trend"], strict=True))
    page.update(zip(update["rows"]["source"], update["rows"]["trend"], strict=True))
    assert page == dict(zip(reload["rows"]["source"], reload["rows"]["trend"], strict=True))
    # f0000's trend does not change, and is not sent again
    assert page["f0000.tif"] == first["rows"]["trend"][0]
    dash.close()


def _mixed_time_rows(folder: str) -> list[dict]:
    """An acquisition whose even frames declare their time in metadata (one a second from
    T0, angles rising 100-108 deg) and whose odd frames carry none: their time is their
    file's modification time, one copy's second before every real frame (angles 130)."""
    rows = frame_rows(folder, [100.0 + k if k % 2 == 0 else 130.0 for k in range(18)])
    for k, row in enumerate(rows):
        if k % 2:
            row.update(acquired_at_source="mtime", acquired_at=T0 - timedelta(seconds=1))
        else:
            row.update(acquired_at_source="metadata", acquired_at=T0 + timedelta(seconds=k))
    return rows


def test_the_trend_leaves_out_frames_timed_by_their_files_modification_time(tmp_path):
    """Frames without a time of their own are timed by their file's modification time:
    among frames that declare theirs, the live trend ran over both, so at the declared
    frames it read the modification-timed ones' angles (all of one second, before every
    real frame). The trend is of the declared frames; the series says each row's time
    source, the summary counts those timed by modification time; where every frame is
    timed so, the trend runs over them all as before."""
    from nwwatch.dashboard.app import Dashboard

    results = tmp_path / "res"
    mixed = _mixed_time_rows("/acq/mixed")
    every = frame_rows("/acq/fiji", [100.0, 130.0, 102.0, 130.0])
    for row in every:
        row["acquired_at_source"] = "mtime"
    write(results, "frames-1.parquet", mixed + every)
    dash = Dashboard(results, None, live=False, stale_after_s=None)
    dash.store.refresh()
    acqs = {a.folder: a for a in dash.store.snapshot.values()}
    s = frame_series(acqs["/acq/mixed"])
    declared = s["time_source"] == "metadata"
    assert declared.sum() == 9 and (s["time_source"][~declared] == "mtime").all()
    assert np.array_equal(s["trend"][declared], rolling_median(s["angle"][declared],
                                                              s["valid"][declared]))
    # the declared angles 100, 102, ... 116: none of the 130s pulls their median
    assert list(s["trend"][declared]) == [100.0 + k for k in range(9)]
    assert np.isnan(s["trend"][~declared]).all() and not s["in_trend"][~declared].any()
    summary = acquisition_summary(acqs["/acq/mixed"], T0.timestamp(), None)
    assert summary["timed_by_mtime"] == 9 and summary["trend_leaves_out_mtime"] is True
    rows = dash.payload(acqs["/acq/mixed"], None)["rows"]
    assert rows["time_source"] == ["mtime"] * 9 + ["metadata"] * 9  # in time order
    assert rows["trend"][:9] == [None] * 9
    # every frame timed by its file: the trend is theirs, as it was
    s = frame_series(acqs["/acq/fiji"])
    assert np.array_equal(s["trend"], rolling_median(s["angle"], s["valid"]))
    summary = acquisition_summary(acqs["/acq/fiji"], T0.timestamp(), None)
    assert summary["timed_by_mtime"] == 4 and summary["trend_leaves_out_mtime"] is False
    dash.close()


def test_a_first_declared_time_among_modification_times_sends_every_row_again(tmp_path):
    """An open page holds rows all timed by their file's modification time, in the trend;
    a frame that declares its time arrives: the trend now leaves those rows out, and the
    page gets every row again (their trend gone), not the new row alone."""
    from nwwatch.dashboard.app import Dashboard, parse_cursor

    results = tmp_path / "res"
    rows = _mixed_time_rows("/acq/mixed")
    write(results, "frames-1.parquet", [r for r in rows if r["acquired_at_source"] == "mtime"])
    dash = Dashboard(results, None, live=False, stale_after_s=None)
    dash.store.refresh()
    first = dash.payload(next(iter(dash.store.snapshot.values())), None)
    assert all(v is not None for v in first["rows"]["trend"])
    declared = [r for r in rows if r["acquired_at_source"] == "metadata"]
    for row in declared:
        row["processed_at"] = T0 + timedelta(seconds=30)
    write(results, "frames-2.parquet", declared)
    dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    update = dash.payload(acq, parse_cursor(first["cursor"]))
    assert update["reset"] and len(update["rows"]["t"]) == 18
    assert update["rows"]["trend"][:9] == [None] * 9
    # later frames of either kind: no reset; a modification-timed one, before every row
    # in time, sends no declared row again (it changes none of their trend)
    late = frame_rows("/acq/mixed", [130.0], start=40, processed=T0 + timedelta(seconds=60))
    late[0].update(acquired_at_source="mtime", acquired_at=T0 - timedelta(seconds=1))
    write(results, "frames-3.parquet", late)
    dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    again = dash.payload(acq, parse_cursor(update["cursor"]))
    assert not again["reset"] and again["rows"]["source"] == ["f0040.tif"]
    dash.close()


def test_metrics_count_rows_and_never_label_files():
    before = metrics.snapshot()
    metrics.observe_commit([{"status": "ok", "read_ms": 2.0, "source": "/acq/x.tif"},
                            {"status": "fit_failed", "source": "/acq/y.tif"}],
                           {"hash": 1.0}, committed_at=1234.0, kind="insitu",
                           write_ms=[3.0])
    metrics.observe_outcomes([("done", 1000.0), ("quarantined", None)], 1001.5)
    after = metrics.snapshot()
    assert after["frames_ok"] - before["frames_ok"] == 1
    assert after["frames_flagged"] - before["frames_flagged"] == 1
    assert after["frames_quarantined"] - before["frames_quarantined"] == 1
    assert after["last_frame_processed_timestamp_seconds"] == 1234.0
    assert metrics.recent_latencies_s()[-1] == 1.5
    text = metrics.exposition().decode()
    assert "x.tif" not in text and "/acq" not in text
    with metrics.in_flight(5):
        assert metrics.snapshot()["in_flight_frames"] == 5
    assert metrics.snapshot()["in_flight_frames"] == 0


def test_metrics_module_needs_no_web_stack():
    import subprocess
    import sys

    code = ("import sys; import nwwatch.dashboard.metrics, nwwatch.service.pipeline; "
            "assert 'starlette' not in sys.modules and 'uvicorn' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def _config(tmp_path, dashboard: str) -> dict:
    import tomllib

    (tmp_path / "acq").mkdir(exist_ok=True)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    return tomllib.loads(f"""
[[watch]]
path = "{tmp_path / 'acq'}"
model = "{model}"
[output]
results = "{tmp_path / 'res'}"
{dashboard}
""")


def test_dashboard_config(tmp_path):
    assert parse_config(_config(tmp_path, "")).dashboard is None
    d = parse_config(_config(tmp_path, "[dashboard]")).dashboard
    assert (d.host, d.port, d.stale_after_s) == ("127.0.0.1", 8765, 120.0)
    d = parse_config(_config(tmp_path, '[dashboard]\nlisten = "[::1]:9000"\n'
                                       'stale_after_s = 30')).dashboard
    assert (d.host, d.port, d.stale_after_s) == ("::1", 9000, 30.0)
    assert d.rows_held_s == 10.0  # [output] flush_seconds: rows reach the page that late
    with pytest.raises(ConfigError,
                       match=r"dashboard\.listen: '0\.0\.0\.0' is not a loopback address"):
        parse_config(_config(tmp_path, '[dashboard]\nlisten = "0.0.0.0:8765"'))
    d = parse_config(_config(tmp_path, '[dashboard]\nlisten = "0.0.0.0:8765"\n'
                                       'allow_remote = true')).dashboard
    assert d.host == "0.0.0.0"
    for bad in ('listen = "8765"', 'listen = "localhost:99999"', 'listen = "localhost:"',
                "stale_after_s = 0", "port = 1"):
        with pytest.raises(ConfigError, match=r"dashboard\."):
            parse_config(_config(tmp_path, f"[dashboard]\n{bad}"))
    assert parse_listen("localhost:0") == ("localhost", 0)
    assert parse_listen("[::1]:8765") == ("::1", 8765)
    # all of 127.0.0.0/8 is this machine alone (was refused as "not the loopback")
    assert parse_listen("127.0.0.2:0") == ("127.0.0.2", 0)
    with pytest.raises(ValueError, match="'example.org' is not a loopback address"):
        parse_listen("example.org:80")
    # malformed hosts and ports passed with allow_remote and left the service's dashboard
    # failing to bind, forever ("[::1" from a missing bracket, a space, a non-ASCII digit)
    for bad in ("[::1:8765", "::1]:8765", "host name:80", "127.0.0.1:\u0663", "[]:80"):
        with pytest.raises(ValueError, match="is not HOST:PORT"):
            parse_listen(bad, allow_remote=True)
    with pytest.raises(ValueError, match=r"port 99999 is out of range \(0-65535"):
        parse_listen("localhost:99999")


def test_listen_takes_ip_addresses_and_host_names_only(tmp_path):
    """An IPv6 address without brackets was split at its last colon: "::1" refused as "':' is
    not a loopback address", with allow_remote host ":" port 1; "2001:db8::5" host
    "2001:db8:" port 5, on which the service's dashboard failed to bind and was restarted
    forever; "LOCALHOST:8765" refused as not the loopback, although the Host-header check
    takes it. Now the host must be an IP address (IPv6 in brackets) or a host name."""
    for text in ("::1", "2001:db8::5", "::1:8765"):
        for remote in (False, True):
            with pytest.raises(ValueError, match=r"is not HOST:PORT: an IPv6 address is "
                                                 r"written in brackets, then its port"):
                parse_listen(text, allow_remote=remote)
    with pytest.raises(ValueError, match=r'"\[2001:db8::5\]:8765"'):
        parse_listen("2001:db8::5", allow_remote=True)
    with pytest.raises(ValueError, match=r'"\[::1\]:8765"'):
        parse_listen("::1:8765")
    assert parse_listen("[2001:db8::5]:80", allow_remote=True) == ("2001:db8::5", 80)
    assert parse_listen("LOCALHOST:8765") == ("localhost", 8765)
    assert parse_listen("LocalHost.:0") == ("LocalHost.", 0)
    for bad, why in (("999.1.1.1:80", "is not an IPv4 address"),
                     ("[gg::1]:80", "is not an IPv6 address"),
                     ("[127.0.0.1]:80", "brackets hold an IPv6 address only"),
                     ("a_b:80", "is neither an IP address nor a host name"),
                     ("-lab-.example.org:80", "is neither an IP address nor a host name")):
        with pytest.raises(ValueError, match=re.escape(why)):
            parse_listen(bad, allow_remote=True)
    assert parse_listen("lab-pc.example.org:80", allow_remote=True) == (
        "lab-pc.example.org", 80)
    # the service's configuration names the key
    with pytest.raises(ConfigError, match=r"dashboard\.listen: '::1' is not HOST:PORT"):
        parse_config(_config(tmp_path, '[dashboard]\nlisten = "::1"\nallow_remote = true'))


def test_a_file_replaced_by_rename_is_read_again(tmp_path):
    import os

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0, 101.0]))
    store = ResultsStore(results)
    store.refresh()
    assert not store.refresh()
    write(results, ".tmp.parquet", frame_rows("/acq/a", [90.0]))  # a writer's temporary
    assert not store.refresh()
    os.replace(results / "frames" / ".tmp.parquet", results / "frames" / "frames-1.parquet")
    assert store.refresh()
    assert list(frame_series(next(iter(store.snapshot.values())))["angle"]) == [90.0]


def _stack_version(pages: int, sha: str, processed: datetime) -> list[dict]:
    """The rows of one version of a stack ``/acq/s/stack.tif`` that its writer grows page by
    page, closing it after each: every version is a new file content, processed whole."""
    rows = []
    for page in range(pages):
        row = frame_rows("/acq/s", [100.0 + page], processed=processed)[0]
        row.update(source="/acq/s/stack.tif", frame=page, source_sha256=sha,
                   acquired_at=T0 + timedelta(seconds=page))
        rows.append(row)
    return rows


def test_a_stack_growing_in_one_folder_resets_only_that_folders_page(tmp_path):
    # Was: the store's one generation bumped, so every open page of every folder fetched all
    # its rows again with each page a stack grew by (12.6 MB a time for 150,000 rows).
    from nwwatch.dashboard.app import Dashboard, parse_cursor

    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0, 101.0]))
    write(results, "frames-2.parquet", _stack_version(1, "a" * 64, T0))
    dash = Dashboard(results, None, live=False, stale_after_s=None)
    dash.store.refresh()
    by_folder = {acq.folder: acq for acq in dash.store.snapshot.values()}
    cursors = {k: parse_cursor(dash.payload(acq, None)["cursor"]) for k, acq in by_folder.items()}
    write(results, "frames-3.parquet", _stack_version(2, "b" * 64, T0 + timedelta(seconds=5)))
    assert dash.store.refresh()
    by_folder = {acq.folder: acq for acq in dash.store.snapshot.values()}
    untouched = dash.payload(by_folder["/acq/a"], cursors["/acq/a"])
    assert not untouched["reset"] and untouched["rows"]["t"] == []
    grown = dash.payload(by_folder["/acq/s"], cursors["/acq/s"])
    assert grown["reset"] and grown["rows"]["frame"] == [0, 1]
    # a compaction rewrites files, every row kept: no folder's page starts again
    cursors = {k: parse_cursor(dash.payload(acq, None)["cursor"]) for k, acq in by_folder.items()}
    rows = pa.concat_tables([pq.read_table(p) for p in sorted((results / "frames").glob("*"))],
                            promote_options="permissive")
    for path in (results / "frames").glob("*"):
        path.unlink()
    pq.write_table(rows, results / "frames" / "compacted.parquet")
    assert dash.store.refresh()
    for acq in dash.store.snapshot.values():
        assert not dash.payload(acq, cursors[acq.folder])["reset"], acq.folder
    dash.close()


def test_a_grown_stack_shows_each_page_once_from_its_newest_version(tmp_path):
    """A stack closed after every page is processed again with every version (docs/service.md,
    a file is its content). The dashboard and report showed page 0 of a 3-page stack three
    times; they show the newest version's rows, and a client is reset when older rows go."""
    results = tmp_path / "res"
    write(results, "frames-1.parquet", _stack_version(1, "a" * 64, T0))
    store = ResultsStore(results)
    store.refresh()
    gen = next(iter(store.snapshot.values())).generation
    write(results, "frames-2.parquet", _stack_version(2, "b" * 64, T0 + timedelta(seconds=5)))
    assert store.refresh()
    acq = next(iter(store.snapshot.values()))
    assert acq.table["frame"].to_pylist() == [0, 1]
    assert set(acq.table["source_sha256"].to_pylist()) == {"b" * 64}
    assert acq.generation == gen + 1  # rows went: clients start from scratch
    write(results, "frames-3.parquet", _stack_version(3, "c" * 64, T0 + timedelta(seconds=9)))
    store.refresh()
    acq = next(iter(store.snapshot.values()))
    assert acq.table["frame"].to_pylist() == [0, 1, 2]
    assert frame_series(acq)["angle"].tolist() == [100.0, 101.0, 102.0]
    # A new file of the same folder only adds rows: same generation.
    gen = acq.generation
    more = frame_rows("/acq/s", [90.0], processed=T0 + timedelta(seconds=12))
    more[0]["source_sha256"] = "d" * 64
    write(results, "frames-4.parquet", more)
    store.refresh()
    acq = next(iter(store.snapshot.values()))
    assert acq.generation == gen and len(acq) == 4
    # Opened from scratch (the report), the same rows.
    fresh = ResultsStore(results)
    fresh.refresh()
    assert len(next(iter(fresh.snapshot.values()))) == 4


def test_a_folder_with_only_quarantined_files_is_of_no_kind_the_rows_do_not_tell(tmp_path):
    # A tomogram folder whose one file (a 2-D image) was quarantined read "insitu, 0 rows"
    # in the report and on the dashboard: quarantine.parquet does not record the kind.
    results = tmp_path / "res"
    results.mkdir()
    pq.write_table(pa.Table.from_pylist([
        {"path": "/acq/t/flat.tif", "reason": "a 2-D image (64 x 64 px), not a volume",
         "error_type": "UnsupportedLayoutError", "attempts": 1}]),
        results / "quarantine.parquet")
    store = ResultsStore(results)
    store.refresh()
    (acq,) = store.snapshot.values()
    assert acq.kind == "unknown"
    from nwwatch.dashboard.report import write_report

    page = write_report(results, tmp_path / "r.html").read_text()
    assert "insitu, 0 rows" not in page
    assert "quarantined files only, 0 rows" in page and "flat.tif" in page
    assert "model —" not in page and "on —" not in page  # no rows: no model to name


def test_a_tomogram_summary_has_its_processing_time(tmp_path):
    results = tmp_path / "res"
    processed = frame_rows("/x", [1.0])[0]["processed_at"]
    write(results, "volumes-1.parquet", [
        {"source": f"/acq/tomo/v{k}.tif", "status": "ok", "mask_path": f"masks/v{k}.tif",
         "processed_at": processed, "read_ms": 5.0, "segment_ms": 20.0 + 10 * k,
         "measure_ms": 100.0, "confidence_ms": None} for k in range(3)], kind="volumes")
    store = ResultsStore(results)
    store.refresh()
    (acq,) = store.snapshot.values()
    assert acquisition_summary(acq, T0.timestamp(), None)["proc_ms_median"] == 135.0


def test_allow_remote_of_the_wrong_type_is_named_alone(tmp_path):
    """`nwwatch run` exits 78 naming `dashboard.allow_remote` once, not as a `listen` error
    that repeats the file name."""
    (tmp_path / "acq").mkdir()
    cfg = tmp_path / "nwwatch.toml"
    cfg.write_text(f'[[watch]]\npath = "{tmp_path / "acq"}"\n[output]\n'
                   f'results = "{tmp_path / "res"}"\n[dashboard]\nallow_remote = "yes"\n')
    proc = subprocess.run([sys.executable, "-m", "nwwatch", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 78, proc.stderr[-2000:]
    last = json.loads(proc.stderr.strip().splitlines()[-1])  # JSON: stderr is no terminal
    assert last["error"] == f"{cfg}: dashboard.allow_remote: must be a boolean, got 'yes'"


def test_a_stack_growing_page_by_page_has_a_rate_and_goes_stale_when_it_stops(tmp_path):
    """Each version of a growing stack is one commit; only the newest version's rows are
    kept, all of one commit, yet the acquisition was receiving frames (one page each 5 s)
    and then stopped."""
    results = tmp_path / "res"
    store = ResultsStore(results)
    for pages in (1, 2, 3):
        rows = frame_rows("/acq/a", [100.0] * pages,
                          processed=T0 + timedelta(seconds=5 * pages))
        for k, row in enumerate(rows):
            row.update(source="/acq/a/stack.tif", frame=k, source_sha256=f"{pages}" * 64)
        write(results, f"frames-{pages}.parquet", rows)
        store.refresh()  # versions arrive one refresh at a time, as from the service
    acq = next(iter(store.snapshot.values()))
    assert len(acq) == 3  # the newest version's rows only
    newest = T0.timestamp() + 15
    assert not acquisition_summary(acq, newest + 10, 120.0)["stale"]
    assert acquisition_summary(acq, newest + 300, 120.0)["stale"]
    # Pages new to the stack after the minute's first commit: 2 in the 20 s since it (live),
    # 2 in the 10 s up to the newest (finished); each page once, not with every version.
    assert acquisition_summary(acq, newest + 10, 120.0)["frames_per_s"] == pytest.approx(0.1)
    assert acquisition_summary(acq, newest, None)["frames_per_s"] == pytest.approx(0.2)
    # The same seen at once (a dashboard started after the stack grew).
    fresh = ResultsStore(results)
    fresh.refresh()
    acq = next(iter(fresh.snapshot.values()))
    assert len(acq) == 3 and acquisition_summary(acq, newest + 300, 120.0)["stale"]
    assert acquisition_summary(acq, newest, None)["frames_per_s"] == pytest.approx(0.2)


def test_a_foreign_parquet_file_in_the_results_is_listed_not_a_crash(tmp_path):
    """A Parquet file of another program under frames/ (an analysis saved beside the rows,
    one without `source`, or one whose `frame` holds text) made `nwwatch report` end in a
    traceback (TypeError, ArrowTypeError "Field frame has incompatible types") and every
    refresh of the dashboard fail; status, which reads the ledger's files, was unaffected."""
    from servicekit import REPO, model, paint_insitu

    from nwwatch.io import write_frame_tiff
    from nwwatch.service import replay

    acq, out = tmp_path / "acq", tmp_path / "out"
    acq.mkdir()
    for i in range(3):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(100.0 + 10 * i))
    replay(acq, out, kind="insitu", model=model(tmp_path))
    (partition,) = (out / "frames").iterdir()
    pq.write_table(pa.table({"a": [1, 2, 3]}), partition / "mine.parquet")
    pq.write_table(pa.table({"source": [str(acq / "x.tif")], "frame": ["zero"],
                             "status": ["ok"]}), out / "frames" / "odd.parquet")
    store = ResultsStore(out)
    store.refresh()
    assert sum(len(a) for a in store.snapshot.values()) == 3
    assert store.unreadable == {str(partition / "mine.parquet"),
                                str(out / "frames" / "odd.parquet")}
    done = subprocess.run([sys.executable, "-m", "nwwatch", "report", str(out), "--out",
                           str(tmp_path / "r.html")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    page = (tmp_path / "r.html").read_text()
    assert "another program" in page and "mine.parquet" in page


def test_rows_written_back_with_large_strings_or_categories_are_read(tmp_path):
    # Was: a results file read with pandas and written back beside it (pandas 3 writes text
    # as large_string) stopped `nwwatch report` and every refresh of the dashboard with
    # ArrowNotImplementedError (binary_join_element_wise: large_string, string, string).
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0, None]))
    table = pa.Table.from_pylist(frame_rows("/acq/a", [110.0], start=2))
    wide = pa.schema([f.with_type(pa.large_string()) if pa.types.is_string(f.type) else f
                      for f in table.schema])
    pq.write_table(table.cast(wide), results / "frames" / "frames-2.parquet")
    table = pa.Table.from_pylist(frame_rows("/acq/a", [120.0], start=3))
    pq.write_table(table.set_column(table.schema.get_field_index("status"), "status",
                                    table.column("status").dictionary_encode()),
                   results / "frames" / "frames-3.parquet")
    store = ResultsStore(results)
    store.refresh()
    assert store.unreadable == frozenset()
    (acq,) = store.snapshot.values()
    assert sorted(acq.table["source"].to_pylist()) == [f"/acq/a/f{k:04d}.tif" for k in range(4)]
    assert acq.table.schema.field("status").type == pa.string()


def test_a_damaged_quarantine_file_is_named_unreadable_not_read_as_empty(tmp_path):
    # before: a quarantine.parquet that could not be read was kept as "no file quarantined"
    # on the dashboard (quarantined 0, unreadable_files []) and in the report
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/a", [100.0]))
    quarantine = results / "quarantine.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"path": "/acq/a/bad.tif", "reason": "file is empty", "error_type": "EmptyFileError",
         "attempts": 1}]), quarantine)
    whole = quarantine.read_bytes()
    quarantine.write_bytes(whole[:len(whole) // 2])
    store = ResultsStore(results)
    store.refresh()
    assert store.unreadable == {str(quarantine)}
    quarantine.write_bytes(whole)  # mended: read, and no longer named
    assert store.refresh()
    assert store.unreadable == frozenset()
    (acq,) = store.snapshot.values()
    assert [q["path"] for q in acq.quarantined] == ["/acq/a/bad.tif"]
    quarantine.unlink()
    store.refresh()
    assert store.unreadable == frozenset()


def test_a_privileged_port_is_named_as_such_when_the_dashboard_cannot_listen():
    # the unit grants no capability: port 80 failed with EACCES every restart, told "another
    # program listens on 127.0.0.1:80, or it is not an address of this machine"
    import errno

    from nwwatch.dashboard.server import ListenError, listen_hint
    from nwwatch.dashboard.settings import DashboardConfig

    denied = ListenError(errno.EACCES, "cannot listen on 127.0.0.1:80: Permission denied")
    hint = listen_hint(denied, DashboardConfig(host="127.0.0.1", port=80))
    assert hint.startswith("port 80 is below 1024, which only a privileged process may listen")
    in_use = ListenError(errno.EADDRINUSE, "cannot listen on 127.0.0.1:8765: in use")
    assert listen_hint(in_use, DashboardConfig(host="127.0.0.1", port=8765)).startswith(
        "another program listens on 127.0.0.1:8765")


def test_one_models_series_under_two_measurement_versions_are_told_apart(tmp_path):
    """After an update that measures again, a folder has a series per measurement version
    of one model: the report's headings and the dashboard's list were the same for both."""
    from nwwatch.dashboard.report import _model

    results = tmp_path / "res"
    for k, version in enumerate(("2.2.12", "2.2.13")):
        rows = frame_rows("/acq/a", [100.0 + k])
        rows[0].update(model_sha256="d" * 64, measurement_version=version)
        write(results, f"frames-{k}.parquet", rows)
    store = ResultsStore(results)
    store.refresh()
    summaries = [acquisition_summary(a, T0.timestamp(), None) for a in store.snapshot.values()]
    assert sorted(s["measurement_version"] for s in summaries) == ["2.2.12", "2.2.13"]
    assert len({_model(s) for s in summaries}) == 2
    assert all(f"measurement {s['measurement_version']}" in _model(s) for s in summaries)


def test_rows_that_come_back_or_a_folder_that_comes_back_reset_its_page(tmp_path):
    # Rows back with an old processed_at (a quarantine released) never reached an open page
    # (they come as new rows now), and a folder whose rows all went and came back reused its
    # generation: the page kept the deleted rows.
    from nwwatch.dashboard.app import Dashboard, parse_cursor
    from nwwatch.results.quarantine import write_quarantine

    results = tmp_path / "res"
    rows = frame_rows("/acq/a", [100.0])
    rows[0]["source_sha256"] = "x" * 64
    later = frame_rows("/acq/a", [110.0], start=1, processed=T0 + timedelta(seconds=10))
    later[0]["source_sha256"] = "y" * 64
    write(results, "b1.parquet", rows)
    write(results, "b2.parquet", later)
    dash = Dashboard(results, None, live=False, stale_after_s=None)
    quarantine = [{"path": "/acq/a/f0000.tif", "sha256": None, "reason": "bad",
                   "error_type": "E", "attempts": 1,
                   "quarantined_at": (T0 + timedelta(seconds=5)).timestamp()}]
    write_quarantine(quarantine, results)
    dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    first = dash.payload(acq, None)
    assert first["rows"]["source"] == ["f0001.tif"]
    # a damaged list does not bring the superseded row back (nor does it end the page)
    whole = (results / "quarantine.parquet").read_bytes()
    (results / "quarantine.parquet").write_bytes(whole[:len(whole) // 2])
    dash.store.refresh()
    assert len(next(iter(dash.store.snapshot.values()))) == 1
    write_quarantine([], results)  # released: f0000's row is current again
    dash.store.refresh()
    acq = next(iter(dash.store.snapshot.values()))
    again = dash.payload(acq, parse_cursor(first["cursor"]))
    # f0001 again with the trend that f0000, acquired before it, changes
    assert not again["reset"] and again["rows"]["source"] == ["f0000.tif", "f0001.tif"]
    # the folder's rows all gone, then new ones: the page starts again
    cursor = parse_cursor(again["cursor"])
    for path in (results / "frames").glob("*.parquet"):
        path.unlink()
    dash.store.refresh()
    assert dash.store.snapshot == {}
    write(results, "b3.parquet", frame_rows("/acq/a", [90.0], start=5,
                                            processed=T0 + timedelta(seconds=60)))
    dash.store.refresh()
    back = dash.payload(next(iter(dash.store.snapshot.values())), cursor)
    assert back["reset"] and back["rows"]["source"] == ["f0005.tif"]
    dash.close()


def test_a_quarantine_entry_replaced_for_other_content_updates_the_rows_shown(tmp_path):
    # A file quarantined for the content its rows are of (another model crashed on it) keeps
    # them; overwritten with a broken file and quarantined again under the same path, the
    # open dashboard kept showing the superseded row (status and a fresh store dropped it).
    from nwwatch.results.quarantine import write_quarantine

    results = tmp_path / "res"
    rows = frame_rows("/acq/a", [100.0, 101.0])
    rows[0]["source_sha256"], rows[1]["source_sha256"] = "x" * 64, "w" * 64
    write(results, "b1.parquet", rows)

    def quarantine(sha: str, seconds: float) -> None:
        write_quarantine([{"path": "/acq/a/f0000.tif", "sha256": sha, "reason": "bad",
                           "error_type": "E", "attempts": 1,
                           "quarantined_at": (T0 + timedelta(seconds=seconds)).timestamp()}],
                         results)

    quarantine("x" * 64, 5)
    store = ResultsStore(results)
    store.refresh()
    assert [len(a) for a in store.snapshot.values()] == [2]
    quarantine("y" * 64, 6)
    assert store.refresh()
    assert [len(a) for a in store.snapshot.values()] == [1]
