"""Faults an operator meets when setting the service up, with real processes: each gives one
clear line naming what to fix, and the exit status that tells systemd whether a restart can
help (docs/service.md, Faults and recovery)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from servicekit import REPO, model, without_file_access_override, write_config


def _run(cfg, prefix=(), timeout=120) -> tuple[int, list[dict], str]:
    done = subprocess.run([*prefix, sys.executable, "-m", "nwwatch.service", "run",
                           "--config", str(cfg)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    return done.returncode, lines, done.stderr


def test_a_results_folder_the_service_may_not_write_is_a_configuration_fault(tmp_path):
    """It exited 1 with "cannot write the results or ledger folder (disk full?); systemd
    starts the service again": a permission is no full disk, and ten restarts in a minute
    cannot fix it. A results folder that cannot be created was exit 78 already."""
    prefix = without_file_access_override()
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    res.mkdir(mode=0o555)
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path))
    try:
        code, lines, stderr = _run(cfg, prefix)
    finally:
        res.chmod(0o755)
    assert code == 78, stderr[-2000:]
    assert "Traceback" not in stderr
    failed = [x for x in lines if x["event"] == "startup_failed"]
    assert failed and failed[0]["exit_status"] == 78, lines
    assert failed[0]["error_type"] == "ConfigError"
    error = failed[0]["error"]
    assert "output.results" in error and str(res) in error and "Permission denied" in error
    assert "disk full" not in error and "disk full" not in json.dumps(failed[0])
    # the folder is the service user's own already (made by it here): its mode is the fix,
    # not a chown (test_an_unwritable_results_folder_the_user_owns_... has the chown case)
    assert f"`chmod u+wx {res}`" in error and "chown" not in error, error


def test_a_ledger_file_the_service_may_not_write_is_not_called_damaged(tmp_path):
    """A ledger left read-only (a results folder copied back by root, say) was reported as
    "the ledger is damaged (attempt to write a readonly database)", naming `nwwatch ledger
    rebuild` — which moves a sound ledger aside — where a permission needs fixing."""
    prefix = without_file_access_override()
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path))
    from nwwatch.service.ledger import Ledger

    Ledger(res / "ledger.sqlite", res).close()  # a sound ledger
    (res / "ledger.sqlite").chmod(0o444)
    code, lines, stderr = _run(cfg, prefix)
    assert code == 78, stderr[-2000:]
    failed = [x for x in lines if x["event"] == "startup_failed"][0]
    assert failed["error_type"] == "ConfigError", failed
    error = failed["error"]
    assert f"cannot write {res / 'ledger.sqlite'}" in error, error
    assert "damaged" not in error and "rebuild" not in error
    assert f"`chmod u+w {res / 'ledger.sqlite'}`" in error, error


def test_results_that_cannot_be_written_beside_a_writable_ledger_stay_paused(tmp_path):
    """The pause's probe wrote only to the ledger: with the results folder read-only (a
    permission, or results on a share that filled up while the ledger is local) it
    succeeded, the service logged storage_resumed, processed the waiting files again, failed
    to write their rows and paused again — a paused/resumed pair and every waiting file
    "processed" once more per back-off period. The probe now writes into the results folder
    that failed, so the pause lasts until the rows can be written, each file processed once
    meanwhile."""
    import time
    from collections import Counter

    from servicekit import DaemonProcess, frames_table, wait_rows, write_frames

    wrap = without_file_access_override()
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2,
                       extra="backoff_seconds = 0.3")
    daemon = DaemonProcess(cfg, tmp_path / "log", wrap=wrap)
    locked = []
    try:
        daemon.wait_event("ready", timeout=60)
        names = write_frames(acq, 2)
        wait_rows(res, 2, proc=daemon)
        locked = [res / "frames", *(res / "frames").iterdir()]
        for folder in locked:
            folder.chmod(0o555)
        names += write_frames(acq, 3, start=2)
        daemon.wait_event("storage_paused", timeout=60)
        time.sleep(3.0)  # ten back-off periods
        events = daemon.events()
        assert not [e for e in events if e["event"] == "storage_resumed"], events[-5:]
        processed = Counter(e["source"] for e in events if e["event"] == "file_processed")
        assert max(processed.values()) == 1, processed
        for folder in locked:
            folder.chmod(0o755)
        daemon.wait_event("storage_resumed", timeout=30)
        wait_rows(res, 5, proc=daemon)
    finally:
        for folder in locked:
            folder.chmod(0o755)
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    rows = frames_table(res)
    assert sorted(rows.source.map(lambda s: s.rsplit("/", 1)[1])) == sorted(names)


def test_a_member_of_the_service_group_reads_status_of_a_stopped_service(tmp_path):
    """The results are the service user's, readable by its group (install.sh, UMask=0027).
    With the service stopped the ledger has no -shm file, and SQLite's read-only open of a
    WAL ledger must create one: a group member got "cannot read the ledger (attempt to write
    a readonly database); if it is damaged, … nwwatch ledger rebuild". The ledger is read as
    it is on disk then (no -wal file: nothing is written to it)."""
    import os

    import pytest
    from servicekit import paint_insitu

    from nwwatch.io import write_frame_tiff
    from nwwatch.service import replay

    if os.geteuid() != 0:
        pytest.skip("needs root to give the results to another user")
    prefix = without_file_access_override()
    acq, out = tmp_path / "acq", tmp_path / "out"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", paint_insitu(110.0))
    replay(acq, out, kind="insitu", model=model(tmp_path))
    assert not (out / "ledger.sqlite-shm").exists()  # closed: SQLite removed it
    for path in [out, *out.rglob("*")]:  # the service user's (uid 4242), group root's
        os.chown(path, 4242, 0)
        path.chmod(0o750 if path.is_dir() else 0o640)
    code = "import sys; from nwwatch.cli import main; sys.argv[0] = 'nwwatch'; main()"
    done = subprocess.run([*prefix, sys.executable, "-c", code, "status", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "files: 1 done" in done.stdout and "rows: 1" in done.stdout, done.stdout
    assert not (out / "ledger.sqlite-shm").exists()


def test_a_hangup_stops_the_service_like_sigterm_and_charges_no_attempt(tmp_path):
    """SIGHUP (the terminal of a foreground `nwwatch run` closed, an ssh session dropped)
    had no handler and killed the process on the spot: a single file in flight then counted
    an attempt at the next start, as if it had killed the process itself (quarantined after
    max_attempts). It stops the service as SIGTERM does."""
    import signal

    from servicekit import DaemonProcess, ledger_count, wait_batch_claimed, write_frames

    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2,
                       extra="[service]\nstop_timeout_seconds = 1\n")
    daemon = DaemonProcess(cfg, tmp_path / "log1", env={"NWWATCH_CRASH_AT": "in_batch:1"})
    daemon.wait_event("ready", timeout=60)
    write_frames(acq, 1)
    wait_batch_claimed(res)
    daemon.proc.send_signal(signal.SIGHUP)
    code = daemon.wait_exit(timeout=30)
    assert code == 1, code  # stopped at stop_timeout_seconds (the batch hangs), not killed
    assert daemon.wait_event("stop_requested")
    again = DaemonProcess(cfg, tmp_path / "log2")
    try:
        again.wait_event("file_processed", timeout=60)
    finally:
        assert again.terminate(timeout=30)[0] == 0
    assert ledger_count(res, "items", "attempts > 0") == 0


def test_a_writer_pausing_longer_than_settle_seconds_gets_its_file_processed_once_complete(
        tmp_path):
    """docs/service.md said a slow writer that closes between chunks is never failed; one
    that pauses longer than settle_seconds between chunks has its partial file quarantined
    as truncated until the file changes. What the docs now say, measured: each pause one
    file_quarantined line, the complete file processed once, nothing left quarantined."""
    import time

    from servicekit import DaemonProcess, paint_insitu, wait_rows

    from nwwatch.io import write_frame_tiff

    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.3,
                       rescan=0.5)
    whole = tmp_path / "whole.tif"
    write_frame_tiff(whole, paint_insitu(120.0, size=256))
    data = whole.read_bytes()
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
        for k, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False), 1):
            with open(acq / "slow.tif", "ab") as f:  # closed after every chunk
                f.write(data[a:b])
            if k < 3:  # the writer pauses until the partial file was judged (settle: 0.3 s)
                daemon.wait_event("file_quarantined", timeout=60, count=k)
        wait_rows(res, 1, timeout=60, proc=daemon)
        time.sleep(1.0)
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    events = daemon.events()
    quarantined = [e for e in events if e["event"] == "file_quarantined"]
    assert len(quarantined) == 2 and all("the file has only" in e["reason"]
                                         for e in quarantined), quarantined
    assert [e["state"] for e in events if e["event"] == "file_processed"] == ["done"]
    import pyarrow.parquet as pq

    assert pq.read_table(res / "quarantine.parquet").num_rows == 0


def test_quarantine_parquet_is_written_again_after_a_failed_write(tmp_path):
    """quarantine.parquet is rewritten when the quarantine list changes; a write that failed
    (the results folder read-only for a while) was tried again only at the next change — with
    no further bad file, never while the service ran, so the file (and the dashboard, which
    reads it) missed a quarantined file that `nwwatch status` listed. It is tried again every
    back-off period until it succeeds."""
    import time

    import pyarrow.parquet as pq
    from servicekit import DaemonProcess

    wrap = without_file_access_override()
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2,
                       extra="backoff_seconds = 0.5")
    daemon = DaemonProcess(cfg, tmp_path / "log", wrap=wrap)
    try:
        daemon.wait_event("ready", timeout=60)
        res.chmod(0o555)
        (acq / "bad.tif").write_bytes(b"not a TIFF at all\n" * 8)
        daemon.wait_event("quarantine_write_failed", timeout=60)
        res.chmod(0o755)
        deadline = time.monotonic() + 10
        listed: list = []
        while time.monotonic() < deadline and not listed:
            time.sleep(0.2)
            listed = pq.read_table(res / "quarantine.parquet").column("path").to_pylist()
        assert listed == [str(acq / "bad.tif")], listed
    finally:
        res.chmod(0o755)
        code, _ = daemon.terminate(timeout=30)
    assert code == 0


def test_the_unit_refuses_folders_its_private_tmp_would_hide(tmp_path, capsys):
    """The unit runs with PrivateTmp=yes: the service gets its own /tmp and /var/tmp, removed
    when it stops. A results folder configured there was written where nobody sees it and
    deleted at every stop; a watched folder there is empty for the service. install.sh's
    drop-in step (python -m nwwatch.service.dropin) accepted both; it names them now
    (``--private-tmp``, which install.sh passes when the unit has PrivateTmp=yes)."""
    from nwwatch.service.dropin import main

    cfg = tmp_path / "c.toml"
    for body, key in (
            ('[[watch]]\npath = "/srv/acq"\n[output]\nresults = "/var/tmp/nwwatch"\n',
             "output.results"),
            ('[[watch]]\npath = "/srv/acq"\n[[watch]]\npath = "/tmp/acq"\n'
             '[output]\nresults = "/srv/res"\n', "watch[1].path"),
            ('[[watch]]\npath = "/srv/acq"\n[output]\nresults = "/srv/res"\n'
             '[state]\nledger = "/tmp/l/ledger.sqlite"\n', "state.ledger")):
        cfg.write_text(body)
        assert main(["--private-tmp", str(cfg)]) == 78
        err = capsys.readouterr().err
        assert f"{key}: " in err and "PrivateTmp" in err, err
    cfg.write_text('[[watch]]\npath = "/srv/acq"\n[output]\nresults = "/srv/res"\n')
    assert main(["--private-tmp", str(cfg)]) == 0
    # install.sh passes the flag because the unit has PrivateTmp=yes, so a folder in /tmp
    # (the test's own configuration) fails its drop-in step
    assert "PrivateTmp=yes" in (REPO / "systemd" / "nwwatch.service").read_text().splitlines()
    assert '"${PRIVATE_TMP[@]}"' in (REPO / "deploy" / "install.sh").read_text()


def test_a_configuration_file_the_service_may_not_read_is_exit_78(tmp_path):
    """click's own check of --config (readable) answered first: exit 2, a usage error the
    unit restarts ten times, and no startup_failed line. The configuration's own reader
    names it and exits 78, as for a missing file."""
    import os

    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    acq = tmp_path / "acq"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, tmp_path / "res", model(tmp_path))
    os.chown(cfg, 4242, 0)
    cfg.chmod(0o600)
    code, lines, stderr = _run(cfg, without_file_access_override())
    assert code == 78, stderr
    failed = [x for x in lines if x["event"] == "startup_failed"]
    assert failed and f"{cfg}: cannot be read (permission denied)" in failed[0]["error"], lines


def test_status_of_results_whose_ledger_is_elsewhere_says_to_give_the_configuration(tmp_path):
    """`nwwatch status --out RESULTS` of a service whose [state] ledger lies outside RESULTS
    said only "no ledger here (nothing processed yet?)" beside results it had written."""
    from click.testing import CliRunner

    from nwwatch.service.cli import status

    (tmp_path / "frames").mkdir()
    r = CliRunner().invoke(status, ["--out", str(tmp_path)])
    assert r.exit_code == 1
    assert "no ledger here" in r.output and "--config" in r.output, r.output
    # results beside no ledger: not "nothing processed yet?", and the way to a lost ledger
    assert "nothing processed yet" not in r.output, r.output
    assert f"nwwatch ledger rebuild {tmp_path}" in r.output, r.output
    assert not (tmp_path / "ledger.sqlite").exists()


@pytest.mark.parametrize("state", ["", "[state]\nledger = \"{dir}/state/ledger.sqlite\"\n"],
                         ids=["in-results", "state-ledger"])
def test_status_of_a_configuration_before_its_first_run_names_its_ledger(tmp_path, state):
    """`nwwatch status --config CONFIG` before the service's first run said "no ledger here
    (nothing processed yet? a service whose [state] ledger lies elsewhere: give its
    --config)", with --config given."""
    from click.testing import CliRunner

    from nwwatch.service.cli import status

    acq = tmp_path / "acq"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, tmp_path / "res", model(tmp_path),
                       extra=state.format(dir=tmp_path))
    ledger = tmp_path / ("state" if state else "res") / "ledger.sqlite"
    # results folder not made yet (or a share not mounted): named with its key, not as
    # a ledger that is merely missing
    r = CliRunner().invoke(status, ["--config", str(cfg)])
    assert r.exit_code == 1, r.output
    assert f"{tmp_path / 'res'} ([output] results of {cfg}) does not exist: nothing " \
        "processed with this configuration yet, or the folder lies on a share that is " \
        "not mounted" in " ".join(r.output.split()), r.output
    (tmp_path / "res").mkdir()
    ledger.parent.mkdir(exist_ok=True)
    r = CliRunner().invoke(status, ["--config", str(cfg)])
    assert r.exit_code == 1, r.output
    assert f"{ledger}, the ledger of {cfg}, does not exist yet: nothing processed yet" \
        in " ".join(r.output.split()), r.output
    assert "give its --config" not in r.output, r.output
    assert not ledger.exists()


