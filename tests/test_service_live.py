"""The daemon as a real process on temporary folders with real watchdog observers and a real
(tiny) ONNX model: awkward writers, bad files, bursts, kill -9, SIGTERM, systemd notify."""

from __future__ import annotations

import os
import random
import socket
import time
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from servicekit import (
    T0,
    DaemonProcess,
    assert_replay_gives_the_live_rows,
    bad_inputs,
    frames_table,
    paint_insitu,
    wait_rows,
    write_config,
)

from nwwatch.io import write_frame_tiff
from nwwatch.results.parquet import dataset_files
from nwwatch.service.cli import status


def _tiff_bytes(tmp_path, angle, size=64, name="src.tif"):
    write_frame_tiff(tmp_path / name, paint_insitu(angle, size=size))
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).unlink()
    return data


def test_awkward_writers_and_bad_files(setup):
    tmp, acq, res, onnx_model = setup
    # settle 10 x the writers' 0.2 s pauses: a test process stalled for a moment on a busy
    # machine must not make a pause look like a finished (truncated) file
    cfg = write_config(tmp / "c.toml", acq, res, onnx_model, settle=2.0)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        daemon.wait_event("ready")
        # 1. slow writer, one open: chunks over ~2 s, close at the end
        slow = _tiff_bytes(tmp, 101.0)
        # 2. slow writer that closes after every chunk (looks truncated between chunks)
        reopen = _tiff_bytes(tmp, 107.0)
        chunks = 10
        with open(acq / "slow.tif", "wb") as handle:
            for k in range(chunks):
                part = slice(k * len(slow) // chunks, (k + 1) * len(slow) // chunks)
                handle.write(slow[part])
                handle.flush()
                with open(acq / "reopen.tif", "ab") as other:
                    other.write(reopen[k * len(reopen) // chunks:
                                       (k + 1) * len(reopen) // chunks])
                time.sleep(0.2)
        # 3. temp-then-rename writer; a temp file left behind and a hidden file are ignored
        (acq / "renamed.tif.tmp").write_bytes(_tiff_bytes(tmp, 113.0))
        os.rename(acq / "renamed.tif.tmp", acq / "renamed.tif")
        (acq / "left.tif.tmp").write_bytes(_tiff_bytes(tmp, 119.0))
        (acq / ".hidden.tif").write_bytes(_tiff_bytes(tmp, 123.0))
        # 4. bad files: quarantined, the daemon goes on
        expected_bad = bad_inputs(acq / "bad")
        write_frame_tiff(acq / "bad" / "after.tif", paint_insitu(131.0, size=64))
        table = wait_rows(res, 4, proc=daemon)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            q = res / "quarantine.parquet"
            if q.exists() and pq.read_metadata(q).num_rows >= len(expected_bad):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        code, seconds = daemon.terminate()
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    assert code == 0
    table = frames_table(res)
    names = sorted(os.path.basename(s) for s in table.source)
    assert names == ["after.tif", "renamed.tif", "reopen.tif", "slow.tif"]
    angles = dict(zip(table.source.map(os.path.basename), table.contact_angle_deg, strict=True))
    for name, angle in [("slow.tif", 101), ("reopen.tif", 107), ("renamed.tif", 113)]:
        assert angles[name] == pytest.approx(angle, abs=5)
    q = pq.read_table(res / "quarantine.parquet").to_pandas()
    assert dict(zip(q.path.map(os.path.basename), q.error_type, strict=True)) == expected_bad
    assert {e["event"] for e in daemon.events()} >= {"file_processed", "file_quarantined"}
    # the stop line's summary counts the quarantined files too, not only the processed ones
    (stopping,) = [e for e in daemon.events() if e["event"] == "stopping"]
    assert (stopping["processed_files"], stopping["failed_files"],
            stopping["quarantined_files"]) == (4, 0, len(expected_bad))
    for e in daemon.events():  # each frame's line says what became of it
        if e["event"] == "file_processed":
            assert e["status"] and e["reason_code"] and "contact_angle_deg" in e
    # the acquisition folder got nothing new
    assert sorted(os.listdir(acq)) == sorted(
        [".hidden.tif", "bad", "left.tif.tmp", "renamed.tif", "reopen.tif", "slow.tif"])
    out = CliRunner().invoke(status, ["--out", str(res)])
    assert out.exit_code == 0, out.output
    assert "4 done" in out.output and "absurd.tif" in out.output and "5 quarantined" in out.output


def test_burst_of_200_then_restart_reprocesses_nothing(setup):
    tmp, acq, res, onnx_model = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx_model, batch_size=8)
    daemon = DaemonProcess(cfg, tmp / "log1")
    daemon.wait_event("ready")
    for i in range(200):
        # distinct bytes: identical content is one item for the content-keyed ledger
        write_frame_tiff(acq / f"f{i:03d}.tif", paint_insitu(90 + 0.3 * i, size=64),
                         acquired_at=T0 + timedelta(seconds=i))
    table = wait_rows(res, 200, timeout=90, proc=daemon)
    code, _ = daemon.terminate()
    # exit 0: drained and stopped cleanly (terminate() fails past its own 10 s)
    assert code == 0
    assert len(table) == 200 and not table.duplicated(["source", "frame"]).any()
    files_before = dataset_files(res / "frames")
    # Every processed file's batch was written to a results file (rows_written names them).
    events = daemon.events()
    written = {b for e in events if e.get("event") == "rows_written" for b in e["batch_ids"]}
    processed = [e for e in events if e.get("event") == "file_processed"]
    assert len(processed) == 200 and all(e["batch_id"] in written for e in processed)

    again = DaemonProcess(cfg, tmp / "log2")
    scan = again.wait_event("initial_scan")
    again.wait_event("ready")
    time.sleep(1.0)
    code, _ = again.terminate()
    assert code == 0 and scan["candidates"] == 0
    assert dataset_files(res / "frames") == files_before
    assert not [e for e in again.events() if e.get("event") == "file_processed"]


def _exactly_once(res, sources):
    table = frames_table(res)
    keys = list(zip(table.source, table.frame, strict=True))
    assert len(keys) == len(set(keys)), "a frame was written twice"
    assert sorted(os.path.basename(s) for s, _ in keys) == sorted(sources)


def test_kill9_at_random_points_then_restart_gives_each_frame_once(setup):
    tmp, acq, res, onnx_model = setup
    names = []
    for i in range(48):
        write_frame_tiff(acq / f"f{i:02d}.tif", paint_insitu(90 + i, size=64),
                         acquired_at=T0 + timedelta(seconds=i))
        names.append(f"f{i:02d}.tif")
    # Each batch's rows written at once (flush_seconds 0), so that every run below leaves
    # work for the next; killing while rows are held is tested in test_service_flush.py.
    cfg = write_config(tmp / "c.toml", acq, res, onnx_model, batch_size=4, max_attempts=10,
                       flush_seconds=0)
    # Exact windows of the protocol: after the claim, and between Parquet rename and commit.
    for n, point in enumerate(["after_write:2", "after_claim:2", "after_write:1"]):
        d = DaemonProcess(cfg, tmp / f"crash{n}.log", env={"NWWATCH_CRASH_AT": point})
        assert d.proc.wait(timeout=60) == -9
    # kill -9 from outside at random moments
    rng = random.Random(5)
    for n in range(3):
        d = DaemonProcess(cfg, tmp / f"kill{n}.log")
        d.wait_event("ready")
        time.sleep(rng.uniform(0.0, 0.4))
        d.kill()
    d = DaemonProcess(cfg, tmp / "final.log")
    d.wait_event("ready")
    wait_rows(res, 48, timeout=60, proc=d)
    time.sleep(0.5)
    code, _ = d.terminate()
    assert code == 0
    _exactly_once(res, names)
    events = [e["event"] for n in range(3) for e in
              DaemonProcess.events(type("L", (), {"log_path": tmp / f"crash{n}.log"})())]
    assert "reconciled_after_crash" in events  # the crash windows were really exercised
    leftovers = list((res / "frames").rglob(".*"))
    assert leftovers == []


def test_sigterm_drains_and_systemd_notify(setup):
    tmp, acq, res, onnx_model = setup
    sock_path = tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)
    cfg = write_config(tmp / "c.toml", acq, res, onnx_model, batch_size=4)
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    daemon = DaemonProcess(cfg, tmp / "log", env=env)
    messages: list[str] = []

    def drain(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                pass

    daemon.wait_event("ready")
    for i in range(40):
        write_frame_tiff(acq / f"f{i:02d}.tif", paint_insitu(95 + i, size=96))
    drain(1.0)
    code, _ = daemon.terminate()
    drain(0.3)
    sock.close()
    assert code == 0  # drained and stopped cleanly (terminate() fails past 10 s)
    text = "\n".join(messages)
    assert "READY=1" in text and "WATCHDOG=1" in text and "STOPPING=1" in text
    assert any(m.startswith("STATUS=queue") for m in messages)
    # a long start says its step in `systemctl status`, in order, before READY=1
    steps = [m.removeprefix("STATUS=starting: ").split(" ", 1)[0] for m in messages
             if m.startswith("STATUS=starting: ")]
    assert steps == ["checking", "opening", "loading", "listing"], messages[:6]
    assert messages.index(next(m for m in messages if m.startswith("READY=1"))) == 4
    assert text.count("WATCHDOG=1") >= 3  # every ~0.2 s from the loop
    # whatever was committed is complete and in the ledger; the rest comes next start
    table = frames_table(res)
    done = 0 if table is None else len(table)
    out = CliRunner().invoke(status, ["--out", str(res), "--json"])
    assert f'"rows": {done}' in out.output


@pytest.mark.parametrize("polling", ["auto", True])
def test_live_rows_equal_replay_rows(setup, polling):
    tmp, acq, res, onnx_model = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx_model, batch_size=3, polling=polling)
    daemon = DaemonProcess(cfg, tmp / "log")
    watching = daemon.wait_event("watching")
    assert watching["mode"] == ("polling" if polling is True else "inotify")
    daemon.wait_event("ready")
    for i in range(7):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(100 + 6 * i, size=80),
                         pixel_size_nm=0.8)
    live = wait_rows(res, 7, proc=daemon)
    assert daemon.terminate()[0] == 0
    assert_replay_gives_the_live_rows(live, acq, tmp / "replayed", onnx_model)


def test_folder_missing_at_start_is_watched_once_it_appears(setup):
    tmp, _, res, onnx_model = setup
    late = tmp / "share"  # e.g. a network share mounted after the service started
    cfg = write_config(tmp / "c.toml", late, res, onnx_model)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        daemon.wait_event("watch_failed")
        daemon.wait_event("ready")  # serves the other folders meanwhile
        late.mkdir()
        write_frame_tiff(late / "first.tif", paint_insitu(117.0, size=64))
        table = wait_rows(res, 1, proc=daemon)
    finally:
        code, _ = daemon.terminate()
    assert code == 0 and table.contact_angle_deg.iloc[0] == pytest.approx(117, abs=5)
    assert [e["mode"] for e in daemon.events() if e["event"] == "watching"] == ["inotify"]
