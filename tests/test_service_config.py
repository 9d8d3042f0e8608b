"""Configuration validation, observer choice, sd_notify, and loud failures at start-up."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from servicekit import model, write_config

from nwwatch.segment.session import GpuUnavailableError, Segmenter
from nwwatch.service.cli import run
from nwwatch.service.config import ConfigError, OverlaySettings, load_config
from nwwatch.service.notify import Notifier
from nwwatch.service.replay import list_inputs
from nwwatch.service.watcher import FolderWatcher, matches, mount_fstype, use_polling
from nwwatch.volume import VolumeOptions


@pytest.fixture()
def paths(tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    return tmp_path, acq, tmp_path / "res", model(tmp_path)


def test_valid_config_and_defaults(paths):
    tmp, acq, res, m = paths
    cfg = load_config(write_config(tmp / "c.toml", acq, res, m))
    w = cfg.watches[0]
    assert (w.path, w.kind, w.model, w.settle_seconds) == (acq, "insitu", m, 0.5)
    assert cfg.ledger == res / "ledger.sqlite" and cfg.inference.providers == ("cpu",)
    assert cfg.inference.threads == 1 and cfg.max_attempts == 3
    # no [tomogram] table: segment_volume's defaults
    assert cfg.tomogram.volume_options() == VolumeOptions()
    path = write_config(tmp / "t.toml", acq, res, m)
    path.write_text(path.read_text() + "\n[tomogram]\ntriplanar = true\nmargin_px = 8\n")
    assert load_config(path).tomogram.volume_options() == VolumeOptions(triplanar=True,
                                                                        margin_px=8)
    assert cfg.overlays.mode == "none"  # no QA pictures unless asked for
    path.write_text(path.read_text().replace("[output]", "[output]\noverlays = \"flagged\""))
    assert load_config(path).overlays == OverlaySettings("flagged", Path("overlays"), False)


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (("kind = \"insitu\"", "kind = \"video\""), "watch[0].kind", "not one of"),
        (("settle_seconds = 0.5", "settle_seconds = -1"), "watch[0].settle_seconds", ">= 0"),
        (("settle_seconds = 0.5", "setle_seconds = 1"), "watch[0].setle_seconds",
         "unknown key (known: "),
        (("settle_seconds = 0.5", "setle_seconds = 1"), "watch[0].setle_seconds",
         "a misspelling of 'settle_seconds'?"),
        # a misspelt optional table: named with the one meant
        (("[inference]", "[inferance]"), "inferance", "a misspelling of 'inference'?"),
        (("batch_size = 4", "batch_size = \"4\""), "inference.batch_size", "an integer"),
        (("providers = [\"cpu\"]", "providers = [\"rocm\"]"), "inference.providers", "rocm"),
        # an empty list ran on ONNX Runtime's own choice without a word
        (("providers = [\"cpu\"]", "providers = []"), "inference.providers",
         "at least one of"),
        (("max_attempts = 3", "max_attempts = 0"), "retry.max_attempts", "> 0"),
        (("polling = \"auto\"", "polling = \"sometimes\""), "watch[0].polling", "auto"),
        # a required key misspelt: the error names what was written, not only what is missing
        (("[output]", "[outputs]"), "output", "is required; found 'outputs': a misspelling?"),
        (("[output]\nresults", "[output]\nresult"), "output.results",
         "is required; found 'result': a misspelling?"),
        (("[[watch]]", "[[wacth]]"), "watch",
         "table is required; found 'wacth': a misspelling?"),
        (("threads = 1", "threads = 1\n[extra]\nx = 1"), "extra", "unknown key"),
        (("threads = 1", "threads = 1\n[tomogram]\nmargin_px = -2"), "tomogram.margin_px",
         ">= 0"),
        (("threads = 1", "threads = 1\n[tomogram]\ntriplanar = 1"), "tomogram.triplanar",
         "a boolean"),
        (("threads = 1", "threads = 1\n[tomogram]\ntri_planar = true"), "tomogram.tri_planar",
         "unknown key"),
        (("[[watch]]", "tomogram = \"fast\"\n[[watch]]"), "tomogram", "a table"),
        (("[output]", "[output]\noverlays = \"some\""), "output.overlays", "not one of"),
        (("[output]", "[output]\noverlays = true"), "output.overlays", "a string"),
        (("[output]", "[output]\nflush_rows = 0"), "output.flush_rows", "> 0"),
        (("flush_seconds = 0.2", "flush_seconds = -1"), "output.flush_seconds", ">= 0"),
        # TOML has nan and inf: nan compares false with every bound (a settle time that
        # never passes: no file is ever processed), inf is a wait that never ends.
        (("settle_seconds = 0.5", "settle_seconds = nan"), "watch[0].settle_seconds",
         "a finite number"),
        (("rescan_seconds = 2.0", "rescan_seconds = inf"), "watch[0].rescan_seconds",
         "a finite number"),
        (("max_batch_latency_ms = 50", "max_batch_latency_ms = -nan"),
         "inference.max_batch_latency_ms", "a finite number"),
        (("threads = 1", "threads = 1\n[service]\nstop_timeout_seconds = inf"),
         "service.stop_timeout_seconds", "a finite number"),
        # absurd sizes and times: each key has a documented upper bound
        (("batch_size = 4", "batch_size = 100000000000000000"), "inference.batch_size",
         "<= 256"),
        (("batch_size = 4", "batch_size = 1e17"), "inference.batch_size", "an integer"),
        (("threads = 1", "threads = 100000"), "inference.threads", "<= 128"),
        (("threads = 1", "threads = 1\nstreams = 100000"), "inference.streams", "<= 64"),
        (("max_batch_latency_ms = 50", "max_batch_latency_ms = 1e9"),
         "inference.max_batch_latency_ms", "<= 60000"),
        (("settle_seconds = 0.5", "settle_seconds = 1e9"), "watch[0].settle_seconds",
         "<= 3600"),
        (("rescan_seconds = 2.0", "rescan_seconds = 1e9"), "watch[0].rescan_seconds",
         "<= 86400"),
        (("[output]", "[output]\nflush_rows = 10000000000"), "output.flush_rows",
         "<= 1000000"),
        (("flush_seconds = 0.2", "flush_seconds = 1e9"), "output.flush_seconds", "<= 3600"),
        (("max_attempts = 3", "max_attempts = 1000000"), "retry.max_attempts", "<= 100"),
        (("max_attempts = 3", "max_attempts = 3\nbackoff_seconds = 1e9"),
         "retry.backoff_seconds", "<= 3600"),
        (("threads = 1", "threads = 1\n[tomogram]\nmargin_px = 100000"), "tomogram.margin_px",
         "<= 1024"),
        (("threads = 1", "threads = 1\n[tomogram]\nmin_component_voxels = 10000000000"),
         "tomogram.min_component_voxels", "<= 1000000000"),
        (("threads = 1", "threads = 1\n[dashboard]\nstale_after_s = 1e9"),
         "dashboard.stale_after_s", "<= 86400"),
        # the shipped unit SIGKILLs the service at TimeoutStopSec=30, mid-drain
        (("threads = 1", "threads = 1\n[service]\nstop_timeout_seconds = 45"),
         "service.stop_timeout_seconds", "TimeoutStopSec=30"),
        # no pattern matches no file: a folder watched for nothing
        (("settle_seconds = 0.5", "settle_seconds = 0.5\npatterns = []"),
         "watch[0].patterns", "at least one pattern"),
        # names are matched, not paths: a pattern with a folder never matches (nothing was
        # processed, without a word; replay, with its own patterns, processed every file)
        (("settle_seconds = 0.5", "settle_seconds = 0.5\npatterns = [\"**/*.tif\"]"),
         "watch[0].patterns", "'**/*.tif' holds a '/', and patterns are matched against "
         "file names only"),
        (("settle_seconds = 0.5", "settle_seconds = 0.5\nignore_patterns = [\"tmp/*\"]"),
         "watch[0].ignore_patterns", "'tmp/*' holds a '/'"),
        # the ledger given as the results folder not made yet: opened as the ledger, it was
        # made and said to be "a damaged ledger"; a folder written with a trailing slash
        # became a ledger file of that name
        (("[[watch]]", "[state]\nledger = \"res\"\n[[watch]]"), "state.ledger",
         "is the results folder"),
        (("[[watch]]", "[state]\nledger = \"somewhere/\"\n[[watch]]"), "state.ledger",
         "'somewhere/' names a folder: the ledger is a file, e.g."),
        # one bracket pair: a table, where a list of tables was read ("got {'path': ...}")
        (("[[watch]]", "[watch]"), "watch", "is one table ([watch]); each watched folder is "
         "a table of the array [[watch]] (two brackets), even a single one"),
    ],
)
def test_errors_name_file_key_and_problem(paths, edit, key, words):
    tmp, acq, res, m = paths
    path = write_config(tmp / "c.toml", acq, res, m)
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1]))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.key == key and str(path) in str(err) and words in str(err)


def test_stop_timeout_bound_stays_below_the_shipped_units_timeout(paths):
    """stop_timeout_seconds above the unit's TimeoutStopSec was accepted: systemd SIGKILLs
    the service before it gives up on the batch in flight itself."""
    import re

    from nwwatch.service.config import STOP_TIMEOUT_MAX_S, UNIT_TIMEOUT_STOP_S
    from nwwatch.service.stopping import LEDGER_WAIT_MIN_S, STOP_BOUND_S, WIND_DOWN_S

    unit = (Path(__file__).resolve().parents[1] / "systemd" / "nwwatch.service").read_text()
    (timeout_stop_s,) = map(int, re.findall(r"^TimeoutStopSec=(\d+)$", unit, re.M))
    assert UNIT_TIMEOUT_STOP_S == timeout_stop_s  # what the error message says
    assert STOP_TIMEOUT_MAX_S <= timeout_stop_s - 5  # time to log and exit before SIGKILL
    # a batch that ends just before the deadline leaves the wind-down (held rows written,
    # observers stopped) its own bound; a deadline that runs out then still asks the ledger
    # what it cut short (its lock waited for until STOP_BOUND_S, and at least
    # LEDGER_WAIT_MIN_S), and logs: all of it ends before the SIGKILL, with a second and a
    # half to log and exit
    assert STOP_TIMEOUT_MAX_S + WIND_DOWN_S + LEDGER_WAIT_MIN_S <= STOP_BOUND_S
    assert STOP_BOUND_S + 1.5 <= timeout_stop_s
    tmp, acq, res, m = paths
    path = write_config(tmp / "c.toml", acq, res, m,
                        extra=f"[service]\nstop_timeout_seconds = {STOP_TIMEOUT_MAX_S}")
    assert load_config(path).stop_timeout_seconds == STOP_TIMEOUT_MAX_S


def test_the_threads_bound_fits_the_shipped_units_task_limit():
    """threads = 300 was accepted: under the unit's TasksMax=256 ONNX Runtime's session start
    blocked at the limit, and the service never logged `ready` (systemd would restart it
    after its start timeout, again and again, without a word why)."""
    import re

    from nwwatch.service.config import STREAMS_MAX, THREADS_MAX, UNIT_TASKS_MAX, unit_threads

    unit = (Path(__file__).resolve().parents[1] / "systemd" / "nwwatch.service").read_text()
    (tasks_max,) = map(int, re.findall(r"^TasksMax=(\d+)$", unit, re.M))
    assert UNIT_TASKS_MAX == tasks_max
    # every key at its bound, one model file, one watch: accepted, so it must fit
    assert unit_threads(THREADS_MAX, 1, STREAMS_MAX, 1) <= tasks_max


def _two_models(tmp, acq, res, m, threads, streams=1):
    """A configuration of two [[watch]] folders with two model files (two sessions), as the
    example's in-situ and tomogram watches."""
    import shutil

    other = tmp / "acq2"
    other.mkdir(exist_ok=True)
    second = shutil.copy(m, tmp / "second.onnx")
    cfg = write_config(tmp / "c.toml", acq, res, m)
    text = cfg.read_text().replace("threads = 1", f"threads = {threads}\nstreams = {streams}")
    cfg.write_text(f"[[watch]]\npath = \"{other}\"\nmodel = \"{second}\"\n" + text)
    return cfg


