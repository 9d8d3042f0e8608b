"""The command line says what matters once: a third-party library's own line about a bad
file, harmless exporter warnings and console-format log lines stay out of the answers, while
nwwatch's reasons and real warnings remain."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import structlog
from structlog.testing import capture_logs
from tiffkit import first_page_only
from training_helpers import make_folder, write_two_phase_volume

from nwwatch.io import read_frames
from nwwatch.io.errors import TruncatedTiffError

ROOT = Path(__file__).resolve().parents[1]
TIFFFILE_LINE = "ImageJ series metadata invalid or corrupted file"
REASON = "ImageJ header declares 4 images, the file holds 1"


def _nwwatch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``nwwatch ARGS`` in a fresh process, as a terminal sees it: in-process, pytest's root
    log handler and warning recorder would swallow the very lines under test, and torch logs
    its torchvision lines once per process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", "from nwwatch.cli import main; main()", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["measure", "replay"])
def test_a_bad_tiff_gets_nwwatchs_reason_without_tifffiles_bare_line(tmp_path, command):
    bad = tmp_path / "bad"
    bad.mkdir()
    first_page_only(bad / "trunc.tif", np.zeros((4, 16, 16), np.uint16))
    args = ([command, "bad/trunc.tif", "--out", "m.parquet"] if command == "measure"
            else [command, "bad", "--out", "results"])
    out = _nwwatch(args, tmp_path)
    assert out.returncode != 0
    assert REASON in out.stdout + out.stderr
    assert TIFFFILE_LINE not in out.stdout + out.stderr


def test_tifffiles_record_is_a_debug_event_of_nwwatchs_log(tmp_path):
    trunc = first_page_only(tmp_path / "trunc.tif", np.zeros((4, 16, 16), np.uint16))
    # debug events pass whatever level the suite starts at (tests/conftest.py puts the
    # configuration back after the test)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    with capture_logs() as logs, pytest.raises(TruncatedTiffError, match=REASON):
        read_frames(trunc)
    events = [e for e in logs if e["event"] == "io.tifffile"]
    assert events and events[0]["log_level"] == "debug"
    assert TIFFFILE_LINE in events[0]["message"]


def test_demo_logs_in_the_services_json_format(tmp_path):
    out = _nwwatch(["demo", "d", "--frames", "4", "--size", "128"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "3/4 processing the video" in out.stdout
    # replay's info lines (model_loaded, rows_written) are below the demo's level; any log
    # line left is one JSON object on stderr, as replay writes them.
    both = out.stdout + out.stderr
    assert "model_loaded" not in both and "[info" not in both
    for line in out.stderr.splitlines():
        if line.startswith("{"):
            assert "event" in json.loads(line)


def test_train_shows_no_exporter_noise(tmp_path):
    data = make_folder(tmp_path / "data", n=4, size=32)
    tiny = json.dumps({"widths": [4, 8, 16], "encoder_convs": [1, 1, 1],
                       "decoder_convs": [1, 1]})
    out = _nwwatch(["train", str(data), "--out", "m.onnx", "--epochs", "1",
                    "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "32",
                    "--threads", "1", "--quiet", "--model-options", tiny], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "model: m.onnx" in out.stdout
    for noise in ("torchvision is not installed", "LeafSpec"):
        assert noise not in out.stderr, out.stderr


def test_train_volume_shows_no_constant_folding_notes(tmp_path):
    write_two_phase_volume(tmp_path / "vol.tif", slices=6)
    labels = np.full((32, 32), 255, np.uint8)
    labels[2:8, 2:8] = 0
    labels[2:8, 20:26] = 1
    cv2.imwrite(str(tmp_path / "s2.png"), labels)
    out = _nwwatch(["train", "--volume", "vol.tif", "--slice", "2", "--labels", "s2.png",
                    "--out", "tomo.onnx", "--epochs", "1", "--threads", "1", "--quiet"],
                   tmp_path)
    assert out.returncode == 0, out.stderr
    assert "model: tomo.onnx" in out.stdout
    assert "Constant folding" not in out.stderr and "UserWarning" not in out.stderr
    # nwwatch's own advice on the labels is still said.
    assert "labeled pore pixels" in out.stdout + out.stderr


def test_the_filter_drops_only_the_known_lines():
    from training.exportnoise import _TORCH_REGISTRATION_LOGGER, known_noise_filtered

    registration = logging.getLogger(_TORCH_REGISTRATION_LOGGER)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep()
    registration.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # before the filter's own entries, which win
            with known_noise_filtered():
                _emit(registration)
    finally:
        registration.removeHandler(handler)
    assert [str(w.message) for w in caught] == ["a real deprecation"]
    assert seen == ["a real exporter problem"]


def _emit(registration: logging.Logger) -> None:
    warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...",
                  FutureWarning, stacklevel=1)
    warnings.warn("Constant folding - Only steps=1 can be constant folded for opset >= 10 "
                  "onnx::Slice op.", UserWarning, stacklevel=1)
    warnings.warn("a real deprecation", FutureWarning, stacklevel=1)
    registration.warning("torchvision is not installed. Skipping torchvision::nms")
    registration.warning("a real exporter problem")
