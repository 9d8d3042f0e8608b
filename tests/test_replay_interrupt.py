"""SIGTERM to a real `nwwatch replay` process: stopped as Ctrl-C stops it (the rows of the
files processed written, the interrupted line) with exit status 143; the next run completes
the rest exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from servicekit import REPO, frames_table, ledger_count, model, write_frames

from nwwatch.service.replay import replay

N_FILES = 600


def test_sigterm_writes_what_was_processed_exits_143_and_the_next_run_completes(tmp_path):
    # before: killed at once (exit -15), no line, the held rows not written, and a
    # resource_tracker warning about leaked semaphores
    acq, results = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, N_FILES)
    onnx = model(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay", str(acq),
         "--out", str(results), "--model", str(onnx)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        # once a processed batch waits in memory for its Parquet file (written every minute)
        while not ledger_count(results, "batches", "held_at IS NOT NULL") and \
                proc.poll() is None:
            assert time.monotonic() < deadline, "no batch held in 90 s"
            time.sleep(0.02)
        ended_first = proc.poll() is not None
        if not ended_first:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if ended_first:
        pytest.skip("the replay ended before the signal")
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "leaked semaphore" not in err, err[-3000:]
    assert f"replay interrupted (SIGTERM): what was written is kept; run the same command " \
           f"again to resume (nwwatch status --out {results})" in err, err[-3000:]
    table = frames_table(results)
    written = 0 if table is None else len(table)
    assert 0 < written < N_FILES
    assert ledger_count(results, "items", "state='done'") == written
    again = replay(acq, results, model=onnx)
    assert (again.skipped, again.done) == (written, N_FILES - written)
    table = frames_table(results)
    assert len(table) == N_FILES and not table.duplicated(["source", "frame"]).any()
