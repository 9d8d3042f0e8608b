"""Faults an operator meets: a name that cannot even be stat'ed, a stop that outlasts
``stop_timeout_seconds``, /metrics after a restart, a full disk at start (real ``nwwatch run``
processes, real signals)."""

from __future__ import annotations

import os
import sqlite3
import time

import pyarrow.parquet as pq
from servicekit import (
    DaemonProcess,
    frames_table,
    ledger_count,
    wait_batch_claimed,
    wait_rows,
    write_config,
    write_frames,
)


def test_a_symlink_loop_created_while_running_is_quarantined_not_a_crash(setup):
    # Before the fix the event for loopa.tif reached os.stat, whose ELOOP (an OSError other
    # than FileNotFoundError/PermissionError) ended the service with a traceback: under
    # systemd a restart loop, since every new event of the loop did it again.
    tmp, acq, res, onnx = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        daemon.wait_event("ready")
        # Made outside and moved in as one folder: created in place, loopa.tif could be seen
        # before loopb.tif existed (a dangling link, gone) and only loopb.tif quarantined.
        loops = tmp / "loops"
        loops.mkdir()
        (loops / "loopa.tif").symlink_to("loopb.tif")
        (loops / "loopb.tif").symlink_to("loopa.tif")
        loops.rename(acq / "loops")
        names = [write_frames(acq, 1, start=0)[0]]
        wait_rows(res, 1, proc=daemon)
        daemon.wait_event("file_quarantined", count=2)
        names.append(write_frames(acq, 1, start=1)[0])  # still processing
        wait_rows(res, 2, proc=daemon)
    finally:
        code, _ = daemon.terminate(timeout=30) if daemon.proc.poll() is None else (
            daemon.wait_exit(), 0)
    assert code == 0
    assert sorted(os.path.basename(s) for s in frames_table(res).source) == names
    rows = pq.read_table(res / "quarantine.parquet").to_pylist()
    assert {os.path.basename(r["path"]): r["error_type"] for r in rows} == {
        "loopa.tif": "UnreadableFileError", "loopb.tif": "UnreadableFileError"}
    assert all("symbolic links" in r["reason"] for r in rows), rows


def test_a_stop_that_outlasts_the_batch_in_flight_charges_the_file_no_attempt(setup):
    # A stack that takes longer than stop_timeout_seconds (a big file on a CPU) is not the
    # file's fault when the operator stops the service: before the fix the next start
    # settled its batch "like after a crash" and charged the file alone an attempt, so
    # max_attempts restarts during it quarantined a good file (here max_attempts = 1: one).
    tmp, acq, res, onnx = setup
    names = [write_frames(acq, 1, start=0)[0]]
    cfg = write_config(tmp / "c.toml", acq, res, onnx, max_attempts=1,
                       extra="[service]\nstop_timeout_seconds = 1")
    daemon = DaemonProcess(cfg, tmp / "log1", env={"NWWATCH_CRASH_AT": "in_batch:1"})
    daemon.wait_event("ready")
    wait_batch_claimed(res)  # the batch of f000 hangs for good once claimed
    code, seconds = daemon.terminate(timeout=30)
    assert code == 1 and seconds < 25
    timeout = daemon.wait_event("stop_timeout")
    assert timeout["batches_released"] == 1 and timeout["during"] == "the batch in flight"
    assert daemon.wait_event("stop_requested")["stop_timeout_seconds"] == 1
    again = DaemonProcess(cfg, tmp / "log2")
    try:
        # the batch the stop cut short is released without an attempt, and said so
        assert again.wait_event("resumed_after_stop")["level"] == "info"
        wait_rows(res, 1, proc=again)
    finally:
        code, _ = again.terminate(timeout=30)
    assert code == 0
    assert [os.path.basename(s) for s in frames_table(res).source] == names
    assert ledger_count(res, "items", "state='done' AND attempts=0") == 1
    assert not (res / "quarantine.parquet").exists() or \
        pq.read_table(res / "quarantine.parquet").num_rows == 0