def test_status_of_a_folder_that_does_not_exist_says_so(tmp_path):
    """`nwwatch status --out TYPO` said "TYPO/ledger.sqlite: no ledger here (nothing processed
    yet? ...)" for a folder that does not exist; compact, report, dashboard and ledger
    rebuild name the folder as missing (usage error, exit 2)."""
    from click.testing import CliRunner

    from nwwatch.service.cli import status

    missing = tmp_path / "reslts"
    r = CliRunner().invoke(status, ["--out", str(missing)])
    assert r.exit_code == 2, r.output
    assert str(missing) in r.output and "does not exist" in r.output, r.output
    assert not missing.exists()


def test_a_rescan_while_rows_are_held_does_not_offer_the_file_again(tmp_path):
    """A file processed and waiting for its rows' file (flush_seconds) was not "finished"
    for the rescans: each rescan in that window queued it again, and it was skipped with a
    file_skipped "already done" line right after its file_processed line (seen for every
    file a drill wrote by tmp + rename, the writing the docs recommend)."""
    import time

    from servicekit import DaemonProcess, wait_rows, write_frames

    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2,
                       rescan=0.3, flush_seconds=3.0)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        write_frames(acq, 1)
        daemon.wait_event("file_processed", timeout=60)
        time.sleep(1.5)  # rescans while the row is held
        wait_rows(res, 1, timeout=30, proc=daemon)
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    assert not [e for e in daemon.events() if e["event"] == "file_skipped"]


