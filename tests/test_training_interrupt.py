"""Ctrl-C (SIGINT to a real `nwwatch train` process), SIGTERM, and a checkpoint that cannot be
written: what is kept, and what the user is told."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from training_helpers import make_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = json.dumps({"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]})


def interrupt_train(args: list[str], env: dict[str, str], ready, what: str, sig: int,
                    settle_s: float = 0.0) -> tuple[subprocess.Popen, str, str]:
    """Run ``nwwatch train ARGS``, send ``sig`` once ``ready()`` holds (and ``settle_s`` more),
    and return the finished process with its stdout and stderr."""
    command = [sys.executable, "-c", "from nwwatch.cli import main; main()", "train", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"no {what} after 120 s"
            time.sleep(0.05)
        time.sleep(settle_s)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process, stdout, stderr


def _endless_run(tmp_path: Path, quiet: bool = True) -> tuple[list[str], dict, Path]:
    """``nwwatch train``'s arguments (without the command) for a tiny run of a step an epoch
    that only a signal ends, its environment, and its ``--out``."""
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "runs" / "m.onnx"
    args = [str(data), "--out", str(out), "--epochs", "100000", "--model-options", TINY,
            "--threads", "1", "--batch-size", "2", "--crop", "32", "--steps-per-epoch", "1",
            *(["--quiet"] if quiet else [])]
    return args, {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, out


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_writes_no_model_and_says_how_to_go_on(tmp_path):
    # before: click's bare "Aborted!" with exit status 1; whether MODEL.pt or MODEL.onnx could
    # be used was left to guess
    args, env, out = _endless_run(tmp_path)
    checkpoint = out.with_suffix(".pt")
    # once an epoch has finished, and a few epochs more: the signal lands mid-run
    process, stdout, stderr = interrupt_train(args, env, checkpoint.is_file, "checkpoint",
                                              signal.SIGINT, settle_s=0.5)
    assert process.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    assert "train interrupted (Ctrl-C)" in stderr and str(checkpoint) in stderr
    assert f"--resume --out {out}" in stderr and "--export-only" in stderr
    # The checkpoint is whole and no model nor temporary file is left in the folder.
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.pt"]
    from training.checkpoint import load_checkpoint

    assert load_checkpoint(checkpoint)["epoch"] >= 1


def test_ctrl_c_with_the_progress_bar_leaves_the_message_as_the_last_line(tmp_path):
    # the bar is closed as the run unwinds: left open, it would be drawn again at exit, below
    # the line that says what was kept
    args, env, out = _endless_run(tmp_path, quiet=False)
    process, stdout, stderr = interrupt_train(args, env, out.with_suffix(".pt").is_file,
                                              "checkpoint", signal.SIGINT, settle_s=0.5)
    assert process.returncode == 130, (stdout, stderr)
    last = stderr.replace("\r", "\n").rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("train interrupted (Ctrl-C): "), stderr[-500:]


def test_a_second_ctrl_c_while_it_exits_ends_it_without_another_line(tmp_path):
    # pressed again during torch's teardown (about a second), Ctrl-C must not be raised there:
    # click's "Aborted!" with exit status 1, or the message a second time
    args, env, out = _endless_run(tmp_path)
    command = [sys.executable, "-c", "from nwwatch.cli import main; main()", "train", *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not out.with_suffix(".pt").is_file():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        first = process.stderr.readline()
        process.send_signal(signal.SIGINT)  # at once, as an impatient user does
        rest = process.stderr.read()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert first.startswith("train interrupted (Ctrl-C): "), first
    assert rest == "", rest
    # the first Ctrl-C's status, or the second one's default action: killed by SIGINT
    assert process.returncode in (130, -signal.SIGINT), process.returncode
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.pt"]


def test_a_checkpoint_that_cannot_be_written_is_named_and_the_previous_one_kept(tmp_path,
                                                                               monkeypatch):
    # before: a full disk was an OSError traceback naming the hidden temporary file, which
    # was left behind
    import contextlib
    import errno

    import training.checkpoint as checkpoint_module
    from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = tmp_path / "m.pt"
    save_checkpoint(path, {"epoch": 1})
    real = checkpoint_module.atomic_write

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(bytes(data)[:20])  # part of the checkpoint, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

    @contextlib.contextmanager
    def full_disk(target):
        with real(target) as handle:
            yield FullDisk(handle)

    monkeypatch.setattr(checkpoint_module, "atomic_write", full_disk)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, {"epoch": 2})
    assert str(err.value) == (f"{path}: cannot write the checkpoint: No space left on device "
                              f"(the one written before is kept)")
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_sigterm_during_train_volume_cleans_up_as_ctrl_c_does(tmp_path):
    # Was: SIGTERM (systemd, a batch scheduler, `kill`) ended `nwwatch train --volume` where
    # it stood: /tmp/nwwatch-select-* (about 3 MB once the candidates had written their
    # models) and the empty folders made for --out stayed behind; Ctrl-C removed both.
    import cv2

    from nwwatch.io import write_volume_tiff

    rng = np.random.default_rng(4)
    truth = rng.random((6, 32, 32)) < 0.4
    volume = write_volume_tiff(tmp_path / "v.tif",
                               (truth + rng.normal(0, 0.3, truth.shape)).astype(np.float32))
    labels = np.full((32, 32), 255, np.uint8)
    for r in (2, 18):
        for c in (2, 18):
            labels[r:r + 8, c:c + 8] = truth[3, r:r + 8, c:c + 8]
    cv2.imwrite(str(tmp_path / "l.png"), labels)
    scratch = tmp_path / "tmp"  # the run's TMPDIR: its temporary folders and no one else's
    scratch.mkdir()
    out = tmp_path / "runs" / "deep" / "m.onnx"
    args = ["--volume", str(volume), "--slice", "3", "--labels", str(tmp_path / "l.png"),
            "--out", str(out), "--threads", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "TMPDIR": str(scratch)}

    def selecting() -> bool:
        return any(p.name.startswith("nwwatch-select-") for p in scratch.iterdir())

    process, stdout, stderr = interrupt_train(args, env, selecting, "selection folder",
                                              signal.SIGTERM)
    assert process.returncode == 143, (stdout, stderr)
    assert "Traceback" not in stderr
    assert "train interrupted (SIGTERM): nothing was saved: run the command again" in stderr
    # (a library writes a small ".ses" file into any TMPDIR; not ours)
    assert [p.name for p in scratch.iterdir() if p.name.startswith("nwwatch-")] == []
    assert not (tmp_path / "runs").exists()


def test_a_ctrl_c_while_the_checkpoint_is_written_stays_a_ctrl_c(tmp_path, monkeypatch):
    # torch's zip writer wrote straight into the checkpoint file: a Ctrl-C between two of its
    # records came out as RuntimeError ("unexpected pos"), not the interrupt, or aborted the
    # process (SIGABRT) when the writer's destructor wrote to the file already closed.
    import contextlib

    import torch

    import training.checkpoint as checkpoint_module
    from training.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "m.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.zeros(10)})
    real = checkpoint_module.atomic_write

    class Interrupted:
        """The file as the writer sees it; Ctrl-C lands once 100 bytes are written."""

        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 100:
                raise KeyboardInterrupt
            return self.handle.write(data)

        def flush(self):
            return self.handle.flush()

    @contextlib.contextmanager
    def interrupted_write(target):
        with real(target) as handle:
            yield Interrupted(handle)

    monkeypatch.setattr(checkpoint_module, "atomic_write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2, "w": torch.ones(1000), "v": torch.ones(1000)})
    assert load_checkpoint(path)["epoch"] == 1  # the one written before, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def _torch_loading(pid: int) -> bool:
    """Whether process ``pid`` has mapped torch's library: its ``import torch`` has begun (the
    slow first seconds of ``nwwatch train``, before any of its own work)."""
    try:
        return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _early_signal(tmp_path: Path, sig: int, ready) -> tuple[subprocess.Popen, str, str, Path]:
    """A real `nwwatch train` of a tiny folder, sent ``sig`` once ``ready(pid, out)`` holds."""
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "runs" / "deep" / "m.onnx"
    command = [sys.executable, "-c", "from nwwatch.cli import main; main()", "train", str(data),
               "--out", str(out), "--epochs", "1", "--model-options", TINY, "--threads", "1",
               "--batch-size", "2", "--crop", "32", "--quiet", "--exporter", "legacy"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready(process.pid, out):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "not ready after 60 s"
            time.sleep(0.002)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process, stdout, stderr, out


@pytest.mark.parametrize(("sig", "status", "name"), [(signal.SIGINT, 130, "Ctrl-C"),
                                                     (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_while_torch_is_imported_ends_train_as_later(tmp_path, sig, status, name):
    # The first seconds (torch's import, the checks) are part of the command: a Ctrl-C there
    # must not be click's bare "Aborted!" (exit 1), nor a SIGTERM a silent kill.
    process, stdout, stderr, out = _early_signal(tmp_path, sig,
                                                 lambda pid, out: _torch_loading(pid))
    assert process.returncode == status, (stdout, stderr)
    assert "Aborted!" not in stderr and "Traceback" not in stderr
    assert f"train interrupted ({name}): nothing was written: run the command again" in stderr
    assert not (tmp_path / "runs").exists()


def test_sigterm_once_the_out_folder_is_made_removes_it(tmp_path):
    # `--out runs/deep/m.onnx` makes runs/deep before the run: a SIGTERM right after it must
    # leave no empty folders behind, as a Ctrl-C does not.
    process, stdout, stderr, out = _early_signal(tmp_path, signal.SIGTERM,
                                                 lambda pid, out: out.parent.is_dir())
    assert process.returncode == 143, (stdout, stderr)
    assert "train interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists()


def test_a_closed_stdout_stops_the_printing_not_the_training(tmp_path):
    # `nwwatch train ... | head -2`: the reader ends after two epoch lines. The run goes on to
    # its model and says once, on stderr, where its files are.
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "runs" / "m.onnx"
    train = shlex.join([sys.executable, "-c", "from nwwatch.cli import main; main()", "train",
                        str(data), "--out", str(out), "--epochs", "4", "--model-options", TINY,
                        "--threads", "1", "--batch-size", "2", "--crop", "32", "--quiet",
                        "--exporter", "legacy"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    shell = subprocess.run(["bash", "-c", f"{train} 2>{tmp_path / 'err'} | head -2; "
                                          f"exit ${{PIPESTATUS[0]}}"],
                           capture_output=True, text=True, env=env, timeout=300)
    stderr = (tmp_path / "err").read_text()
    assert shell.returncode == 0, (shell.stdout, stderr)
    assert shell.stdout.splitlines()[0].startswith("epoch 1/4")
    assert "Broken pipe" not in stderr and "Traceback" not in stderr
    assert "standard output was closed" in stderr and str(out.with_suffix(".pt")) in stderr
    from training.checkpoint import load_checkpoint

    assert out.is_file() and load_checkpoint(out.with_suffix(".pt"))["epoch"] == 4


def test_a_lost_sigterm_within_nested_blocks_is_raised(tmp_path):
    # A command's block holds its run's: an interrupt that a callback dropped before the inner
    # block began must still stop the command when the inner block ends.
    from nwwatch.stopsignals import Terminated, sigterm_as_interrupt

    class DropsIt:
        def __del__(self) -> None:
            raise Terminated

    with pytest.raises(Terminated), sigterm_as_interrupt():
        DropsIt()  # its __del__'s exception goes to sys.unraisablehook
        with sigterm_as_interrupt():
            pass


@pytest.mark.parametrize("pipe", ["2>&1 >{stdout} | head -c 1", "2>&1 | head -3"],
                         ids=["stderr", "both"])
def test_a_closed_stderr_stops_the_progress_bar_not_the_training(tmp_path, pipe):
    # `nwwatch train ... 2>&1 | head -3`: the progress bar writes to stderr. Before, its first
    # write after the reader ended stopped the run with exit 1 ("[Errno 32] Broken pipe"),
    # without its model.
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "runs" / "m.onnx"
    train = shlex.join([sys.executable, "-c", "from nwwatch.cli import main; main()", "train",
                        str(data), "--out", str(out), "--epochs", "4", "--model-options", TINY,
                        "--threads", "1", "--batch-size", "2", "--crop", "32",
                        "--steps-per-epoch", "3", "--exporter", "legacy"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    redirect = pipe.format(stdout=shlex.quote(str(tmp_path / "stdout")))
    shell = subprocess.run(["bash", "-c", f"{train} {redirect} >/dev/null; "
                                          f"exit ${{PIPESTATUS[0]}}"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert shell.returncode == 0, shell.stderr
    from training.checkpoint import load_checkpoint

    assert out.is_file() and load_checkpoint(out.with_suffix(".pt"))["epoch"] == 4
    if pipe.startswith("2>&1 >"):  # stdout still open: every line written
        assert f"model: {out}" in (tmp_path / "stdout").read_text()


def test_an_interrupt_inside_onnxruntimes_import_exits_as_an_interrupt(tmp_path, capsys):
    """onnxruntime, imported during the run, turns a Ctrl-C or SIGTERM that lands in its
    native start-up into "ImportError: initialization failed": a traceback and exit 1 (3 of
    5 signals sent while it loaded), where 130 or 143 and the line are due."""
    from nwwatch.stopsignals import Terminated
    from training.runfiles import interrupt_explained

    def import_interrupted():
        try:
            raise Terminated()
        except Terminated:  # its __context__, as in onnxruntime's __init__
            raise ImportError("initialization failed")  # noqa: B904

    # the handler leaves SIGINT at its default for the exiting process: not for this one
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as stopped:
            with interrupt_explained(tmp_path / "m.onnx", before_run=True):
                import_interrupted()
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert stopped.value.code == 143
    assert "train interrupted (SIGTERM): nothing was written" in capsys.readouterr().err
    with pytest.raises(ImportError, match="no module named other"):  # any other: raised
        with interrupt_explained(tmp_path / "m.onnx", before_run=True):
            raise ImportError("no module named other")


def test_folders_made_for_out_go_with_a_write_probe_a_signal_cut_short(tmp_path):
    """A SIGTERM between the write check's creating and removing its probe file (seen once
    in a full run of the test above) left the folder made for --out behind."""
    from nwwatch.atomic import PROBE_PREFIX
    from training.runfiles import remove_empty

    deep = tmp_path / "runs" / "deep"
    deep.mkdir(parents=True)
    (deep / f"{PROBE_PREFIX}abc123.part").write_bytes(b"")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / f"{PROBE_PREFIX}x.part").write_bytes(b"")
    (kept / "m.onnx").write_bytes(b"model")
    remove_empty([deep, deep.parent, kept])
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in kept.iterdir()) == ["m.onnx"]  # the model stays