def test_metrics_after_a_restart_keep_the_last_frame_time_and_every_stage(setup):
    # Before the fix a restarted service served
    # nwwatch_last_frame_processed_timestamp_seconds 0 until a new frame came (a staleness
    # alert read "no frame since 1970"), and the confidence stage's series appeared only
    # after the first frame.
    import re
    import urllib.request

    tmp, acq, res, onnx = setup
    write_frames(acq, 1, start=0)[0]
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2,
                       extra='[dashboard]\nlisten = "127.0.0.1:0"')
    first = DaemonProcess(cfg, tmp / "log1")
    try:
        wait_rows(res, 1, proc=first)
    finally:
        assert first.terminate(timeout=30)[0] == 0
    db = sqlite3.connect(f"file:{res / 'ledger.sqlite'}?mode=ro", uri=True)
    (done_at,) = db.execute("SELECT MAX(processed_at) FROM items WHERE state='done'").fetchone()
    db.close()
    again = DaemonProcess(cfg, tmp / "log2")
    try:
        url = again.wait_event("dashboard_listening")["url"]
        text = urllib.request.urlopen(f"{url}metrics", timeout=10).read().decode()
    finally:
        assert again.terminate(timeout=30)[0] == 0
    last = re.search(r"^nwwatch_last_frame_processed_timestamp_seconds (\S+)$", text, re.M)
    assert last and abs(float(last.group(1)) - done_at) < 1e-3, last
    for stage in ("hash", "read", "segment", "measure", "confidence", "write"):
        for kind in ("insitu", "tomogram"):
            assert re.search(rf'^nwwatch_stage_seconds_count\{{kind="{kind}",stage="{stage}"\}} '
                             r'0\.0$', text, re.M), (stage, kind)


def test_a_full_disk_at_start_is_one_structured_line_and_status_1(setup):
    # Before the fix the lock's first write (EFBIG/ENOSPC) ended the start with a bare
    # traceback; the unit restarts on status 1, and the journal now says what failed.
    import json
    import resource
    import subprocess
    import sys

    from servicekit import REPO

    tmp, acq, res, onnx = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx)

    def no_room() -> None:  # every file write past 1 byte fails, as on a full disk
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.getrlimit(
            resource.RLIMIT_FSIZE)[1]))

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-m", "nwwatch.service", "run", "--config",
                           str(cfg)], cwd=REPO, env=env, preexec_fn=no_room,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x["event"] == "startup_failed"]
    assert failed and failed[0]["exit_status"] == 1 and "File too large" in failed[0]["error"]
    assert failed[0]["ledger"] == str(res / "ledger.sqlite")


def test_a_truncated_ledger_names_the_rebuild_command_to_run(setup):
    # Before the fix the message said `nwwatch ledger rebuild RESULTS --ledger …`, a
    # placeholder the operator had to fill in; it names the results folder now.
    import shlex
    import subprocess
    import sys

    from servicekit import REPO

    tmp, acq, res, onnx = setup
    write_frames(acq, 1, start=0)[0]
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log1")
    try:
        wait_rows(res, 1, proc=daemon)
    finally:
        assert daemon.terminate(timeout=30)[0] == 0
    ledger = res / "ledger.sqlite"
    db = sqlite3.connect(ledger)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    os.truncate(ledger, 8192)
    again = DaemonProcess(cfg, tmp / "log2")
    assert again.wait_exit() == 78
    failed = again.wait_event("startup_failed")
    assert failed["error_type"] == "LedgerCorruptError"
    command = f"nwwatch ledger rebuild {shlex.quote(str(res))}"
    assert f"`{command}`" in failed["error"], failed["error"]
    cli = "import sys; from nwwatch.cli import main; sys.argv[0] = 'nwwatch'; main()"
    done = subprocess.run([sys.executable, "-c", cli, *shlex.split(command)[1:]],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    third = DaemonProcess(cfg, tmp / "log3")
    try:
        third.wait_event("ready")
    finally:
        assert third.terminate(timeout=30)[0] == 0
    assert len(frames_table(res)) == 1


def test_a_storage_pause_is_a_metric(setup):
    # Before, /metrics had nothing to alert on while processing was paused by a full disk
    # (the queue only grew when frames kept coming); nwwatch_storage_paused is 1 meanwhile.
    import re
    import resource
    import urllib.request

    tmp, acq, res, onnx = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2,
                       extra='backoff_seconds = 0.5\n[dashboard]\nlisten = "127.0.0.1:0"')
    daemon = DaemonProcess(cfg, tmp / "log", pipe=True)

    def paused(url: str) -> float:
        text = urllib.request.urlopen(f"{url}metrics", timeout=10).read().decode()
        return float(re.search(r"^nwwatch_storage_paused (\S+)$", text, re.M).group(1))

    try:
        url = daemon.wait_event("dashboard_listening")["url"]
        assert paused(url) == 0
        _, hard = resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (1, hard))
        write_frames(acq, 1, start=0)[0]
        daemon.wait_event("storage_paused")
        assert paused(url) == 1
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        daemon.wait_event("storage_resumed")
        wait_rows(res, 1, proc=daemon)
        assert paused(url) == 0
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0


