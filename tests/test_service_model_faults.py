"""A tomogram model that cannot segment tomograms (``VolumeModelError``: a bad ``extra``
value, or a graph ONNX Runtime cannot run on the volumes' slices) is a fault of the configured
model, the same for every file: refused when the model is loaded, or met while processing,
it stops ``nwwatch run`` (exit 78, real processes) and ``nwwatch replay`` (exit 1), charging
no file an attempt; and a replay that fails to start leaves the results folder as it was."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from onnx_models import TOMOGRAM_GREY, build_threshold_model
from servicekit import DaemonProcess, folder_tree, model, write_config

from nwwatch.cli import main
from nwwatch.io import write_volume_tiff
from nwwatch.segment.session import ModelLoadError
from nwwatch.service import replay
from nwwatch.service.config import ConfigError


def _volumes(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        vol = np.full((6, 24, 24), TOMOGRAM_GREY[0], np.uint8)
        vol[1:5, 4:12 + i, 6:20] = TOMOGRAM_GREY[1]
        write_volume_tiff(folder / f"v{i}.tif", vol)


def _bad_extra(tmp: Path) -> Path:
    """Refused by segment_volume whatever the volume: a negative Z blur."""
    return build_threshold_model(tmp / "bad.onnx", kind="tomogram",
                                 metadata={"extra": {"z_sigma_px": -1}})


def _cannot_run(tmp: Path) -> Path:
    """No ``min_input_px`` (an old export) and a graph that fails in ONNX Runtime on every
    input up to 300 px: the runner's widest try (256 px) fails too."""
    return build_threshold_model(tmp / "wide.onnx", kind="tomogram", reflect_pad_px=300)


def _ledger(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()




def test_a_tomogram_model_with_a_bad_extra_value_is_refused_before_anything_is_created(
        tmp_path):
    # Was: the replay ran and every tomogram failed "unexpectedly" with the same error
    # (retried up to max_attempts, a traceback each time), leaving a ledger behind.
    acq = tmp_path / "acq"
    _volumes(acq)
    bad = _bad_extra(tmp_path)
    out = tmp_path / "new" / "res"
    with pytest.raises(ConfigError, match=r"bad\.onnx.*z_sigma_px must be >= 0"):
        replay(acq, out, kind="tomogram", model=bad)
    assert not (tmp_path / "new").exists()
    # An existing results folder keeps exactly what it held.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["replay", str(acq), "--out", str(kept), "--kind",
                                       "tomogram", "--model", str(bad)])
    assert result.exit_code == 1, result.output
    assert "cannot segment tomograms" in result.output and "Traceback" not in result.output
    assert folder_tree(kept) == {"notes.txt": b"mine"}


def test_a_model_that_does_not_fit_the_folder_leaves_no_ledger_behind(tmp_path):
    acq = tmp_path / "acq"
    _volumes(acq, 1)
    out = tmp_path / "res"
    with pytest.raises(ConfigError, match="insitu"):
        replay(acq, out, kind="tomogram", model=model(tmp_path))  # an in-situ model
    assert not out.exists()
    # The results of an earlier replay, ledger included, stay exactly as they were.
    assert replay(acq, out, kind="tomogram", model=model(tmp_path / "t", kind="tomogram")
                  ).done == 1
    before = folder_tree(out)
    assert "ledger.sqlite" in before
    with pytest.raises(ConfigError, match="z_sigma_px"):
        replay(acq, out, kind="tomogram", model=_bad_extra(tmp_path))
    assert folder_tree(out) == before


def test_a_model_ONNX_Runtime_cannot_run_stops_the_replay_without_charging_files(tmp_path):
    # Was: each tomogram failed as an unexpected error, retried and finally quarantined,
    # although the next one failed alike and the file was never at fault.
    acq, out = tmp_path / "acq", tmp_path / "res"
    _volumes(acq / "b")
    # Another acquisition (its own batch), listed first, with slices wide enough for the
    # graph (302 px): processed, and its row is written although the replay stops later.
    (acq / "a").mkdir()
    big = np.full((3, 302, 302), TOMOGRAM_GREY[0], np.uint8)
    big[:, 100:200, 100:200] = TOMOGRAM_GREY[1]
    write_volume_tiff(acq / "a" / "a_big.tif", big)
    wide = _cannot_run(tmp_path)
    with pytest.raises(ModelLoadError, match=r"wide\.onnx: ONNX Runtime cannot run the model"):
        replay(acq, out, kind="tomogram", model=wide)
    rows = pq.read_table(out / "volumes").to_pandas()
    assert [os.path.basename(s) for s in rows.source] == ["a_big.tif"]
    ledger = out / "ledger.sqlite"
    assert _ledger(ledger, "SELECT state, attempts FROM items WHERE state != 'pending'") == [
        ("done", 0)]
    assert _ledger(ledger, "SELECT COUNT(*) FROM quarantine") == [(0,)]
    masks = sorted(p.relative_to(out).as_posix() for p in (out / "masks").iterdir())
    assert masks == list(rows.mask_path)  # none left of the released batch
    result = CliRunner().invoke(main, ["replay", str(acq), "--out", str(out), "--kind",
                                       "tomogram", "--model", str(wide)])
    assert result.exit_code == 1, result.output
    assert "min_input_px" in result.output and "Traceback" not in result.output
    assert _ledger(ledger, "SELECT COUNT(*) FROM quarantine") == [(0,)]


