"""`nwwatch train --resume --export-only` run again on one checkpoint, and what a killed export
leaves in the model's folder."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from training_helpers import make_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = json.dumps({"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]})
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _nwwatch(*args: str) -> list[str]:
    return [sys.executable, "-c", "from nwwatch.cli import main; main()", *args]


def _train_args(data: Path, out: Path) -> list[str]:
    return ["train", str(data), "--out", str(out), "--epochs", "1", "--model-options", TINY,
            "--threads", "1", "--batch-size", "2", "--crop", "32", "--quiet",
            "--exporter", "legacy"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_only_again_writes_the_same_files(tmp_path):
    # Each --export-only appended itself to the recorded command once more, so MODEL.pt and
    # MODEL.onnx changed bytes at every re-export of the same weights.
    from nwwatch.segment.contract import METADATA_KEY, ModelMetadata

    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "m.onnx"
    subprocess.run(_nwwatch(*_train_args(data, out)), check=True, env=ENV,
                   capture_output=True, timeout=300)
    export = _nwwatch("train", "--resume", "--export-only", "--out", str(out), "--quiet")
    hashes = []
    for _ in range(2):
        subprocess.run(export, check=True, env=ENV, capture_output=True, timeout=300)
        hashes.append((_sha(out), _sha(out.with_suffix(".pt"))))
    assert hashes[0] == hashes[1]
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    command = ModelMetadata.from_json(props[METADATA_KEY]).training_command
    assert command.count("--export-only") == 1 and command.startswith("nwwatch train ")


def test_a_killed_exports_temporary_file_is_removed_by_the_next_export(tmp_path):
    # SIGKILL while the model is verified under its hidden name: nothing could remove
    # .m.onnx.PID-XXXXXXXX.tmp, and it stayed beside every later model.
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "m.onnx"
    process = subprocess.Popen(_nwwatch(*_train_args(data, out)), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".m.onnx.*.tmp")):
            assert process.poll() is None, "the export ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    (leftover,) = tmp_path.glob(".m.onnx.*.tmp")
    assert leftover.name.startswith(f".m.onnx.{process.pid}-")
    # A live process's temporary file (another export to the same path) is never touched.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = tmp_path / f".m.onnx.{sleeper.pid}-0123abcd.tmp"
        live.write_bytes(b"exporting")
        subprocess.run(_nwwatch("train", "--resume", "--export-only", "--out", str(out),
                                "--quiet"), check=True, env=ENV, capture_output=True,
                       timeout=300)
        assert live.is_file()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data", "m.onnx", "m.pt", live.name])
