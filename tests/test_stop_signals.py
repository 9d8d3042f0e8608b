"""Ctrl-C (SIGINT), SIGTERM and a hang-up (SIGHUP) to real ``nwwatch label``, ``dashboard``,
``replay`` and ``run`` processes: each stops cleanly with exit status 130, 143 or 129 (``run``:
0, as systemd expects) and a last line that says what was kept, also when the signal comes
while the command's modules are still being imported, before it does anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from label_helpers import plain_params, render, truth_geometry
from servicekit import REPO, frames_table, ledger_count, model, write_config, write_frames

from nwwatch.io import write_frame_tiff
from nwwatch.service.replay import replay

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
NAME = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}

#: ``nwwatch ARGS`` whose import of the module named first is held until the test closes the
#: child's stdin: the test's signal lands while the command's modules are being imported,
#: at the same point every time (a signal sent right after start may come before Python
#: runs at all, where nothing but the default action is possible).
HELD_IMPORT = """
import sys

held = sys.argv[1]


class Hold:
    def find_spec(self, name, path=None, target=None):
        if name == held:
            sys.meta_path.remove(self)
            sys.stderr.write(f"importing {name}\\n")
            sys.stderr.flush()
            sys.stdin.readline()
        return None


sys.meta_path.insert(0, Hold())
sys.argv = ["nwwatch", *sys.argv[2:]]
from nwwatch.cli import main

main()
"""


def _stop_signals_at_their_default() -> None:
    """A ``preexec_fn``: the child starts as a command typed at a terminal does, whatever the
    test runner was started with (``nohup`` ignores SIGHUP, a background job SIGINT)."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _signal_during_import(sig: int, module: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-c", HELD_IMPORT, module, *args], env=ENV,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_stop_signals_at_their_default)
    try:
        assert proc.stderr.readline() == f"importing {module}\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)  # closes stdin: the import goes on
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _started(*args: str) -> tuple[subprocess.Popen, str]:
    """``nwwatch ARGS`` and its first stdout line (the address it serves)."""
    proc = subprocess.Popen([sys.executable, "-c", "from nwwatch.cli import main; main()",
                             *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_stop_signals_at_their_default)
    line = proc.stdout.readline()
    if " http://" not in line:
        proc.kill()
        raise AssertionError(f"did not start: {line}{proc.communicate()}")
    return proc, line.split(" http://")[1].split()[0].rstrip("/")


def _stopped(proc: subprocess.Popen, sig: int) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _last_line(text: str) -> str:
    return text.rstrip("\n").rsplit("\n", 1)[-1]


def _results_files(results: Path) -> dict[str, bytes]:
    """The files of RESULTS and their bytes, but the ledger's: a reader of a SQLite database
    in WAL mode makes its -shm and -wal files."""
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*"))
            if p.is_file() and not p.name.startswith("ledger.sqlite")}


def _frame(folder: Path) -> Path:
    params = plain_params(21, 0)
    return write_frame_tiff(folder / "f.tif", render(params, seed=1)[0], pixel_size_nm=0.5)


