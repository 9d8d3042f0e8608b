"""Label images, training folders, overlays and synthetic sets whose file or folder name is not
UTF-8 (a byte such as 0xE9, Latin-1's é, that Python keeps as a lone surrogate). OpenCV's
``imread`` / ``imwrite`` crashed the interpreter (SIGSEGV) on such a path, so every command runs
in its own process here: a crash fails the test instead of ending the test run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from training_helpers import make_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = json.dumps({"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]})
LATIN1 = os.fsdecode(b"fr\xe9me")  # 'fr\udce9me'


def _nwwatch(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", "from nwwatch.cli import main; main()",
                           *map(os.fspath, args)], capture_output=True, text=True,
                          errors="replace", env=env, cwd=ROOT, timeout=timeout)


@pytest.fixture
def latin1_ok(tmp_path: Path) -> None:
    try:
        (tmp_path / LATIN1).touch()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    (tmp_path / LATIN1).unlink()


def _said(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"


def test_a_training_folder_with_a_label_named_in_latin1_trains_and_evaluates(tmp_path,
                                                                             latin1_ok):
    # before: SIGSEGV reading labels/fr\xe9me.png (exit -11), in train and in evaluate
    data = make_folder(tmp_path / "data", n=4, size=32)
    (data / "images" / "img01.tif").rename(data / "images" / f"{LATIN1}.tif")
    (data / "labels" / "img01.png").rename(data / "labels" / f"{LATIN1}.png")
    out = tmp_path / "m.onnx"
    trained = _nwwatch("train", data, "--out", out, "--epochs", "1", "--threads", "1",
                       "--batch-size", "2", "--crop", "32", "--steps-per-epoch", "1",
                       "--exporter", "legacy", "--quiet", "--model-options", TINY)
    assert trained.returncode == 0, _said(trained)
    assert out.is_file()
    scored = _nwwatch("evaluate", out, data, "--threads", "1")
    assert scored.returncode == 0, _said(scored)
    assert "4 images" in scored.stdout


def test_measure_reads_a_latin1_label_image_and_writes_overlays_into_a_latin1_folder(
        tmp_path, latin1_ok):
    # before: SIGSEGV in cv2.imread of the label, and in cv2.imwrite of the overlay; then
    # the source column could not be encoded by Arrow
    data = make_folder(tmp_path / "data", n=1, size=48)
    label = data / "labels" / f"{LATIN1}.png"
    (data / "labels" / "img00.png").rename(label)
    overlays = tmp_path / f"qa-{LATIN1}"
    out = tmp_path / "angles.parquet"
    result = _nwwatch("measure", label, "--out", out, "--overlays", overlays)
    assert result.returncode == 0, _said(result)
    row = pq.read_table(out).to_pylist()[0]
    assert row["source"].endswith("fr\\xe9me.png")  # the service's form of such a name
    assert row["overlay_path"].endswith("fr\\xe9me_overlay.png")
    assert (overlays / f"{LATIN1}_overlay.png").is_file()


def test_synth_insitu_writes_into_a_latin1_folder(tmp_path, latin1_ok):
    # before: SIGSEGV writing labels/frame_00000.png, then pyarrow's URI parsing of the path
    out = tmp_path / f"syn-{LATIN1}"
    result = _nwwatch("synth", "insitu", out, "--frames", "1", "--size", "64")
    assert result.returncode == 0, _said(result)
    labels = cv2.imdecode(np.fromfile(out / "labels" / "frame_00000.png", np.uint8),
                          cv2.IMREAD_UNCHANGED)
    assert labels.shape == (64, 64)
    with open(out / "truth.parquet", "rb") as handle:  # pyarrow parses a path as a URI
        assert pq.read_table(handle).num_rows == 1


def test_a_latin1_out_is_refused_before_training(tmp_path, latin1_ok):
    # before: the whole run trained, then the ONNX export failed with a torch traceback
    data = make_folder(tmp_path / "data", n=2, size=32)
    out = tmp_path / f"{LATIN1}.onnx"
    result = _nwwatch("train", data, "--out", out, "--epochs", "1", "--threads", "1",
                      "--exporter", "legacy", "--quiet", "--model-options", TINY)
    assert result.returncode == 2, _said(result)
    assert "not UTF-8" in result.stderr and "fr\\xe9me.onnx" in result.stderr
    assert "epoch" not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_the_dashboard_previews_an_overlay_in_a_latin1_folder(tmp_path, latin1_ok):
    folder = tmp_path / LATIN1
    folder.mkdir()
    overlay = folder / "overlay.png"
    cv2.imencode(".png", np.full((400, 200, 3), 90, np.uint8))[1].tofile(os.fsencode(overlay))
    code = ("import sys, cv2, numpy as np\n"
            "from pathlib import Path\n"
            "from nwwatch.dashboard.previews import picture_preview_jpeg\n"
            "jpeg = picture_preview_jpeg(Path(sys.argv[1]), 100)\n"
            "print(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, os.fsencode(overlay)],
                         capture_output=True, text=True, errors="replace", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(100, 50, 3)"
