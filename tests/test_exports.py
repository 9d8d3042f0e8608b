"""A TIFF beside a DigitalMicrograph, Velox EMD or TIA file of the same stem is that file's
export (GMS "Save Display As", a batch export): the service and replay read the original,
with its own times and calibration, and leave the TIFF out, so a frame saved in both forms
gives one row, not two (the TIFF's timed by its mtime, which stretched the dashboard's time
axis)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
from servicekit import DaemonProcess, model, paint_insitu, wait_rows, write_config
from test_io_dm import databar, dm_file, filetime, nm_calibration

from nwwatch.io import write_frame_tiff
from nwwatch.service import replay
from nwwatch.service.config import WatchConfig
from nwwatch.service.watcher import original_beside, scan, unread_hint

WHEN = datetime(2025, 6, 1, 9, 30, 15, 250000, tzinfo=UTC)


def _pair(folder: Path, stem: str, angle_deg: float, dm_suffix: str = ".dm4") -> None:
    img = paint_insitu(angle_deg, size=64)
    dm_file(folder / f"{stem}{dm_suffix}", img, 6, calibration=nm_calibration(0.5),
            tags=databar(filetime(WHEN)))
    write_frame_tiff(folder / f"{stem}.tif", img, pixel_size_nm=0.5)


def test_a_scan_reads_the_original_and_names_its_tiff_export(tmp_path):
    _pair(tmp_path, "a", 110.0)
    _pair(tmp_path, "b", 112.0, dm_suffix=".DM4")
    write_frame_tiff(tmp_path / "c.tif", paint_insitu(114.0, size=64))  # no original
    unread: list[Path] = []
    watch = WatchConfig(path=tmp_path, kind="insitu")
    assert [p.name for p in scan(watch, unread)] == ["a.dm4", "b.DM4", "c.tif"]
    assert [p.name for p in unread] == ["a.tif", "b.tif"]
    assert unread_hint(tmp_path / "a.tif", "insitu").startswith(
        "a TIFF export of a.dm4 beside it: the original is read")
    assert original_beside(tmp_path / "b.tif", watch) == tmp_path / "b.DM4"
    assert original_beside(tmp_path / "c.tif", watch) is None
    # patterns that leave the originals out read the TIFFs
    tiffs = WatchConfig(path=tmp_path, kind="insitu", patterns=("*.tif",))
    assert [p.name for p in scan(tiffs)] == ["a.tif", "b.tif", "c.tif"]
    assert original_beside(tmp_path / "a.tif", tiffs) is None
    # what the service asks of a file its events brought, once it is ready
    assert original_beside(tmp_path / "a.tif", watch) == tmp_path / "a.dm4"
    assert original_beside(tmp_path / "a.dm4", watch) is None


def test_replay_gives_one_row_a_frame_saved_in_both_forms(tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    _pair(acq, "frame_0000", 110.0)
    s = replay(acq, tmp_path / "out", kind="insitu", model=model(tmp_path))
    assert (s.files, s.done, s.exit_status) == (1, 1, 0)
    (row,) = ds.dataset(tmp_path / "out" / "frames", format="parquet").to_table().to_pylist()
    assert row["source"] == str(acq / "frame_0000.dm4")
    assert abs(row["acquired_at"] - WHEN) < timedelta(microseconds=5)
    (note,) = [line for line in s.lines() if line.startswith("note: left out of this replay")]
    assert ("1 TIFF export of the file of the same name beside it (frame_0000.tif): the "
            "original is read, with its metadata") in note, note


def test_a_replay_of_a_shell_glob_naming_both_forms_reads_the_original_once(tmp_path):
    # `nwwatch replay acq/*` names the original and its export; each was processed, giving
    # the frame twice (the TIFF's timed by its mtime). A TIFF named without its original is
    # still read: the user asked for it.
    acq = tmp_path / "acq"
    acq.mkdir()
    _pair(acq, "frame_0000", 110.0)
    _pair(acq, "frame_0001", 112.0)
    named = sorted(acq.iterdir()) + [acq / "frame_0000.dm4"]  # the shell's order; twice
    s = replay(named, tmp_path / "out", kind="insitu", model=model(tmp_path))
    assert (s.files, s.done, s.exit_status) == (2, 2, 0)
    rows = ds.dataset(tmp_path / "out" / "frames", format="parquet").to_table().to_pylist()
    assert sorted(r["source"] for r in rows) == [str(acq / "frame_0000.dm4"),
                                                 str(acq / "frame_0001.dm4")]
    (note,) = [line for line in s.lines() if line.startswith("note: left out of this replay")]
    assert "2 TIFF exports of the files of the same name beside them" in note, note
    alone = replay([acq / "frame_0001.tif"], tmp_path / "out2", kind="insitu",
                   model=model(tmp_path))
    assert (alone.files, alone.done) == (1, 1)


def test_the_service_measures_a_frame_saved_with_its_tiff_export_once(tmp_path):
    acq, res = tmp_path / "in", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=1.0,
                       batch_size=1, latency_ms=50)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        _pair(acq, "frame_0000", 110.0)  # the original first, its export a moment later
        wait_rows(res, 1, timeout=60, proc=daemon)
        time.sleep(3.0)  # the export's events and a settle period: a second row by now
        code, _ = daemon.terminate(timeout=30)
        assert code == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    processed = [e for e in daemon.events() if e.get("event") == "file_processed"]
    assert [e["source"] for e in processed] == [str(acq / "frame_0000.dm4")], processed
    (row,) = ds.dataset(res / "frames", format="parquet").to_table().to_pylist()
    assert row["source"] == str(acq / "frame_0000.dm4")


def test_a_rescan_of_tiff_frames_looks_for_no_original_on_the_disk(tmp_path, monkeypatch):
    # the service's rescan collects the left-out files every minute: a folder of TIFF frames
    # without originals must not cost a lookup of every possible original per frame (8 per
    # TIFF, on a network share)
    import os

    for i in range(50):
        (tmp_path / f"frame_{i:04d}.tif").write_bytes(b"")
    (tmp_path / "lone.dm4").write_bytes(b"")
    (tmp_path / "LONE.tif").write_bytes(b"")  # another stem by case: no export
    watch = WatchConfig(path=tmp_path, kind="insitu")
    stat, looked_up = os.stat, []

    def counting_stat(path, *args, **kwargs):
        looked_up.append(os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    unread: list[Path] = []
    assert len(list(scan(watch, unread))) == 52
    assert unread == []
    assert not [p for p in looked_up if p.endswith((".dm3", ".dm4", ".emd", ".ser", ".DM3",
                                                    ".DM4", ".EMD", ".SER"))], looked_up[:5]


def test_a_folder_of_many_frames_saved_in_both_forms_reads_each_original_once():
    # (the scan's cost per name is constant: 60,000 pairs took about a minute when each
    # export was looked up in a list, 1 s now; timed in no test, see bench/ for speed)
    from nwwatch.service.watcher import _folder

    n = 5_000
    names = sorted([f"f{i:06d}.dm4" for i in range(n)] + [f"f{i:06d}.tif" for i in range(n)])
    watch = WatchConfig(path=Path("/nonexistent"), kind="insitu")
    read = list(_folder(Path("/nonexistent"), names, watch, None))
    assert len(read) == n and all(p.suffix == ".dm4" for p in read)


def test_a_scan_asks_only_of_originals_with_an_export_whether_they_are_refused(tmp_path):
    # an export of a refused (quarantined) original is an input; the service's rescan asks
    # the ledger about the originals that have an export beside them, and no other file
    for name in ("a.dm4", "a.tif", "b.emd", "b.TIF", "lone.dm4", "c.tif"):
        (tmp_path / name).write_bytes(b"")
    watch = WatchConfig(path=tmp_path, kind="insitu")
    asked: list[str] = []

    def refused(original: Path) -> bool:
        asked.append(original.name)
        return original.name == "b.emd"

    unread: list[Path] = []
    assert [p.name for p in scan(watch, unread, refused=refused)] == [
        "a.dm4", "b.TIF", "b.emd", "c.tif", "lone.dm4"]
    assert sorted(asked) == ["a.dm4", "b.emd"]
    assert [p.name for p in unread] == ["a.tif"]


def test_replay_names_thousands_of_exports_at_once():
    from nwwatch.service.replaysummary import ReplaySummary

    n = 20_000
    s = ReplaySummary(Path("out"), input_path=Path("acq"),
                      files=n, left_out=[Path(f"acq/f{i:06d}.tif") for i in range(n)]
                      + [Path("acq/tilt.st")])
    assert [p.name for p in s.other_formats] == ["tilt.st"]
    (note,) = [line for line in s.lines() if line.startswith("note: left out")]
    assert f"{n} TIFF exports of the files of the same name beside them" in note


def test_a_tiff_the_patterns_leave_out_is_not_named_an_export_of_an_unread_original(tmp_path):
    # neither is read: "the original is read" beside "add its pattern" contradicted itself
    for name in ("a.tif", "a.dm4", "b.mrc"):
        (tmp_path / name).write_bytes(b"")
    watch = WatchConfig(path=tmp_path, kind="insitu", patterns=("*.mrc",))
    unread: list[Path] = []
    assert [p.name for p in scan(watch, unread)] == ["b.mrc"]
    assert [p.name for p in unread] == ["a.dm4"]
    assert "add its pattern" in unread_hint(unread[0], "insitu")


def test_the_service_leaves_out_a_tiff_beside_an_original_of_any_suffix_case(tmp_path):
    # a scan took "a.Dm4" for the original of "a.tif"; the observer's events looked for
    # a.dm4 and a.DM4 only, and processed the export as well
    for name in ("a.Dm4", "a.tif", "b.sEr", "b.TIFF"):
        (tmp_path / name).write_bytes(b"")
    watch = WatchConfig(path=tmp_path, kind="insitu")
    unread: list[Path] = []
    assert [p.name for p in scan(watch, unread)] == ["a.Dm4", "b.sEr"]
    assert [p.name for p in unread] == ["a.tif", "b.TIFF"]
    assert original_beside(tmp_path / "a.tif", watch) == tmp_path / "a.Dm4"
    assert original_beside(tmp_path / "b.TIFF", watch) == tmp_path / "b.sEr"
    assert unread_hint(tmp_path / "b.TIFF", "insitu").startswith("a TIFF export of b.sEr")


def _two_detectors(path: Path, img) -> None:
    """A Velox STEM image of two detectors (HAADF, BF), one frame each: refused at its
    structural check, its reason saying to export the frames wanted as TIFF."""
    import h5py
    from test_io_emd import _add_image, _metadata

    with h5py.File(path, "w") as hdf:
        for detector in ("HAADF", "BF"):
            _add_image(hdf, img[None], [_metadata(detector=detector)])


def _damaged_emd(path: Path, img) -> None:
    """A Velox image whose structure checks out and whose pixels do not decode: refused
    when it is read."""
    import h5py
    from test_io_emd import _write

    _write(path, img[None], compression="gzip")
    with h5py.File(path, "r") as hdf:
        (name,) = list(hdf["Data/Image"])
        offset = hdf[f"Data/Image/{name}/Data"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * 16)


def refused_originals_with_exports(acq: Path) -> None:
    """``acq``: two originals refused beside their TIFF exports (``stem 1.2 Mx.emd`` at its
    structural check, ``b.emd`` when read) and a readable original beside its export
    (``c.dm4``)."""
    acq.mkdir()
    img = paint_insitu(110.0, size=64)
    _two_detectors(acq / "stem 1.2 Mx.emd", img)
    write_frame_tiff(acq / "stem 1.2 Mx.tif", img, pixel_size_nm=0.76)
    img = paint_insitu(112.0, size=64)
    _damaged_emd(acq / "b.emd", img)
    write_frame_tiff(acq / "b.tif", img, pixel_size_nm=0.25)
    _pair(acq, "c", 114.0)


def test_replay_reads_the_tiff_export_of_an_original_it_quarantines(tmp_path):
    # The refusal of a two-detector Velox file says to export the frames wanted as TIFF;
    # saved beside it, that TIFF was left out as "the original is read", and the replay
    # gave 0 rows, whether the original was refused at its check or when read.
    acq = tmp_path / "acq"
    refused_originals_with_exports(acq)
    onnx = model(tmp_path)
    s = replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    assert (s.files, s.done, s.quarantined, s.exit_status) == (5, 3, 2, 3), s.lines()
    rows = ds.dataset(tmp_path / "out" / "frames", format="parquet").to_table().to_pylist()
    assert sorted(r["source"] for r in rows) == [str(acq / n) for n in
                                                 ("b.tif", "c.dm4", "stem 1.2 Mx.tif")]
    (left_out,) = [line for line in s.lines() if line.startswith("note: left out")]
    assert "1 TIFF export of the file of the same name beside it (c.tif): the original is " \
           "read" in left_out, left_out
    (read,) = [line for line in s.lines() if "stands in for" in line or "stand in for" in line]
    assert "2 TIFF exports stand in for their originals, quarantined (b.tif, stem " \
           "1.2 Mx.tif" in read, read
    # again: the exports are done, the originals still quarantined, no row added
    again = replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    assert (again.files, again.done, again.skipped, again.still_quarantined) == (5, 0, 3, 2)
    assert ds.dataset(tmp_path / "out" / "frames", format="parquet").count_rows() == 3
    # a shell glob naming every file gives the same rows
    named = replay(sorted(acq.iterdir()), tmp_path / "named", kind="insitu", model=onnx)
    assert (named.files, named.done, named.quarantined) == (5, 3, 2), named.lines()
    rows = ds.dataset(tmp_path / "named" / "frames", format="parquet").to_table().to_pylist()
    assert sorted(r["source"] for r in rows) == [str(acq / n) for n in
                                                 ("b.tif", "c.dm4", "stem 1.2 Mx.tif")]


def test_the_service_reads_the_tiff_export_of_an_original_it_quarantines(tmp_path):
    acq, res = tmp_path / "in", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=1.0,
                       batch_size=1, latency_ms=50, rescan=1.0)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    a, b = paint_insitu(110.0, size=64), paint_insitu(112.0, size=64)
    try:
        daemon.wait_event("ready", timeout=60)
        # saved together: the export waits for its original's verdict, then is read
        write_frame_tiff(acq / "a.tif", a, pixel_size_nm=0.5)
        _two_detectors(acq / "a.emd", a)
        queued = daemon.wait_event("export_queued", timeout=60)
        assert (queued["source"], queued["original"]) == (str(acq / "a.tif"),
                                                          str(acq / "a.emd"))
        wait_rows(res, 1, timeout=60, proc=daemon)
        # refused when read, the export saved only then, as the refusal says
        _damaged_emd(acq / "b.emd", b)
        daemon.wait_event("bad_input", timeout=60)
        write_frame_tiff(acq / "b.tif", b, pixel_size_nm=0.5)
        wait_rows(res, 2, timeout=60, proc=daemon)
        time.sleep(3.0)  # rescans: neither export left out again, nor read twice
        # a readable version replaces a.emd: it is read; the export's row stays
        from test_io_emd import _write

        fixed = _write(tmp_path / "a.emd", a[None])  # one image: read
        fixed.replace(acq / "a.emd")
        wait_rows(res, 3, timeout=60, proc=daemon)
        time.sleep(2.0)
        code, _ = daemon.terminate(timeout=30)
        assert code == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    events = daemon.events()
    processed = [e["source"] for e in events if e.get("event") == "file_processed"]
    assert processed == [str(acq / "a.tif"), str(acq / "b.tif"), str(acq / "a.emd")], processed
    rows = ds.dataset(res / "frames", format="parquet").to_table().to_pylist()
    assert sorted(r["source"] for r in rows) == [str(acq / n) for n in
                                                 ("a.emd", "a.tif", "b.tif")]
    # left out again once its original is read
    unread = [e for e in events if e.get("event") == "unread_format"]
    assert str(acq / "a.tif") in unread[-1]["files"], unread


def test_an_original_too_large_whose_export_stood_in_is_not_read_later(tmp_path, monkeypatch):
    """An EMD series read whole, refused as too large for the memory, whose TIFF export (the
    refusal's advice) was read in its place, was taken off the quarantine list at the next
    start with more memory (or by any --dask replay) and read too: every frame twice."""
    from collections import Counter

    import numpy as np
    import tifffile
    from test_io_emd import _write

    import nwwatch.service.stackmemory as stackmemory
    from nwwatch.resources import Limit

    acq = tmp_path / "acq"
    acq.mkdir()
    frames = np.stack([paint_insitu(100.0 + i * 0.2, size=64)
                       for i in range(80)]).astype(np.float32)
    _write(acq / "a.emd", frames, chunked=False)
    tifffile.imwrite(acq / "a.tif", frames)  # a page a frame: read a chunk at a time
    onnx = model(tmp_path)
    monkeypatch.setattr(stackmemory, "CHECKED_FROM_BYTES", 0)
    monkeypatch.setattr(stackmemory, "available_memory",
                        lambda *a: Limit(512 * 1024, "/sys/fs/cgroup/memory.max"))
    first = replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    assert (first.done, first.quarantined) == (1, 1)
    monkeypatch.undo()  # the memory raised
    replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    table = ds.dataset(tmp_path / "out" / "frames", format="parquet").to_table()
    assert Counter(Path(s).name for s in table.column("source").to_pylist()) == {"a.tif": 80}


def test_on_a_case_insensitive_mount_an_original_is_found_once_by_its_listed_name(
        tmp_path, monkeypatch):
    # Was: every spelling of a.emd (8 of them) "existed" on a Windows share, none of them
    # the name the ledger knows (a.EMD), so the service never took the original as refused
    # and never read its export. Simulated: every spelling opens the listed file.
    from nwwatch.service.watcher import exports_beside, originals_beside

    (tmp_path / "a.EMD").write_bytes(b"x")
    (tmp_path / "a.tif").write_bytes(b"y")
    real_stat = Path.stat

    def case_blind(self, *args, **kwargs):
        for listed in ("a.EMD", "a.tif"):
            if self.name.lower() == listed.lower():
                return real_stat(self.parent / listed, *args, **kwargs)
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", case_blind)
    watch = WatchConfig(path=tmp_path, kind="insitu")
    assert originals_beside(tmp_path / "a.tif", watch) == [tmp_path / "a.EMD"]
    assert exports_beside(tmp_path / "a.EMD", watch) == [tmp_path / "a.tif"]
