"""A ledger that names results files the results folder does not hold (a new or emptied
results folder beside a ledger kept elsewhere, /var/lib/nwwatch, or another folder's ledger)
stops the service and replay with what to do: before, the files it lists as done were
skipped and the new folder never got their rows, without a warning."""

from __future__ import annotations

import shutil

import pytest
from servicekit import (
    model,
    run_nwwatch,
    serve_frames,
    write_config,
    write_frames,
)

from nwwatch.service import replay
from nwwatch.service.rebuild import ResultsNotHeldError


def test_a_service_whose_ledger_outlives_its_results_folder_does_not_start(tmp_path):
    acq, res, state = tmp_path / "acq", tmp_path / "res", tmp_path / "state"
    acq.mkdir()
    ledger = state / "ledger.sqlite"
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2,
                       flush_seconds=0)
    cfg.write_text(cfg.read_text() + f'\n[state]\nledger = "{ledger}"\n')
    serve_frames(cfg, acq, res, state)
    shutil.rmtree(res)  # "accept a fresh results folder"
    started = run_nwwatch("run", "--config", str(cfg), timeout=60)
    assert started.returncode == 78, started.stderr[-2000:]
    assert (f"{ledger}: the ledger names 1 results file(s) and {res} holds none of "
            f"them") in started.stderr
    assert "move the ledger aside" in started.stderr
    assert not (res / "frames").exists()


def test_a_replay_into_an_emptied_results_folder_says_so_and_goes_on_once_told(tmp_path):
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frames(acq, 4)
    onnx = model(tmp_path)
    assert replay(acq, res, model=onnx).done == 4
    shutil.rmtree(res / "frames")  # the ledger kept, the rows deleted
    with pytest.raises(ResultsNotHeldError, match="holds none of them"):
        replay(acq, res, model=onnx)
    ran = run_nwwatch("replay", str(acq), "--out", str(res), "--model", str(onnx))
    assert ran.returncode == 1 and "holds none of them" in ran.stderr, ran.stderr
    (res / "ledger.sqlite").rename(tmp_path / "old-ledger.sqlite")  # what the message says
    assert replay(acq, res, model=onnx).done == 4


def test_some_results_files_missing_are_named_at_the_start(tmp_path):
    from structlog.testing import capture_logs

    acq, res = tmp_path / "acq", tmp_path / "res"
    (acq / "a").mkdir(parents=True)
    (acq / "b").mkdir()
    write_frames(acq / "a", 2)
    write_frames(acq / "b", 2, start=2)
    onnx = model(tmp_path)
    assert replay(acq, res, model=onnx).done == 4
    files = sorted((res / "frames").rglob("*.parquet"))
    assert len(files) == 2  # one per acquisition
    files[0].unlink()
    with capture_logs() as logs:
        summary = replay(acq, res, model=onnx)
    assert summary.skipped == 4  # their files stay done, as status says
    [said] = [e for e in logs if e["event"] == "results_files_missing"]
    assert (said["missing"], said["of"]) == (1, 2) and "ledger rebuild" in said["note"]
