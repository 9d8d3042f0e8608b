"""A tomogram too large for the memory the process may use is refused from its header, before
its voxels are read: bad input, quarantined at once with the GiB needed and available, instead
of an OOM kill, a restart and a retry until ``max_attempts`` kills (nwwatch/volume/memory.py).
The available figure is injected: nothing large is allocated."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from onnx_models import TOMOGRAM_GREY
from servicekit import ledger_count, model
from structlog.testing import capture_logs

from nwwatch.io import InputError, write_volume_tiff
from nwwatch.resources import Limit
from nwwatch.service import replay
from nwwatch.volume.memory import (
    MEASURED_PEAK_KIB,
    MEASURED_VOXELS,
    PEAK_BYTES_PER_CALL_PIXEL_HIGH,
    PEAK_BYTES_PER_CALL_PIXEL_LOW,
    PEAK_BYTES_PER_VOXEL_BESIDE_CALL,
    PEAK_BYTES_PER_VOXEL_HIGH,
    PEAK_BYTES_PER_VOXEL_LOW,
    TomogramTooLargeError,
    check_tomogram_memory,
    tomogram_peak_bytes,
)

volumes_module = importlib.import_module("nwwatch.service.volumes")
memory_module = importlib.import_module("nwwatch.volume.memory")
GIB = 2**30
ROOT = Path(__file__).resolve().parents[1]
SHAPE = (6, 24, 24)


def test_the_constants_are_the_committed_measurement():
    # The check's figures may not fall below what was measured: they are the peaks of
    # bench/results/tomo_memory.json, for the volume it measured.
    bench = json.loads((ROOT / "bench" / "results" / "tomo_memory.json").read_text())
    assert bench["voxels"] == MEASURED_VOXELS
    measured = {row["candidate"]: row["peak_rss_kib"] for row in bench["rows"]}
    assert MEASURED_PEAK_KIB == {"smoothed-threshold": measured["threshold"],
                                 "feature-forest": measured["features"]}


def test_the_estimate_reproduces_the_measured_peaks():
    # bench/results/tomo_memory.json (docs/tomography.md, "Memory"): 1.26 GiB (threshold)
    # and 1.54 GiB (forest) for a 64 x 768 x 768 float32 volume, over the process's 0.12 GiB.
    assert round(PEAK_BYTES_PER_VOXEL_LOW, 1) == 32.3
    assert round(PEAK_BYTES_PER_VOXEL_HIGH, 1) == 40.4
    assert round(PEAK_BYTES_PER_VOXEL_BESIDE_CALL, 1) == 19.2
    measured = tomogram_peak_bytes((64, 768, 768), "float32")
    assert measured.voxels == 64 * 768 * 768
    assert measured.low + 0.12 * GIB == pytest.approx(1317120 * 1024)
    assert measured.high + 0.12 * GIB >= 1615648 * 1024  # the forest's peak, within
    # a uint8 volume holds 1 byte a voxel where float32 held 4; the rest is float32 work
    small = tomogram_peak_bytes((64, 768, 768), np.uint8)
    assert measured.low - small.low == 3 * measured.voxels


def test_volumes_of_few_or_large_slices_are_within_the_estimate():
    # before: a share per voxel alone said 0.3 GiB for two 2048 x 2048 slices, which took
    # 3.3 (threshold) to 7.1 GiB (a U-Net): a model call holds a whole slice
    bench = json.loads((ROOT / "bench" / "results" / "tomo_slice_memory.json").read_text())
    assert {run["side_px"] for run in bench["runs"]} >= {768, 2048}
    for run in bench["runs"]:
        need = tomogram_peak_bytes((run["slices"], run["side_px"], run["side_px"]), "float32")
        assert need.high >= run["peak_above_bytes"], run
        if run["model"] == "smoothed-threshold":
            assert need.low >= run["peak_above_bytes"] and need.low < 1.25 * (
                run["peak_above_bytes"]), run
    # the constants: each model's most per call pixel (one slice a call at 768-2048 px)
    worst = {model: max((run["peak_above_bytes"]
                         - PEAK_BYTES_PER_VOXEL_BESIDE_CALL * run["voxels"])
                        / run["side_px"] ** 2 for run in bench["runs"] if run["model"] == model)
             for model in {run["model"] for run in bench["runs"]}}
    assert 0 <= PEAK_BYTES_PER_CALL_PIXEL_LOW - worst["smoothed-threshold"] < 1
    assert 0 <= PEAK_BYTES_PER_CALL_PIXEL_HIGH - max(worst.values()) < 1
    # a call holds up to a batch of slices under the cap: 8 x 512 x 512 is 4 slices a call
    # (measured with a U-Net: 1.00 GiB), 256 x 512 x 512 deep enough for the voxel share
    assert tomogram_peak_bytes((8, 512, 512), "float32").high >= 1.0 * GIB
    deep = tomogram_peak_bytes((256, 512, 512), "float32")
    assert deep.low == int(256 * 512 * 512 * PEAK_BYTES_PER_VOXEL_LOW)


def test_the_check_refuses_only_what_cannot_fit_even_with_the_threshold(tmp_path):
    shape = (200, 2048, 2048)  # 839 M voxels: about 25 to 32 GiB
    need = tomogram_peak_bytes(shape, "float32")
    path = tmp_path / "big.tif"
    with pytest.raises(TomogramTooLargeError) as error:
        check_tomogram_memory(path, shape, "float32", 7.6 * GIB, "/cg/memory.max")
    assert isinstance(error.value, InputError) and error.value.path == path
    assert error.value.reason.startswith(
        "a 200 x 2048 x 2048 float32 tomogram (838,860,800 voxels) needs about 25.2 to 31.6 GiB of "
        "memory to be segmented and measured, and 7.6 GiB are available (/cg/memory.max): "
        "raise that limit (the service's MemoryMax: systemctl edit nwwatch), or bin the "
        "volume (2 x 2 x 2: 8 times fewer voxels); it is tried again when the service or a "
        "replay next starts with that memory (docs/tomography.md, \"Memory\")")
    with pytest.raises(TomogramTooLargeError, match=r"\(/proc/meminfo\): use a machine with "
                                                    "more memory, or bin the volume"):
        check_tomogram_memory(path, shape, "float32", 7.6 * GIB, "/proc/meminfo")
    # close: fits with the threshold, maybe not with the forest: tried
    assert check_tomogram_memory(path, shape, "float32", (need.low + need.high) / 2) == need
    assert check_tomogram_memory(path, shape, "float32", None) == need  # unknown: tried


def _volume(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vol = np.full(SHAPE, TOMOGRAM_GREY[0], np.uint8)
    vol[1:5, 4:12, 6:20] = TOMOGRAM_GREY[1]
    return write_volume_tiff(folder / "v.tif", vol)


def test_replay_quarantines_a_tomogram_too_large_at_once_without_reading_it(tmp_path,
                                                                              monkeypatch):
    # Was: no check; the kernel killed the service on such a tomogram, which restarted, tried
    # it again and quarantined it after three kills with "the service stopped (crash or
    # kill) while processing this file alone".
    path = _volume(tmp_path / "acq")
    need = tomogram_peak_bytes(SHAPE, np.uint8)
    asked = []
    monkeypatch.setattr(memory_module, "available_memory", lambda limits: asked.append(
        limits) or Limit(need.low - 1, "/cg/test/memory.max"))
    read = []
    monkeypatch.setattr(volumes_module, "read_volume", lambda p: read.append(p))
    summary = replay(tmp_path / "acq", tmp_path / "res", kind="tomogram",
                     model=model(tmp_path / "m", kind="tomogram"))
    assert (summary.done, summary.failed, summary.quarantined) == (0, 0, 1)
    assert read == []  # refused from the header
    # the limit that kills (memory.max, MemoryMax=8G of the unit), not memory.high
    # (MemoryHigh=6G), above which the kernel only throttles
    assert asked == [("memory.max",)]
    entry = pq.read_table(tmp_path / "res" / "quarantine.parquet").to_pylist()[0]
    assert entry["path"] == str(path) and entry["attempts"] == 1
    assert entry["error_type"] == "TomogramTooLargeError"
    assert entry["reason"].startswith(f"a 6 x 24 x 24 uint8 tomogram (3,456 voxels) needs about "
                                      f"{need.low / GIB:.1f} to {need.high / GIB:.1f} GiB")
    assert "are available (/cg/test/memory.max): raise that limit" in entry["reason"]


def test_a_tomogram_over_the_whole_read_limit_is_refused_as_such_not_for_memory(
        tmp_path, monkeypatch):
    # a tomogram is read whole: one over nwwatch.io.MAX_FILE_BYTES was refused for the memory
    # ("use a machine with more memory", tried again at each start), which no memory helps
    import nwwatch.io as nio

    path = _volume(tmp_path / "acq")
    monkeypatch.setattr(nio.limits, "MAX_FILE_BYTES", int(np.prod(SHAPE)) - 1)
    need = tomogram_peak_bytes(SHAPE, np.uint8)
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit(need.low - 1, "/cg/test/memory.max"))
    read = []
    monkeypatch.setattr(volumes_module, "read_volume", lambda p: read.append(p))
    summary = replay(tmp_path / "acq", tmp_path / "res", kind="tomogram",
                     model=model(tmp_path / "m", kind="tomogram"))
    assert (summary.done, summary.quarantined) == (0, 1)
    assert read == []
    entry = pq.read_table(tmp_path / "res" / "quarantine.parquet").to_pylist()[0]
    assert entry["path"] == str(path)
    assert entry["error_type"] == "ImageTooLargeError"
    assert "for a file read whole" in entry["reason"]
    assert "memory" not in entry["reason"]


def test_replay_tries_a_tomogram_that_may_fit_and_warns(tmp_path, monkeypatch):
    _volume(tmp_path / "acq")
    need = tomogram_peak_bytes(SHAPE, np.uint8)
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit((need.low + need.high) // 2, "test"))
    with capture_logs() as logs:
        summary = replay(tmp_path / "acq", tmp_path / "res", kind="tomogram",
                         model=model(tmp_path / "m", kind="tomogram"))
    assert (summary.done, summary.quarantined) == (1, 0)
    tight = [e for e in logs if e["event"] == "tomogram_memory_tight"]
    assert len(tight) == 1 and tight[0]["available_source"] == "test"


def test_a_tomogram_refused_for_memory_is_tried_again_once_the_limit_allows_it(tmp_path,
                                                                               monkeypatch):
    # Was: quarantined for good (bad input), also after the limit was raised; only
    # `replay --force` brought it back. The refusal is about the memory, not the file.
    path = _volume(tmp_path / "acq")
    need = tomogram_peak_bytes(SHAPE, np.uint8)
    limit = [need.low - 1]
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit(limit[0], "/cg/test/memory.max"))
    onnx = model(tmp_path / "m", kind="tomogram")

    def run():
        with capture_logs() as logs:
            summary = replay(tmp_path / "acq", tmp_path / "res", kind="tomogram", model=onnx)
        return summary, [e for e in logs if e["event"] == "tomogram_retried"]

    summary, retried = run()
    assert (summary.done, summary.quarantined) == (0, 1) and retried == []
    summary, retried = run()  # the same limit: still refused, its header only read again
    assert (summary.done, summary.quarantined, summary.still_quarantined) == (0, 1, 1)
    assert retried == []
    limit[0] = need.high  # MemoryMax raised, the service restarted
    summary, retried = run()
    assert (summary.done, summary.quarantined) == (1, 0)
    assert [e["source"] for e in retried] == [str(path)]
    assert retried[0]["needs_gib"] == [round(need.low / GIB, 2), round(need.high / GIB, 2)]
    assert pq.read_table(tmp_path / "res" / "quarantine.parquet").num_rows == 0
    assert pq.read_table(tmp_path / "res" / "volumes").num_rows == 1


# Makes the daemon's process see ``NWWATCH_TEST_AVAILABLE_BYTES`` as what it may allocate, as
# a unit's MemoryMax would (a Python start-up hook: the real cgroup cannot be set here).
_AVAILABLE_HOOK = """
import os
from nwwatch import resources
_value = float(os.environ["NWWATCH_TEST_AVAILABLE_BYTES"])
resources.available_memory = lambda v2_limits=resources.V2_LIMITS: resources.Limit(
    _value, "/cg/test/memory.max")
