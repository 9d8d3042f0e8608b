"""SIGTERM or a hang-up to a real `nwwatch replay` process: stopped as Ctrl-C stops it (the
rows of the files processed written, the interrupted line) with exit status 143 or 129; the
next run completes the rest exactly once."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import termios
import time

import pytest
from servicekit import (
    REPO,
    frames_table,
    hangup_as_a_terminal_gives_it,
    ledger_count,
    model,
    write_frames,
)
from structlog.testing import capture_logs

from nwwatch.service.replay import replay

N_FILES = 600


# ``nwwatch`` that, once the rows of its first files wait in memory for their Parquet file
# (after its first ``process`` call), creates the file ``argv[1]`` and waits for the test's
# signal: the signal comes with rows held and files left, however slow the machine (polling
# the ledger instead, a stalled test could signal after the last file, or during the last
# write). Then runs the code that follows it.
_WAIT_WITH_ROWS_HELD = """
import sys, time
from pathlib import Path
from nwwatch.service import pipeline
marker = Path(sys.argv.pop(1))
real_write_held = pipeline.write_held
def write_held(engine, *args, **kwargs):
    written = real_write_held(engine, *args, **kwargs)
    if engine.buffer.batches and not marker.exists():
        marker.touch()
        time.sleep(120)  # ended by the test's signal
    return written
pipeline.write_held = write_held
sys.argv[0] = "nwwatch"
"""
_MAIN = "from nwwatch.cli import main\nmain()\n"


def _wait_for(marker, proc, read=None) -> None:
    deadline = time.monotonic() + 90
    while not marker.exists():
        assert proc.poll() is None, "the replay ended before any row was held"
        assert time.monotonic() < deadline, "no rows held in 90 s"
        if read is not None:
            read()
        time.sleep(0.02)


@pytest.mark.parametrize(("sig", "how", "status"), [(signal.SIGTERM, "SIGTERM", 143),
                                                  (signal.SIGHUP, "SIGHUP", 129)])
def test_sigterm_writes_what_was_processed_exits_143_and_the_next_run_completes(tmp_path, sig,
                                                                               how, status):
    # before: killed at once (exit -15, -1), no line, the held rows not written, and a
    # resource_tracker warning about leaked semaphores
    acq, results = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, N_FILES)
    onnx = model(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    marker = tmp_path / "held"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WAIT_WITH_ROWS_HELD + _MAIN, str(marker), "replay", str(acq),
         "--out", str(results), "--model", str(onnx)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=hangup_as_a_terminal_gives_it)
    try:
        _wait_for(marker, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err[-3000:]
    assert "Traceback" not in err and "leaked semaphore" not in err, err[-3000:]
    assert f"replay interrupted ({how}): what was written is kept; run the same command " \
           f"again to resume (nwwatch status --out {results})" in err, err[-3000:]
    table = frames_table(results)
    written = 0 if table is None else len(table)
    assert 0 < written < N_FILES
    assert ledger_count(results, "items", "state='done'") == written
    again = replay(acq, results, model=onnx)
    assert (again.skipped, again.done) == (written, N_FILES - written)
    table = frames_table(results)
    assert len(table) == N_FILES and not table.duplicated(["source", "frame"]).any()


# ``nwwatch`` that writes to the file ``argv[1]`` what ended it (the exception and the chain
# before it): a process whose terminal closed can say it nowhere else
_RECORDING = """
import sys, traceback
record = open(sys.argv.pop(1), "w")
try:
    from nwwatch.cli import main
    main()
except BaseException as exc:
    traceback.print_exception(exc, file=record)
    raise
