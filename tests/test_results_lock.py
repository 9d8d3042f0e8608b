"""One results folder, one ledger: a service whose ``[state] ledger`` lies outside its
results folder still holds that folder, so a replay into it without ``--config`` (which would
keep the folder's own ledger) or a second service with another ledger is refused instead of
processing the same files into it a second time. Real `nwwatch run` processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from servicekit import DaemonProcess, frames_table, wait_rows, write_config, write_frames

from nwwatch.service import replay
from nwwatch.service.lock import LedgerBusyError, LedgerLock
from nwwatch.service.rebuild import rebuild_ledger


def _service_with_its_ledger_elsewhere(tmp: Path, acq: Path, res: Path, onnx: Path):
    elsewhere = tmp / "state" / "ledger.sqlite"
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.2,
                       extra=f'\n[state]\nledger = "{elsewhere}"\n')
    return cfg, elsewhere


def _once(res: Path, n: int) -> None:
    table = frames_table(res)
    keys = list(zip(table.source, table.frame, strict=True))
    assert len(keys) == n and len(set(keys)) == n, sorted(keys)


def test_a_replay_into_the_results_of_a_service_with_another_ledger_is_refused(setup):
    tmp, acq, res, onnx = setup
    cfg, elsewhere = _service_with_its_ledger_elsewhere(tmp, acq, res, onnx)
    write_frames(acq, 3)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        wait_rows(res, 3, proc=daemon)
        write_frames(acq, 3, start=3)  # arriving while the replay is started
        # Unrefused, the replay would rebuild a second ledger, res/ledger.sqlite, from the
        # results and process the new frames beside the service: two rows each.
        # named with the ledger to use (before: "res/ledger.sqlite: in use by another
        # nwwatch process", a ledger that does not exist, and stopping the service as told
        # only led to the same refusal, worded otherwise)
        with pytest.raises(LedgerBusyError, match=f"its ledger is {elsewhere}"):
            replay(acq, res, model=onnx)
        assert not (res / "ledger.sqlite").exists()
        wait_rows(res, 6, proc=daemon)
        # a rebuild of the folder's own ledger is a writer too: named with the ledger to
        # use, as once the service has stopped (before, "res/ledger.sqlite: in use by
        # another nwwatch process", a ledger that does not exist)
        with pytest.raises(LedgerBusyError, match=f"its ledger is {elsewhere}"):
            rebuild_ledger(res)
        # a second service over the same results with the default ledger: exit 78
        second_cfg = write_config(tmp / "c2.toml", acq, res, onnx, settle=0.2)
        second = DaemonProcess(second_cfg, tmp / "log2")
        assert second.wait_exit(timeout=60) == 78
        assert "in use by another nwwatch process" in second.wait_event("startup_failed")["error"]
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    _once(res, 6)
    assert elsewhere.is_file()


def test_the_results_lock_is_released_and_a_lost_one_stops_the_service(setup):
    tmp, acq, res, onnx = setup
    cfg, elsewhere = _service_with_its_ledger_elsewhere(tmp, acq, res, onnx)
    daemon = DaemonProcess(cfg, tmp / "log")
    daemon.wait_event("ready")
    # a service with the default ledger over the same folder holds it the other way round
    with pytest.raises(LedgerBusyError):
        LedgerLock(res / "ledger.sqlite", res).close()
    # and so does any other ledger kept outside it
    with pytest.raises(LedgerBusyError, match="results folder in use .* another ledger"):
        LedgerLock(tmp / "other" / "ledger.sqlite", res).close()
    (res / "ledger.sqlite.lock").unlink()  # a clean-up script: the folder is no longer held
    assert daemon.wait_exit(timeout=60) == 78
    assert "ledger.sqlite.lock" in daemon.wait_event("results_lost")["reason"]
    # released with the process: the folder's own ledger can be used again
    LedgerLock(res / "ledger.sqlite", res).close()
    assert os.path.exists(elsewhere)


def test_a_second_ledger_is_not_made_beside_the_results_of_a_ledger_kept_elsewhere(setup):
    """With the service stopped, `nwwatch replay ACQ --out RESULTS` without --config rebuilt a
    ledger of its own, RESULTS/ledger.sqlite, processed the new frames into the results, and
    the service processed them again at its next start (two rows each); `nwwatch compact
    RESULTS`'s advice for a missing ledger, `nwwatch ledger rebuild RESULTS`, made such a
    ledger too, and the compaction that followed deleted the files the service's ledger
    named (`nwwatch status --config` then counted 0 rows)."""
    tmp, acq, res, onnx = setup
    cfg, elsewhere = _service_with_its_ledger_elsewhere(tmp, acq, res, onnx)
    write_frames(acq, 2)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        wait_rows(res, 2, proc=daemon)
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    write_frames(acq, 2, start=2)
    marker = res / "ledger.sqlite.elsewhere"
    assert marker.read_text().strip() == str(elsewhere)
    before = sorted(p.name for p in res.iterdir())
    with pytest.raises(LedgerBusyError, match=f"its ledger is {elsewhere}"):
        replay(acq, res, model=onnx)
    with pytest.raises(LedgerBusyError, match=f"its ledger is {elsewhere}"):
        rebuild_ledger(res)
    assert sorted(p.name for p in res.iterdir()) == before  # nothing made, nothing moved
    # the service's own ledger is used as before, by a replay given its configuration
    assert replay(acq, res, model=onnx, config=cfg).done == 2
    _once(res, 4)
    # a ledger moved into the folder (the configuration changed to match) is the folder's
    for suffix in ("", "-wal", "-shm"):
        moved = elsewhere.with_name(elsewhere.name + suffix)
        if moved.exists():
            moved.rename(res / f"ledger.sqlite{suffix}")
    write_frames(acq, 1, start=4)
    assert replay(acq, res, model=onnx).done == 1
    _once(res, 5)