def test_threads_over_every_model_s_session_must_fit_the_units_task_limit(paths):
    """threads = 128 (the documented maximum) with two model files made two sessions of 128
    threads: 263 threads, and under the unit's TasksMax=256 the start hung after one
    model_loaded line. Refused now, naming the key and the arithmetic; the most it names
    is accepted."""
    from nwwatch.service.config import THREADS_MAX, UNIT_TASKS_MAX, unit_threads

    tmp, acq, res, m = paths
    cfg = _two_models(tmp, acq, res, m, THREADS_MAX)
    assert load_config(cfg).inference.threads == THREADS_MAX  # replay, a run by hand: free
    with pytest.raises(ConfigError) as info:
        load_config(cfg, unit=True)
    err = info.value
    total = unit_threads(THREADS_MAX, 2, 1, 2)
    assert err.key == "inference.threads" and total > UNIT_TASKS_MAX
    assert f"{THREADS_MAX} threads x 2 sessions (one per model file: model.onnx, second.onnx)" \
        in str(err) and f"= {total} threads, more than the shipped unit's TasksMax=256" in str(err)
    most = int(re.search(r"at most (\d+) threads", str(err)).group(1))
    assert unit_threads(most, 2, 1, 2) <= UNIT_TASKS_MAX < unit_threads(most + 1, 2, 1, 2)
    assert load_config(_two_models(tmp, acq, res, m, most), unit=True).inference.threads == most
    # streams count too
    with pytest.raises(ConfigError, match=r"\+ 64 stream threads"):
        load_config(_two_models(tmp, acq, res, m, most, streams=64), unit=True)
    # the drop-in (install.sh) and `nwwatch run` under systemd refuse it with exit 78
    from nwwatch.service.dropin import main as dropin_main

    assert dropin_main([str(_two_models(tmp, acq, res, m, 128))]) == 78
    result = CliRunner().invoke(run, ["--config", str(_two_models(tmp, acq, res, m, 128))],
                                env={"INVOCATION_ID": "0123abcd"})
    assert result.exit_code == 78 and "inference.threads: 128 threads x 2" in result.output


def test_a_started_service_s_threads_stay_within_the_counted_bound(paths):
    """The bound's own margins (SERVICE_THREADS, THREADS_PER_WATCH) hold for a running
    service: two sessions, streams, a polling watch and the dashboard, threads counted in
    /proc once it is ready."""
    from servicekit import DaemonProcess

    from nwwatch.service.config import unit_threads

    tmp, acq, res, m = paths
    cfg = _two_models(tmp, acq, res, m, threads=6, streams=3)
    cfg.write_text(cfg.read_text() + '\n[dashboard]\nlisten = "127.0.0.1:0"\n')
    cfg.write_text(cfg.read_text().replace("path = ", "polling = true\npath = ", 1))
    daemon = DaemonProcess(cfg, tmp / "log.jsonl", env={"OMP_NUM_THREADS": "4"})
    try:
        daemon.wait_event("ready", timeout=60)
        running = len(os.listdir(f"/proc/{daemon.proc.pid}/task"))
    finally:
        daemon.terminate()
    assert running <= unit_threads(6, 2, 3, 2), running


