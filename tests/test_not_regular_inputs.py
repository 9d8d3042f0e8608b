"""A FIFO (named pipe), device or folder named as an input file is refused by name, never
opened and waited on: opening a FIFO for reading blocks until someone writes to it. The
commands run in a subprocess with a timeout, so a reader that blocks fails the test instead
of hanging the suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nwwatch.io import NotARegularFileError, check_regular, open_regular, write_volume_tiff

ROOT = Path(__file__).resolve().parents[1]
# Long enough for torch's import on a loaded machine; a blocked open never returns at all.
TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


def _nwwatch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    try:
        return subprocess.run([sys.executable, "-c", "from nwwatch.cli import main; main()",
                               *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"nwwatch {' '.join(args)} still running after {TIMEOUT_S} s: blocked "
                    f"opening a FIFO?")


def _refused(out: subprocess.CompletedProcess, name: str) -> None:
    assert out.returncode != 0, out.stdout
    assert f"{name}: not a regular file: a FIFO (named pipe)" in out.stderr + out.stdout


def _label_png(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(path)
    return path


def test_open_regular_refuses_a_fifo_a_folder_and_a_device_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    for path, what in [(fifo, "a FIFO (named pipe)"), (tmp_path, "a folder"),
                       (Path(os.devnull), "a character device")]:
        reason = re.escape(f"not a regular file: {what}")
        with pytest.raises(NotARegularFileError, match=reason) as info:
            open_regular(path)
        assert info.value.path == path
    regular = tmp_path / "a.bin"
    regular.write_bytes(b"II*\x00")
    with open_regular(regular) as handle:
        assert handle.read() == b"II*\x00"
    assert check_regular(regular).st_size == 4
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing.tif")


def test_train_refuses_a_fifo_as_volume(tmp_path):
    os.mkfifo(tmp_path / "volume.tif")
    _label_png(tmp_path / "labels.png")
    out = _nwwatch(["train", "--volume", "volume.tif", "--slice", "0", "--labels",
                    "labels.png", "--out", "model.onnx"], tmp_path)
    _refused(out, "volume.tif")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_train_refuses_a_fifo_as_labels(tmp_path, suffix):
    volume = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    write_volume_tiff(tmp_path / "volume.tif", volume)
    os.mkfifo(tmp_path / f"labels{suffix}")
    out = _nwwatch(["train", "--volume", "volume.tif", "--slice", "1", "--labels",
                    f"labels{suffix}", "--out", "model.onnx"], tmp_path)
    _refused(out, f"labels{suffix}")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_measure_skips_a_fifo_by_name(tmp_path, suffix):
    os.mkfifo(tmp_path / f"frame{suffix}")
    out = _nwwatch(["measure", f"frame{suffix}", "--out", "rows.parquet"], tmp_path)
    _refused(out, f"frame{suffix}")


def test_label_refuses_a_fifo_by_name(tmp_path):
    os.mkfifo(tmp_path / "frame.tif")
    out = _nwwatch(["label", "frame.tif", "--out", "data", "--no-browser", "--port", "0"],
                   tmp_path)
    _refused(out, "frame.tif")
    assert not (tmp_path / "data").exists()


def test_an_interrupt_once_the_file_object_owns_the_descriptor_stays_an_interrupt(
        tmp_path, monkeypatch):
    """Ctrl-C, or SIGTERM raised as one, arriving in ``os.fdopen`` after its file object took
    the descriptor: the interrupt propagates. Was: the descriptor closed a second time, and
    an OSError (EBADF) replaced the interrupt, a traceback where replay prints 'stopped'."""
    from nwwatch.io import regular

    path = tmp_path / "f.tif"
    path.write_bytes(b"II*\x00")
    real_fdopen = os.fdopen

    def interrupted_fdopen(fd, mode):
        real_fdopen(fd, mode)  # the object owns fd and, dropped here, closes it
        raise KeyboardInterrupt

    monkeypatch.setattr(regular.os, "fdopen", interrupted_fdopen)
    with pytest.raises(KeyboardInterrupt):
        regular.open_regular(path)


def test_an_output_that_is_a_device_or_a_stream_is_refused_before_the_work(tmp_path):
    # the output is written beside its name and renamed into place: `--json /dev/null` run
    # as root replaced /dev/null itself with a file (seen on the build machine), a FIFO was
    # replaced, and /dev/stdout (a link to /proc/self/fd/1) likewise
    import stat

    from click.testing import CliRunner

    from nwwatch.cli import main
    from nwwatch.options import stream_problem

    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    for out, said in [(os.devnull, "lies in /dev (a device or a stream)"),
                      ("/dev/stdout", "lies in /dev (a device or a stream)"),
                      ("/proc/self/fd/1", "lies in /proc (a device or a stream)"),
                      (str(fifo), "is a device, a FIFO or a socket")]:
        result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(tmp_path),
                                           "--json", out])
        assert result.exit_code == 2, result.output
        assert f"{out} {said}, not a file" in " ".join(result.output.split()), result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert stream_problem(tmp_path / "report.json") is None