"""


def test_a_replay_whose_terminal_closes_writes_what_was_processed(tmp_path):
    """The terminal of a foreground replay closed (an ssh session dropped): the kernel sends
    SIGHUP, and the terminal takes no more output. The rows held in memory are written and
    the replay exits 129, its line to a terminal that is gone dropped."""
    acq, results = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, N_FILES)
    onnx = model(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    record = tmp_path / "ended.txt"
    master, slave = os.openpty()

    def controlling_terminal() -> None:  # in the child: the pty is its session's terminal
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        hangup_as_a_terminal_gives_it()

    marker = tmp_path / "held"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WAIT_WITH_ROWS_HELD + _RECORDING, str(marker), str(record),
         "replay", str(acq), "--out", str(results), "--model", str(onnx)],
        env=env, stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal)
    os.close(slave)
    os.set_blocking(master, False)

    def read_the_terminal() -> None:  # the progress bar, so the replay never blocks on it
        try:
            os.read(master, 65536)
        except BlockingIOError:
            pass

    try:
        _wait_for(marker, proc, read_the_terminal)
        os.close(master)  # the terminal closes: SIGHUP to its session
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    table = frames_table(results)
    written = 0 if table is None else len(table)
    ended = record.read_text() if record.exists() else "(nothing recorded)"
    assert proc.returncode == 129, ended
    assert "HungUp" in ended, ended
    assert 0 < written < N_FILES
    assert ledger_count(results, "items", "state='done'") == written
    again = replay(acq, results, model=onnx)
    assert (again.skipped, again.done) == (written, N_FILES - written)


def test_a_replay_whose_output_is_cut_short_exits_with_its_status(tmp_path):
    """``nwwatch replay ... | head -1``: the reader of its last lines went away. Every file
    is processed, so the status is 0, without a traceback or Python's "Exception ignored"
    (exit 1 and 120 before)."""
    acq, results = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, 3)
    onnx = model(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay", str(acq),
         "--out", str(results), "--model", str(onnx)],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # nobody reads the summary
    err = proc.stderr.read()
    proc.wait(timeout=120)
    proc.stderr.close()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    assert len(frames_table(results)) == 3


# ``nwwatch replay`` that sends itself ``argv[1]`` (a signal number) as soon as its first batch
# is held in the ledger, before that batch reaches the buffer a stopping replay writes.
_STOP_AFTER_HOLD = """
import os, sys
from nwwatch.service import ledger
sig = int(sys.argv.pop(1))
real_hold = ledger.Ledger.hold
def hold(self, *args, **kwargs):
    quarantined = real_hold(self, *args, **kwargs)
    if not getattr(hold, "sent", False):
        hold.sent = True
        os.kill(os.getpid(), sig)
    return quarantined
ledger.Ledger.hold = hold
sys.argv[0] = "nwwatch"
from nwwatch.cli import main
main()
"""


def test_a_stop_right_after_a_batch_is_held_writes_that_batch(tmp_path):
    # the ledger held the batch, the signal came before it was added to the buffer: the
    # stopping replay wrote nothing of it (seen as a flaky run of the test above)
    acq, results = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, 40)
    onnx = model(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _STOP_AFTER_HOLD, str(int(signal.SIGTERM)), "replay", str(acq),
         "--out", str(results), "--model", str(onnx)],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr[-3000:]
    assert "replay interrupted (SIGTERM)" in done.stderr
    table = frames_table(results)
    written = 0 if table is None else len(table)
    assert 0 < written < 40
    assert ledger_count(results, "items", "state='done'") == written


# ``nwwatch replay`` that sends itself ``argv[1]`` (a signal number) once its first batch is
# claimed: stopped while that batch is in flight (``writing``), as an operator stops a replay
# of a large stack that is processed alone.
_STOP_AFTER_CLAIM = _STOP_AFTER_HOLD.replace("real_hold = ledger.Ledger.hold",
                                             "real_hold = ledger.Ledger.claim").replace(
    "ledger.Ledger.hold = hold", "ledger.Ledger.claim = hold")


def _stop_signals_as_a_terminal_gives_them() -> None:
    """A ``preexec_fn``: SIGHUP and SIGINT at their defaults, whatever the test runner was
    started with (``nohup`` ignores SIGHUP, a shell's background job SIGINT)."""
    hangup_as_a_terminal_gives_it()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_stops_in_flight_charge_the_file_nothing_and_the_next_run_processes_it(tmp_path):
    # before: each stop was taken for a crash of this file ("the service stopped (crash or
    # kill) while processing this file alone"), an attempt charged each time: the fourth run
    # quarantined the file and exited 3 without processing it
    acq, results = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, 1)
    onnx = model(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for sig, status in [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]:
        done = subprocess.run(
            [sys.executable, "-c", _STOP_AFTER_CLAIM, str(int(sig)), "replay", str(acq),
             "--out", str(results), "--model", str(onnx)],
            env=env, capture_output=True, text=True, timeout=120,
            preexec_fn=_stop_signals_as_a_terminal_gives_them)
        assert done.returncode == status, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert ledger_count(results, "batches", "state='writing' AND stopped_at IS NOT NULL") \
            == 1, done.stderr[-3000:]
        assert "reconciled_after_crash" not in done.stderr, done.stderr[-3000:]
        assert ledger_count(results, "items", "attempts > 0 OR state='quarantined'") == 0
    with capture_logs() as events:
        again = replay(acq, results, model=onnx)
    assert (again.done, again.failed, again.quarantined) == (1, 0, 0)
    assert [e["log_level"] for e in events if e["event"] == "resumed_after_stop"] == ["info"]
    assert not [e for e in events if e["event"] == "reconciled_after_crash"], events
    assert len(frames_table(results)) == 1



# ``nwwatch`` that sends itself SIGHUP at the first call of ``argv[1]`` (``module:function``
# or ``module:Class.method``), just before it runs, with the replay writing its held rows
# every ``argv[2]`` rows: a hang-up landing at that very point of a real run
_HANG_UP_AT = """
import importlib, os, signal, sys
where, rows = sys.argv.pop(1), int(sys.argv.pop(1))
module_name, _, attr = where.partition(":")
owner = importlib.import_module(module_name)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
real = getattr(owner, name)
def patched(*args, **kwargs):
    if not getattr(patched, "sent", False):
        patched.sent = True
        os.kill(os.getpid(), signal.SIGHUP)
    return real(*args, **kwargs)
setattr(owner, name, patched)
importlib.import_module("nwwatch.service.replay").REPLAY_FLUSH_ROWS = rows
sys.argv[0] = "nwwatch"
from nwwatch.cli import main
main()
"""


def _replay_hung_up_at(tmp_path, where: str, flush_rows: int, n_files: int):
    acq, results = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, n_files)
    onnx = model(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _HANG_UP_AT, where, str(flush_rows), "replay", str(acq),
         "--out", str(results), "--model", str(onnx)],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=120, preexec_fn=hangup_as_a_terminal_gives_it)
    assert done.returncode == 129, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return acq, results, onnx