def test_missing_model_syntax_error_and_results_inside_acquisition(paths):
    tmp, acq, res, m = paths
    path = write_config(tmp / "c.toml", acq, res, tmp / "nope.onnx")
    with pytest.raises(ConfigError, match=r"watch\[0\]\.model: file not found"):
        load_config(path)
    path = write_config(tmp / "c.toml", acq, res, tmp)  # was "file not found" too
    with pytest.raises(ConfigError, match=r"watch\[0\]\.model: a folder, not a model file"):
        load_config(path)
    path = write_config(tmp / "c.toml", acq, acq / "results", m)
    with pytest.raises(ConfigError, match="output.results: lies inside"):
        load_config(path)
    path.write_text("[[watch]\npath = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_require_gpu_on_cpu_machine_fails_loudly(paths, capsys):
    from nwwatch.segment.session import gpu_possible

    if gpu_possible(("cuda",)):
        pytest.skip("a machine with an NVIDIA driver")
    tmp, acq, res, m = paths
    with pytest.raises(GpuUnavailableError, match="CPUExecutionProvider"):
        Segmenter(m, providers=("cuda", "cpu"), require_gpu=True)
    cfg = write_config(tmp / "c.toml", acq, res, m)
    cfg.write_text(cfg.read_text().replace("threads = 1", "threads = 1\nrequire_gpu = true")
                   .replace('providers = ["cpu"]', 'providers = ["cuda", "cpu"]'))
    result = CliRunner().invoke(run, ["--config", str(cfg)])
    assert result.exit_code == 78  # EX_CONFIG: systemd does not restart-loop on it
    # named with the file and the key, before any folder is made
    assert f"{cfg}: inference.require_gpu: a GPU provider is required" in result.output
    assert not res.exists()
    # validating for the installer only warns: the driver may be loaded by the service's start
    from nwwatch.service.dropin import main as dropin_main

    assert dropin_main([str(cfg)]) == 0
    assert "warning: " + f"{cfg}: inference.require_gpu: no GPU provider can run here now" in (
        capsys.readouterr().err)
    # ... but a list that names no GPU provider can never satisfy it: refused
    cfg.write_text(cfg.read_text().replace('providers = ["cuda", "cpu"]', 'providers = ["cpu"]'))
    assert dropin_main([str(cfg)]) == 78
    assert "inference.require_gpu: a GPU provider is required" in capsys.readouterr().err


def test_bad_config_exits_78_naming_the_key(paths):
    tmp, acq, res, m = paths
    cfg = write_config(tmp / "c.toml", acq, res, m, extra="[state]\nledgr = \"x\"")
    result = CliRunner().invoke(run, ["--config", str(cfg)])
    assert result.exit_code == 78 and "state.ledgr: unknown key" in result.output


def test_a_ledger_through_a_symbolic_link_loop_exits_78_naming_the_key(paths, capsys):
    """[state] ledger through a symbolic-link loop: Path.resolve's RuntimeError ended
    `nwwatch run` (and the drop-in, `status --config`) with a traceback and exit 1, which
    systemd restarts; the same loop as output.results was already a clean exit 78."""
    from nwwatch.service.cli import status
    from nwwatch.service.dropin import main as dropin_main

    tmp, acq, res, m = paths
    (tmp / "loop").symlink_to("loop")
    cfg = write_config(tmp / "c.toml", acq, res, m,
                       extra=f"[state]\nledger = \"{tmp / 'loop' / 'ledger.sqlite'}\"")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert info.value.key == "state.ledger"
    assert "cannot follow the symbolic links of" in str(info.value)
    result = CliRunner().invoke(run, ["--config", str(cfg)])
    assert result.exit_code == 78 and "state.ledger: cannot follow" in result.output
    assert dropin_main([str(cfg)]) == 78
    assert "state.ledger: cannot follow" in capsys.readouterr().err
    result = CliRunner().invoke(status, ["--config", str(cfg)])
    assert result.exit_code == 1 and "state.ledger: cannot follow" in result.output
    assert not isinstance(result.exception, RuntimeError)


def test_observer_choice_from_mount_type(tmp_path, paths):
    _, acq, _, m = paths
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        f"server:/export {acq} nfs4 rw 0 0\n"
        f"//nas/share {tmp_path}/smb cifs rw 0 0\n"
    )
    cfg = load_config(write_config(tmp_path / "c.toml", acq, tmp_path / "r", m))
    w = cfg.watches[0]
    assert mount_fstype(acq / "sub", str(mounts)) == "nfs4"
    assert mount_fstype(tmp_path / "smb", str(mounts)) == "cifs"
    assert mount_fstype(tmp_path / "local", str(mounts)) == "ext4"
    assert use_polling(w, str(mounts))
    from dataclasses import replace

    assert not use_polling(replace(w, polling="false"), str(mounts))
    assert FolderWatcher(w, print, print, mounts_file=str(mounts)).mode == "polling"


def test_patterns_skip_temporaries_and_hidden_files(paths):
    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    assert matches("frame_001.tif", w) and matches("stack.TIFF", w)
    for name in [".frame.tif", "frame.tif.tmp", "frame.tif.part", "frame.png", "x.tif~"]:
        assert not matches(name, w), name


def test_patterns_match_as_fnmatchcase_one_at_a_time(paths):
    # matches() asks one regular expression made of all the patterns (a rescan asks it of
    # every name in the folder): it must take exactly the names fnmatchcase takes
    import fnmatch
    from dataclasses import replace

    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    patterns = ("*.tif", "frame_??.mrc", "[ab]*.dm4", "*[!0-9].emd", "run[0-9]/x*", "a|b*",
                "*.TIF", "(x)*.ser", "*")
    names = ["a.tif", "A.TIF", "frame_01.mrc", "frame_1.mrc", "b1.dm4", "c1.dm4", "x.emd",
             "x1.emd", "a|b.tif", "a|bc", "(x)1.ser", "x1.ser", "a.tif\n", "\n.tif", "",
             ".hidden.tif", "a.tif.tmp", "s.mdoc", "s.MRC.MDOC", ".mdoc"]
    ignores = ("*.tmp", ".*", "a|b*")
    for k in range(1, len(patterns) + 1):
        watch = replace(w, patterns=patterns[:k], ignore_patterns=ignores[: k % 4])
        for name in names:
            expected = (not name.lower().endswith(".mdoc") or name == ".mdoc") and not any(
                fnmatch.fnmatchcase(name, p) for p in watch.ignore_patterns) and any(
                fnmatch.fnmatchcase(name, p) for p in watch.patterns)
            assert matches(name, watch) is expected, (name, watch.patterns,
                                                     watch.ignore_patterns)


def test_default_patterns_take_any_case_of_the_extension(paths):
    # Windows acquisition software writes names such as "Image 001.Tif"; a folder scan (the
    # service's rescans, replay) that passed them over would lose the frames without a word.
    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    for name in ["a.tif", "b.TIF", "c.Tif", "d.tIf", "e.tiff", "f.Tiff", "g.TIFF", "h.tifF"]:
        assert matches(name, w), name
        (acq / name).write_bytes(b"")
    for name in ["i.tif.Part", "k.tifx", "l.ti"]:
        (acq / name).write_bytes(b"")
    assert [p.name for p in list_inputs(acq, "insitu")] == [
        "a.tif", "b.TIF", "c.Tif", "d.tIf", "e.tiff", "f.Tiff", "g.TIFF", "h.tifF"]


class _NoCandidates:
    """A readiness tracker for :meth:`Watch.rescan` that holds no file yet and takes each."""

    def paths(self):
        return set()

    def touch(self, *args):
        pass


class _NothingDoneLedger:
    def is_finished(self, *args):
        return False


class _NothingDoneEngine:
    """The engine a rescan asks whether a file is done: none is."""

    ledger = _NothingDoneLedger()
    measurement_version = "1"

    class segmenter:
        model_sha256 = "0" * 64


def test_a_watched_folder_of_tilt_series_is_named_with_what_to_do(paths):
    """A tomography user's folder often holds tilt series (IMOD's .st, .ali), not only
    reconstructions: the service watched a folder of them and found no candidate, without a
    word. Each rescan warns once about every new file of a format nwwatch does not read,
    with what to do."""
    from nwwatch.service.watches import Watch

    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    (acq / "a.st").write_bytes(b"\0" * 1024)
    (acq / "sub").mkdir()
    (acq / "sub" / "b.ali").write_bytes(b"\0" * 1024)
    (acq / ".hidden.st").write_bytes(b"")
    (acq / "notes.txt").write_text("not a volume")
    warnings = []

    class Log:
        def warning(self, event, **fields):
            warnings.append((event, fields))

    watch = Watch(0, w, engine=None, watcher=None)
    assert watch.rescan(None, set(), Log()) == 0
    ((event, fields),) = warnings
    assert event == "unread_format" and fields["count"] == 2
    assert fields["files"] == [str(acq / "a.st"), str(acq / "sub" / "b.ali")]
    assert "reconstruct it first" in fields["reason"]
    watch.rescan(None, set(), Log())  # the same files: said once
    assert len(warnings) == 1
    (acq / "c.avi").write_bytes(b"\0")
    watch.rescan(None, set(), Log())
    assert warnings[-1][1]["files"] == [str(acq / "c.avi")]
    assert "ffmpeg" in warnings[-1][1]["reason"]
    # a video saved with its TIFF export beside it is left out on purpose: no warning
    watch.engine = _NothingDoneEngine()
    (acq / "d.avi").write_bytes(b"\0")
    (acq / "d.tif").write_bytes(b"\0")
    assert watch.rescan(_NoCandidates(), set(), Log()) == 1
    assert len(warnings) == 2