def _tomogram_service(tmp: Path, tomo_model: Path, **kw) -> tuple[Path, Path, Path]:
    acq, res = tmp / "tomo", tmp / "res"
    acq.mkdir()
    cfg = write_config(tmp / "c.toml", acq, res, tomo_model, settle=0.2, batch_size=1,
                       latency_ms=50, **kw)
    cfg.write_text(cfg.read_text().replace('kind = "insitu"', 'kind = "tomogram"', 1))
    return cfg, acq, res


def test_the_service_refuses_a_tomogram_model_with_a_bad_extra_value(tmp_path):
    bad = _bad_extra(tmp_path)
    cfg, _, res = _tomogram_service(tmp_path, bad)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    assert daemon.wait_exit(timeout=60) == 78
    failed = [e for e in daemon.events() if e.get("event") == "startup_failed"]
    assert failed and failed[0]["error_type"] == "ConfigError"
    assert "watch[0].model" in failed[0]["error"] and "z_sigma_px" in failed[0]["error"]
    # The model is judged before anything is created (docs/service.md, Exit 78)
    assert not res.exists()
    good = model(tmp_path / "t", kind="tomogram")
    cfg.write_text(cfg.read_text().replace(str(bad), str(good)))
    daemon = DaemonProcess(cfg, tmp_path / "log2")
    try:
        daemon.wait_event("ready", timeout=60)
    finally:
        assert daemon.terminate()[0] == 0


def test_the_service_stops_when_its_tomogram_model_cannot_run(tmp_path):
    # Rows are held for a minute: only the stop itself writes the first volume's row.
    cfg, acq, res = _tomogram_service(tmp_path, _cannot_run(tmp_path), flush_seconds=60)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    staged = tmp_path / "staged"
    staged.mkdir()
    try:
        daemon.wait_event("ready", timeout=60)
        # Slices wide enough for the graph (302 px): processed, its row held.
        big = np.full((3, 302, 302), TOMOGRAM_GREY[0], np.uint8)
        big[:, 100:200, 100:200] = TOMOGRAM_GREY[1]
        os.rename(write_volume_tiff(staged / "a_big.tif", big), acq / "a_big.tif")
        daemon.wait_event("file_processed", timeout=60)
        _volumes(staged, 1)
        os.rename(staged / "v0.tif", acq / "v0.tif")
        assert daemon.wait_exit(timeout=60) == 78
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    events = daemon.events()
    names = [e.get("event") for e in events]
    assert "model_unusable" in names and "unexpected_error" not in names
    stopped = next(e for e in events if e.get("event") == "stopped")
    assert stopped["error_type"] == "ModelLoadError" and "wide.onnx" in stopped["error"]
    rows = pq.read_table(res / "volumes").to_pandas()
    assert [os.path.basename(s) for s in rows.source] == ["a_big.tif"]
    # No attempt charged to the file, nothing quarantined, no batch left unfinished.
    ledger = res / "ledger.sqlite"
    assert _ledger(ledger, "SELECT state, attempts FROM items WHERE state != 'pending'") == [
        ("done", 0)]
    assert _ledger(ledger, "SELECT COUNT(*) FROM quarantine") == [(0,)]
    assert _ledger(ledger, "SELECT COUNT(*) FROM batches WHERE state = 'writing'") == [(0,)]


def test_a_model_that_does_not_load_at_start_is_a_start_up_failure_only(tmp_path):
    # Was: also logged model_unusable ("stopped processing"; the troubleshooting table's
    # row for a tomogram model that fails while running) before startup_failed.
    acq = tmp_path / "acq"
    acq.mkdir()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an ONNX model")
    cfg = write_config(tmp_path / "c.toml", acq, tmp_path / "res", broken, settle=0.2)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    assert daemon.wait_exit(timeout=60) == 78
    errors = [e for e in daemon.events() if e.get("level") == "error"]
    assert [(e["event"], e.get("error_type")) for e in errors] == [
        ("startup_failed", "ModelLoadError")]
    # the error names the configuration file and key as well as the model file
    assert errors[0]["error"].startswith(f"{cfg}: watch[0].model: {broken}: "), errors[0]
    assert not (tmp_path / "res").exists()


def test_a_start_refused_for_its_model_does_not_tie_the_results_to_its_ledger(tmp_path):
    """A [state] ledger named by a start refused for its model was recorded in the results
    folder (ledger.sqlite.elsewhere), and the corrected configuration, ledger by default, was
    refused with LedgerElsewhereError though nothing had been processed."""
    from nwwatch.service.dropin import main as dropin_main

    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    tomo = model(tmp_path / "t", kind="tomogram")
    state = f'[state]\nledger = "{tmp_path / "state" / "ledgr.sqlite"}"'
    cfg = write_config(tmp_path / "c.toml", acq, res, tomo, settle=0.2, extra=state)
    assert dropin_main([str(cfg)]) == 78  # validating the file catches it too
    daemon = DaemonProcess(cfg, tmp_path / "log")
    assert daemon.wait_exit(timeout=60) == 78
    failed = [e for e in daemon.events() if e.get("event") == "startup_failed"]
    assert "is a 'tomogram' model but the folder's kind is 'insitu'" in failed[0]["error"]
    assert not res.exists() and not (tmp_path / "state").exists()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path))
    assert dropin_main([str(cfg)]) == 0
    daemon = DaemonProcess(cfg, tmp_path / "log2")
    try:
        daemon.wait_event("ready", timeout=60)
    finally:
        assert daemon.terminate()[0] == 0
