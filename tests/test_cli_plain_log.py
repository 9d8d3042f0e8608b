"""A command run at a terminal prints its warnings as plain lines; piped (a script, the
journal) it prints JSON lines. The replay's warning about a volume in an in-situ replay is
the example: a real process, its stderr a real pseudo-terminal or a pipe."""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx_models import build_threshold_model

from nwwatch.io import write_volume_tiff

ROOT = Path(__file__).resolve().parents[1]


def _replay(tmp_path: Path, terminal: bool) -> tuple[int, str]:
    """(exit status, stderr) of ``nwwatch replay acq --out res`` on a volume, stderr a
    pseudo-terminal when ``terminal``."""
    model = build_threshold_model(tmp_path / "m.onnx")
    acq = tmp_path / "acq"
    acq.mkdir()
    volume = (np.random.default_rng(0).random((3, 32, 32)) * 200).astype(np.uint8)
    write_volume_tiff(acq / "vol.tif", volume)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", COLUMNS="100")
    command = [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay",
               str(acq), "--out", str(tmp_path / "res"), "--model", str(model)]
    if not terminal:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stderr
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal's last writer
                break
            if not chunk:
                break
            chunks.append(chunk)
        return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)


def test_warnings_at_a_terminal_are_plain_lines(tmp_path):
    code, err = _replay(tmp_path, terminal=True)
    assert code == 0, err
    vol = tmp_path / "acq" / "vol.tif"
    assert f"warning: replay.volume_like_input (path={vol}, pages=3" in err, err
    assert '{"' not in err and '"event"' not in err


def test_warnings_into_a_pipe_are_json_lines(tmp_path):
    code, err = _replay(tmp_path, terminal=False)
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    warned = [e for e in events if e["event"] == "replay.volume_like_input"]
    assert [(e["level"], e["path"], e["pages"]) for e in warned] == [
        ("warning", str(tmp_path / "acq" / "vol.tif"), 3)]


class _GoneTerminal(io.StringIO):
    """A stream whose terminal hung up: every write fails with EIO."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize("plain", [True, False])
def test_a_line_to_a_stream_that_is_gone_is_dropped(plain):
    # before: the OSError reached the code that logged, e.g. a replay writing the rows it
    # held after its terminal closed, which then ended with a traceback (exit 1)
    from nwwatch.logsetup import configure_logging, get_logger

    configure_logging("warning", stream=_GoneTerminal(), plain=plain)
    get_logger().warning("file_failed", reason="x")
    closed = io.StringIO()
    configure_logging("warning", stream=closed, plain=plain)
    closed.close()
    get_logger().warning("file_failed", reason="x")  # ValueError: a closed stream
    kept = io.StringIO()
    configure_logging("warning", stream=kept, plain=plain)
    get_logger().warning("file_failed", reason="x")
    assert "file_failed" in kept.getvalue()