def test_dead_observer_is_detected_and_restarted(paths):
    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m, polling=True)).watches[0]
    seen = []
    watcher = FolderWatcher(w, lambda p, closed: seen.append(p), print)
    watcher.start()
    try:
        assert watcher.alive()
        for emitter in list(watcher._observer.emitters):  # what an OSError on a share does
            emitter.stop()
            emitter.join(30)
            assert not emitter.is_alive()
        assert not watcher.alive()
        watcher.restart()
        assert watcher.alive() and watcher.restarts == 1
        (acq / "new.tif").write_bytes(b"x")
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watcher.stop()
    assert seen and seen[0].name == "new.tif"


def test_notifier_speaks_the_systemd_protocol(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "n.sock"))
    sock.settimeout(1)
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "2000000"})
    assert n.watchdog_interval_s == 1.0
    n.ready("watching")
    n.watchdog(now=10.0)
    n.watchdog(now=10.5)  # too early: not sent
    n.watchdog(now=11.1)
    n.status("queue 3")
    got = [sock.recv(100).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=watching", "WATCHDOG=1", "WATCHDOG=1", "STATUS=queue 3"]
    assert not Notifier({}).enabled
    Notifier({}).ready()  # no socket: a no-op
    # A receiver that does not read (its queue full: 10 datagrams by default) never stops
    # the sender (a blocking send hung the service's loop); READY=1 waits for room a while.
    t0 = time.monotonic()
    sent = [n.send(f"STATUS={i}") for i in range(300)]
    assert time.monotonic() - t0 < 2.0 and not all(sent)
    threading.Timer(0.3, lambda: [sock.recv(100) for _ in range(5)]).start()
    n.ready("again", wait_s=5.0)
    received = []
    with contextlib.suppress(TimeoutError):
        while True:
            received.append(sock.recv(100).decode())
    assert "READY=1\nSTATUS=again" in received
    # no receiver at all (a socket path nobody binds): READY=1 is not waited for
    t0 = time.monotonic()
    Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")}).ready("x", wait_s=5.0)
    assert time.monotonic() - t0 < 1.0


def test_example_config_is_valid_and_drop_in_opens_its_folders(paths, monkeypatch):
    import shutil
    import subprocess
    from pathlib import Path

    import nwwatch.service.config as config_module
    from nwwatch.service.dropin import unit_dropin

    _, _, _, m = paths
    monkeypatch.setitem(config_module.DEFAULT_MODELS, "insitu", m)
    repo = Path(__file__).resolve().parent.parent
    cfg = load_config(repo / "deploy" / "nwwatch.example.toml")
    assert cfg.watches[0].model == m and cfg.inference.batch_size == 8
    # the kind's default names, MRC stacks included
    assert tuple(cfg.watches[0].patterns) == config_module.DEFAULT_PATTERNS["insitu"]
    # and the default the file writes out in a comment for an operator to copy and narrow
    import tomllib

    text = (repo / "deploy" / "nwwatch.example.toml").read_text()
    block = []
    for line in text.split("# The in-situ default, written out:\n", 1)[1].splitlines():
        block.append(line.removeprefix("#"))
        if line.rstrip().endswith("]"):
            break
    shown = tomllib.loads("\n".join(block))["patterns"]
    assert tuple(shown) == config_module.DEFAULT_PATTERNS["insitu"], shown
    text = unit_dropin(cfg)
    assert "ReadOnlyPaths=-/data/acquisition/insitu" in text
    assert "RequiresMountsFor=/data/acquisition/insitu" in text
    assert "ReadWritePaths=/data/nwwatch-results" in text
    # results (and the ledger) on a share: mounted before start too, not written into the
    # empty mount point underneath
    assert "RequiresMountsFor=/data/nwwatch-results" in text
    unit = (repo / "systemd" / "nwwatch.service").read_text()
    for line in ["Type=notify", "Restart=on-failure", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "DeviceAllow=char-nvidia rwm", "MemoryMax=", "WatchdogSec=", "User=nwwatch"]:
        assert line in unit
    assert "\nPrivateDevices=" not in unit  # it would hide /dev/nvidia*
    # nvidia-uvm loaded before the unit's device policy is set up, its node made as root
    assert "Wants=modprobe@nvidia_uvm.service" in unit
    assert "After=modprobe@nvidia_uvm.service" in unit
    pre = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert len(pre) == 1 and pre[0].startswith("ExecStartPre=-+/bin/sh -c "), pre
    script = pre[0].split(" -c ", 1)[1].strip("'")
    # a machine without the NVIDIA driver: nothing run, success
    done = subprocess.run(["/bin/sh", "-c", script], env={"PATH": str(paths[0])},
                          capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done
    # with the driver: nvidia-modprobe asked for the unified-memory module and its node
    fake = paths[0] / "bin"
    fake.mkdir()
    (fake / "nvidia-modprobe").write_text(f"#!/bin/sh\necho \"$@\" > {fake}/args\n")
    (fake / "nvidia-modprobe").chmod(0o755)
    done = subprocess.run(["/bin/sh", "-c", script], env={"PATH": str(fake)})
    assert done.returncode == 0 and (fake / "args").read_text().split() == ["-u", "-c=0"]
    if shutil.which("systemd-analyze"):
        # verify with ExecStart pointed at an existing program (the venv is not installed here)
        local = paths[0] / "nwwatch.service"
        local.write_text(unit.replace("/opt/nwwatch/venv/bin/nwwatch", shutil.which("true")))
        out = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                             text=True)
        assert out.returncode == 0 and "nwwatch.service" not in out.stderr, out.stderr


def test_dropin_command_validates_and_exits_78(paths, capsys):
    from nwwatch.service.dropin import main

    tmp, acq, res, m = paths
    good = write_config(tmp / "c.toml", acq, res, m)
    assert main([str(good)]) == 0
    assert f"ReadOnlyPaths=-{acq}" in capsys.readouterr().out
    bad = write_config(tmp / "bad.toml", acq, res, m, extra="[retry]\nmax_attempts = 0")
    assert main([str(bad)]) == 78


def test_ledger_inside_an_acquisition_folder_is_refused_symlinks_followed(paths):
    tmp, acq, res, m = paths
    path = write_config(tmp / "c.toml", acq, res, m,
                        extra=f'[state]\nledger = "{acq / "state" / "ledger.sqlite"}"')
    with pytest.raises(ConfigError, match=r"state\.ledger: lies inside acquisition folder"):
        load_config(path)
    # the same folder reached through a symbolic link from outside
    (tmp / "looks_elsewhere").symlink_to(acq)
    path = write_config(tmp / "c.toml", acq, res, m,
                        extra=f'[state]\nledger = "{tmp / "looks_elsewhere" / "l.sqlite"}"')
    with pytest.raises(ConfigError, match=r"state\.ledger: lies inside acquisition folder"):
        load_config(path)
    path = write_config(tmp / "c.toml", acq, tmp / "looks_elsewhere" / "res", m)
    with pytest.raises(ConfigError, match=r"output\.results: lies inside acquisition folder"):
        load_config(path)
    path = write_config(tmp / "c.toml", acq, res, m,
                        extra=f'[state]\nledger = "{tmp / "state" / "l.sqlite"}"')
    assert load_config(path).ledger == tmp / "state" / "l.sqlite"


@pytest.mark.parametrize("dataset", ["frames", "volumes"])
def test_a_ledger_inside_the_results_datasets_is_refused(paths, dataset):
    # before: accepted; its ledger.sqlite and lock under frames/ then broke
    # pandas.read_parquet(RESULTS/frames), the reader the docs give
    tmp, acq, res, m = paths
    path = write_config(tmp / "c.toml", acq, res, m,
                        extra=f'[state]\nledger = "{res / dataset / "ledger.sqlite"}"')
    with pytest.raises(ConfigError, match=rf"state\.ledger: lies inside {res / dataset}, "
                                          r"where every reader of the results"):
        load_config(path)
    path = write_config(tmp / "c.toml", acq, res, m,
                        extra=f'[state]\nledger = "{res / "state" / "ledger.sqlite"}"')
    assert load_config(path).ledger == res / "state" / "ledger.sqlite"


@pytest.mark.parametrize(("name", "what"), [
    ("quarantine.parquet", "the results' quarantine.parquet"),
    ("reverted.parquet", "the results' reverted.parquet"),
    ("masks/ledger.sqlite", "inside the results' masks/ folder"),
    ("overlays/l.sqlite", "inside the results' overlays/ folder"),
    ("label-queue/l.sqlite", "inside the results' label-queue/ folder")])
def test_a_ledger_named_like_a_file_the_service_writes_is_refused(paths, name, what):
    # before: `ledger = "RESULTS/quarantine.parquet"` was accepted, and the first refresh of
    # the quarantine list replaced the SQLite ledger with Parquet
    tmp, acq, res, m = paths
    path = write_config(tmp / "c.toml", acq, res, m, extra=f'[state]\nledger = "{res / name}"')
    with pytest.raises(ConfigError, match=rf"state\.ledger: is {re.escape(what)}, which the "
                                          r"service writes"):
        load_config(path)


@pytest.mark.parametrize(("value", "message"), [
    ("~/acq", r"'~/acq': '~' is the home of whoever reads the file \(root for install.sh"),
    (r"/srv/a\nReadWritePaths=/", r".* holds the control character '\\n'"),
    (r"C:\tmp", r".* holds the control character '\\t'.*single quotes")])
def test_a_path_with_a_home_or_a_control_character_is_refused(paths, value, message):
    # before: `~` was expanded for whoever read the file (root's home for install.sh, the
    # service user's for the service: two folders), and a "\n" split the drop-in's paths
    tmp, acq, res, m = paths
    text = write_config(tmp / "c.toml", acq, res, m).read_text()
    (tmp / "c.toml").write_text(text.replace(f'"{res}"', f'"{value}"'))
    with pytest.raises(ConfigError, match=rf"output\.results: {message}"):
        load_config(tmp / "c.toml")


def test_a_share_reached_through_a_symbolic_link_is_mounted_before_start(paths):
    # systemd orders the start after the mounts of the path's own prefixes: results under
    # /data -> /mnt/labshare were ordered after no mount of the share
    from nwwatch.service.dropin import unit_dropin

    tmp, acq, res, m = paths
    share = tmp / "mnt" / "labshare"
    share.mkdir(parents=True)
    (tmp / "data").symlink_to(share)
    path = write_config(tmp / "c.toml", acq, tmp / "data" / "results", m)
    text = unit_dropin(load_config(path))
    assert f"RequiresMountsFor={tmp / 'data' / 'results'}\n" in text
    assert f"RequiresMountsFor={share / 'results'}\n" in text
    assert text.count(f"RequiresMountsFor={acq}\n") == 1  # no link: named once


def test_a_model_that_is_a_device_is_named_as_such_not_as_missing(paths):
    tmp, acq, res, m = paths
    path = write_config(tmp / "c.toml", acq, res, Path(os.devnull))
    with pytest.raises(ConfigError, match=r"model: not a regular file \(a device, a FIFO\): "
                                          r"/dev/null"):
        load_config(path)


def test_config_lists_stay_equal_to_the_runtime_ones(paths):
    from dataclasses import fields

    from nwwatch.segment.session import PROVIDERS
    from nwwatch.service.config import PROVIDER_NAMES, TomogramSettings

    assert set(PROVIDER_NAMES) == set(PROVIDERS)
    assert {f.name for f in fields(TomogramSettings)} == {f.name for f in fields(VolumeOptions)}


def test_a_tomogram_watch_without_model_names_the_training_command(paths, tmp_path):
    # No tomogram model ships (they are trained per specimen): the error says how to get one.
    tmp, acq, res, m = paths
    path = write_config(tmp / "c.toml", acq, res, m)
    text = path.read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("model"))
    path.write_text(text.replace('kind = "insitu"', 'kind = "tomogram"', 1))
    with pytest.raises(ConfigError, match=r"watch\[0\]\.model: required for tomograms.*"
                                          r"nwwatch train --volume"):
        load_config(path)
    from nwwatch.service.replay import replay

    with pytest.raises(ConfigError, match="--model: required for tomograms"):
        replay(acq, tmp_path / "out", kind="tomogram", model=None)


