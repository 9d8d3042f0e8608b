"""Ctrl-C (SIGINT to a real `nwwatch train` process) and a checkpoint that cannot be written:
what is kept, and what the user is told."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from training_helpers import make_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = json.dumps({"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]})


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_writes_no_model_and_says_how_to_go_on(tmp_path):
    # before: click's bare "Aborted!" with exit status 1; whether MODEL.pt or MODEL.onnx could
    # be used was left to guess
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "runs" / "m.onnx"
    command = [sys.executable, "-c", "from nwwatch.cli import main; main()", "train", str(data),
               "--out", str(out), "--epochs", "100000", "--model-options", TINY, "--threads", "1",
               "--batch-size", "2", "--crop", "32", "--steps-per-epoch", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        checkpoint = out.with_suffix(".pt")
        deadline = time.monotonic() + 120
        while not checkpoint.is_file():  # an epoch has finished
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.1)
        time.sleep(0.5)  # a few epochs more: the signal lands mid-run
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    assert "train interrupted (Ctrl-C)" in stderr and str(checkpoint) in stderr
    assert f"--resume --out {out}" in stderr and "--export-only" in stderr
    # The checkpoint is whole and no model nor temporary file is left in the folder.
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.pt"]
    from training.checkpoint import load_checkpoint

    assert load_checkpoint(checkpoint)["epoch"] >= 1


def test_a_checkpoint_that_cannot_be_written_is_named_and_the_previous_one_kept(tmp_path,
                                                                               monkeypatch):
    # before: a full disk was an OSError traceback naming the hidden temporary file, which
    # was left behind
    import errno

    import torch

    from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = tmp_path / "m.pt"
    save_checkpoint(path, {"epoch": 1})

    def full_disk(obj, handle):
        handle.write(b"part of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, {"epoch": 2})
    assert str(err.value) == (f"{path}: cannot write the checkpoint: No space left on device "
                              f"(the one written before is kept)")
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