def test_a_hang_up_just_after_a_file_is_renamed_into_place_writes_its_rows_once(tmp_path):
    # before: the batches of the file stayed held, and the stopping replay wrote their rows
    # into a second file that no rerun or compaction removed (32 rows twice for good)
    acq, results, onnx = _replay_hung_up_at(tmp_path, "nwwatch.service.flush:RowBuffer._drop",
                                            8, 120)
    table = frames_table(results)
    assert 0 < len(table) < 120 and not table.duplicated(["source", "frame"]).any()
    with capture_logs():
        again = replay(acq, results, model=onnx)
    assert again.skipped + again.done == 120 and again.done == 120 - len(table)
    table = frames_table(results)
    assert len(table) == 120 and not table.duplicated(["source", "frame"]).any()
    assert ledger_count(results, "items", "state='done'") == 120


def test_a_hang_up_during_the_last_write_still_writes_every_row(tmp_path):
    # before: the write was cut short and nothing was written ("what was written is kept"
    # all the same); the next run processed every file again after a "crash"
    acq, results, onnx = _replay_hung_up_at(
        tmp_path, "nwwatch.service.flush:write_table_atomic", 20_000, 40)
    assert len(frames_table(results)) == 40
    assert ledger_count(results, "items", "state='done'") == 40
    with capture_logs() as events:
        again = replay(acq, results, model=onnx)
    assert (again.skipped, again.done) == (40, 0)
    assert not [e for e in events if e["event"] == "reconciled_after_crash"], events


def test_a_second_stop_signal_while_the_stopped_replay_exits_keeps_its_status(tmp_path):
    # SIGTERM, then a hang-up as the replay prints its last line: before, the process died of
    # the hang-up (status 129, or -1 to a caller) instead of 143
    acq, results = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, 40)
    onnx = model(tmp_path)
    script = _STOP_AFTER_HOLD.replace("sys.argv[0] = \"nwwatch\"", """
from nwwatch.service import cli as service_cli
real_kept = service_cli._what_an_interrupt_kept
def kept(out_dir):
    os.kill(os.getpid(), __import__("signal").SIGHUP)
    return real_kept(out_dir)
service_cli._what_an_interrupt_kept = kept
sys.argv[0] = "nwwatch\"""")
    assert script != _STOP_AFTER_HOLD
    done = subprocess.run(
        [sys.executable, "-c", script, str(int(signal.SIGTERM)), "replay", str(acq),
         "--out", str(results), "--model", str(onnx)],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=120, preexec_fn=hangup_as_a_terminal_gives_it)
    assert done.returncode == 143, done.stderr[-3000:]
    assert "replay interrupted (SIGTERM)" in done.stderr