def test_segmenter_is_exported_lazily():
    import subprocess
    import sys

    code = ("import sys; import nwwatch.segment.confidence\n"
            "assert 'onnxruntime' not in sys.modules\n"
            "from nwwatch.segment import Segmenter\n"
            "assert Segmenter.__module__ == 'nwwatch.segment.session'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_paths_of_the_wrong_kind_are_config_errors_not_tracebacks(paths):
    """A watched "folder" that is a file would be watched for nothing; a results folder that
    is a file, or one that cannot be created, made `nwwatch run` exit 1 with a traceback
    instead of 78 naming the key."""
    tmp, acq, res, m = paths
    a_file = tmp / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"watch\[0\]\.path: .*not a folder"):
        load_config(write_config(tmp / "c.toml", a_file, res, m))
    with pytest.raises(ConfigError, match=r"output\.results: .*not a folder"):
        load_config(write_config(tmp / "c.toml", acq, a_file, m))
    with pytest.raises(ConfigError, match=r"state\.ledger: .*a folder"):
        load_config(write_config(tmp / "c.toml", acq, res, m,
                                 extra=f"[state]\nledger = \"{tmp}\""))
    # a missing watched folder is fine (a share not mounted yet is retried)
    assert load_config(write_config(tmp / "c.toml", tmp / "later", res, m)).watches
    # a results folder below a file cannot be created: exit 78, the key named, no traceback
    cfg = write_config(tmp / "c.toml", acq, a_file / "res", m)
    result = CliRunner().invoke(run, ["--config", str(cfg)])
    assert result.exit_code == 78, result.output
    assert "output.results: cannot create" in result.output
    assert "Traceback" not in result.output
    assert a_file.read_text() == "x"


def test_every_accepted_key_is_documented_and_every_documented_key_accepted(paths,
                                                                           monkeypatch):
    """The configuration table of docs/service.md names exactly the keys the parser reads
    (each table's reader records every key it asks for, present or not)."""
    import re

    from nwwatch.service import configreader

    tmp, acq, res, m = paths
    asked: set[str] = set()
    finish = configreader.TableReader.finish

    def recording_finish(self):
        asked.update(re.sub(r"\[\d+\]", "", self.key(k)) for k in self.used)
        finish(self)

    monkeypatch.setattr(configreader.TableReader, "finish", recording_finish)
    extra = "".join(f"[{t}]\n" for t in ("tomogram", "state", "service", "logging",
                                         "dashboard"))
    load_config(write_config(tmp / "c.toml", acq, res, m, extra=extra))
    tables = {k for k in asked if "." not in k}
    accepted = {k for k in asked if "." in k}
    doc = (Path(__file__).parents[1] / "docs" / "service.md").read_text()
    section = doc.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for cell in re.findall(r"^\| `([^`]+)`", section, flags=re.M):
        table_key = re.fullmatch(r"\[+(\w+)\]+(?: (\w+))?", cell)
        if table_key:  # "[output] results" or "[[watch]]"
            name, key = table_key.groups()
            if key:
                documented.add(f"{name}.{key}")
        else:
            documented.add(cell)
    assert documented == accepted
    assert tables <= {k.split(".")[0] for k in documented}


def test_a_config_that_is_a_folder_or_not_utf8_is_a_config_error(paths, capsys):
    """Both were Python tracebacks (IsADirectoryError from `python -m
    nwwatch.service.dropin`, UnicodeDecodeError from `nwwatch run`), exit 1 instead of 78."""
    from nwwatch.service.dropin import main as dropin_main

    tmp, acq, res, m = paths
    with pytest.raises(ConfigError, match=r"test_a_config_that_is_a_folder\w*: is a folder"):
        load_config(tmp)
    binary = tmp / "latin1.toml"
    binary.write_bytes("# température\n".encode("latin-1") + b"[[watch]]\n")
    with pytest.raises(ConfigError, match=r"latin1.toml: not UTF-8"):
        load_config(binary)
    result = CliRunner().invoke(run, ["--config", str(binary)])
    assert result.exit_code == 78 and "not UTF-8" in result.output, result.output
    assert dropin_main([str(tmp)]) == 78 and "is a folder" in capsys.readouterr().err
    # `nwwatch run --config FOLDER`: 78 like every configuration problem (click's usage
    # error was exit 2, which the unit restarts)
    result = CliRunner().invoke(run, ["--config", str(tmp)])
    assert result.exit_code == 78 and "is a folder" in result.output, result.output


