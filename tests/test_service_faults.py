"""Fault drills against a real `nwwatch run` process (real signals, real files): hostile file
types and names, a lost, deleted or damaged ledger, a file that kills the process, a full disk,
a watched folder replaced, symlinks out of the watched tree, quarantine consistency."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from servicekit import (
    REPO,
    DaemonProcess,
    frames_table,
    ledger_count,
    paint_insitu,
    wait_batch_claimed,
    wait_rows,
    write_config,
    write_frames,
)

from nwwatch.io import write_frame_tiff
from nwwatch.service import replay
from nwwatch.service.cli import status


def _once(res: Path, names: list[str]) -> None:
    table = frames_table(res)
    keys = list(zip(table.source, table.frame, strict=True))
    assert len(keys) == len(set(keys)), "a frame was written twice"
    assert sorted(os.path.basename(s) for s, _ in keys) == sorted(names)


def _stop(daemon: DaemonProcess) -> int:
    if daemon.proc.poll() is not None:
        return daemon.wait_exit()
    code, _ = daemon.terminate(timeout=30)
    return code


def _quarantine(res: Path) -> dict[str, str]:
    q = pq.read_table(res / "quarantine.parquet").to_pylist()
    return {os.path.basename(r["path"]): r["error_type"] for r in q}


# --- opening files can never block the service --------------------------------------------

def test_a_fifo_is_quarantined_and_never_blocks(setup):
    tmp, acq, res, onnx = setup
    os.mkfifo(acq / "x.tif")
    names = write_frames(acq, 3)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        wait_rows(res, 3, proc=daemon)
        daemon.wait_event("file_quarantined")
        names += write_frames(acq, 2, start=3)  # later frames are still processed
        wait_rows(res, 5, proc=daemon)
    finally:
        code = _stop(daemon)
    assert code == 0
    _once(res, names)
    assert _quarantine(res) == {"x.tif": "NotARegularFileError"}
    reason = pq.read_table(res / "quarantine.parquet").column("reason")[0].as_py()
    assert "FIFO" in reason


def test_sigterm_ends_the_service_whatever_the_main_thread_is_blocked_in(setup):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 4)
    cfg = write_config(tmp / "c.toml", acq, res, onnx,
                       extra="[service]\nstop_timeout_seconds = 1")
    daemon = DaemonProcess(cfg, tmp / "log1", env={"NWWATCH_CRASH_AT": "in_batch:1"})
    daemon.wait_event("ready")
    wait_batch_claimed(res)  # the first batch hangs for good inside process()
    code, seconds = daemon.terminate(timeout=30)
    assert code == 1 and seconds < 25
    assert daemon.wait_event("stop_timeout")["seconds"] == 1
    again = DaemonProcess(cfg, tmp / "log2")
    try:
        # the batch the stop cut short is released without an attempt, and said so
        assert again.wait_event("resumed_after_stop")["level"] == "info"
        wait_rows(res, 4, proc=again)
    finally:
        assert _stop(again) == 0
    _once(res, names)


# --- any file name ------------------------------------------------------------------------

def test_a_name_that_is_not_utf8_goes_through_the_service_and_replay(setup):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 2)
    raw = os.fsencode(acq) + b"/bad\xffname.tif"
    os.rename(acq / names.pop(), os.fsdecode(raw))
    (Path(os.fsdecode(os.fsencode(acq) + b"/junk\xfe.tif"))).write_bytes(b"not a tiff" * 9)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log1")
    try:
        table = wait_rows(res, 2, proc=daemon)
        daemon.wait_event("file_quarantined")
    finally:
        assert _stop(daemon) == 0
    shown = str(acq) + "/bad\\xffname.tif"
    assert sorted(table.source) == sorted([shown, str(acq / "f000.tif")])
    assert _quarantine(res) == {"junk\\xfe.tif": "NotATiffError"}
    again = DaemonProcess(cfg, tmp / "log2")  # a restart recognises both from the ledger
    try:
        assert again.wait_event("initial_scan")["candidates"] == 0
    finally:
        assert _stop(again) == 0
    out = CliRunner().invoke(status, ["--out", str(res)])
    assert out.exit_code == 0 and "junk\\xfe.tif" in out.output
    summary = replay(acq, tmp / "replayed", kind="insitu", model=onnx)
    assert (summary.done, summary.quarantined) == (2, 1)
    assert sorted(frames_table(tmp / "replayed").source) == sorted(table.source)
    again = replay(acq, tmp / "replayed", kind="insitu", model=onnx)
    assert (again.skipped, again.quarantined, again.still_quarantined) == (2, 1, 1)


# --- the ledger knows where it is, and results can rebuild it ------------------------------

def test_results_folder_removed_while_running_stops_the_service_and_nothing_is_written_twice(
        setup):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 6)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log1")
    wait_rows(res, 6, proc=daemon)
    shutil.rmtree(res)
    names += write_frames(acq, 6, start=6)
    assert daemon.wait_exit(timeout=60) == 78
    lost = daemon.wait_event("results_lost")
    assert "deleted" in lost["reason"] and "twice" in lost["action"]
    again = DaemonProcess(cfg, tmp / "log2")  # results are gone: everything is written anew
    try:
        wait_rows(res, 12, proc=again)
    finally:
        assert _stop(again) == 0
    _once(res, names)


def test_a_second_instance_is_refused_and_a_lost_lock_stops_the_first(setup):
    tmp, acq, res, onnx = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx)
    first = DaemonProcess(cfg, tmp / "log1")
    first.wait_event("ready")
    second = DaemonProcess(cfg, tmp / "log2")
    assert second.wait_exit(timeout=60) == 78
    assert "in use by another nwwatch process" in second.wait_event("startup_failed")["error"]
    (res / "ledger.sqlite.lock").unlink()  # e.g. a clean-up script
    assert first.wait_exit(timeout=60) == 78
    assert "lock" in first.wait_event("results_lost")["reason"]


def test_a_deleted_ledger_is_rebuilt_from_the_results(setup):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 5)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log1")
    try:
        wait_rows(res, 5, proc=daemon)
    finally:
        assert _stop(daemon) == 0
    for suffix in ("", "-wal", "-shm"):
        (res / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
    names += write_frames(acq, 1, start=5)
    again = DaemonProcess(cfg, tmp / "log2")
    try:
        rebuilt = again.wait_event("ledger_rebuilt")
        wait_rows(res, 6, proc=again)
        again.wait_event("file_skipped", count=5)  # hashed again, found done
    finally:
        assert _stop(again) == 0
    assert rebuilt["items"] == 5 and rebuilt["rows"] == 5
    _once(res, names)
    processed = [e for e in again.events() if e.get("event") == "file_processed"]
    assert [os.path.basename(e["source"]) for e in processed] == ["f005.tif"]


def test_a_missing_ledger_beside_unreadable_results_is_refused_with_exit_78(setup):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 3)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log1")
    try:
        wait_rows(res, 3, proc=daemon)
    finally:
        assert _stop(daemon) == 0
    (res / "ledger.sqlite").unlink()
    (res / "frames" / "frames-damaged.parquet").write_bytes(b"PAR1 not really")
    refused = DaemonProcess(cfg, tmp / "log2")
    assert refused.wait_exit(timeout=60) == 78
    line = refused.wait_event("startup_failed")
    assert line["error_type"] == "LedgerMissingError"
    assert "nwwatch ledger rebuild" in line["error"] and "frames-damaged" in line["error"]
    # the command as for a damaged ledger: --ledger only where it is not the default, and
    # the section of docs/service.md that exists
    assert f"`nwwatch ledger rebuild {res}`" in line["error"], line["error"]
    assert "(docs/service.md, Faults and recovery)" in line["error"]
    (res / "frames" / "frames-damaged.parquet").rename(tmp / "frames-damaged.parquet")
    out = _cli("ledger", "rebuild", str(res))
    assert out.returncode == 0 and "3 items done" in out.stdout, out.stderr
    again = DaemonProcess(cfg, tmp / "log3")
    try:
        again.wait_event("file_skipped", count=3)  # hashed again, found done
    finally:
        assert _stop(again) == 0
    assert not [e for e in again.events() if e.get("event") == "file_processed"]
    _once(res, names)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nwwatch.service", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("damage", ["garbage", "page"])
def test_a_corrupted_ledger_exits_78_with_a_structured_error_and_rebuild_recovers(setup,
                                                                                  damage):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 4)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2, batch_size=1)
    daemon = DaemonProcess(cfg, tmp / "log1")
    try:
        wait_rows(res, 4, proc=daemon)
    finally:
        assert _stop(daemon) == 0
    ledger = res / "ledger.sqlite"
    db = sqlite3.connect(ledger)  # fold the WAL in, so the damage below hits live pages
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(ledger.read_bytes())
    if damage == "garbage":
        data[:] = os.urandom(len(data))
    else:  # one b-tree page of a table overwritten
        page = int.from_bytes(data[16:18], "big")
        data[2 * page:3 * page] = b"\xa5" * page
    ledger.write_bytes(bytes(data))
    broken = DaemonProcess(cfg, tmp / "log2")
    assert broken.wait_exit(timeout=60) == 78
    line = broken.wait_event("startup_failed")
    assert line["error_type"] == "LedgerCorruptError" and line["level"] == "error"
    assert "nwwatch ledger rebuild" in line["error"]
    if damage == "garbage":  # (status reads only what it needs: one bad page may not show)
        shown = CliRunner().invoke(status, ["--out", str(res)])
        assert shown.exit_code == 1 and "nwwatch ledger rebuild" in shown.output
    out = _cli("ledger", "rebuild", str(res))
    assert out.returncode == 0 and "moved aside" in out.stdout, out.stderr
    assert "4 items done" in out.stdout
    again = DaemonProcess(cfg, tmp / "log3")
    try:
        again.wait_event("file_skipped", count=4)  # hashed again, found done
    finally:
        assert _stop(again) == 0
    assert not [e for e in again.events() if e.get("event") == "file_processed"]
    _once(res, names)


# --- poison detection that finds the poison ------------------------------------------------

def test_a_frame_that_kills_the_process_is_found_alone_and_its_batch_mates_are_processed(setup):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 7)
    write_frame_tiff(acq / "poison.tif", paint_insitu(133, size=48))
    cfg = write_config(tmp / "c.toml", acq, res, onnx, batch_size=8, latency_ms=2000,
                       max_attempts=2)
    env = {"NWWATCH_CRASH_ON_SOURCE": "poison"}
    kills = 0
    for run in range(12):
        daemon = DaemonProcess(cfg, tmp / f"log{run}", env=env)
        daemon.wait_event("ready")
        deadline = time.monotonic() + 60
        while daemon.proc.poll() is None and time.monotonic() < deadline:
            q = res / "quarantine.parquet"
            table = frames_table(res)
            if (table is not None and len(table) == 7 and q.exists()
                    and pq.read_metadata(q).num_rows == 1):
                break
            time.sleep(0.05)
        if daemon.proc.poll() is not None:
            assert daemon.wait_exit() == -9
            kills += 1
            continue
        assert _stop(daemon) == 0
        break
    else:
        raise AssertionError("the poison was never isolated")
    _once(res, names)
    q = pq.read_table(res / "quarantine.parquet").to_pylist()
    assert [os.path.basename(r["path"]) for r in q] == ["poison.tif"]
    assert "alone" in q[0]["reason"] and q[0]["attempts"] == 2
    # 8 -> 4 -> 2 -> 1 files per batch, then max_attempts kills of the poison alone
    assert kills == 3 + 2


def test_three_kills_while_one_batch_is_unfinished_quarantine_none_of_its_good_frames(setup):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 8)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, batch_size=8, latency_ms=2000)
    for run in range(3):  # killed right after claiming its first batch, three times
        daemon = DaemonProcess(cfg, tmp / f"kill{run}", env={"NWWATCH_CRASH_AT": "after_claim:1"})
        assert daemon.wait_exit(timeout=60) == -9
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        wait_rows(res, 8, proc=daemon)
    finally:
        assert _stop(daemon) == 0
    _once(res, names)
    assert _quarantine(res) == {}


# --- a full disk is one condition, not a flood ---------------------------------------------

def test_a_full_disk_pauses_with_one_warning_per_backoff_and_leaves_no_batch_unfinished(
        setup):
    tmp, acq, res, onnx = setup
    names = write_frames(acq, 3)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2,
                       extra="backoff_seconds = 0.5")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify.sock"))
    notify.settimeout(0.05)
    statuses: list[str] = []
    draining = threading.Event()

    def drain() -> None:  # as systemd reads its socket (a queue holds 10 datagrams)
        while not draining.is_set():
            with contextlib.suppress(TimeoutError):
                statuses.append(notify.recv(4096).decode())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    daemon = DaemonProcess(cfg, tmp / "log", pipe=True,
                           env={"NOTIFY_SOCKET": str(tmp / "notify.sock")})
    try:
        wait_rows(res, 3, proc=daemon)
        # Every write of the process now fails as on a full disk (EFBIG past 1 byte): the
        # ledger's WAL, Parquet temporaries, the quarantine file.
        _, hard = resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (1, hard))
        names += write_frames(acq, 4, start=3)
        first = daemon.wait_event("storage_paused")
        daemon.wait_event("storage_still_paused", count=4)
        assert any(m.startswith("STATUS=paused: cannot write results or ledger")
                   for m in statuses), statuses
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        daemon.wait_event("storage_resumed")
        wait_rows(res, 7, proc=daemon)
    finally:
        code = _stop(daemon)
        draining.set()
        reader.join(5)
        notify.close()
    assert code == 0
    _once(res, names)
    events = daemon.events()
    paused = [e for e in events if e["event"].startswith("storage_")]
    assert paused[0] is not None and first["backoff_s"] == 0.5
    # no tracebacks, and nothing else complained while paused
    assert not [e for e in events if "exception" in e]
    loud = [e for e in events if e["level"] in ("warning", "error")]
    assert all(e["event"].startswith("storage_") for e in loud), loud
    t = [datetime.fromisoformat(e["timestamp"]) for e in paused if e["event"] != "storage_resumed"]
    gaps = [(b - a).total_seconds() for a, b in zip(t, t[1:], strict=False)]
    assert min(gaps) >= 0.45  # at most one line per back-off period
    assert ledger_count(res, "batches", "state='writing'") == 0


# --- live watching comes back --------------------------------------------------------------

def test_a_watched_folder_renamed_away_and_recreated_is_watched_again(setup):
    tmp, acq, res, onnx = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2, rescan=600)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        daemon.wait_event("ready")
        names = write_frames(acq, 1)
        wait_rows(res, 1, proc=daemon)
        acq.rename(tmp / "acq.old")
        acq.mkdir()
        replaced = daemon.wait_event("watch_folder_replaced")
        daemon.wait_event("watching", count=2)
        names += write_frames(acq, 1, start=1)  # found by inotify alone: the rescan is 10 min away
        wait_rows(res, 2, timeout=30, proc=daemon)
    finally:
        assert _stop(daemon) == 0
    assert replaced["path"] == str(acq)
    _once(res, names)


# --- least privilege: links out of the tree, reasons without contents ---------------------

def test_symlinks_out_of_the_watched_folder_are_not_followed_and_contents_never_echoed(setup):
    tmp, acq, res, onnx = setup
    outside = tmp / "etc"
    outside.mkdir()
    (outside / "shadow").write_text("root:SECRET-HASH-1:19000:0:99999:7:::\n")
    (acq / "shadow.tif").symlink_to(outside / "shadow")
    (acq / "notes.tif").write_text("SECRET-HASH-2 lab notes, not an image\n")
    names = write_frames(acq, 1)
    (acq / "alias.tif").symlink_to(acq / "f000.tif")  # a link inside the tree is fine
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        wait_rows(res, 1, proc=daemon)
        daemon.wait_event("file_quarantined", count=2)
        daemon.wait_event("file_skipped")  # the link and its target: one content, one row
    finally:
        assert _stop(daemon) == 0
    assert sorted(os.path.basename(s) for s in frames_table(res).source) in (
        ["alias.tif"], names)
    assert _quarantine(res) == {"shadow.tif": "ExternalSymlinkError",
                                "notes.tif": "NotATiffError"}
    for path in [tmp / "log", res / "quarantine.parquet", *res.glob("ledger.sqlite*")]:
        assert b"SECRET" not in path.read_bytes(), path


def test_following_symlinks_out_of_the_tree_is_a_setting(setup):
    tmp, acq, res, onnx = setup
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    write_frames(elsewhere, 1)
    (acq / "linked.tif").symlink_to(elsewhere / "f000.tif")
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    cfg.write_text(cfg.read_text().replace("rescan_seconds", "follow_symlinks = true\n"
                                           "rescan_seconds"))
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        table = wait_rows(res, 1, proc=daemon)
    finally:
        assert _stop(daemon) == 0
    assert list(table.source) == [str(acq / "linked.tif")]



def test_a_link_out_of_a_replayed_folder_gets_advice_replay_can_follow(setup):
    """Replay quarantined such a link with "watch.follow_symlinks = true allows it", a
    setting replay never reads; its reason now says what works for replay. The service's
    reason keeps naming the setting."""
    from nwwatch.service.inputs import check_input

    tmp, acq, res, onnx = setup
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    write_frames(elsewhere, 1)
    (acq / "linked.tif").symlink_to(elsewhere / "f000.tif")
    assert replay(acq, res, kind="insitu", model=onnx).quarantined == 1
    (reason,) = [r["reason"] for r in pq.read_table(res / "quarantine.parquet").to_pylist()]
    assert "follow_symlinks" not in reason and "nwwatch replay" in reason, reason
    with pytest.raises(Exception, match="watch.follow_symlinks = true") as service_refusal:
        check_input(acq / "linked.tif", acq)
    assert type(service_refusal.value).__name__ == "ExternalSymlinkError"
    # what the reason advises: naming the file it points to replays it
    assert replay(elsewhere / "f000.tif", res, kind="insitu", model=onnx).done == 1

def test_a_symbolic_link_loop_in_a_replayed_folder_is_quarantined_not_a_traceback(setup):
    """Was an OSError (ELOOP) traceback that ended the replay before any file was processed:
    the service quarantines such a name ("cannot stat"), replay now does too."""
    tmp, acq, res, onnx = setup
    write_frames(acq, 2)
    (acq / "loop.tif").symlink_to("loop.tif")
    s = replay(acq, res, kind="insitu", model=onnx)
    assert (s.done, s.quarantined) == (2, 1)
    (row,) = pq.read_table(res / "quarantine.parquet").to_pylist()
    assert os.path.basename(row["path"]) == "loop.tif"
    assert row["error_type"] == "UnreadableFileError"
    assert row["reason"] == "cannot stat: Too many levels of symbolic links", row
    _once(res, ["f000.tif", "f001.tif"])


def test_a_file_replay_may_not_open_is_quarantined_not_a_traceback(setup):
    """Was a PermissionError traceback that ended the replay (a frame of mode 000 in an
    archive read as another user): quarantined with the service's reason now, and processed
    by the next replay once it can be read."""
    from servicekit import without_file_access_override

    tmp, acq, res, onnx = setup
    prefix = without_file_access_override()
    write_frames(acq, 2)
    (acq / "f001.tif").chmod(0)
    cmd = [*prefix, sys.executable, "-c", "from nwwatch.cli import main; main()", "replay",
           str(acq), "--out", str(res), "--model", str(onnx)]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    finally:
        (acq / "f001.tif").chmod(0o644)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    (row,) = pq.read_table(res / "quarantine.parquet").to_pylist()
    assert (os.path.basename(row["path"]), row["error_type"], row["reason"]) == (
        "f001.tif", "UnreadableFileError", "cannot open: Permission denied")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stdout + again.stderr
    _once(res, ["f000.tif", "f001.tif"])


def test_a_dangling_link_in_a_replayed_folder_is_named_not_counted_as_vanished(setup):
    """Was "1 vanished before it was read" at every replay (a count of files deleted while
    the replay ran, not against the exit status): a link whose target is missing is named,
    and processed once the target is back."""
    tmp, acq, res, onnx = setup
    write_frames(acq, 1)
    (acq / "link.tif").symlink_to(acq / "sub" / "f009.tif")
    s = replay(acq, res, kind="insitu", model=onnx)
    assert (s.done, s.quarantined, s.vanished, s.exit_status) == (1, 1, 0, 3)
    (row,) = pq.read_table(res / "quarantine.parquet").to_pylist()
    assert (os.path.basename(row["path"]), row["error_type"]) == ("link.tif",
                                                                  "UnreadableFileError")
    assert row["reason"] == (f"symbolic link to {acq / 'sub' / 'f009.tif'}, which does not exist "
                             "(moved, deleted, or on a share not mounted)"), row
    (acq / "sub").mkdir()
    write_frames(acq / "sub", 1, start=9)  # the target is back
    s = replay(acq, res, kind="insitu", model=onnx)
    assert (s.quarantined, s.exit_status) == (0, 0)
    assert pq.read_table(res / "quarantine.parquet").num_rows == 0


# --- quarantine stays consistent -----------------------------------------------------------

def test_a_quarantined_file_replaced_and_processed_leaves_quarantine_parquet(setup):
    tmp, acq, res, onnx = setup
    (acq / "late.tif").write_bytes(b"half written? no: not a TIFF at all" * 3)
    assert replay(acq, res, kind="insitu", model=onnx).quarantined == 1
    assert _quarantine(res) == {"late.tif": "NotATiffError"}
    write_frame_tiff(acq / "late.tif", paint_insitu(121, size=48))
    assert replay(acq, res, kind="insitu", model=onnx).done == 1
    assert _quarantine(res) == {}
    out = CliRunner().invoke(status, ["--out", str(res), "--json"])
    assert json.loads(out.output)["quarantined"] == []


def test_a_quarantined_file_replaced_by_content_already_done_leaves_quarantine(setup):
    """An empty file quarantined, then rewritten with the bytes of a file already done: it is
    skipped as done (the ledger is keyed by content), and was still listed as quarantined
    ("file is empty") by quarantine.parquet and `nwwatch status`."""
    tmp, acq, res, onnx = setup
    write_frames(acq, 1)
    (acq / "late.tif").write_bytes(b"")
    first = replay(acq, res, kind="insitu", model=onnx)
    assert (first.done, first.quarantined) == (1, 1)
    assert _quarantine(res) == {"late.tif": "EmptyFileError"}
    (acq / "late.tif").write_bytes((acq / "f000.tif").read_bytes())
    again = replay(acq, res, kind="insitu", model=onnx)
    assert (again.skipped, again.quarantined) == (2, 0)
    assert _quarantine(res) == {}
    out = CliRunner().invoke(status, ["--out", str(res), "--json"])
    assert json.loads(out.output)["quarantined"] == []
    # the same while the file is still the quarantined version: it stays listed
    (acq / "bad.tif").write_bytes(b"")
    assert replay(acq, res, kind="insitu", model=onnx).quarantined == 1
    assert replay(acq, res, kind="insitu", model=onnx).still_quarantined == 1
    assert _quarantine(res) == {"bad.tif": "EmptyFileError"}


def test_a_rebuilt_ledger_keeps_the_quarantine_list(setup):
    """`nwwatch ledger rebuild` (and the automatic rebuild at start) lost the quarantine list:
    status listed nothing, the next start emptied quarantine.parquet, and a file quarantined
    after hashing (a poison file, say) was processed again. The list is read back from
    quarantine.parquet: a file whose content is the one quarantined stays quarantined without
    being tried; one that failed before hashing is listed and checked again."""
    from nwwatch.filehash import file_sha256
    from nwwatch.results.quarantine import write_quarantine
    from nwwatch.service.cli import ledger as ledger_cmd

    tmp, acq, res, onnx = setup
    write_frames(acq, 2)
    (acq / "late.tif").write_bytes(b"")
    assert replay(acq, res, kind="insitu", model=onnx).quarantined == 1
    listed = pq.read_table(res / "quarantine.parquet").to_pylist()
    # a file quarantined after it was hashed (as after max_attempts crashes of its batch)
    write_frames(acq, 1, start=2)
    poison = {"path": str(acq / "f002.tif"), "sha256": file_sha256(acq / "f002.tif"),
              "reason": "crashed the process 3 times", "error_type": "ProcessCrash",
              "attempts": 3, "quarantined_at": 1.0e9}
    write_quarantine([dict(r, quarantined_at=r["quarantined_at"].timestamp()) for r in listed]
                     + [poison], res)
    before = len(frames_table(res))
    out = CliRunner().invoke(ledger_cmd, ["rebuild", str(res)])
    assert out.exit_code == 0, out.output
    st = json.loads(CliRunner().invoke(status, ["--out", str(res), "--json"]).output)
    assert sorted(os.path.basename(q["path"]) for q in st["quarantined"]) == ["f002.tif",
                                                                              "late.tif"]
    again = replay(acq, res, kind="insitu", model=onnx)
    assert (again.done, again.skipped) == (0, 2)  # f002 not tried, f000/f001 done
    assert _quarantine(res) == {"late.tif": "EmptyFileError", "f002.tif": "ProcessCrash"}
    assert len(frames_table(res)) == before


def test_a_raw_byte_name_and_its_escaped_spelling_are_two_files(setup):
    tmp, acq, res, onnx = setup
    raw = Path(os.fsdecode(os.fsencode(acq) + b"/q\xff.tif"))  # the byte 0xff
    escaped = acq / "q\\xff.tif"  # backslash, x, f, f: valid UTF-8, displayed the same
    raw.write_bytes(b"not a TIFF, short")
    escaped.write_bytes(b"not a TIFF either, and longer")
    assert replay(acq, res, kind="insitu", model=onnx).quarantined == 2
    out = CliRunner().invoke(status, ["--out", str(res), "--json"])
    assert json.loads(out.output)["counts"]["quarantined_files"] == 2
    again = replay(acq, res, kind="insitu", model=onnx)  # each recognised by its own key
    assert (again.skipped, again.quarantined, again.still_quarantined) == (0, 2, 2)


def test_a_replaced_file_whose_batch_is_adopted_leaves_quarantine_parquet(setup):
    """Killed after the rows of the fixed file were written but before their commit: the
    restart adopts the batch, and the file leaves the quarantine list with it."""
    tmp, acq, res, onnx = setup
    (acq / "late.tif").write_bytes(b"not a TIFF at all, replaced below" * 3)
    assert replay(acq, res, kind="insitu", model=onnx).quarantined == 1
    write_frame_tiff(acq / "late.tif", paint_insitu(121, size=48))
    env = {**os.environ, "PYTHONPATH": str(REPO), "NWWATCH_CRASH_AT": "after_write:1"}
    proc = subprocess.run(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay", str(acq),
         "--out", str(res), "--model", str(onnx)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    again = replay(acq, res, kind="insitu", model=onnx)  # reconciles: adopts the batch
    assert (again.skipped, again.quarantined) == (1, 0)
    assert len(frames_table(res)) == 1
    assert _quarantine(res) == {}
    out = CliRunner().invoke(status, ["--out", str(res), "--json"])
    assert json.loads(out.output)["quarantined"] == []


def test_held_rows_released_by_a_failed_write_come_back_right_after_the_pause(setup):
    """Files whose held rows could not be written go back to the queue at once: they are
    processed again as soon as the pause ends (not at the next rescan, here 10 minutes
    away), counted once in the stop line, and each release is logged."""
    from nwwatch.results.parquet import acquisition_partition

    tmp, acq, res, onnx = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2, rescan=600.0,
                       extra="backoff_seconds = 0.5")
    # A regular file where the partition folder must go: the write fails (not a folder).
    blocker = res / "frames" / acquisition_partition(str(acq / "f000.tif"))
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"in the way")
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        daemon.wait_event("ready")
        names = write_frames(acq, 3)
        daemon.wait_event("storage_paused")
        blocker.unlink()
        wait_rows(res, 3, timeout=30, proc=daemon)
    finally:
        code = _stop(daemon)
    assert code == 0
    _once(res, names)
    events = daemon.events()
    released = [e for e in events if e["event"] == "file_requeued"]
    processed = [e for e in events if e["event"] == "file_processed"]
    # The files of the failed batch (those that had settled before the first write; on a
    # busy machine the later ones may arrive during the pause and are then simply held).
    released_names = sorted(os.path.basename(e["source"]) for e in released)
    assert released_names and set(released_names) <= set(names)
    assert "f000.tif" in released_names
    assert len(processed) == len(names) + len(released)
    for name in released_names:  # processed again after its release
        order = [e["event"] for e in events if os.path.basename(e.get("source") or "") == name
                 and e["event"] in ("file_requeued", "file_processed")]
        assert "file_processed" in order[order.index("file_requeued"):], order
    (stopping,) = [e for e in events if e["event"] == "stopping"]
    assert stopping["processed_files"] == 3 and stopping["processed_rows"] == 3
