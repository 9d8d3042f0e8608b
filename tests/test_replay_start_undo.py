"""A replay that fails to start removes what it created and nothing else
(:mod:`nwwatch.service.startundo`): not the ledger of another replay that took the folder
meanwhile, not what a path through a folder made on the way (``new/../res``) names."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
from onnx_models import TOMOGRAM_GREY
from servicekit import folder_tree, model

from nwwatch.io import write_volume_tiff
from nwwatch.service import replay
from nwwatch.service.config import ConfigError
from nwwatch.service.ledger import Ledger
from nwwatch.service.lock import LedgerBusyError, LedgerLock
from nwwatch.service.rebuild import LedgerMissingError

# (the package exports the function under the module's name)
replay_module = importlib.import_module("nwwatch.service.replay")


def _acq(tmp: Path) -> Path:
    acq = tmp / "acq"
    acq.mkdir()
    vol = np.full((6, 24, 24), TOMOGRAM_GREY[0], np.uint8)
    vol[1:5, 4:12, 6:20] = TOMOGRAM_GREY[1]
    write_volume_tiff(acq / "v.tif", vol)
    return acq


def test_a_busy_ledger_taken_by_another_replay_meanwhile_is_not_removed(tmp_path,
                                                                       monkeypatch):
    # Was: the ledger, its lock and journal files did not exist when this replay looked, so
    # they were removed as its own when it found them busy: the other replay's live ledger.
    acq, out = _acq(tmp_path), tmp_path / "res"
    other = []

    def another_replay_first(path, results_dir=None):
        other.append(Ledger(path, out))  # started at the same moment, took it first
        return LedgerLock(path, results_dir)

    monkeypatch.setattr(replay_module, "LedgerLock", another_replay_first)
    with pytest.raises(LedgerBusyError):
        replay(acq, out, kind="tomogram", model=model(tmp_path / "t", kind="tomogram"))
    try:
        assert (out / "ledger.sqlite").is_file() and (out / "ledger.sqlite.lock").is_file()
        assert other[0].lost() is None  # still the file it opened
    finally:
        other[0].close()


def test_a_path_through_a_folder_made_on_the_way_keeps_what_it_names(tmp_path, monkeypatch):
    # Was: "new/../res/ledger.sqlite" did not exist before "new" was made, so the earlier
    # replay's ledger (and its lock) in "res" was removed as this replay's own; "new" stayed.
    _acq(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert replay("acq", "res", kind="tomogram",
                  model=model(tmp_path / "t", kind="tomogram")).done == 1
    before, top = folder_tree(tmp_path / "res"), sorted(os.listdir(tmp_path))
    assert "ledger.sqlite" in before
    insitu = model(tmp_path / "m")  # refused for tomograms
    top.append("m")
    with pytest.raises(ConfigError, match="insitu"):
        replay("acq", "new/../res", kind="tomogram", model=insitu)
    assert folder_tree(tmp_path / "res") == before
    assert sorted(os.listdir(tmp_path)) == sorted(top)  # no "new"
    # A results folder that existed empty stays; the folders made to reach it go.
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="insitu"):
        replay("acq", "a/b/../../empty", kind="tomogram", model=insitu)
    assert (tmp_path / "empty").is_dir() and not os.listdir(tmp_path / "empty")
    assert not (tmp_path / "a").exists()


def test_a_symlinked_results_folder_keeps_its_link_and_its_results(tmp_path):
    acq, real = _acq(tmp_path), tmp_path / "store" / "res"
    assert replay(acq, real, kind="tomogram",
                  model=model(tmp_path / "t", kind="tomogram")).done == 1
    link = tmp_path / "res-link"
    link.symlink_to(real, target_is_directory=True)
    before = folder_tree(real)
    with pytest.raises(ConfigError, match="insitu"):
        replay(acq, link, kind="tomogram", model=model(tmp_path / "m"))
    assert link.is_symlink() and folder_tree(real) == before


def _unreadable_results(tmp: Path) -> Path:
    """A results folder without a ledger whose one batch file does not read: the ledger is
    created, then refused (LedgerMissingError) inside open_ledger."""
    out = tmp / "res"
    (out / "volumes").mkdir(parents=True)
    (out / "volumes" / "volumes-x.parquet").write_bytes(b"not parquet")
    return out


@pytest.mark.parametrize("failure", ["model refused", "ledger missing beside results"])
def test_another_replay_starting_as_the_lock_is_released_keeps_its_ledger(tmp_path,
                                                                         monkeypatch, failure):
    # Was: the lock was released (Ledger.close) before this replay removed the ledger files
    # it had created, so another replay that took the ledger in between had it deleted
    # under it and stopped at its first batch ("ledger lost").
    acq = _acq(tmp_path)
    if failure == "model refused":
        out, bad, error = tmp_path / "res", model(tmp_path / "m"), ConfigError
    else:
        out, error = _unreadable_results(tmp_path), LedgerMissingError
        bad = model(tmp_path / "t", kind="tomogram")
    before = folder_tree(out) if out.exists() else None
    real_close, other = LedgerLock.close, []

    def another_replay_the_moment_it_is_released(lock):
        held = not lock._handle.closed
        real_close(lock)
        if held and not other:  # the first release: this replay's
            other.append(Ledger(out / "ledger.sqlite", out))

    monkeypatch.setattr(LedgerLock, "close", another_replay_the_moment_it_is_released)
    with pytest.raises(error):
        replay(acq, out, kind="tomogram", model=bad)
    assert other, "the lock was never released"
    try:
        assert other[0].lost() is None  # still the ledger and lock it opened
    finally:
        other[0].close()
    # Only the other replay's ledger is new; what the folder held before is as it was.
    left = {k: v for k, v in folder_tree(out).items() if not k.startswith("ledger.sqlite")}
    assert left == (before or {})