def test_relative_paths_become_absolute_normalised_paths(paths, monkeypatch, capsys):
    """`--config cfg/nwwatch.toml` with `path = "../acq"` gave the relative "cfg/../acq",
    and the drop-in printed it as is; systemd refuses relative and non-normalised paths in
    ReadOnlyPaths=/ReadWritePaths=, so the sandbox would not open the folders."""
    from nwwatch.service.dropin import main as dropin_main

    tmp, acq, res, m = paths
    (tmp / "cfg").mkdir()
    text = write_config(tmp / "cfg" / "c.toml", acq, res, m).read_text()
    text = text.replace(f'"{acq}"', '"../acq"').replace(f'"{res}"', '"../res"')
    (tmp / "cfg" / "c.toml").write_text(text)
    monkeypatch.chdir(tmp)
    cfg = load_config("cfg/c.toml")
    assert cfg.watches[0].path == acq and cfg.results == res
    assert cfg.ledger == res / "ledger.sqlite"
    assert dropin_main(["cfg/c.toml"]) == 0
    dropin = capsys.readouterr().out
    assert f"ReadOnlyPaths=-{acq}\n" in dropin and f"ReadWritePaths={res}\n" in dropin
    assert ".." not in dropin


def _verify_with_systemd(tmp: Path, dropin: str) -> None:
    """``systemd-analyze verify`` of a unit made of ``dropin`` (its first line, a comment,
    dropped) with an existing ExecStart, where systemd-analyze is installed: no error and no
    path "ignoring"."""
    import shutil
    import subprocess

    if not shutil.which("systemd-analyze"):
        return
    unit = tmp / "t.service"
    unit.write_text(f"[Unit]\nDescription=t\n[Service]\nExecStart={shutil.which('true')}\n"
                    + dropin.split("\n", 1)[1])
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "ignoring" not in out.stderr, out.stderr


def test_drop_in_quotes_paths_with_spaces_and_percent_signs(paths, capsys):
    """systemd splits ReadOnlyPaths=/ReadWritePaths=/RequiresMountsFor= at spaces and
    expands %-specifiers: "/data/run 42" became "/data/run" and "42" ("path is not absolute,
    ignoring"), so the sandbox never opened the folder."""
    from nwwatch.service.dropin import unit_dropin

    tmp, _, _, m = paths
    acq = tmp / "run 42 'a'"
    acq.mkdir()
    res = tmp / 'res 100% "b"'
    cfg = load_config(write_config(tmp / "c.toml", acq, res, m))
    text = unit_dropin(cfg)
    assert f'ReadOnlyPaths="-{acq}"\n' in text
    assert 'res 100%% \\"b\\""\n' in text
    # deploy/install.sh creates the writable folders from the plain paths
    from nwwatch.service.dropin import main as dropin_main

    assert dropin_main(["--writable", str(tmp / "c.toml")]) == 0
    assert capsys.readouterr().out == f"{res}\n"
    plain = load_config(write_config(tmp / "d.toml", tmp / "acq", tmp / "res", m))
    assert f"ReadOnlyPaths=-{tmp / 'acq'}\n" in unit_dropin(plain)  # quoted only when needed
    _verify_with_systemd(tmp, text)


def test_drop_in_refuses_a_folder_that_resolves_to_a_name_not_utf8(paths, capsys):
    """A watched path that is a symbolic link to a folder named in Latin-1 ("Donn\\xe9es"):
    the drop-in named the resolved path as its raw bytes, systemd refused the whole unit
    ("String is not UTF-8 clean"), while `python -m nwwatch.service.dropin` exited 0. Now
    refused naming the key, exit 78, saying that a UTF-8 link is not enough."""
    from nwwatch.service.dropin import main as dropin_main
    from nwwatch.service.dropin import unit_dropin

    tmp, _, res, m = paths
    latin1 = tmp / os.fsdecode(b"Donn\xe9es")
    (latin1 / "acq").mkdir(parents=True)
    link = tmp / "acq-link"
    link.symlink_to(latin1 / "acq")
    cfg_path = write_config(tmp / "c.toml", link, res, m)
    with pytest.raises(ConfigError) as info:
        unit_dropin(load_config(cfg_path))
    err = info.value
    assert err.key == "watch[0].path" and "Donn\\xe9es" in str(err)
    assert "not UTF-8" in str(err) and "symbolic link of a UTF-8 name to it is not enough" \
        in str(err)
    assert dropin_main([str(cfg_path)]) == 78
    assert "watch[0].path:" in capsys.readouterr().err
    # the results folder behind a link too
    res_link = tmp / "res-link"
    res_link.symlink_to(latin1)
    with pytest.raises(ConfigError, match=r"output\.results: .*not UTF-8"):
        unit_dropin(load_config(write_config(tmp / "d.toml", tmp / "acq", res_link, m)))


def test_a_watched_folder_inside_the_results_folder_is_refused(paths, tmp_path):
    """A tomogram watch on RESULTS/masks was accepted: it would read the service's own masks
    back as new tomograms, each writing another mask there. No watched folder may lie inside
    the results (symlinks followed)."""
    tmp, acq, res, m = paths
    (res / "masks").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"watch\[0\]\.path: lies inside the results folder"):
        load_config(write_config(tmp / "c.toml", res / "masks", res, m))
    link = tmp / "incoming"
    link.symlink_to(res / "masks")
    with pytest.raises(ConfigError, match=r"watch\[0\]\.path: lies inside the results folder"):
        load_config(write_config(tmp / "c.toml", link, res, m))


def test_drop_in_lets_the_unit_start_before_an_acquisition_folder_exists(paths):
    """The service waits for a watched folder that is missing at start (a share not mounted
    yet, the example's placeholder on a first install), but systemd refuses to start a unit
    whose ReadOnlyPaths= folder is missing (226/NAMESPACE) unless the path carries "-"
    (systemd.exec(5)): the drop-in said ReadOnlyPaths=/data/acquisition/insitu, so the unit
    failed in a restart loop until the start limit instead of waiting."""
    from nwwatch.service.dropin import unit_dropin

    tmp, _, res, m = paths
    later = tmp / "not mounted yet"
    cfg = load_config(write_config(tmp / "c.toml", later, res, m))
    text = unit_dropin(cfg)
    assert f'ReadOnlyPaths="-{later}"\n' in text  # "-" inside the quotes: read after unquoting
    plain = load_config(write_config(tmp / "d.toml", tmp / "acq2", res, m))
    assert f"ReadOnlyPaths=-{tmp / 'acq2'}\n" in unit_dropin(plain)
    assert f"ReadWritePaths={res}\n" in text  # made by install.sh: no "-", a typo must fail
    _verify_with_systemd(tmp, text)


def test_unread_files_of_two_formats_get_the_conversion_of_each(paths):
    # each format's hint, once: not the first file's for all (a folder with a video and a
    # tilt series told to split both into frames)
    from nwwatch.service.watches import Watch

    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    (acq / "a.avi").write_bytes(b"\0" * 64)
    (acq / "b.st").write_bytes(b"\0" * 1024)
    (acq / "c.AVI").write_bytes(b"\0" * 64)
    warnings = []

    class Log:
        def warning(self, event, **fields):
            warnings.append((event, fields))

    Watch(0, w, engine=None, watcher=None).rescan(None, set(), Log())
    ((event, fields),) = warnings
    assert event == "unread_format" and fields["count"] == 3
    assert "ffmpeg" in fields["reason"] and "reconstruct" in fields["reason"]
    assert fields["reason"].count("a video?") == 1