def test_a_second_ctrl_c_while_the_batch_finishes_is_no_traceback(setup):
    # An operator presses Ctrl-C again while the batch in flight finishes. Before the fix the
    # stop thread had closed its end of the wake-up pipe after the first signal, so the
    # second one's C-level write failed and Python printed "Exception ignored ... Broken
    # pipe" with a traceback between the service's JSON lines.
    import signal

    tmp, acq, res, onnx = setup
    write_frames(acq, 1, start=0)
    cfg = write_config(tmp / "c.toml", acq, res, onnx,
                       extra="[service]\nstop_timeout_seconds = 2")
    daemon = DaemonProcess(cfg, tmp / "log", env={"NWWATCH_CRASH_AT": "in_batch:1"})
    daemon.wait_event("ready")
    wait_batch_claimed(res)  # the batch hangs for good once claimed
    daemon.proc.send_signal(signal.SIGINT)
    daemon.wait_event("stop_requested")
    daemon.proc.send_signal(signal.SIGINT)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=30) == 1
    assert daemon.wait_event("stop_timeout")
    lines = daemon.log_path.read_text(errors="replace").splitlines()
    assert all(line.startswith("{") for line in lines), "\n".join(lines)


def test_metrics_count_the_files_waiting_while_a_batch_runs(setup):
    # The queue gauge was set only between batches: files that arrived in a burst and waited
    # behind the batch in flight read 0 for as long as that batch ran (a 200-page stack:
    # seconds), beside nwwatch_in_flight_frames of the batch. So was systemd's STATUS line
    # ("queue 0 files" while 4 waited).
    import re
    import socket
    import urllib.request

    tmp, acq, res, onnx = setup
    write_frames(acq, 8, start=0)
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2, batch_size=4,
                       extra='[dashboard]\nlisten = "127.0.0.1:0"\n'
                             '[service]\nstop_timeout_seconds = 1')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp / "notify.sock"))
    sock.settimeout(0.1)
    daemon = DaemonProcess(cfg, tmp / "log", env={"NWWATCH_CRASH_AT": "in_batch:1",
                                                  "NOTIFY_SOCKET": str(tmp / "notify.sock")})
    messages: list[str] = []
    try:
        url = daemon.wait_event("dashboard_listening")["url"]
        wait_batch_claimed(res)  # the first 4 files hang in flight for good
        time.sleep(1.5)
        text = urllib.request.urlopen(f"{url}metrics", timeout=10).read().decode()
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                break
    finally:
        code, _ = daemon.terminate(timeout=30)
        sock.close()
    assert code == 1  # the stop deadline ends the hung batch
    assert re.search(r"^nwwatch_in_flight_frames 4\.0$", text, re.M), text
    assert re.search(r"^nwwatch_queue_depth_files 4\.0$", text, re.M), text
    statuses = [line for m in messages for line in m.splitlines() if line.startswith("STATUS=")]
    assert statuses and statuses[-1].startswith("STATUS=queue 4 files;"), messages
