"""Names in the watched folder that cannot even be stat'ed: the service quarantines them and
goes on (real ``nwwatch run`` processes)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from servicekit import DaemonProcess, frames_table, model, paint_insitu, wait_rows, write_config

from nwwatch.io import write_frame_tiff

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


@pytest.fixture()
def setup(tmp_path):
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    return tmp_path, acq, res, model(tmp_path)


def _frame(folder: Path, i: int) -> str:
    write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(90 + i, size=48),
                     acquired_at=T0 + timedelta(seconds=i))
    return f"f{i:03d}.tif"


def test_a_symlink_loop_created_while_running_is_quarantined_not_a_crash(setup):
    # Before the fix the event for loopa.tif reached os.stat, whose ELOOP (an OSError other
    # than FileNotFoundError/PermissionError) ended the service with a traceback: under
    # systemd a restart loop, since every new event of the loop did it again.
    tmp, acq, res, onnx = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        daemon.wait_event("ready")
        (acq / "loopa.tif").symlink_to("loopb.tif")
        (acq / "loopb.tif").symlink_to("loopa.tif")
        names = [_frame(acq, 0)]
        wait_rows(res, 1, proc=daemon)
        daemon.wait_event("file_quarantined", count=2)
        names.append(_frame(acq, 1))  # still processing
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