def test_mrc_files_a_watch_leaves_out_are_named_with_the_kind_or_pattern_that_takes_them(
        paths):
    """Before MRC was read, a .rec in a watched folder got a warning (convert it); since,
    a reconstruction in an in-situ watch, like a .map in any, was left out without a word."""
    from nwwatch.service.watches import Watch

    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    assert w.kind == "insitu"
    for name in ("tomo.rec", "map.map", "movie.mrcs", "frame.mrc"):  # the last two are taken
        (acq / name).write_bytes(b"\0" * 1024)
    warnings = []

    class Log:
        def warning(self, event, **fields):
            warnings.append((event, fields))

    watch = Watch(0, w, engine=_NothingDoneEngine(), watcher=None)
    assert watch.rescan(_NoCandidates(), set(), Log()) == 2
    ((event, fields),) = warnings
    assert event == "unread_format" and fields["count"] == 2
    assert fields["files"] == [str(acq / "map.map"), str(acq / "tomo.rec")]
    assert fields["reason"] == (
        "an MRC file whose name this watch does not take: add its pattern (e.g. \"*.map\") to "
        "the watch's patterns, or name the file to nwwatch replay; a reconstruction? nwwatch "
        "reads it as a tomogram: watch or replay it as kind \"tomogram\"")


def test_tiffs_of_a_suffix_no_pattern_takes_are_named(paths):
    """patterns = ["*.tiff"] over a folder of .tif frames processed nothing, without a word
    (as an empty list would, which is refused); a pattern that selects among the TIFFs, or
    an ignore pattern, leaves theirs out on purpose."""
    import dataclasses

    from nwwatch.service.watches import Watch

    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    for name in ("a.tif", "b.TIF", "c.tiff", "run.part.tif", "notes.txt"):
        (acq / name).write_bytes(b"\0" * 64)

    def said(patterns, ignore=()):
        warnings = []

        class Log:
            def warning(self, event, **fields):
                warnings.append((event, fields))

        watch = dataclasses.replace(w, patterns=patterns, ignore_patterns=ignore)
        Watch(0, watch, engine=_NothingDoneEngine(), watcher=None).rescan(
            _NoCandidates(), set(), Log())
        return warnings

    ((event, fields),) = said(("*.tiff",), ("*.part.tif",))
    assert event == "unread_format"
    assert fields["files"] == [str(acq / "a.tif"), str(acq / "b.TIF")]
    assert 'add its pattern (e.g. "*.tif")' in fields["reason"]
    assert 'add its pattern (e.g. "*.TIF")' in fields["reason"]
    assert said(("frame_*.tif", "*.tiff", "*.TIF")) == []
    assert said(("frame_*",)) == [] and said(("run.tif", "run.TIF", "*.tiff")) == []
    assert said(("*_HAADF.tif", "frame_*[0-9].TIF", "*.tiff")) == []  # one detector, ...
    assert said(("frame_*tif", "*[.]TIF", "*.tiff")) == []
    # any case, as the default patterns: a selection among the .tif files (c.tiff named)
    ((_, fields),) = said(("frame_*.[tT][iI][fF]",))
    assert fields["files"] == [str(acq / "c.tiff")]


def test_a_config_saved_with_a_byte_order_mark_and_crlf_reads_as_without(paths):
    """Windows editors (Notepad) save UTF-8 with a byte-order mark and CRLF line ends: the
    file was refused as "(syntax): not valid TOML: Invalid statement (at line 1, column 1)",
    pointing at nothing visible in it."""
    tmp, acq, res, m = paths
    text = f'[[watch]]\npath = "{acq}"\nmodel = "{m}"\n\n[output]\nresults = "{res}"\n'
    plain, windows = tmp / "plain.toml", tmp / "windows.toml"
    plain.write_text(text)
    windows.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    a, b = load_config(plain), load_config(windows)
    assert (a.watches, a.results, a.ledger) == (b.watches, b.results, b.ledger)


def test_a_model_path_that_is_not_utf8_is_a_config_error(paths):
    # before: accepted; the service then stopped with a traceback (UnicodeEncodeError) when it
    # wrote the rows, which name the model by its path as text. A TOML string is UTF-8, so
    # such a path comes from a relative model in a folder whose name is not.
    import os
    import shutil

    tmp, acq, res, m = paths
    folder = tmp / os.fsdecode(b"conf\xe9")
    folder.mkdir()
    shutil.copy(m, folder / "model.onnx")
    config = folder / "c.toml"
    write_config(config, acq, res, m)
    config.write_text(config.read_text().replace(f"model = {json.dumps(str(m))}",
                                                 'model = "model.onnx"'))
    with pytest.raises(ConfigError, match=r"watch\[0\]\.model: .*conf\\xe9/model\.onnx: the "
                                          r"model's path is not UTF-8 text \(byte 0xe9\).*"
                                          r"rename the file"):
        load_config(config)


def test_drop_in_command_answers_help_and_refuses_unknown_options(paths):
    """`python -m nwwatch.service.dropin --help` said "--help: (file): does not exist" and
    exited 78 (a configuration fault), as if --help were the configuration file."""
    import subprocess
    import sys

    tmp, acq, res, m = paths
    cfg = write_config(tmp / "c.toml", acq, res, m)
    command = [sys.executable, "-m", "nwwatch.service.dropin"]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: python -m nwwatch.service.dropin")
    assert "does not exist" not in shown.stdout + shown.stderr
    typo = subprocess.run([*command, "--writeable", str(cfg)], capture_output=True, text=True)
    assert typo.returncode == 2 and "no such option: --writeable" in typo.stderr, typo.stderr
    plain = subprocess.run([*command, str(cfg)], capture_output=True, text=True)
    assert plain.returncode == 0 and f"ReadWritePaths={res}" in plain.stdout, plain.stderr


def _documented_config_rows() -> dict[str, str]:
    """``{"inference.batch_size": "int 1–256, `8`", ...}``: each key of the configuration
    table of docs/service.md with its "type, default" cell."""
    import re

    doc = (Path(__file__).parents[1] / "docs" / "service.md").read_text()
    section = doc.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for cell, spec in re.findall(r"^\| `([^`]+)` \| (.+?) \| ", section, flags=re.M):
        table_key = re.fullmatch(r"\[(\w+)\] (\w+)", cell)
        rows[".".join(table_key.groups()) if table_key else cell] = spec.replace("\\|", "|")
    return rows


def _configured(cfg, key: str):
    """The value the parsed configuration holds for the documented ``key``."""
    table, name = key.split(".")
    if table == "watch":
        return getattr(cfg.watches[0], name)
    if table == "tomogram":  # None in the table: segment_volume's own default
        return getattr(cfg.tomogram.volume_options(), name)
    if table == "inference":
        return getattr(cfg.inference, name)
    if key == "dashboard.listen":
        return f"{cfg.dashboard.host}:{cfg.dashboard.port}"
    if table == "dashboard":
        return getattr(cfg.dashboard, name)
    renamed = {"output.overlays": "overlays", "state.ledger": "ledger",
               "logging.level": "log_level", "retry.backoff_seconds": "backoff_seconds"}
    value = getattr(cfg, renamed.get(key, name))
    return value.mode if key == "output.overlays" else value


def _config_with(acq: Path, res: Path, key: str | None = None, value=None):
    from nwwatch.service.config import parse_config

    data: dict = {"watch": [{"path": str(acq)}], "output": {"results": str(res)},
                  "dashboard": {}}
    if key is not None:
        table, name = key.split(".")
        target = data["watch"][0] if table == "watch" else data.setdefault(table, {})
        target[name] = value
    return parse_config(data)


def test_documented_defaults_are_the_defaults(paths):
    """Every default the configuration table of docs/service.md states (the last cell value
    in backquotes) is the value a configuration without the key gets."""
    import re
    import tomllib

    tmp, acq, res, _ = paths
    cfg = _config_with(acq, res)
    checked = []
    for key, spec in _documented_config_rows().items():
        found = re.search(r", `([^`]+)`$", spec)
        # required, or a default said in words; allow_remote is kept by no field (it only
        # lets `listen` name another host: test_dashboard_data.py)
        if "." not in key or not found or key == "dashboard.allow_remote":
            continue
        text = found.group(1).replace("<results>", str(res))
        try:
            want = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:  # a path, a word, or a list written as words
            want = (Path(text) if "/" in text else tuple(text.split()) if " " in text
                    else text)
        got = _configured(cfg, key)
        assert got == want and isinstance(got, bool) == isinstance(want, bool), \
            f"{key}: documented default {text}, the configuration gives {got!r}"
        checked.append(key)
    assert len(checked) >= 25, checked  # the table's parser still finds them


