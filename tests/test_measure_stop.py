"""Ctrl-C (SIGINT), SIGTERM and a hang-up (SIGHUP) to a real ``nwwatch measure`` process: the
rows measured so far are written to --out (atomically), the overlays written stay, the exit
status is 130, 143 or 129, and the last line says how many rows were written and which files
were not measured; also when the signal comes while the command's modules are imported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from ideal_caps import render_ideal_cap
from servicekit import REPO
from test_stop_signals import NAME, STATUS, _last_line, _signal_during_import

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
#: enough label images that the run is far from its end when the signal comes
N_FILES = 1000


def _label_files(folder: Path) -> list[Path]:
    """A text file named .png (skipped), then N_FILES label images (hard links of one)."""
    folder.mkdir()
    first = folder / "cap_0000.png"
    cv2.imwrite(str(first), render_ideal_cap((160, 160), 112.0, 25.0, 35.0, (90.3, 70.8)).labels)
    files = [first]
    for i in range(1, N_FILES):
        files.append(folder / f"cap_{i:04d}.png")
        os.link(first, files[-1])
    broken = folder / "broken.png"
    broken.write_text("not an image\n")
    return [broken, *files]


def _stop_signals_at_their_default() -> None:
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_measure_stopped_writes_the_rows_so_far_and_names_what_was_not_measured(tmp_path,
                                                                              sig):
    # before: Ctrl-C ended in click's "Aborted!" (exit 1), SIGTERM and SIGHUP killed it
    # without a word (exit -15, -1); in each case no --out, every row computed lost
    files = _label_files(tmp_path / "labels")
    out, overlays = tmp_path / "rows.parquet", tmp_path / "qa"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "measure",
         *map(str, files), "--out", str(out), "--overlays", str(overlays)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_stop_signals_at_their_default)
    try:
        for _ in range(5):  # a few files measured (each link's note that it is a copy aside)
            line = proc.stdout.readline()
            while line.startswith("note: ") and "has the same content as" in line:
                line = proc.stdout.readline()
            assert line.startswith(str(files[1].parent)), (line, proc.poll())
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == STATUS[sig], err[-3000:]
    assert "Traceback" not in err and "Aborted" not in err, err[-3000:]
    rows = pq.read_table(out).to_pylist()
    written = len(rows)
    assert 5 <= written < N_FILES
    assert [r["source"] for r in rows] == [str(p) for p in files[1:written + 1]]
    assert all(r["status"] == "ok" for r in rows)
    # its stdout has one line per row written, no more
    assert 5 + len(rest.splitlines()) == written
    first_left = files[written + 1]
    assert _last_line(err) == (
        f"measure interrupted ({NAME[sig]}): wrote {written} row(s) to {out}; "
        f"{N_FILES - written} file(s) not measured: {first_left} and the "
        f"{N_FILES - written - 1} after it; 1 file(s) skipped (see above)")
    assert f"skipped {files[0]}: " in err
    # the overlays of the rows written stay; the Parquet file was renamed into place whole
    assert len(list(overlays.iterdir())) >= written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", "qa", "rows.parquet"]


def test_measure_stopped_within_a_stack_names_the_pages_not_measured(tmp_path):
    labels = render_ideal_cap((160, 160), 112.0, 25.0, 35.0, (90.3, 70.8)).labels
    stack, out = tmp_path / "stack.tif", tmp_path / "rows.parquet"
    tifffile.imwrite(stack, np.repeat(labels[None], N_FILES, axis=0), photometric="minisblack")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "measure", str(stack),
         "--out", str(out)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_stop_signals_at_their_default)
    try:
        for _ in range(5):
            assert proc.stdout.readline().startswith(f"{stack}["), proc.poll()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    written = pq.read_table(out).column("frame").to_pylist()
    assert 5 <= len(written) < N_FILES and written == list(range(len(written)))
    assert _last_line(err) == (
        f"measure interrupted (Ctrl-C): wrote {len(written)} row(s) to {out}; 1 file(s) not "
        f"measured: {stack} from page {len(written)} on (its first {len(written)} page(s) "
        "are in the rows)")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_measure_stopped_while_it_starts_says_so_and_writes_nothing(tmp_path, sig):
    files = _label_files(tmp_path / "labels")[:3]
    out = tmp_path / "rows.parquet"
    done = _signal_during_import(sig, "nwwatch.measure", "measure", *map(str, files),
                                 "--out", str(out))
    assert done.returncode == STATUS[sig], done.stderr
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr, done.stderr
    assert _last_line(done.stderr) == (f"measure interrupted ({NAME[sig]}): nothing was "
                                       f"written to {out}; 3 file(s) not measured: "
                                       f"{files[0]} and the 2 after it")
    assert not out.exists()


# ``nwwatch measure`` stopped by SIGTERM at the first statement after its first row is
# appended to the rows (its handler called there, as a signal landing there runs it)
_STOP_AFTER_FIRST_ROW = """
import inspect, signal, sys
from nwwatch.measure import cli
lines, first = inspect.getsourcelines(cli._measure)
start = first + next(i for i, line in enumerate(lines) if "rows.append({" in line)
end = start + next(i for i, line in enumerate(lines[start - first:]) if line.strip() == "})")
state = {"appending": False, "sent": False}
def local(frame, event, arg):
    if event == "line" and not state["sent"]:
        if frame.f_lineno == start:
            state["appending"] = True
        elif state["appending"] and frame.f_lineno > end:
            state["sent"] = True
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, frame)
    return local
def calls(frame, event, arg):
    return local if frame.f_code is cli._measure.__code__ else None
sys.settrace(calls)
sys.argv[0] = "nwwatch"
from nwwatch.cli import main
main()
"""


def test_measure_stopped_just_after_a_row_names_its_file_as_measured(tmp_path):
    # before: the file whose row was in was named first among those not measured
    files = _label_files(tmp_path / "labels")[1:3]
    out = tmp_path / "rows.parquet"
    done = subprocess.run([sys.executable, "-c", _STOP_AFTER_FIRST_ROW, "measure",
                           *map(str, files), "--out", str(out)],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr[-3000:]
    assert _last_line(done.stderr) == (
        f"measure interrupted (SIGTERM): wrote 1 row(s) to {out}; 1 file(s) not measured: "
        f"{files[1]}")
