"""The live service with tomograms and with several watches, against real `nwwatch run`
processes: an in-situ and a tomogram folder sharing one ledger, kill -9 in a volume batch,
and an unexpected error between writing and committing a batch (logged, reconciled, the
service goes on)."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from onnx_models import TOMOGRAM_GREY
from servicekit import DaemonProcess, frames_table, model, paint_insitu, wait_rows, write_config

from nwwatch.io import read_volume, write_frame_tiff, write_volume_tiff

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def _volume(i: int) -> np.ndarray:
    """A (10, 32, 40) tomogram in the threshold model's greys: one solid block whose size
    depends on ``i`` (distinct content, known solid fraction)."""
    vol = np.full((10, 32, 40), TOMOGRAM_GREY[0], np.uint8)
    vol[2:8, 4:20 + i, 5:30] = TOMOGRAM_GREY[1]
    return vol


def _put_volume(folder: Path, name: str, i: int, tmp: Path) -> np.ndarray:
    vol = _volume(i)
    staged = write_volume_tiff(tmp / f".{name}", vol, voxel_size_nm=(2.0, 1.0, 1.0))
    os.rename(staged, folder / name)  # appears complete, as a finished acquisition
    return vol


def _volumes_table(res: Path):
    return frames_table(res, "volumes")


def _tomogram_config(tmp: Path, acq: Path, res: Path, tomo_model: Path, **kw) -> Path:
    cfg = write_config(tmp / "c.toml", acq, res, tomo_model, settle=0.2, batch_size=1,
                       latency_ms=50, **kw)
    cfg.write_text(cfg.read_text().replace('kind = "insitu"', 'kind = "tomogram"', 1))
    return cfg


def _stop(daemon: DaemonProcess) -> None:
    code, _ = daemon.terminate(timeout=30)
    assert code == 0


def _check_volume_rows(res: Path, volumes: dict[str, np.ndarray]) -> None:
    """One row per tomogram, each pointing at its own mask, and no other mask on disk."""
    table = _volumes_table(res)
    assert sorted(os.path.basename(s) for s in table.source) == sorted(volumes)
    for row in table.itertuples():
        vol = volumes[os.path.basename(row.source)]
        truth = (vol == TOMOGRAM_GREY[1]).astype(np.uint8)
        np.testing.assert_array_equal(read_volume(res / row.mask_path).data, truth)
        assert row.solid_fraction == pytest.approx(truth.mean())
    masks = sorted(p.relative_to(res).as_posix() for p in (res / "masks").glob("*.tif"))
    assert masks == sorted(table.mask_path)


def test_an_insitu_and_a_tomogram_watch_share_one_ledger(tmp_path):
    acq, tomo, res = tmp_path / "acq", tmp_path / "tomo", tmp_path / "res"
    acq.mkdir()
    tomo.mkdir()
    insitu_model = model(tmp_path)
    tomo_model = model(tmp_path / "t", kind="tomogram")
    cfg = write_config(tmp_path / "c.toml", acq, res, insitu_model, settle=0.2, batch_size=4)
    cfg.write_text(cfg.read_text() + f'\n[[watch]]\npath = "{tomo}"\nkind = "tomogram"\n'
                   f'model = "{tomo_model}"\nsettle_seconds = 0.2\n')
    for i in range(3):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(110 + 5 * i, size=128, half_width=16),
                         acquired_at=T0 + timedelta(seconds=i))
    volumes = {f"v{i}.tif": _put_volume(tomo, f"v{i}.tif", i, tmp_path) for i in range(2)}
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        wait_rows(res, 3, proc=daemon, timeout=60)
        wait_rows(res, 2, timeout=60, proc=daemon, folder="volumes")
    finally:
        _stop(daemon)
    frames = frames_table(res)
    assert sorted(os.path.basename(s) for s in frames.source) == ["f0.tif", "f1.tif", "f2.tif"]
    assert set(frames.status) == {"ok"}
    painted = {f"f{i}.tif": 110 + 5 * i for i in range(3)}
    for source, angle in zip(frames.source, frames.contact_angle_deg, strict=True):
        assert angle == pytest.approx(painted[os.path.basename(source)], abs=3.0)
    _check_volume_rows(res, volumes)
    # One ledger holds both kinds, each under its own model and measurement version.
    items = _ledger(res, "SELECT kind, state, COUNT(DISTINCT model_sha256), COUNT(*) "
                         "FROM items GROUP BY kind, state")
    assert sorted(items) == [("insitu", "done", 1, 3), ("tomogram", "done", 1, 2)]
    events = [e for e in daemon.events() if e.get("event") == "file_processed"]
    assert len(events) == 5
    # A restart recognises every file of both folders from the shared ledger: nothing runs.
    daemon = DaemonProcess(cfg, tmp_path / "log2")
    try:
        daemon.wait_event("ready", timeout=60)
        scans = [e for e in daemon.events() if e.get("event") == "initial_scan"]
        assert sorted((os.path.basename(e["path"]), e["candidates"]) for e in scans) == [
            ("acq", 0), ("tomo", 0)]
    finally:
        _stop(daemon)
    assert len(frames_table(res)) == 3 and len(_volumes_table(res)) == 2


def test_held_insitu_rows_are_written_before_a_tomogram_batch(tmp_path):
    # Was: rows are written between batches only when due, so in-situ rows held when a
    # tomogram batch started waited for it to end (14.8 s with flush_seconds = 1): the
    # in-situ dashboard froze for each tomogram. flush_seconds = 3600 here: nothing but the
    # tomogram batch about to start can have them written before the service stops.
    acq, tomo, res = tmp_path / "acq", tmp_path / "tomo", tmp_path / "res"
    acq.mkdir()
    tomo.mkdir()
    tomo_model = model(tmp_path / "t", kind="tomogram")
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2,
                       batch_size=4, flush_seconds=3600)
    cfg.write_text(cfg.read_text() + f'\n[[watch]]\npath = "{tomo}"\nkind = "tomogram"\n'
                   f'model = "{tomo_model}"\nsettle_seconds = 0.2\n')
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        for i in range(2):
            write_frame_tiff(acq / f"f{i}.tif", paint_insitu(110 + 5 * i, size=128,
                                                             half_width=16),
                             acquired_at=T0 + timedelta(seconds=i))
        daemon.wait_event("file_processed", timeout=60, count=2)
        assert frames_table(res) is None  # held
        _put_volume(tomo, "v.tif", 0, tmp_path)
        daemon.wait_event("file_processed", timeout=60, count=3)
        events = [e for e in daemon.events()
                  if e.get("event") in ("rows_written", "file_processed")]
        tomogram = next(i for i, e in enumerate(events) if e["event"] == "file_processed"
                        and e["source"] == str(tomo / "v.tif"))
        written = [e for e in events[:tomogram] if e["event"] == "rows_written"]
        assert [(e["rows"], e["files"][0].split("/")[0]) for e in written] == [(2, "frames")]
        assert len(frames_table(res)) == 2
        assert frames_table(res, "volumes") is None  # the tomogram's own row: held
    finally:
        _stop(daemon)
    assert len(frames_table(res, "volumes")) == 1 and len(frames_table(res)) == 2


def test_kill9_during_a_volume_batch_leaves_each_tomogram_once_with_its_one_mask(tmp_path):
    acq, res = tmp_path / "tomo", tmp_path / "res"
    acq.mkdir()
    cfg = _tomogram_config(tmp_path, acq, res, model(tmp_path, kind="tomogram"))
    volumes = {"a.tif": _put_volume(acq, "a.tif", 0, tmp_path)}
    # 1. SIGKILL from outside while the batch is in flight (claimed, stuck before the mask).
    daemon = DaemonProcess(cfg, tmp_path / "log1", env={"NWWATCH_CRASH_AT": "in_batch:1"})
    daemon.wait_event("ready", timeout=60)
    assert _wait_claimed(res, daemon)
    daemon.kill()
    assert daemon.proc.returncode == -9
    # 2. Killed itself after writing the mask and the row, before the commit.
    volumes["b.tif"] = _put_volume(acq, "b.tif", 1, tmp_path)
    daemon = DaemonProcess(cfg, tmp_path / "log2", env={"NWWATCH_CRASH_AT": "after_write:1"})
    assert daemon.wait_exit(timeout=90) == -9
    # 3. A clean run: what was written is adopted, the rest processed once.
    daemon = DaemonProcess(cfg, tmp_path / "log3")
    try:
        daemon.wait_event("ready", timeout=60)  # reconciled; SIGTERM is handled from here
        wait_rows(res, 2, timeout=60, proc=daemon, folder="volumes")
    finally:
        _stop(daemon)
    _check_volume_rows(res, volumes)
    assert not list((res / "masks").glob("*.tmp*")) and not list(res.rglob(".*.tmp"))


def _wait_claimed(res: Path, daemon: DaemonProcess, timeout: float = 60.0) -> bool:
    """Wait until the ledger holds a batch in state ``writing`` (the hang point is reached
    right after the claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.proc.poll() is None, daemon.log_path.read_text()[-3000:]
        if (res / "ledger.sqlite").exists():
            try:
                if _ledger(res, "SELECT COUNT(*) FROM batches WHERE state='writing'")[0][0]:
                    return True
            except sqlite3.OperationalError:  # not created yet
                pass
        time.sleep(0.1)
    return False


def _ledger(res: Path, sql: str) -> list[tuple]:
    """Rows of ``sql`` on the service's ledger, opened read-only."""
    db = sqlite3.connect(f"file:{res / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_an_error_between_write_and_commit_is_reconciled_and_the_service_goes_on(tmp_path):
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2)
    write_frame_tiff(acq / "a.tif", paint_insitu(120, size=64), acquired_at=T0)
    daemon = DaemonProcess(cfg, tmp_path / "log",
                           env={"NWWATCH_CRASH_AT": "after_write:1:raise"})
    try:
        crashed = daemon.wait_event("batch_crashed", timeout=60)
        assert "after_write" in crashed["error"] and "exception" in crashed
        wait_rows(res, 1, proc=daemon)
        # still serving: the next file is processed normally
        write_frame_tiff(acq / "b.tif", paint_insitu(125, size=64),
                         acquired_at=T0 + timedelta(seconds=1))
        wait_rows(res, 2, proc=daemon)
        # Settled while running (not only by the clean stop): the written batch was adopted
        # by the reconcile, not processed a second time.
        states = dict(_ledger(res, "SELECT state, COUNT(*) FROM batches GROUP BY state"))
        items = dict(_ledger(res, "SELECT state, COUNT(*) FROM items GROUP BY state"))
    finally:
        _stop(daemon)
    frames = frames_table(res)
    assert sorted(os.path.basename(s) for s in frames.source) == ["a.tif", "b.tif"]
    assert states == {"committed": 2} and items == {"done": 2}
    assert not [e for e in daemon.events() if e.get("event") == "reconcile_failed"]


@pytest.mark.parametrize("polling", [False, True])
def test_a_watch_path_that_is_a_symlink_to_the_folder_sees_new_files(tmp_path, polling):
    # /data/acquisition -> /mnt/microscope/acq: watchdog's inotify watch does not follow a
    # symbolic link (IN_DONT_FOLLOW), so before the fix it watched the link itself and no
    # file written while the service ran was seen until a rescan (60 s by default, here 10
    # minutes); the rows keep the configured path, as the start-up scan's do.
    real = tmp_path / "mnt" / "acq"
    real.mkdir(parents=True)
    link = tmp_path / "acquisition"
    link.symlink_to(real, target_is_directory=True)
    res = tmp_path / "res"
    write_frame_tiff(real / "before.tif", paint_insitu(110.0))
    cfg = write_config(tmp_path / "c.toml", link, res, model(tmp_path), settle=0.2,
                       rescan=600, polling=polling)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        wait_rows(res, 1, timeout=60, proc=daemon)
        write_frame_tiff(link / "after.tif", paint_insitu(120.0))
        (real / "run2").mkdir()
        write_frame_tiff(real / "run2" / "deep.tif", paint_insitu(130.0))
        table = wait_rows(res, 3, timeout=30, proc=daemon)
    finally:
        _stop(daemon)
    assert sorted(table.source) == sorted(
        str(p) for p in (link / "before.tif", link / "after.tif", link / "run2" / "deep.tif"))


def test_an_mrc_reconstruction_written_in_pieces_is_processed_once_complete(tmp_path):
    """IMOD and AreTomo write a reconstruction (.rec) straight into the folder, the header
    first: the service waits while the data are shorter than the header declares, then gives
    the row and mask a TIFF of the same voxels gives."""
    import mrcfile

    acq, res = tmp_path / "tomo", tmp_path / "res"
    acq.mkdir()
    # settled 5 s: a writer pausing 1.5 s is still writing (a longer pause quarantines the
    # cut file until it changes, as for a TIFF)
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path, kind="tomogram"),
                       settle=5.0, batch_size=1, latency_ms=50)
    cfg.write_text(cfg.read_text().replace('kind = "insitu"', 'kind = "tomogram"', 1))
    vol = _volume(3)
    staged = tmp_path / "whole.rec"
    with mrcfile.new(staged) as mrc:
        mrc.set_data(vol.view(np.int8))  # bytes; IMOD's stamp below says unsigned
        mrc.voxel_size = (10.0, 10.0, 20.0)  # Å (x, y, z)
    raw = bytearray(staged.read_bytes())
    raw[152:160] = np.array([1146047817, 0], "<i4").tobytes()
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        with open(acq / "run.rec", "wb") as out:
            half = 1024 + vol.size // 2
            out.write(raw[:half])
            out.flush()
            time.sleep(1.5)  # several settle periods with the data cut short
            out.write(raw[half:])
        wait_rows(res, 1, timeout=60, proc=daemon, folder="volumes")
    finally:
        _stop(daemon)
    _check_volume_rows(res, {"run.rec": vol})
    row = next(_volumes_table(res).itertuples())
    assert row.status == "ok" and row.voxel_size_z_nm == pytest.approx(2.0)
    import pyarrow.parquet as pq

    quarantined = res / "quarantine.parquet"
    assert not quarantined.exists() or pq.read_table(quarantined).num_rows == 0, \
        pq.read_table(quarantined).to_pylist()  # never refused while cut short