"""


def test_the_service_restarted_with_a_higher_limit_processes_the_refused_tomogram(tmp_path):
    import os

    from servicekit import DaemonProcess, wait_rows, write_config

    path = _volume(tmp_path / "acq")
    # the service's estimate: a call of its batch of slices (write_config's batch_size, 4)
    need = tomogram_peak_bytes(SHAPE, np.uint8, slices_per_call=4)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_AVAILABLE_HOOK)
    res = tmp_path / "res"
    cfg = write_config(tmp_path / "c.toml", tmp_path / "acq", res,
                       model(tmp_path / "m", kind="tomogram"), settle=0.2)
    cfg.write_text(cfg.read_text().replace('kind = "insitu"', 'kind = "tomogram"'))
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))

    def start(available: int, n: int) -> DaemonProcess:
        return DaemonProcess(cfg, tmp_path / f"log{n}", env={
            "PYTHONPATH": pythonpath, "NWWATCH_TEST_AVAILABLE_BYTES": str(available)})

    daemon = start(need.low - 1, 1)
    try:
        quarantined = daemon.wait_event("file_quarantined", timeout=60)
        assert quarantined["source"] == str(path) and "GiB are available" in \
            quarantined["reason"]
    finally:
        assert daemon.terminate(timeout=30)[0] == 0
    daemon = start(need.high, 2)  # MemoryMax raised; the service restarted
    try:
        assert daemon.wait_event("tomogram_retried", timeout=60)["source"] == str(path)
        daemon.wait_event("file_processed", timeout=60)
        wait_rows(res, 1, timeout=60, proc=daemon, folder="volumes")
    finally:
        assert daemon.terminate(timeout=30)[0] == 0
    assert pq.read_table(res / "quarantine.parquet").num_rows == 0


def test_train_volume_refuses_a_volume_too_large_naming_the_file_and_the_gib(tmp_path):
    """``nwwatch train --volume`` (its own process) checks the volume as the service does,
    from its header: was no check, and a volume too large was killed by the OOM killer."""
    import os
    import subprocess
    import sys

    import cv2

    pytest.importorskip("torch")
    path = _volume(tmp_path / "acq")
    labels = np.full(SHAPE[1:], 255, np.uint8)
    labels[2:4, 2:10], labels[6:10, 8:18] = 0, 1
    cv2.imwrite(str(tmp_path / "labels.png"), labels)
    need = tomogram_peak_bytes(SHAPE, np.uint8)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_AVAILABLE_HOOK)
    env = dict(os.environ, OMP_NUM_THREADS="1", NWWATCH_TEST_AVAILABLE_BYTES=str(need.low - 1),
               PYTHONPATH=os.pathsep.join(filter(None, [str(hook), str(Path.cwd()),
                                                         os.environ.get("PYTHONPATH")])))
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from nwwatch.cli import main; "
         "sys.argv[0] = 'nwwatch'; main()", "train", "--volume", str(path), "--slice", "3",
         "--labels", str(tmp_path / "labels.png"), "--candidates", "threshold",
         "--out", str(tmp_path / "model.onnx")],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[1])
    assert out.returncode == 1, out.stdout + out.stderr
    assert (f"Error: {path}: a 6 x 24 x 24 uint8 tomogram (3,456 voxels) needs about "
            f"{need.low / GIB:.1f} to {need.high / GIB:.1f} GiB of memory to be segmented and "
            f"measured, and {(need.low - 1) / GIB:.1f} GiB are available (/cg/test/memory.max): "
            "raise that limit, or bin the volume (2 x 2 x 2: 8 times fewer voxels); then train "
            "again") in out.stderr
    assert not (tmp_path / "model.onnx").exists()


def test_a_larger_batch_of_slices_a_call_is_counted():
    # a review measured 64 x 128 x 128 with 64 slices a call: 0.22 GiB (threshold), 0.43
    # (forest), above the estimate for 8; the service passes its engine's batch size
    eight = tomogram_peak_bytes((64, 128, 128), "float32")
    sixty_four = tomogram_peak_bytes((64, 128, 128), "float32", slices_per_call=64)
    assert sixty_four.low >= 0.221 * GIB and sixty_four.high >= 0.431 * GIB
    assert sixty_four.high > eight.high


def _count_hashes(monkeypatch) -> list[Path]:
    """The files :func:`nwwatch.service.batch.collect` and a Dask task hash (read through)."""
    import nwwatch.filehash as filehash

    batch_module = importlib.import_module("nwwatch.service.batch")
    hashed: list[Path] = []
    real = filehash.file_sha256

    def counting(path, *args, **kwargs):
        hashed.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(batch_module, "file_sha256", counting)
    monkeypatch.setattr(filehash, "file_sha256", counting)
    return hashed


def test_a_tomogram_too_large_is_refused_before_it_is_hashed(tmp_path, monkeypatch):
    # Was: hashed (read through: 8 s for 1 GiB, minutes for tens of GB on a share, the
    # service's loop serving nothing else meanwhile) and only then refused from its header.
    # Refused unhashed, it stays quarantined by its version (path, size, mtime): skipped
    # unread by the next run, tried again once the memory allows it.
    path = _volume(tmp_path / "acq")
    need = tomogram_peak_bytes(SHAPE, np.uint8)
    limit = [need.low - 1]
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit(limit[0], "/cg/test/memory.max"))
    hashed = _count_hashes(monkeypatch)
    onnx = model(tmp_path / "m", kind="tomogram")
    with capture_logs() as logs:
        summary = replay(tmp_path / "acq", tmp_path / "res", kind="tomogram", model=onnx)
    assert (summary.done, summary.quarantined) == (0, 1)
    assert hashed == []
    bad = [e for e in logs if e["event"] == "bad_input"]
    assert [(e["source"], e["error_type"]) for e in bad] == [(str(path),
                                                             "TomogramTooLargeError")]
    entry = pq.read_table(tmp_path / "res" / "quarantine.parquet").to_pylist()[0]
    assert (entry["path"], entry["attempts"]) == (str(path), 1)
    assert entry["error_type"] == "TomogramTooLargeError"
    st = path.stat()  # the ledger lists this version of the file
    assert ledger_count(tmp_path / "res", "quarantine",
                        f"size = {st.st_size} AND mtime_ns = {st.st_mtime_ns}") == 1
    summary = replay(tmp_path / "acq", tmp_path / "res", kind="tomogram", model=onnx)
    assert (summary.done, summary.still_quarantined) == (0, 1)
    assert hashed == []
    limit[0] = need.high  # the limit raised: tried again, hashed and processed once
    summary = replay(tmp_path / "acq", tmp_path / "res", kind="tomogram", model=onnx)
    assert (summary.done, summary.quarantined) == (1, 0)
    assert hashed == [path]
    assert pq.read_table(tmp_path / "res" / "volumes").num_rows == 1
    summary = replay(tmp_path / "acq", tmp_path / "res", kind="tomogram", model=onnx)
    assert (summary.done, summary.skipped) == (0, 1)


def test_a_dask_task_refuses_a_tomogram_too_large_before_it_is_hashed(tmp_path, monkeypatch):
    # A worker of a Dask replay checks a tomogram against its own memory: it hashed the file
    # first, as the service did. Refused unhashed, the driver quarantines it by its version.
    from nwwatch.filehash import file_sha256
    from nwwatch.service.clustertask import TaskSpec, run_task
    from nwwatch.volume.segment import VolumeOptions

    path = _volume(tmp_path / "acq")
    need = tomogram_peak_bytes(SHAPE, np.uint8, slices_per_call=4)
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit(need.low - 1, "/cg/test/memory.max"))
    onnx = model(tmp_path / "m", kind="tomogram")
    staging = tmp_path / "staging"
    staging.mkdir()
    spec = TaskSpec(model=str(onnx), model_sha256=file_sha256(onnx),
                    measurement_version="test", batch_size=4, providers=("cpu",), threads=1,
                    staging=str(staging), kind="tomogram", volume_options=VolumeOptions())
    hashed = _count_hashes(monkeypatch)
    result = run_task([str(path)], [SHAPE[0]], spec)
    assert hashed == []
    (f,) = result.files
    assert (f.sha256, f.error_type, f.permanent, f.n_rows) == (
        None, "TomogramTooLargeError", True, 0)
    assert (f.size, f.mtime_ns) == (path.stat().st_size, path.stat().st_mtime_ns)
    assert "GiB are available (/cg/test/memory.max)" in f.reason


def _tomogram(path: Path, shape: tuple[int, int, int] = SHAPE, box_z: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vol = np.full(shape, TOMOGRAM_GREY[0], np.uint8)
    vol[box_z:box_z + 3, 4:12, 6:20] = TOMOGRAM_GREY[1]
    return write_volume_tiff(path, vol)


def test_a_done_tomogram_renamed_or_touched_is_skipped_when_the_memory_is_low(
        tmp_path, monkeypatch):
    # Was: refused from its header before the ledger could know its content (no hash cached
    # for the new path or mtime): done work quarantined as too large (exit 3) whenever the
    # memory available had dropped since. Done content last hashed at the file's path
    # (touched) or in a file of its size and mtime (moved, renamed) is hashed first; a copy
    # (new mtime) and new content of the same size are refused unread, as a size alone is
    # shared by every tomogram of one shape (each hashed in full otherwise).
    acq = tmp_path / "acq"
    path, need, limit, onnx = _done_tomogram(acq, tmp_path, monkeypatch)
    renamed = path.rename(acq / "renamed.tif")
    copy = acq / "copy.tif"
    copy.write_bytes(renamed.read_bytes())
    st = renamed.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a copy's own mtime
    other = _tomogram(acq / "other.tif", box_z=2)  # new content of the same size
    assert other.stat().st_size == renamed.stat().st_size
    _tomogram(acq / "bigger.tif", (8, 24, 24))
    limit[0] = need.low - 1  # less memory free now
    hashed = _count_hashes(monkeypatch)
    summary = replay(acq, tmp_path / "res", kind="tomogram", model=onnx)
    assert (summary.done, summary.skipped, summary.quarantined) == (0, 1, 3), summary.lines()
    assert [p.name for p in hashed] == ["renamed.tif"]
    quarantine = pq.read_table(tmp_path / "res" / "quarantine.parquet").to_pylist()
    assert sorted((Path(q["path"]).name, q["sha256"] is None) for q in quarantine) == [
        ("bigger.tif", True), ("copy.tif", True), ("other.tif", True)]
    assert {q["error_type"] for q in quarantine} == {"TomogramTooLargeError"}
    st = renamed.stat()
    os.utime(renamed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    hashed.clear()
    summary = replay(acq, tmp_path / "res", kind="tomogram", model=onnx)
    assert (summary.done, summary.skipped, summary.quarantined) == (0, 1, 3), summary.lines()
    assert summary.still_quarantined == 3 and summary.exit_status == 3
    assert [p.name for p in hashed] == ["renamed.tif"]
    limit[0] = need.high * 10  # the memory back: the copy is skipped as done content
    summary = replay(acq, tmp_path / "res", kind="tomogram", model=onnx)
    assert (summary.done, summary.skipped) == (2, 2), summary.lines()
    assert pq.read_table(tmp_path / "res" / "volumes").num_rows == 3


def test_a_forced_replay_short_of_memory_keeps_a_done_tomogram_done(tmp_path, monkeypatch):
    # Was: with --force and too little memory, the done tomogram (touched, so hashed again,
    # or its hash cached) was claimed and refused while processed: its item went from done
    # to quarantined while its row stayed on disk, and once the memory returned the next
    # replay processed it again (two rows of one content on disk). Now it is refused by its
    # version before its claim: the item stays done, its row the only one.
    import sqlite3

    acq, res = tmp_path / "acq", tmp_path / "res"
    path, need, limit, onnx = _done_tomogram(acq, tmp_path, monkeypatch)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    limit[0] = need.low - 1
    summary = replay(acq, res, kind="tomogram", model=onnx, force=True)
    assert (summary.done, summary.quarantined) == (0, 1), summary.lines()

    def items() -> list[tuple]:
        db = sqlite3.connect(res / "ledger.sqlite")
        try:
            return db.execute("SELECT state, attempts FROM items").fetchall()
        finally:
            db.close()

    assert items() == [("done", 0)]
    limit[0] = need.high * 10
    summary = replay(acq, res, kind="tomogram", model=onnx)
    assert (summary.done, summary.skipped) == (0, 1), summary.lines()
    assert items() == [("done", 0)]
    rows = sum(pq.read_table(p).num_rows for p in (res / "volumes").rglob("*.parquet"))
    assert rows == 1
    # untouched (its hash cached), forced again short of memory: the same
    limit[0] = need.low - 1
    summary = replay(acq, res, kind="tomogram", model=onnx, force=True)
    assert (summary.done, summary.quarantined) == (0, 1), summary.lines()
    assert items() == [("done", 0)]


def test_a_forced_replay_whose_memory_drops_before_the_voxels_keeps_a_done_tomogram_done(
        tmp_path, monkeypatch):
    # Was: the memory read by collect fitted, the one read again just before the voxels
    # (volume_rows' check_memory) did not: the claimed done item went through the ledger's
    # _fail to quarantined while its row stayed on disk, and a later replay processed it
    # again (two rows of one content). Now a refusal for the memory keeps an item done
    # before its claim done, with its rows, and lists the file by its version.
    import sqlite3
    import traceback

    acq, res = tmp_path / "acq", tmp_path / "res"
    _volume(acq)
    need = tomogram_peak_bytes(SHAPE, np.uint8)
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit(need.high * 10, "/proc/meminfo"))
    onnx = model(tmp_path / "m", kind="tomogram")
    assert replay(acq, res, kind="tomogram", model=onnx).done == 1

    def dropped_before_the_voxels(limits):
        short = any(frame.name == "check_memory" for frame in traceback.extract_stack())
        return Limit(need.low - 1 if short else need.high * 10, "/proc/meminfo")

    monkeypatch.setattr(memory_module, "available_memory", dropped_before_the_voxels)
    summary = replay(acq, res, kind="tomogram", model=onnx, force=True)
    assert (summary.done, summary.quarantined, summary.exit_status) == (0, 1, 3), \
        summary.lines()

    def items() -> list[tuple]:
        db = sqlite3.connect(res / "ledger.sqlite")
        try:
            return db.execute("SELECT state, attempts FROM items").fetchall()
        finally:
            db.close()

    def rows() -> int:
        return sum(pq.read_table(p).num_rows for p in (res / "volumes").rglob("*.parquet"))

    assert items() == [("done", 0)] and rows() == 1
    (entry,) = pq.read_table(res / "quarantine.parquet").to_pylist()
    assert (entry["error_type"], entry["sha256"]) == ("TomogramTooLargeError", None)
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit(need.high * 10, "/proc/meminfo"))
    summary = replay(acq, res, kind="tomogram", model=onnx)
    assert (summary.done, summary.skipped, summary.quarantined) == (0, 1, 0), summary.lines()
    assert items() == [("done", 0)] and rows() == 1


def _task_spec(onnx: Path, staging: Path, **kw):
    from nwwatch.filehash import file_sha256
    from nwwatch.service.clustertask import TaskSpec
    from nwwatch.volume.segment import VolumeOptions

    staging.mkdir(exist_ok=True)
    return TaskSpec(model=str(onnx), model_sha256=file_sha256(onnx), batch_size=4,
                    providers=("cpu",), threads=1, staging=str(staging), kind="tomogram",
                    volume_options=VolumeOptions(), **kw)



def _done_tomogram(acq: Path, tmp_path: Path, monkeypatch, slices_per_call: int | None = None,
                   source: str = "/proc/meminfo"):
    """A tomogram in ``acq`` replayed into ``tmp_path/res`` (done) while ample memory is
    faked: (its path, its peak need, the one-element list holding the memory figure the
    checks read, which the test lowers, the model)."""
    path = _volume(acq)
    need = (tomogram_peak_bytes(SHAPE, np.uint8) if slices_per_call is None
            else tomogram_peak_bytes(SHAPE, np.uint8, slices_per_call=slices_per_call))
    limit = [need.high * 10]
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit(limit[0], source))
    onnx = model(tmp_path / "m", kind="tomogram")
    assert replay(acq, tmp_path / "res", kind="tomogram", model=onnx).done == 1
    return path, need, limit, onnx

def _driver(tmp_path: Path, onnx: Path):
    from nwwatch.segment.session import Segmenter
    from nwwatch.service.batch import Engine
    from nwwatch.service.ledger import Ledger
    from nwwatch.service.replaysummary import ReplaySummary

    res = tmp_path / "res"
    engine = Engine("tomogram", Segmenter(onnx, providers=("cpu",), threads=1),
                    Ledger(res / "ledger.sqlite", res), res, batch_size=4)
    return engine, ReplaySummary(results_dir=res)


def test_a_dask_worker_hashes_a_tomogram_of_the_size_of_done_content_first(tmp_path,
                                                                           monkeypatch):
    # Was: the worker refused it from its header, unhashed, and the driver quarantined a
    # renamed done tomogram as too large. The driver names the task's files of the size of
    # done content whose hash it does not know; the worker hashes them first, and the driver
    # skips the done content.
    from nwwatch.service.cluster import _commit, _hash_first
    from nwwatch.service.clustertask import run_task

    acq = tmp_path / "acq"
    path, need, limit, onnx = _done_tomogram(acq, tmp_path, monkeypatch, slices_per_call=4,
                                             source="/cg/test/memory.max")
    renamed = str(path.rename(acq / "renamed.tif"))
    bigger = str(_tomogram(acq / "bigger.tif", (8, 24, 24)))
    copy = acq / "copy.tif"  # a copy has an mtime of its own: refused from its header
    copy.write_bytes(Path(renamed).read_bytes())
    st = os.stat(renamed)
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    limit[0] = need.low - 1
    engine, summary = _driver(tmp_path, onnx)
    try:
        assert _hash_first(engine, [renamed, bigger, str(copy)]) == (renamed,)
        hash_first = _hash_first(engine, [renamed, bigger])
        spec = _task_spec(onnx, tmp_path / "res" / ".cluster",
                          measurement_version=engine.measurement_version,
                          hash_first=hash_first)
        result = run_task([renamed, bigger], [SHAPE[0], 8], spec)
        moved, refused = result.files
        assert moved.sha256 is not None and refused.sha256 is None
        seen_here = {f.path: (f.size, f.mtime_ns) for f in result.files}
        _commit(result, engine, summary, False, engine.log, seen_here)
        assert (summary.skipped, summary.quarantined) == (1, 1)
        assert engine.ledger.quarantined_paths() == {bigger}
    finally:
        engine.ledger.close()


def test_a_forced_dask_replay_short_of_memory_keeps_a_done_tomogram_done(tmp_path,
                                                                         monkeypatch):
    # Was: the touched done tomogram, hashed first and refused by the worker's volume_rows
    # for its memory, was claimed by the driver and its item went from done to quarantined
    # while its row stayed on disk. Now the driver lists it by its version, unclaimed.
    from nwwatch.service.cluster import _commit, _hash_first
    from nwwatch.service.clustertask import run_task

    acq = tmp_path / "acq"
    path, need, limit, onnx = _done_tomogram(acq, tmp_path, monkeypatch, slices_per_call=4,
                                             source="/cg/test/memory.max")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    limit[0] = need.low - 1
    engine, summary = _driver(tmp_path, onnx)
    try:
        hash_first = _hash_first(engine, [str(path)])
        assert hash_first == (str(path),)
        spec = _task_spec(onnx, tmp_path / "res" / ".cluster",
                          measurement_version=engine.measurement_version,
                          hash_first=hash_first, owners=(str(path),))
        result = run_task([str(path)], [SHAPE[0]], spec)
        (f,) = result.files
        assert f.sha256 is not None and f.error_type == "TomogramTooLargeError"
        _commit(result, engine, summary, True, engine.log, {f.path: (f.size, f.mtime_ns)})
        assert summary.quarantined == 1
        assert engine.ledger.quarantined_paths() == {str(path)}
        item = engine.ledger.item(engine.key(f.sha256))
        assert (item.state, item.attempts) == ("done", 0)
    finally:
        engine.ledger.close()


def test_a_forced_done_tomogram_a_dask_worker_refused_and_changed_since_is_a_new_version(
        tmp_path, monkeypatch):
    # Was: listed by the version the driver sent even when the file here had changed since
    # (the unhashed refusal and local replay report it changed, processed as the new version).
    from nwwatch.service.cluster import _commit
    from nwwatch.service.clustertask import run_task

    acq = tmp_path / "acq"
    path, need, limit, onnx = _done_tomogram(acq, tmp_path, monkeypatch, slices_per_call=4,
                                             source="/cg/test/memory.max")
    limit[0] = need.low - 1
    engine, summary = _driver(tmp_path, onnx)
    try:
        spec = _task_spec(onnx, tmp_path / "res" / ".cluster",
                          measurement_version=engine.measurement_version,
                          hash_first=(str(path),), owners=(str(path),))
        result = run_task([str(path)], [SHAPE[0]], spec)
        (f,) = result.files
        assert f.sha256 is not None and f.error_type == "TomogramTooLargeError"
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # changed here since
        _commit(result, engine, summary, True, engine.log,
                {f.path: (st.st_size, st.st_mtime_ns)})
        assert (summary.quarantined, summary.changed) == (0, [path])
        assert engine.ledger.quarantined_paths() == set()
        item = engine.ledger.item(engine.key(f.sha256))
        assert (item.state, item.attempts) == ("done", 0)
    finally:
        engine.ledger.close()


def _refused_by_a_worker(tmp_path: Path, monkeypatch):
    """A tomogram, a driver (engine, summary) and the result of a task whose worker refused
    it from its header."""
    from nwwatch.service.clustertask import run_task

    path = _volume(tmp_path / "acq")
    need = tomogram_peak_bytes(SHAPE, np.uint8, slices_per_call=4)
    monkeypatch.setattr(memory_module, "available_memory",
                        lambda limits: Limit(need.low - 1, "/cg/test/memory.max"))
    onnx = model(tmp_path / "m", kind="tomogram")
    engine, summary = _driver(tmp_path, onnx)
    spec = _task_spec(onnx, tmp_path / "res" / ".cluster",
                      measurement_version=engine.measurement_version)
    result = run_task([str(path)], [SHAPE[0]], spec)
    assert [(f.sha256, f.error_type) for f in result.files] == [
        (None, "TomogramTooLargeError")]
    return path, engine, summary, spec, result


def test_a_dask_header_refusal_of_a_stale_copy_on_a_worker_stops_the_replay(tmp_path,
                                                                            monkeypatch):
    # Was: the guard against a worker's own copy under the path skipped unhashed files: the
    # driver's file was quarantined for the worker's stale copy.
    from nwwatch.service.cluster import _check_same_file
    from nwwatch.service.clusterconnect import InputNotSharedError
    from nwwatch.service.ledgerdb import FileVersion

    path, engine, _, _, result = _refused_by_a_worker(tmp_path, monkeypatch)
    engine.ledger.close()
    st = path.stat()
    (f,) = result.files
    f.version = FileVersion(st.st_size, st.st_mtime_ns + 86_400 * 10**9, 0)
    with pytest.raises(InputNotSharedError, match="read another file under this path"):
        _check_same_file(f, {str(path): (st.st_size, st.st_mtime_ns)})


def test_a_dask_header_refusal_is_listed_by_the_version_the_driver_sent(tmp_path,
                                                                        monkeypatch):
    # Was: listed under the worker's mtime, which may differ from the driver's within
    # MTIME_SLACK_NS, while a rescan and retry_tomograms_that_fit compare exactly.
    from nwwatch.service.cluster import MTIME_SLACK_NS, _commit
    from nwwatch.service.ledgerdb import FileVersion

    path, engine, summary, _, result = _refused_by_a_worker(tmp_path, monkeypatch)
    st = path.stat()
    (f,) = result.files
    f.version = FileVersion(st.st_size, st.st_mtime_ns + MTIME_SLACK_NS // 2, 0)
    try:
        _commit(result, engine, summary, False, engine.log,
                {str(path): (st.st_size, st.st_mtime_ns)})
        assert summary.quarantined == 1
        assert engine.ledger.quarantined_at(str(path), st.st_size, st.st_mtime_ns)
    finally:
        engine.ledger.close()


def test_a_tomogram_changed_while_a_dask_worker_read_its_header_is_not_quarantined(
        tmp_path, monkeypatch):
    # Was: quarantined under the version listed before the header was read, which may be
    # another's; local replay reports it changed while read (processed as the new version).
    from nwwatch.service.cluster import _commit
    from nwwatch.service.clustertask import run_task

    path, engine, summary, spec, _ = _refused_by_a_worker(tmp_path, monkeypatch)
    st = path.stat()
    need = tomogram_peak_bytes(SHAPE, np.uint8, slices_per_call=4)

    def rewritten_meanwhile(limits):  # the header read, the file is replaced
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return Limit(need.low - 1, "/cg/test/memory.max")

    monkeypatch.setattr(memory_module, "available_memory", rewritten_meanwhile)
    result = run_task([str(path)], [SHAPE[0]], spec)
    (f,) = result.files
    assert f.gone and f.error_type == "" and f.size == st.st_size
    try:
        _commit(result, engine, summary, False, engine.log,
                {str(path): (st.st_size, st.st_mtime_ns)})
        assert (summary.quarantined, summary.changed) == (0, [path])
        assert engine.ledger.quarantined_paths() == set()
    finally:
        engine.ledger.close()