def test_results_another_user_may_not_search_give_a_clear_line_not_a_traceback(tmp_path):
    """The results folder is 0750 for the service user (install.sh): for anyone else the
    configuration's check that [state] ledger is no folder met "Permission denied" and
    raised it, so `nwwatch status --config` printed a traceback and `nwwatch run` as a user
    who may not enter the folder exited 1 (restarted by the unit) instead of 78."""
    prefix = without_file_access_override()
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    res.mkdir(mode=0o000)
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path))
    code = "import sys; from nwwatch.cli import main; sys.argv[0] = 'nwwatch'; main()"
    try:
        status = subprocess.run([*prefix, sys.executable, "-c", code, "status", "--config",
                                 str(cfg)], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        run_code, lines, stderr = _run(cfg, prefix)
    finally:
        res.chmod(0o755)
    assert status.returncode == 1 and "Traceback" not in status.stderr, status.stderr
    assert f"{res / 'ledger.sqlite'}: Permission denied" in status.stderr, status.stderr
    assert "usermod -aG" in status.stderr
    assert run_code == 78 and "Traceback" not in stderr, stderr[-2000:]
    failed = [x for x in lines if x["event"] == "startup_failed"]
    assert failed and "output.results" in failed[0]["error"], lines


def test_ledger_rebuild_under_sudos_umask_keeps_the_ledger_to_the_services_group(tmp_path):
    """deploy/README: the service's files are readable by its user and group only (the unit's
    UMask=0027), and a lost ledger is rebuilt with `sudo -u nwwatch nwwatch ledger rebuild`,
    whose umask is 0022: the rebuilt ledger was 0644, and the -wal/-shm files SQLite creates
    with the database's mode stayed so for the service's life (a ledger in a folder others
    may enter, e.g. [state] ledger in /var/lib/nwwatch, lists every acquisition's files)."""
    import os

    from servicekit import paint_insitu

    from nwwatch.io import write_frame_tiff
    from nwwatch.service import replay

    acq, out = tmp_path / "acq", tmp_path / "out"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", paint_insitu(110.0))
    replay(acq, out, kind="insitu", model=model(tmp_path))
    code = "import sys; from nwwatch.cli import main; sys.argv[0] = 'nwwatch'; main()"
    done = subprocess.run([sys.executable, "-c", code, "ledger", "rebuild", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: os.umask(0o022))
    assert done.returncode == 0, done.stderr
    assert "1 items done" in done.stdout, done.stdout
    mode = (out / "ledger.sqlite").stat().st_mode & 0o777
    assert mode & 0o007 == 0, oct(mode)


def test_a_configuration_file_that_does_not_exist_says_how_to_give_one(tmp_path):
    # before: "nwwatch: FILE: (file): does not exist", the key placeholder shown, and no word
    # on --config or where a configuration comes from
    missing = tmp_path / "nwwatch.toml"
    done = subprocess.run([sys.executable, "-m", "nwwatch", "run", "--config", str(missing)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 78, done.stderr
    assert (f"{missing}: does not exist (give one with --config FILE; "
            "deploy/install.sh installs one") in done.stderr
    assert "(file)" not in done.stderr
    # stderr is no terminal (the journal): JSON lines only, or `journalctl -o cat | jq`
    # stops at a plain "nwwatch: ..." line
    assert [json.loads(line)["event"] for line in done.stderr.splitlines()] == \
        ["startup_failed"]


def test_an_unwritable_results_folder_the_user_owns_is_told_its_mode_not_a_chown(tmp_path):
    # before: always "e.g. sudo chown -R USER: RESULTS", which changes nothing for a folder
    # the service's user owns already (chmod 555): the next start failed the same way
    import errno
    import os
    from types import SimpleNamespace

    from nwwatch.service.cli import _unwritable

    res = tmp_path / "res"
    res.mkdir()
    res.chmod(0o555)
    config = SimpleNamespace(results=res, ledger=res / "ledger.sqlite")
    lock = res / "ledger.sqlite.lock"
    said = _unwritable(OSError(errno.EACCES, "Permission denied", str(lock)),
                       tmp_path / "c.toml", config)
    assert f"cannot write {lock}: Permission denied" in said
    assert "belongs to" in said and "(dr-xr-xr-x) does not let it write" in said
    assert f"`chmod u+wx {res}`" in said and "chown" not in said
    if os.geteuid() == 0:  # another user's folder: the chown is the fix
        os.chown(res, 65534, 65534)
        said = _unwritable(OSError(errno.EACCES, "Permission denied", str(lock)),
                           tmp_path / "c.toml", config)
        assert f"`sudo chown -R root: {res}`" in said


_OUT_OF_DESCRIPTORS = """
import errno
import nwwatch.service.lock as lock

def out_of_descriptors(self, *args, **kwargs):
    raise OSError(errno.EMFILE, "Too many open files")

lock.LedgerLock.__init__ = out_of_descriptors
"""


def test_a_service_out_of_file_descriptors_at_start_is_not_told_of_a_full_disk(tmp_path):
    """Out of file descriptors (ulimit -n, LimitNOFILE=) as the ledger's lock is taken, the
    startup_failed line advised "cannot write the results or ledger folder (disk full?)": it
    names the limit to raise."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_OUT_OF_DESCRIPTORS)
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path))
    done = subprocess.run([sys.executable, "-m", "nwwatch.service", "run", "--config",
                           str(cfg)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(hook), str(REPO)])})
    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert done.returncode == 1, done.stderr[-2000:]
    (failed,) = [x for x in lines if x["event"] == "startup_failed"]
    assert "LimitNOFILE=" in failed["action"] and "disk full" not in failed["action"]