def _save(url: str) -> int:
    body = json.dumps(truth_geometry(plain_params(21, 0)).to_json()).encode()
    request = urllib.request.Request(f"http://{url}/api/frames/0/save?base=", data=body,
                                     method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_label_stopped_says_what_data_holds_and_exits_with_the_signals_status(tmp_path, sig):
    # before: exit 0 after Ctrl-C and SIGTERM with a last line "stopped", and SIGHUP killed
    # the process without a word (a save on its way cut off midway)
    frame, data = _frame(tmp_path / "acq"), tmp_path / "DATA"
    proc, url = _started("label", str(frame), "--out", str(data), "--no-browser",
                         "--port", "0")
    saves = sig == signal.SIGTERM
    if saves:
        assert _save(url) == 200
    out, err = _stopped(proc, sig)
    assert proc.returncode == STATUS[sig], err
    assert "Traceback" not in err and "Aborted" not in err, err
    assert _last_line(err) == (
        f"label stopped ({NAME[sig]}): {data} holds 1 label image (labels/); run the same "
        "command again to go on" if saves else
        f"label stopped ({NAME[sig]}): nothing was saved to {data}")
    assert out == ""  # after the address, nothing on stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_dashboard_stopped_exits_with_the_signals_status_and_one_line(tmp_path, sig):
    # before: Ctrl-C exited 1 with click's "Aborted!", SIGTERM and SIGHUP killed the process
    # without a word (uvicorn delivered the signal again to the default handler)
    acq, results = tmp_path / "acq", tmp_path / "res"
    write_frames(acq, 2)
    replay(acq, results, model=model(tmp_path))
    before = _results_files(results)
    proc, url = _started("dashboard", str(results), "--listen", "127.0.0.1:0")
    with urllib.request.urlopen(f"http://{url}/api/acquisitions", timeout=60) as response:
        assert response.status == 200
    _, err = _stopped(proc, sig)
    assert proc.returncode == STATUS[sig], err
    assert err == f"dashboard stopped ({NAME[sig]}): it only reads {results}\n"
    assert _results_files(results) == before


def _as_a_background_job() -> None:
    """A ``preexec_fn``: SIGINT ignored, as a non-interactive shell starts `cmd &`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def test_dashboard_started_as_a_background_job_stops_on_sigint(tmp_path):
    # before: `nwwatch dashboard RES &` from a script ignored `kill -INT`, as its shell left
    # SIGINT ignored; `nwwatch label` took it
    acq, results = tmp_path / "acq", tmp_path / "res"
    write_frames(acq, 1)
    replay(acq, results, model=model(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "from nwwatch.cli import main; main()",
                             "dashboard", str(results), "--listen", "127.0.0.1:0"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_a_background_job)
    assert " http://" in proc.stdout.readline()
    _, err = _stopped(proc, signal.SIGINT)
    assert proc.returncode == 130, err
    assert err == f"dashboard stopped (Ctrl-C): it only reads {results}\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_replay_stopped_while_it_starts_says_so_and_writes_nothing(tmp_path, sig):
    # before: SIGTERM in the first ~0.4-1 s (the modules' import) killed the replay without a
    # word (exit -15), Ctrl-C there ended in "Aborted!" (exit 1), SIGHUP killed it
    acq, results = tmp_path / "acq", tmp_path / "res"
    write_frames(acq, 4)
    done = _signal_during_import(sig, "nwwatch.service", "replay", str(acq), "--out",
                                 str(results), "--model", str(model(tmp_path)))
    assert done.returncode == STATUS[sig], done.stderr
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr, done.stderr
    assert _last_line(done.stderr) == (f"replay interrupted ({NAME[sig]}): nothing was "
                                       f"written to {results}; run the same command again "
                                       "to start")
    assert not results.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_label_stopped_while_it_starts_says_so_and_creates_no_data(tmp_path, sig):
    frame, data = _frame(tmp_path / "acq"), tmp_path / "DATA"
    done = _signal_during_import(sig, "nwwatch.label", "label", str(frame), "--out",
                                 str(data), "--no-browser", "--port", "0")
    assert done.returncode == STATUS[sig], done.stderr
    assert done.stderr == f"label stopped ({NAME[sig]}): nothing was saved to {data}\n"
    assert done.stdout == ""  # the page was never served
    assert not data.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_train_stopped_while_it_starts_says_so_and_leaves_no_out_folder(tmp_path, sig):
    # docs/training.md: Ctrl-C and SIGTERM end `nwwatch train` from the command's first line
    # on, its modules' import included (training.cli takes a few tenths of a second)
    data = tmp_path / "DATA"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    out = tmp_path / "runs" / "m.onnx"
    done = _signal_during_import(sig, "training.cli", "train", str(data), "--out", str(out),
                                 "--epochs", "1", "--threads", "1")
    assert done.returncode == STATUS[sig], done.stderr
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr, done.stderr
    assert _last_line(done.stderr) == (f"train interrupted ({NAME[sig]}): nothing was written: "
                                       "run the command again; a model file is only ever "
                                       "written whole, after its verification")
    assert not out.parent.exists()


def test_dashboard_stopped_while_it_starts_says_so(tmp_path):
    acq, results = tmp_path / "acq", tmp_path / "res"
    write_frames(acq, 2)
    replay(acq, results, model=model(tmp_path))
    done = _signal_during_import(signal.SIGTERM, "nwwatch.dashboard", "dashboard",
                                 str(results), "--listen", "127.0.0.1:0")
    assert done.returncode == 143, done.stderr
    assert done.stderr == f"dashboard stopped (SIGTERM): it only reads {results}\n"
    assert done.stdout == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_stopped_while_it_starts_stops_as_later_and_processes_nothing(tmp_path, sig):
    # before: SIGTERM while `nwwatch run` imported its modules killed it without a log line
    # (exit -15, which the unit reads as a failure); later it is `stopped`, exit 0
    watch, results = tmp_path / "acq", tmp_path / "res"
    write_frames(watch, 3)
    config = write_config(tmp_path / "nwwatch.toml", watch, results, model(tmp_path))
    done = _signal_during_import(sig, "nwwatch.service", "run", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()
              if line.startswith("{")]
    assert events[-2:] == ["stopping", "stopped"], done.stderr[-3000:]
    assert "file_processed" not in events and "Traceback" not in done.stderr
    assert frames_table(results) is None
    assert ledger_count(results, "items", "state='done'") == 0


#: ``nwwatch ARGS`` that says, once the command has ended, whether its stop signals are
#: ignored for the interpreter's teardown (which puts Python's handlers back to the default
#: first: a second stop signal then ended the process by its default action)
AFTER_THE_END = """
import signal, sys
sys.argv = ["nwwatch", *sys.argv[1:]]
from nwwatch.cli import main
try:
    main()
except SystemExit as exc:
    print([signal.getsignal(s) is signal.SIG_IGN
           for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)], exc.code)
    raise
"""


def test_a_stopped_service_and_a_finished_replay_ignore_stop_signals_on_their_way_out(
        tmp_path):
    # before: TERM then INT 0.1 s later gave 130 (-2) instead of 0; a finished replay died
    # of a SIGTERM during its teardown (-15) instead of 0
    watch, results = tmp_path / "acq", tmp_path / "res"
    write_frames(watch, 3)
    onnx = model(tmp_path)
    config = write_config(tmp_path / "nwwatch.toml", watch, results, onnx)
    proc = subprocess.Popen([sys.executable, "-c", AFTER_THE_END, "run", "--config",
                             str(config)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while ledger_count(results, "items", "state='done'") < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out.strip() == "[True, True, True] 0", err[-3000:]
    done = subprocess.run([sys.executable, "-c", AFTER_THE_END, "replay", str(watch), "--out",
                           str(tmp_path / "res2"), "--model", str(onnx)],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("[True, True, True] 0"), \
        done.stderr[-3000:]