def test_documented_numeric_bounds_are_the_bounds(paths):
    """Every numeric range of the configuration table of docs/service.md ("int 1–256",
    "number > 0, ≤ 86400") is what the validator accepts: both ends accepted (a lower end
    of "> 0" refused), a value past either end refused naming the key."""
    import re

    tmp, acq, res, _ = paths
    checked = []
    for key, spec in _documented_config_rows().items():
        bounds = re.match(r"(int|number) (?:(\S+)–([^,\s]+)|> 0, ≤ ([^,\s]+))", spec)
        if not bounds:
            continue
        kind, low, high, high_open = bounds.groups()
        number = (lambda t: 10 ** 9 if t == "10⁹" else int(t)) if kind == "int" else float
        high = number(high or high_open)
        step = 1 if kind == "int" else 0.5
        accepted = [high] + ([number(low)] if low is not None else [step])
        refused = [high + step] + ([number(low) - step] if low is not None else [0])
        for value in accepted:
            assert _configured(_config_with(acq, res, key, value), key) == value, key
        name = key.split(".")[1]
        for value in refused:
            with pytest.raises(ConfigError, match=rf"\.{name}: must be"):
                _config_with(acq, res, key, value)
        checked.append(key)
    assert len(checked) == 14, checked


def test_a_provider_list_without_cpu_that_runs_on_the_cpu_is_a_warning(paths):
    """`providers = ["cuda"]` on a machine without a GPU ran on the CPU with no word but the
    info line's provider."""
    from structlog.testing import capture_logs

    from nwwatch.logsetup import get_logger
    from nwwatch.segment.session import gpu_possible
    from nwwatch.service.config import TomogramSettings
    from nwwatch.service.engines import EngineSpec, build_engines
    from nwwatch.service.inference import InferenceConfig
    from nwwatch.service.ledger import Ledger

    if gpu_possible(("cuda",)):
        pytest.skip("a machine with an NVIDIA driver")
    tmp, acq, res, m = paths
    ledger = Ledger(tmp / "ledger.sqlite", tmp)
    try:
        for providers, warned in ((("cuda",), True), (("cuda", "cpu"), False)):
            with capture_logs() as logs:
                build_engines([EngineSpec("insitu", m)], ledger, res,
                              inference=InferenceConfig(providers=providers), max_attempts=3,
                              tomogram=TomogramSettings(), log=get_logger())
            fallback = [e for e in logs if e["event"] == "provider_fallback"]
            assert bool(fallback) == warned, logs
            if warned:
                assert fallback[0]["provider"] == "CPUExecutionProvider"
                assert fallback[0]["log_level"] == "warning"
    finally:
        ledger.close()


@pytest.mark.parametrize(("ignore", "patterns"), [('["*"]', None), ('["*.tmp", "**"]', None),
                                                  ('["*.tif", "*.dm4"]', '["*.tif", "*.dm4"]'),
                                                  # every name with a dot: every pattern's
                                                  ('["*.*"]', None),
                                                  ('["*.t*", "*.?m*"]', '["*.tif", "*.dm4"]'),
                                                  # all but a file named ".tif" alone
                                                  ('["?*.tif"]', '["*.tif"]')])
def test_ignore_patterns_that_take_every_file_are_refused(paths, ignore, patterns):
    # before: accepted, and the service processed nothing without a word
    tmp, acq, res, m = paths
    text = write_config(tmp / "c.toml", acq, res, m).read_text()
    keys = f"ignore_patterns = {ignore}\n" + (f"patterns = {patterns}\n" if patterns else "")
    (tmp / "c.toml").write_text(text.replace("[[watch]]\n", "[[watch]]\n" + keys, 1))
    with pytest.raises(ConfigError, match=r"watch\[0\]\.ignore_patterns: .* ignores every file "
                                          r"the patterns .* take"):
        load_config(tmp / "c.toml")
    (tmp / "c.toml").write_text(text.replace("[[watch]]\n", '[[watch]]\nignore_patterns = '
                                             '["*.tmp", "*~"]\n', 1))
    assert load_config(tmp / "c.toml").watches[0].ignore_patterns == ("*.tmp", "*~")
    # patterns that take some of the files only are the user's choice
    for some in ('["*frame*"]', '["f*"]', '["*.tif"]'):
        (tmp / "c.toml").write_text(text.replace("[[watch]]\n", f"[[watch]]\nignore_patterns "
                                                 f"= {some}\n", 1))
        load_config(tmp / "c.toml")


class _Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.lines.append((level, event, fields))


def test_a_sub_folder_inotify_cannot_watch_makes_the_folder_polled(paths, monkeypatch):
    """Out of inotify watches (fs.inotify.max_user_watches) for a sub-folder, watchdog left it
    out without a word: its files waited for the next rescan (60 s by default) while the log
    said "inotify". The watcher records it; the next supervision polls the folder and says
    why, and a file in that sub-folder is seen without a rescan."""
    import errno

    from watchdog.observers import inotify_c

    from nwwatch.service.watches import Watch

    tmp, acq, res, m = paths
    for name in ("run0", "run1", "run2"):
        (acq / name).mkdir()
    real = inotify_c.InotifyFD.add_callback

    def out_of_watches(self, path, *args, **kwargs):
        if path.endswith(b"run2"):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(inotify_c.InotifyFD, "add_callback", out_of_watches)
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    seen: list[Path] = []
    watcher = FolderWatcher(w, lambda p, closed: seen.append(p), print)
    watch = Watch(0, w, engine=None, watcher=watcher)
    log = _Lines()
    try:
        watch.start(log, {})
        assert watcher.mode == "inotify" and watcher.exhausted.errno == errno.ENOSPC
        monkeypatch.setattr(Watch, "rescan", lambda *args: 0)
        watch.supervise(None, set(), log, {})
        assert watcher.mode == "polling" and watcher.exhausted is None
        events = [(level, event) for level, event, _ in log.lines]
        assert events == [("info", "watching"), ("warning", "inotify_exhausted"),
                          ("warning", "watching")]
        assert "max_user_watches" in log.lines[-1][2]["reason"]
        (acq / "run2" / "f.tif").write_bytes(b"x")
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.name for p in seen] == ["f.tif"]
    finally:
        watcher.stop()


def test_out_of_inotify_instances_the_folder_is_polled_and_the_log_says_why(paths, monkeypatch):
    """watchdog's inotify observer takes its inotify instance when it is made, outside the
    fallback's reach: out of instances (or of file descriptors), the folder was never
    watched, only rescanned, with "watch_failed ... retrying every second" once a minute."""
    import errno

    import nwwatch.service.watcher as watcher_module

    def no_instance():
        raise OSError(errno.EMFILE, "inotify instance limit reached")

    monkeypatch.setattr(watcher_module, "Observer", no_instance)
    tmp, acq, res, m = paths
    w = load_config(write_config(tmp / "c.toml", acq, res, m)).watches[0]
    watcher = FolderWatcher(w, lambda p, closed: None, print)
    try:
        watcher.start()
        assert watcher.mode == "polling" and watcher.alive()
        assert watcher.fallback.startswith("inotify instance limit reached (errno 24)")
    finally:
        watcher.stop()


def test_a_path_the_service_cannot_look_at_is_a_config_error_naming_its_key(paths):
    # before: Path.exists raised (a name too long; a folder above it the service user may
    # not search): a traceback and exit 1, which systemd restarts again and again
    tmp, acq, res, m = paths
    long = tmp / ("x" * 300) / "acq"
    write_config(tmp / "c.toml", long, res, m)
    with pytest.raises(ConfigError, match=r"watch\[0\]\.path: cannot look at .*File name too "
                                          r"long"):
        load_config(tmp / "c.toml")
    write_config(tmp / "c.toml", acq, tmp / ("y" * 300) / "res", m)
    with pytest.raises(ConfigError, match=r"output\.results: cannot look at"):
        load_config(tmp / "c.toml")


def test_a_huge_integer_for_a_number_is_a_config_error(paths):
    # before: OverflowError: int too large to convert to float (exit 1)
    tmp, acq, res, m = paths
    text = write_config(tmp / "c.toml", acq, res, m).read_text()
    (tmp / "c.toml").write_text(re.sub(r"settle_seconds = [0-9.]+", "settle_seconds = "
                                       + "9" * 400, text))
    with pytest.raises(ConfigError, match=r"watch\[0\]\.settle_seconds: must be a number, "
                                          r"got an integer of 400 digits"):
        load_config(tmp / "c.toml")
