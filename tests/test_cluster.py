"""``nwwatch replay --dask``: a real LocalCluster of worker processes (shared by the tests of
this module: starting one costs seconds), real worker and driver kills."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import tifffile
from servicekit import (
    HIVE_KEY,
    REPO,
    WORKER,
    assert_ledger_closed,
    assert_names_a_worker,
    hangup_as_a_terminal_gives_it,
    hive_readers,
    model,
    paint_insitu,
    write_small_tomogram,
)

from nwwatch.io import write_frame_tiff
from nwwatch.results.parquet import dataset_files
from nwwatch.service.cluster import STAGING_DIR
from nwwatch.service.clusterconnect import (
    ClusterUnavailableError,
    ClusterUnreachableError,
    SchedulerLostError,
)
from nwwatch.service.clustertask import _EXIT_ONCE_ENV
from nwwatch.service.replay import replay

pytest.importorskip("distributed")

#: Columns that legitimately differ between two runs of the same frames.
RUN_COLUMNS = ["processed_at", "read_ms", "segment_ms", "measure_ms", "confidence_ms",
               "batch_id"]
N_FRAMES = 24


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, exit-once marker path): 2 worker processes, 1 thread each."""
    from distributed import LocalCluster

    marker = tmp_path_factory.mktemp("hook") / "exit-once"
    old = os.environ.get(_EXIT_ONCE_ENV)
    os.environ[_EXIT_ONCE_ENV] = str(marker)  # inherited by the worker processes
    try:
        lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address="127.0.0.1:0")
    finally:
        if old is None:
            os.environ.pop(_EXIT_ONCE_ENV)
        else:
            os.environ[_EXIT_ONCE_ENV] = old
    with lc:
        yield lc.scheduler_address, marker


@pytest.fixture
def acq(tmp_path):
    """A folder of N_FRAMES distinct single-frame TIFFs, one bad file; and the model."""
    folder = tmp_path / "acq"
    folder.mkdir()
    for i in range(N_FRAMES):
        write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(95 + 2 * i, size=64,
                                                                top=24 + i % 16))
    (folder / "bad.tif").write_bytes(b"not a TIFF at all\n" * 8)
    return folder, model(tmp_path)


def rows(results: Path) -> pd.DataFrame:
    table = ds.dataset(results / "frames", format="parquet").to_table().to_pandas()
    return table.sort_values(["source", "frame"]).reset_index(drop=True)


def assert_exactly_once(results: Path, n: int) -> pd.DataFrame:
    table = rows(results)
    assert len(table) == n
    assert not table.duplicated(["source", "frame"]).any()
    assert not (results / STAGING_DIR).exists()  # nothing staged is left behind
    return table


def test_cluster_rows_equal_local_replay_and_bad_file_is_quarantined(cluster, acq, tmp_path):
    address, _ = cluster
    folder, onnx = acq
    local = replay(folder, tmp_path / "local", model=onnx)
    dask = replay(folder, tmp_path / "dask", model=onnx, dask=address)
    assert (dask.done, dask.quarantined, dask.frames) == (N_FRAMES, 1, N_FRAMES)
    assert (local.done, local.quarantined, local.frames) == (N_FRAMES, 1, N_FRAMES)
    assert dask.cluster.tasks >= 2 and dask.cluster.workers == 2
    # held rows are written like local replay's: one file, in the acquisition's partition
    (only,) = dataset_files(tmp_path / "dask" / "frames")
    assert only.parent.name.startswith("acquisition=acq-")
    a = rows(tmp_path / "local").drop(columns=RUN_COLUMNS)
    b = assert_exactly_once(tmp_path / "dask", N_FRAMES).drop(columns=RUN_COLUMNS)
    pd.testing.assert_frame_equal(a, b)
    q_local = pd.read_parquet(tmp_path / "local" / "quarantine.parquet")
    q_dask = pd.read_parquet(tmp_path / "dask" / "quarantine.parquet")
    assert list(q_dask.path) == list(q_local.path) == [str(folder / "bad.tif")]
    assert list(q_dask.reason) == list(q_local.reason)
    # the labelling queue: the same least confident frames, the same thumbnails (the workers
    # left it to the driver; it was not filled at all)
    from nwwatch.results.label_queue import DEFAULT_CAPACITY, read_queue

    fields = ("source", "frame", "source_sha256", "confidence", "status", "contact_angle_deg",
              "model_sha256", "measurement_version", "thumbnail")
    queues = [read_queue(tmp_path / r) for r in ("local", "dask")]
    assert len(queues[0]) == DEFAULT_CAPACITY < N_FRAMES
    assert [[tuple(getattr(e, k) for k in fields) for e in q] for q in queues[1:]] == [
        [tuple(getattr(e, k) for k in fields) for e in queues[0]]]
    assert [(Path(e.folder) / e.thumbnail).read_bytes() for e in queues[1]] == [
        (Path(e.folder) / e.thumbnail).read_bytes() for e in queues[0]]
    # `nwwatch status`'s rows per second of processing: the driver claims a task's batch
    # once the worker is done, so the claim-to-hold span alone was the driver's few ms and
    # the rate thousands of rows/s; the worker's time counts (2 workers in parallel)
    from nwwatch.service.reporting import open_readonly

    queries = open_readonly(tmp_path / "dask" / "ledger.sqlite")
    n_rows, rows_per_s = queries.throughput()
    queries.close()
    assert n_rows == N_FRAMES
    assert 0 < rows_per_s <= 2 * N_FRAMES / (dask.cluster.worker_seconds / 2), (
        rows_per_s, dask.cluster.worker_seconds)


def test_cluster_qa_pictures_equal_local_replays(cluster, acq, tmp_path):
    """--overlays with --dask: the workers write each frame's pictures into the shared results
    folder (it was refused), the same files and rows as local replay's."""
    address, _ = cluster
    folder, onnx = acq
    runs = {}
    for name, dask in (("local", None), ("dask", address)):
        out = tmp_path / name
        summary = replay(folder, out, model=onnx, dask=dask, overlays=out / "qa",
                         overlay_frames="all", save_labels=True)
        assert (summary.done, summary.frames) == (N_FRAMES, N_FRAMES)
        table = rows(out)
        assert table.overlay_path.notna().all()
        runs[name] = (table.overlay_path.tolist(),
                      {p.relative_to(out).as_posix(): p.read_bytes()
                       for p in sorted((out / "qa").iterdir())})
    assert runs["dask"] == runs["local"]
    assert len(runs["dask"][1]) == 2 * N_FRAMES  # an overlay and a label image per frame


def test_cluster_replay_with_config_takes_the_watch_s_patterns(cluster, acq, tmp_path):
    """--dask --config on a watched folder: the files the [[watch]]'s patterns and
    ignore_patterns leave out are not sent to the workers (they got rows, which the service
    never writes)."""
    from servicekit import write_config

    address, _ = cluster
    folder, onnx = acq
    config = write_config(tmp_path / "c.toml", folder, tmp_path / "service", onnx)
    config.write_text(config.read_text().replace(
        'kind = "insitu"\n', 'kind = "insitu"\npatterns = ["f00*.tif"]\n'
                             'ignore_patterns = [".*", "f003.tif"]\n', 1))
    summary = replay(folder, tmp_path / "res", dask=address, config=config)
    taken = [f"f00{i}.tif" for i in range(10) if i != 3]
    assert (summary.files, summary.done, summary.frames) == (9, 9, 9)
    table = assert_exactly_once(tmp_path / "res", 9)
    assert sorted(Path(s).name for s in table.source) == taken
    assert len(summary.not_in_patterns) == N_FRAMES + 1 - 9  # bad.tif among them


def test_a_cluster_replay_reads_the_tiff_export_of_an_original_it_quarantines(cluster,
                                                                             tmp_path):
    # the exports left out beside originals refused on the driver (at their structural
    # check) or on a worker (when read) are sent once those refusals are committed
    from test_exports import refused_originals_with_exports

    address, _ = cluster
    acq, onnx = tmp_path / "acq", model(tmp_path)
    refused_originals_with_exports(acq)
    summary = replay(acq, tmp_path / "res", model=onnx, dask=address)
    assert (summary.files, summary.done, summary.quarantined) == (5, 3, 2), summary.lines()
    table = assert_exactly_once(tmp_path / "res", 3)
    assert sorted(Path(s).name for s in table.source) == ["b.tif", "c.dm4", "stem 1.2 Mx.tif"]
    assert [p.name for p in summary.exports] == ["c.tif"]
    # every original refused on the driver: nothing to send but the export
    only = tmp_path / "only"
    only.mkdir()
    for name in ("stem 1.2 Mx.emd", "stem 1.2 Mx.tif"):
        shutil.copy(acq / name, only / name)
    summary = replay(only, tmp_path / "res2", model=onnx, dask=address)
    assert (summary.files, summary.done, summary.quarantined) == (2, 1, 1), summary.lines()
    table = assert_exactly_once(tmp_path / "res2", 1)
    assert [Path(s).name for s in table.source] == ["stem 1.2 Mx.tif"]


def test_second_cluster_run_skips_everything_and_force_replaces_rows(cluster, acq, tmp_path):
    address, _ = cluster
    folder, onnx = acq
    replay(folder, tmp_path / "res", model=onnx, dask=address)
    again = replay(folder, tmp_path / "res", model=onnx, dask=address)
    assert (again.skipped, again.still_quarantined, again.done, again.frames,
            again.cluster.tasks) == (N_FRAMES, 1, 0, 0, 0)
    before = assert_exactly_once(tmp_path / "res", N_FRAMES)
    forced = replay(folder, tmp_path / "res", model=onnx, dask=address, force=True)
    assert (forced.done, forced.frames) == (N_FRAMES, N_FRAMES)
    after = assert_exactly_once(tmp_path / "res", N_FRAMES)  # replaced, not duplicated
    assert set(after.batch_id).isdisjoint(before.batch_id)


def test_a_volume_skipped_as_done_after_hashing_gets_no_note_on_a_cluster(cluster, tmp_path):
    """As in local replay: a Z-slice volume replayed as in-situ frames, touched (its bytes
    the same) and replayed on the cluster again, is skipped as done once hashed, without the
    note "replayed as in-situ frames, one row a slice" nor replay.volume_like_input; a
    forced run, which replays it, keeps both."""
    from structlog.testing import capture_logs

    from nwwatch.io import write_volume_tiff

    address, _ = cluster
    onnx = model(tmp_path)
    acq = tmp_path / "acq"
    acq.mkdir()
    vol = acq / "tomo.tif"
    write_volume_tiff(vol, np.stack([paint_insitu(100 + 10 * i, size=64) for i in range(2)]))
    first = replay(acq, tmp_path / "res", model=onnx, dask=address)
    assert (first.done, first.volume_like) == (1, [vol]), first.lines()
    for forced, expected in ((False, []), (True, [vol])):
        st = os.stat(vol)
        os.utime(vol, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # mtime and ctime new
        with capture_logs() as logs:
            s = replay(acq, tmp_path / "res", model=onnx, dask=address, force=forced)
        assert (s.done, s.skipped) == ((1, 0) if forced else (0, 1)), s.lines()
        assert s.volume_like == expected, s.lines()
        assert any("declares its pages" in line for line in s.lines()) == forced, s.lines()
        assert [e["path"] for e in logs if e["event"] == "replay.volume_like_input"] == [
            str(vol)] * forced


def test_force_on_a_copy_leaves_the_rows_with_the_file_that_holds_the_same_bytes(cluster, acq,
                                                                                tmp_path):
    # before: `replay best/ --force` on a frame copied aside from run A moved that frame's
    # row out of run A's acquisition (one row per content, removed by its hash alone); run A
    # still holds the file, and replaying it wrote nothing back
    import shutil

    address, _ = cluster
    folder, onnx = acq
    for results, dask in ((tmp_path / "local", None), (tmp_path / "dask", address)):
        data = tmp_path / f"data_{results.name}"
        (data / "best").mkdir(parents=True)
        shutil.copytree(folder, data / "runA")
        (data / "runA" / "bad.tif").unlink()
        shutil.copyfile(data / "runA" / "f003.tif", data / "best" / "pick.tif")
        replay(data / "runA", results, model=onnx, dask=dask)
        before = rows(results)
        forced = replay(data / "best", results, model=onnx, dask=dask, force=True)
        assert (forced.done, forced.skipped) == (0, 1), results.name
        assert forced.copies == [(data / "best" / "pick.tif", str(data / "runA" / "f003.tif"))]
        assert any("pick.tif (a copy of " in line for line in forced.lines())
        pd.testing.assert_frame_equal(rows(results), before)
        # the whole tree forced: run A's files measured again, the copy still left alone
        forced = replay(data, results, model=onnx, dask=dask, force=True)
        assert (forced.done, len(forced.copies)) == (N_FRAMES, 1), results.name
        assert sorted(rows(results).source) == sorted(before.source)
        # run A's name a folder now (nothing there holds the bytes, nor can be forced): the
        # copy is what holds the content, and its row moves to it
        (data / "runA" / "f003.tif").unlink()
        (data / "runA" / "f003.tif").mkdir()
        forced = replay(data / "best", results, model=onnx, dask=dask, force=True)
        assert (forced.done, forced.copies) == (1, []), results.name
        assert str(data / "best" / "pick.tif") in set(rows(results).source)
        assert len(rows(results)) == N_FRAMES


def test_a_quarantined_file_replaced_by_a_copy_of_done_content_leaves_the_list(cluster, acq,
                                                                             tmp_path):
    # before: local replay dropped bad.tif's entry once it held done content; on Dask it
    # stayed quarantined (status and quarantine.parquet) for good
    import shutil

    from nwwatch.service.status import service_status

    address, _ = cluster
    folder, onnx = acq
    for results, dask in ((tmp_path / "local", None), (tmp_path / "dask", address)):
        copy = tmp_path / f"acq_{results.name}"
        shutil.copytree(folder, copy)
        replay(copy, results, model=onnx, dask=dask)
        shutil.copyfile(copy / "f000.tif", copy / "bad.tif")  # mended: a copy of done content
        replay(copy, results, model=onnx, dask=dask)
        status = service_status(results / "ledger.sqlite", results)
        assert status["quarantined"] == [], results.name
        assert pq.read_table(results / "quarantine.parquet").num_rows == 0


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, acq, tmp_path):
    address, marker = cluster
    folder, onnx = acq
    marker.touch()  # armed: the next task ends its worker process after staging its rows
    summary = replay(folder, tmp_path / "res", model=onnx, dask=address)
    assert not marker.exists()  # a worker did exit
    assert summary.cluster.reused >= 1  # Dask ran that task again; it found its output
    assert (summary.done, summary.frames, summary.failed) == (N_FRAMES, N_FRAMES, 0)
    assert_exactly_once(tmp_path / "res", N_FRAMES)


def _killed_cluster_replay(folder: Path, results: Path, onnx: Path, address: str,
                           point: str) -> None:
    """``nwwatch replay --dask`` in a process of its own, killed (SIGKILL) at crash
    ``point`` (``NWWATCH_CRASH_AT``, e.g. ``after_claim:2``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NWWATCH_CRASH_AT": point}
    proc = subprocess.run(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay", str(folder),
         "--out", str(results), "--model", str(onnx), "--dask", address],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


@pytest.mark.parametrize("point", ["after_claim", "after_write"])
def test_driver_killed_and_restarted_completes_without_duplicates(cluster, acq, tmp_path,
                                                                  point):
    address, _ = cluster
    folder, onnx = acq
    (folder / "b").mkdir()  # two acquisitions: the final flush writes two partition files
    for f in sorted(folder.glob("f*.tif"))[N_FRAMES // 2:]:
        f.rename(folder / "b" / f.name)
    results = tmp_path / "res"
    _killed_cluster_replay(folder, results, onnx, address, f"{point}:2")
    if point == "after_claim":
        # Killed at its 2nd claim: the rows of the 1st batch were held in memory, not
        # written; only work is lost.
        assert dataset_files(results / "frames") == []
        first = None
    else:
        # Killed between the two partition files of the final flush: the 1st committed,
        # the 2nd written but not committed (adopted on restart).
        first = rows(results)
        assert len(first) == N_FRAMES
    summary = replay(folder, results, model=onnx, dask=address)
    table = assert_exactly_once(results, N_FRAMES)
    if first is not None:
        assert summary.skipped == N_FRAMES
        assert set(first.batch_id) == set(table.batch_id)


def test_a_local_replay_after_a_killed_cluster_replay_removes_its_staged_outputs(
        cluster, acq, tmp_path):
    # before: only a later replay on Dask removed RESULTS/.cluster; a local one (and compact)
    # left the killed run's staged Parquet files there for good
    address, _ = cluster
    folder, onnx = acq
    results = tmp_path / "res"
    _killed_cluster_replay(folder, results, onnx, address, "after_claim:2")
    assert list((results / ".cluster").glob("*.parquet"))
    replay(folder, results, model=onnx)
    assert not (results / ".cluster").exists()
    assert_exactly_once(results, N_FRAMES)


def test_readers_see_every_row_once_during_and_after_a_cluster_replay(cluster, acq, tmp_path,
                                                                      monkeypatch):
    """Rows go straight into hive partitions: after every commit of the driver, pandas,
    polars and DuckDB read each committed row once, in its acquisition's partition."""
    import nwwatch.service.replay  # noqa: F401  (the module, not the function)
    from nwwatch.results.parquet import acquisition_partition
    from nwwatch.service.ledger import Ledger

    address, _ = cluster
    folder, onnx = acq
    (folder / "b").mkdir()
    for f in sorted(folder.glob("f*.tif"))[::3]:
        f.rename(folder / "b" / f.name)
    results = tmp_path / "res"
    replay_module = sys.modules["nwwatch.service.replay"]
    monkeypatch.setattr(replay_module, "REPLAY_FLUSH_ROWS", 1)  # a file per task
    seen: list[int] = []
    commit_held = Ledger.commit_held

    def read_after_commit(self, batches):
        commit_held(self, batches)
        top = list((results / "frames").glob("*.parquet"))
        assert top == [], "a file outside the partitions"
        readers = hive_readers(results)
        n = len(readers["pandas"])
        for name, table in readers.items():
            parts = table.source.map(lambda s: acquisition_partition(s).split("=", 1)[1])
            assert (table.acquisition == parts).all(), name
            assert not table.duplicated(HIVE_KEY).any(), name
            assert len(table) == n, name
        seen.append(n)

    monkeypatch.setattr(Ledger, "commit_held", read_after_commit)
    summary = replay(folder, results, model=onnx, dask=address)
    assert (summary.done, summary.frames) == (N_FRAMES, N_FRAMES)
    assert len(seen) >= 3 and seen == sorted(seen) and 0 < seen[0] < N_FRAMES
    # after the final compaction: one file per acquisition, every row once
    assert summary.compaction.acquisitions >= 1
    assert len(dataset_files(results / "frames")) == 2
    want = rows(results)[HIVE_KEY].astype({"frame": "int64"})
    assert len(want) == N_FRAMES
    for name, table in hive_readers(results).items():
        pd.testing.assert_frame_equal(table[HIVE_KEY], want, obj=name)


def test_unreachable_scheduler_is_a_clear_error(acq, tmp_path, monkeypatch):
    import nwwatch.service.clusterconnect as connect_module

    # nothing listens on port 9: the connection is refused at once, and retried until the
    # timeout (5 s by default, twice here)
    monkeypatch.setattr(connect_module, "CONNECT_TIMEOUT_S", 0.5)
    folder, onnx = acq
    with pytest.raises(ClusterUnreachableError, match=r"tcp://127\.0\.0\.1:9"):
        replay(folder, tmp_path / "res", model=onnx, dask="tcp://127.0.0.1:9")
    with pytest.raises(ClusterUnavailableError, match="local:N"):
        replay(folder, tmp_path / "res", model=onnx, dask="local:0")
    from click.testing import CliRunner

    from nwwatch.cli import main

    out = CliRunner().invoke(main, ["replay", str(folder), "--out", str(tmp_path / "res"),
                                    "--model", str(onnx), "--dask", "tcp://127.0.0.1:9"])
    assert out.exit_code == 1
    assert "no Dask scheduler reachable at tcp://127.0.0.1:9" in out.output


def _run_script(script: str, *args: str, own_group: bool = False
                ) -> subprocess.CompletedProcess:
    """``script`` run by a fresh Python with the repository on its path (one thread), its
    output captured; ``own_group``: in its own process group, so that its killpg(0) (a
    terminal's Ctrl-C) reaches it and its workers, not the test run."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          start_new_session=own_group)


def _assert_no_tracebacks(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and " - ERROR - " not in proc.stderr, \
        proc.stderr[-3000:]


def _free_port() -> int:
    """A port nobody listens on (bound to find it, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_an_unreachable_scheduler_leaves_the_results_folder_as_it_was(acq, tmp_path,
                                                                     monkeypatch):
    """Was: the ledger (and quarantine.parquet, for the bad file listed before the first good
    one) were written before the scheduler was tried. The connection comes first now."""
    from click.testing import CliRunner

    import nwwatch.service.clusterconnect as connect_module
    from nwwatch.cli import main

    monkeypatch.setattr(connect_module, "CONNECT_TIMEOUT_S", 0.5)
    folder, onnx = acq
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(ClusterUnreachableError, match="no Dask scheduler reachable"):
        replay(folder, tmp_path / "new" / "res", model=onnx, dask=address)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    (kept / "frames").mkdir(parents=True)
    (kept / "notes.txt").write_text("mine")
    before = _tree(kept)
    out = CliRunner().invoke(main, ["replay", str(folder), "--out", str(kept),
                                    "--model", str(onnx), "--dask", address])
    assert out.exit_code == 1 and "Traceback" not in out.output, out.output
    assert _tree(kept) == before


def test_a_model_the_workers_cannot_use_stops_the_replay_without_charging_files(
        cluster, acq, tmp_path, monkeypatch):
    """A worker whose model file differs from the driver's (or does not load) fails every
    task alike: was split file by file and charged to each file (quarantined after
    max_attempts); now it stops the replay (exit 1) with the worker's reason."""
    import dataclasses

    import nwwatch.service.cluster as cluster_module
    from nwwatch.segment.session import ModelLoadError
    from nwwatch.service.clustertask import TaskSpec

    address, _ = cluster
    folder, onnx = acq
    monkeypatch.setattr(cluster_module, "TaskSpec", lambda **kw: dataclasses.replace(
        TaskSpec(**kw), model_sha256="0" * 64))  # what a worker with another file sees
    results = tmp_path / "res"
    with pytest.raises(ModelLoadError, match=rf"differs on {WORKER} \(sha256"):
        replay(folder, results, model=onnx, dask=address)
    db = sqlite3.connect(f"file:{results / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        charged = db.execute("SELECT source, state FROM items WHERE state != 'pending'"
                             ).fetchall()
        quarantined = [os.path.basename(r[0]) for r in db.execute("SELECT path FROM quarantine")]
    finally:
        db.close()
    assert charged == [] and quarantined == ["bad.tif"]  # bad input stays bad input


def test_without_the_extra_dask_names_it(acq, tmp_path, monkeypatch):
    folder, onnx = acq
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with pytest.raises(ClusterUnavailableError, match=r"nwwatch\[cluster\]"):
        replay(folder, tmp_path / "res", model=onnx, dask="local:2")


def test_a_task_stages_the_rows_of_its_own_files_when_another_has_the_same_content(acq,
                                                                                  tmp_path):
    """Two tasks whose files have the same bytes under other paths (a copied acquisition)
    compute different rows (``source``): each stages its own, never the other's."""
    from nwwatch.filehash import file_sha256
    from nwwatch.measure import MEASUREMENT_VERSION
    from nwwatch.service.clustertask import TaskSpec, run_task

    folder, onnx = acq
    copy = tmp_path / "copy"
    copy.mkdir()
    names = ["f000.tif", "f001.tif"]
    for name in names:
        (copy / name).write_bytes((folder / name).read_bytes())
    staging = tmp_path / "staging"
    staging.mkdir()
    spec = TaskSpec(model=str(onnx), model_sha256=file_sha256(onnx),
                    measurement_version=MEASUREMENT_VERSION, batch_size=4,
                    providers=("cpu",), threads=1, staging=str(staging))
    first = run_task([str(folder / n) for n in names], [1, 1], spec)
    second = run_task([str(copy / n) for n in names], [1, 1], spec)
    for result, where in ((first, folder), (second, copy)):
        staged = ds.dataset(result.staged, format="parquet").to_table().to_pandas()
        assert sorted(staged.source) == [str(where / n) for n in names]
        assert [f.n_rows for f in result.files] == [1, 1]


def test_a_copied_acquisition_keeps_each_row_in_the_partition_of_its_source(cluster, acq,
                                                                            tmp_path):
    """Local replay's rule on a cluster: the same bytes in two folders give one row, whose
    ``source`` names a file that lies in the row's acquisition partition and is the path the
    ledger holds for it."""
    import sqlite3

    from nwwatch.results.parquet import acquisition_partition

    address, _ = cluster
    folder, onnx = acq
    (folder / "bad.tif").unlink()
    archive = tmp_path / "archive"
    for sub in ("a", "b"):
        (archive / sub).mkdir(parents=True)
        for f in sorted(folder.glob("f*.tif"))[:8]:
            (archive / sub / f.name).write_bytes(f.read_bytes())
    summary = replay(archive, tmp_path / "res", model=onnx, dask=address)
    assert (summary.done, summary.skipped, summary.frames) == (8, 8, 8)
    table = assert_exactly_once(tmp_path / "res", 8)
    part = ds.dataset(tmp_path / "res" / "frames", format="parquet",
                      partitioning="hive").to_table().to_pandas()
    for source, acquisition in zip(part.source, part.acquisition, strict=True):
        assert acquisition_partition(source) == f"acquisition={acquisition}", source
    with sqlite3.connect(tmp_path / "res" / "ledger.sqlite") as db:
        ledger_paths = dict(db.execute("SELECT sha256, source FROM items"))
    assert {ledger_paths[s] for s in table.source_sha256} == set(table.source)


@pytest.mark.parametrize(("sig", "to_group", "how", "status"),
                         [(signal.SIGINT, True, "Ctrl-C", 130),
                          (signal.SIGTERM, False, "SIGTERM", 143),
                          (signal.SIGTERM, True, "SIGTERM", 143),
                          (signal.SIGHUP, True, "SIGHUP", 129)])
def test_ctrl_c_stops_a_local_cluster_replay_without_worker_tracebacks(acq, tmp_path, sig,
                                                                       to_group, how, status):
    """Ctrl-C in a terminal reaches every process of the foreground group: the replay's
    LocalCluster workers ignore it, the driver stops them and exits 130 with one line.
    SIGTERM stops it alike, exit 143, whether sent to the driver alone (`kill PID`) or to
    the whole group, workers and nannies included, as `timeout` and batch schedulers'
    time limits send it. A hang-up (SIGHUP to the group: the terminal closed) stops it alike,
    exit 129: the workers and the resource tracker were killed by it, the tracker relaunched
    with a warning and a traceback, and the driver killed with its held rows."""
    folder, onnx = acq
    # Enough frames that the replay is still running when the interrupt comes: with the
    # fixture's few it could finish (exit 3, the bad file) between the first output and the
    # signal.
    for i in range(N_FRAMES, N_FRAMES + 400):
        write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(95 + i % 40, size=64,
                                                                top=24 + i % 16))
    results = tmp_path / "res"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay", str(folder),
         "--out", str(results), "--model", str(onnx), "--dask", "local:2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=hangup_as_a_terminal_gives_it)
    try:
        # once the workers have started: a staged task output, or the driver's first rows
        deadline = time.monotonic() + 90
        while (not list(results.glob(f"{STAGING_DIR}/*.parquet"))
               and not list(results.glob("frames/**/*.parquet")) and proc.poll() is None):
            assert time.monotonic() < deadline, "no task output in 90 s"
            time.sleep(0.02)
        ended_first = proc.poll() is not None  # no staged output seen while it ran
        if not ended_first:
            if to_group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if ended_first:  # exit 3 then: the fixture's bad file
        pytest.skip("the replay ended before the interrupt")
    assert proc.returncode == status, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert "leaked semaphore" not in err, err[-3000:]
    assert f"replay interrupted ({how})" in err
    # no worker, nanny or resource tracker outlives the driver
    deadline = time.monotonic() + 15
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "processes of the replay's group still run"
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_ctrl_c_at_a_terminal_shows_the_cursor_again_and_says_so_on_a_line_of_its_own(
        acq, tmp_path):
    """The progress bar hides the terminal's cursor while it draws; a Ctrl-C (or an error)
    left it hidden in the user's shell, and `replay interrupted` ran on after the bar on its
    line. A real terminal (a pty), Ctrl-C typed while the LocalCluster starts."""
    import pty
    import select

    folder, onnx = acq
    pid, fd = pty.fork()
    if pid == 0:  # the child: the replay, the pty its controlling terminal
        try:
            os.environ.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a shell starts a command
            os.execv(sys.executable, [sys.executable, "-c", "from nwwatch.cli import main; main()",
                                      "replay", str(folder), "--out", str(tmp_path / "res"),
                                      "--model", str(onnx), "--dask", "local:1"])
        finally:
            os._exit(127)
    shown, sent = b"", False
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if not sent and b"replay  [" in shown:  # the bar is drawn: type Ctrl-C
                os.write(fd, b"\x03")
                sent = True
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child has closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert sent, shown[-2000:]
    assert os.waitstatus_to_exitcode(status) == 130, shown[-2000:]
    hide, show = b"\x1b[?25l", b"\x1b[?25h"
    assert shown.rfind(show) > shown.rfind(hide), shown[-2000:]
    lines = shown.replace(b"\r", b"").split(b"\n")
    assert any(line.startswith(b"replay interrupted (Ctrl-C)") for line in lines), \
        shown[-2000:]


SLOW_HEARTBEATS = """
import asyncio, sys, time
from nwwatch.service.clusterconnect import close_connection, connect

if __name__ == "__main__":  # the worker processes import this module too
    connection = connect("local:2")
    scheduler = connection[1].scheduler
    answer = scheduler.handlers["heartbeat_worker"]

    async def slow_answer(*args, **kwargs):
        await asyncio.sleep(2.0)
        return answer(*args, **kwargs)

    scheduler.handlers["heartbeat_worker"] = slow_answer
    time.sleep(1.0)  # each worker now waits for a heartbeat's answer (sent every 0.5 s)
    close_connection(connection)
    print("closed", file=sys.stderr)
"""


def test_a_local_cluster_closed_while_its_workers_wait_for_a_heartbeat_prints_nothing():
    """A worker that closes while its heartbeat waits for the scheduler's answer closes that
    connection itself; distributed then logs the heartbeat's failure at ERROR, traceback and
    all (a loaded machine answers slowly: Ctrl-C or the end of a replay showed it now and
    then). Here every answer is 2 s late, so each worker is caught waiting."""
    proc = _run_script(SLOW_HEARTBEATS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1:] == ["closed"], proc.stderr[-3000:]
    _assert_no_tracebacks(proc)


CTRL_C_IN_A_FETCH = """
import os, signal, sys, threading, time
from nwwatch.service.childsignals import ctrl_c_after_the_call
from nwwatch.service.clusterconnect import close_connection, connect

if __name__ == "__main__":
    connection = client, _ = connect("local:1")
    future = client.submit(sum, [1, 2], pure=False)
    while future.status != "finished":
        time.sleep(0.05)
    client.loop.add_callback(time.sleep, 0.5)  # the fetch cannot start for half a second
    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        try:
            with ctrl_c_after_the_call():
                print("fetched", future.result(), file=sys.stderr)
        finally:
            close_connection(connection)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
"""


def test_a_ctrl_c_while_the_driver_fetches_a_result_acts_after_the_fetch():
    """Interrupted before its fetch has started on distributed's event loop, `Future.result`
    makes that loop log a traceback (its cancel finds no call to cancel), and the fetch left
    running makes the scheduler log `Couldn't gather keys` when the client closes: the driver
    (run_on_cluster) lets the fetch finish, then stops."""
    proc = _run_script(CTRL_C_IN_A_FETCH)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-2:] == ["fetched 3", "interrupted"], \
        proc.stderr[-3000:]
    _assert_no_tracebacks(proc)


def test_final_compaction_that_finds_the_ledger_busy_does_not_fail_the_replay(cluster, acq,
                                                                              tmp_path,
                                                                              monkeypatch):
    """The driver lets go of its ledger before compacting: an `nwwatch compact` (or another
    replay) starting in that instant holds it. Every row is committed by then, so the replay
    still succeeds; it says the folder was left uncompacted and how to compact it."""
    import nwwatch.service.compaction as compaction
    from nwwatch.service.lock import LedgerLock

    address, _ = cluster
    folder, onnx = acq
    results = tmp_path / "res"
    real_compact = compaction.compact

    def compact_while_another_holds_the_ledger(results_dir, ledger_path=None, **kw):
        other = LedgerLock(Path(ledger_path or Path(results_dir) / "ledger.sqlite"))
        try:
            return real_compact(results_dir, ledger_path, **kw)
        finally:
            other.close()

    monkeypatch.setattr(compaction, "compact", compact_while_another_holds_the_ledger)
    summary = replay(folder, results, model=onnx, dask=address)
    assert (summary.done, summary.frames, summary.quarantined) == (N_FRAMES, N_FRAMES, 1)
    assert summary.compaction is None
    assert any("not compacted" in line and f"nwwatch compact {results}" in line
               for line in summary.lines()), summary.lines()
    assert_exactly_once(results, N_FRAMES)


@pytest.mark.parametrize("extra", [["--dask", "local:0"], ["--dask", "local:two"],
                                   ["--dask", "local:\u00b2"],  # isdigit, not int: traceback
                                   ["--dask", "sched"], ["--dask", "tcp://sched:port"],
                                   ["--dask", "tcp://127.0.0.1:87860"],
                                   ["--dask", "http://127.0.0.1:8787/status"],
                                   ["--dask", "ucx://127.0.0.1:8786"],
                                   ["--dask", "inproc://x"]])  # exit 1 "within 5 s" at once
def test_dask_with_options_it_cannot_take_is_a_wrong_command_line(acq, tmp_path, extra):
    """Exit 2 (wrong command line), as for --overlay-frames without --overlays; exit 1 is for a
    replay that could not run (no scheduler answering, no Dask installed). Nothing written."""
    from click.testing import CliRunner

    from nwwatch.cli import main

    folder, onnx = acq
    out = CliRunner().invoke(main, ["replay", str(folder), "--out", str(tmp_path / "res"),
                                    "--model", str(onnx), *extra])
    assert out.exit_code == 2, out.output
    assert "--dask" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "res").exists()
    # (Dask's own text listed its registry: ucx and inproc, which are refused too)
    assert "ucx'" not in out.output and "known schemes" not in out.output


def test_a_script_s_in_process_local_cluster_is_reachable_from_python(acq, tmp_path):
    """replay(dask=cluster.scheduler_address) of a LocalCluster(processes=False), as
    docs/cluster.md shows: an inproc:// address, which only the command line refuses."""
    from distributed import LocalCluster

    from nwwatch.io.metadata import read_zoneless_in

    folder, onnx = acq
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                          dashboard_address=None) as local:
            assert local.scheduler_address.startswith("inproc://")
            summary = replay(folder, tmp_path / "res", model=onnx,
                             dask=local.scheduler_address)
    finally:
        # its worker, in this process, set the zone of times without one to the driver's
        # (this machine's, by name): the tests after it set TZ themselves
        read_zoneless_in(None)
    assert summary.done == N_FRAMES
    assert_exactly_once(tmp_path / "res", N_FRAMES)


UNGUARDED_REPLAY = """
import sys
from nwwatch.service import replay

replay(sys.argv[1], sys.argv[2], model=sys.argv[3], dask="local:1")  # no __main__ guard
"""


@pytest.mark.timeout(120)
def test_replay_on_a_local_cluster_from_a_script_without_a_main_guard_says_what_to_do(
        acq, tmp_path):
    """`replay(..., dask="local:N")` at a script's top level: each worker process, importing
    the script again as it started, ran a replay of its own, and the script ended with
    `LedgerBusyError` tracebacks from the workers and `RuntimeError: Nanny failed to
    start.`. Now the workers say what the script needs, and the driver's error names the
    LocalCluster."""
    folder, onnx = acq
    script = tmp_path / "backfill.py"
    script.write_text(UNGUARDED_REPLAY)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(folder), str(tmp_path / "res"),
                           str(onnx)], env=env, capture_output=True, text=True, timeout=100,
                          start_new_session=True)
    assert proc.returncode == 1
    assert 'call it under `if __name__ == "__main__":` in that script' in proc.stderr, \
        proc.stderr[-3000:]
    assert "LedgerBusyError" not in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith(
        "nwwatch.service.clusterconnect.ClusterStartError: --dask local:1: the "
        "LocalCluster did not start"), proc.stderr[-1000:]
    # a failed start leaves no results folder behind (it left the ledger and its lock)
    assert not (tmp_path / "res").exists()


def test_local_n_is_read_in_any_case():
    """`--dask LOCAL:2` was taken for a scheduler host named LOCAL: 5 s, then 'no Dask
    scheduler reachable at LOCAL:2'."""
    from nwwatch.service.clusterconnect import ClusterRequestError, local_workers

    addresses = ("local:2", "LOCAL:2", "Local:3", "tcp://localhost:8786", "localhost:8786")
    assert [local_workers(a) for a in addresses] == [2, 2, 3, None, None]
    with pytest.raises(ClusterRequestError, match="expected local:N"):
        local_workers("LOCAL:0")
    # a scheduler's port after local: started thousands of workers, for ever and deaf to
    # SIGTERM
    from nwwatch.service.clusterconnect import local_workers_max

    assert local_workers(f"local:{local_workers_max()}") == local_workers_max()
    with pytest.raises(ClusterRequestError, match="8786 local workers is more than .* "
                                                  "a scheduler's address is tcp://HOST:PORT"):
        local_workers("local:8786")


def test_a_replay_with_nothing_left_to_do_starts_no_cluster(cluster, acq, tmp_path,
                                                            monkeypatch):
    """Resuming a finished backfill skips every file from the ledger: no LocalCluster is
    started (seconds and N processes) nor a scheduler contacted; staged leftovers go."""
    import nwwatch.service.clusterconnect as connect_module

    address, _ = cluster
    folder, onnx = acq
    results = tmp_path / "res"
    replay(folder, results, model=onnx, dask=address)
    (results / STAGING_DIR).mkdir()
    (results / STAGING_DIR / "left-by-a-killed-driver.parquet").write_bytes(b"x")

    def no_connect(address):
        raise AssertionError(f"connected to {address} with nothing to do")

    monkeypatch.setattr(connect_module, "connect", no_connect)
    # LOCAL:2 (any case) is local:2, not a scheduler host named LOCAL that connect() awaits
    again = replay(folder, results, model=onnx, dask="LOCAL:2")
    assert (again.skipped, again.still_quarantined, again.done, again.cluster.tasks) == (
        N_FRAMES, 1, 0, 0)
    assert not (results / STAGING_DIR).exists()


def test_rows_carry_the_drivers_clock_so_a_reverted_file_is_current_despite_worker_skew(
        cluster, tmp_path):
    """A file put back v1 -> v2 -> v1 is recorded in reverted.parquet at the driver's time,
    which the newest-version rule compares with the rows' ``processed_at``: stamped on a
    worker whose clock runs an hour ahead, v2 stayed the file's newest version."""
    from distributed import Client

    from nwwatch.results.versions import newest_versions, read_reverted

    address, _ = cluster

    def skew(hours: float) -> None:  # on each worker: its clock `hours` ahead
        import datetime as dt

        from nwwatch.service import frames

        class Skewed(dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return dt.datetime.now(tz) + dt.timedelta(hours=hours)

        frames.datetime = Skewed if hours else dt.datetime

    folder, onnx, out = tmp_path / "acq", model(tmp_path), tmp_path / "out"
    folder.mkdir()
    versions = []
    for angle in (100, 130):
        write_frame_tiff(folder / "f.tif", paint_insitu(angle, size=64, top=30))
        versions.append((folder / "f.tif").read_bytes())
    with Client(address) as client:
        client.run(skew, 1.0)
        try:
            for content in (*versions, versions[0]):  # v1, v2, v1 again
                (folder / "f.tif").write_bytes(content)
                replay(folder, out, model=onnx, dask=address)
                assert (rows(out).processed_at <= pd.Timestamp.now(tz="UTC")).all()
        finally:
            client.run(skew, 0)
    current = newest_versions(ds.dataset(out / "frames").to_table(), read_reverted(out))
    assert current.column("source_sha256").to_pylist() == [hashlib.sha256(versions[0]).hexdigest()]


def test_a_port_that_accepts_but_never_answers_is_named_with_a_reason(monkeypatch):
    """Was `no Dask scheduler reachable at … within 0.5 s (TimeoutError: )`: the timeout's
    empty message. (A dashboard port, a firewall that accepts and says nothing.)"""
    import socket

    import nwwatch.service.clusterconnect as connect_module

    monkeypatch.setattr(connect_module, "CONNECT_TIMEOUT_S", 0.5)
    with socket.socket() as listener:  # connections complete, but nothing is ever said
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(ClusterUnreachableError) as err:
            connect_module.connect(address)
    message = str(err.value)
    assert message.startswith(f"no Dask scheduler reachable at {address} within 0.5 s (")
    assert message.endswith(": no connection and handshake in time)"), message


CTRL_C_AT_START = """
import os, signal, sys, time
import distributed
from nwwatch.service.clusterconnect import close_connection, connect


class CtrlCOnceStarted(distributed.LocalCluster):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # its workers run now
        os.killpg(0, signal.SIGINT)  # Ctrl-C in the terminal while connect() still starts
        time.sleep(0.5)


distributed.LocalCluster = CtrlCOnceStarted

if __name__ == "__main__":  # the worker processes import this module too
    try:
        connection = connect("local:2")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    close_connection(connection)
    print("not interrupted", file=sys.stderr)
"""


def test_a_ctrl_c_while_the_local_cluster_starts_acts_once_it_has_started():
    """Was lost: SIGINT was ignored while the workers were spawned, so that they inherited
    that, and a replay interrupted in those seconds ran to its end. Now SIGINT is blocked
    while they are spawned (the mask is inherited; the driver's handler holds it)."""
    proc = _run_script(CTRL_C_AT_START, own_group=True)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1:] == ["interrupted"], proc.stderr[-3000:]
    _assert_no_tracebacks(proc)


CTRL_C_AFTER_A_RESTART = """
import os, signal, sys, time
from nwwatch.service.clusterconnect import close_connection, connect

if __name__ == "__main__":
    connection = client, _ = connect("local:1")
    client.restart()  # as the nanny does for a worker that died or used too much memory
    try:
        os.killpg(0, signal.SIGINT)  # Ctrl-C in the terminal
        time.sleep(5)
    except KeyboardInterrupt:
        time.sleep(1)  # a worker's traceback would be printed meanwhile
        print("interrupted", file=sys.stderr)
    finally:
        close_connection(connection)
"""


def test_a_worker_restarted_by_its_nanny_ignores_ctrl_c_too():
    """Was: a worker its nanny restarted during the replay (one that died, say) started
    with SIGINT as usual, and a Ctrl-C printed its KeyboardInterrupt and CancelledError
    tracebacks. Restarted workers inherit the blocked SIGINT of the cluster's loop thread."""
    proc = _run_script(CTRL_C_AFTER_A_RESTART, own_group=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "interrupted" in proc.stderr
    _assert_no_tracebacks(proc)


def test_tomograms_on_the_cluster_equal_local_replay_with_their_masks(cluster, tmp_path):
    """--kind tomogram --dask (it was refused): a task per volume, each mask staged by its
    worker and moved into RESULTS/masks once the driver has claimed its batch; rows and masks
    equal local replay's, nothing staged left, and --force replaces the masks."""

    from nwwatch.io import read_volume

    address, _ = cluster
    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    for k in range(3):
        write_small_tomogram(acq / f"t{k}.tif", width=6 + 5 * k)
    (acq / "bad.tif").write_bytes(b"not a TIFF at all\n" * 8)

    def volumes(out: Path) -> pd.DataFrame:
        table = ds.dataset(out / "volumes", format="parquet").to_table().to_pandas()
        return table.sort_values("source").reset_index(drop=True)

    runs = {}
    for name, dask in (("local", None), ("dask", address)):
        summary = replay(acq, tmp_path / name, kind="tomogram", model=tomo_model, dask=dask)
        assert (summary.done, summary.quarantined, summary.frames) == (3, 1, 3)
        runs[name] = volumes(tmp_path / name)
    assert runs["dask"].batch_id.nunique() == 3  # a task, and so a batch, per volume
    masks = {name: [read_volume(tmp_path / name / m).data for m in table.mask_path]
             for name, table in runs.items()}
    for a, b in zip(masks["local"], masks["dask"], strict=True):
        np.testing.assert_array_equal(a, b)
    for table in runs.values():  # named as local replay names them: stem, content, batch
        named = zip(table.mask_path, table.source, table.source_sha256, table.batch_id,
                    strict=True)
        assert all(m == f"masks/{Path(src).stem}-{sha[:12]}-{b}.tif" for m, src, sha, b in named)
    volatile = RUN_COLUMNS + ["mask_path"]
    pd.testing.assert_frame_equal(runs["local"].drop(columns=volatile),
                                  runs["dask"].drop(columns=volatile))
    dask_out = tmp_path / "dask"
    assert not (dask_out / STAGING_DIR).exists()
    assert sorted(p.name for p in (dask_out / "masks").iterdir()) == sorted(
        Path(m).name for m in runs["dask"].mask_path)
    # --force: new masks under the new batches, the old ones gone with their rows
    forced = replay(acq, dask_out, kind="tomogram", model=tomo_model, dask=address, force=True)
    assert (forced.done, forced.frames) == (3, 3)
    again = volumes(dask_out)
    assert len(again) == 3 and set(again.batch_id).isdisjoint(runs["dask"].batch_id)
    assert sorted(p.name for p in (dask_out / "masks").iterdir()) == sorted(
        Path(m).name for m in again.mask_path)


def test_a_local_cluster_worker_logs_json_lines_as_every_command_does(tmp_path):
    """A ``local:N`` worker shares the replay's stdout and stderr: its ``bad_input`` (and a
    suspect volume's ``volume_suspect``) came in structlog's console format, `2026-…
    [warning ] bad_input …`, on stdout, which holds only the summary."""
    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    write_small_tomogram(acq / "t.tif")
    tifffile.imwrite(acq / "slice.tif", np.arange(64, dtype=np.uint8).reshape(8, 8))
    import nwwatch

    # the nwwatch under test, wherever it was imported from
    env = {**os.environ, "PYTHONPATH": str(Path(nwwatch.__file__).parents[1]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay", str(acq),
         "--out", str(tmp_path / "res"), "--kind", "tomogram", "--model", str(tomo_model),
         "--dask", "local:1"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-3000:]
    # stdout holds only the summary, stderr the JSON lines
    assert proc.stdout.splitlines()[0].startswith("2 files: 1 done"), proc.stdout
    assert all(re.match(r"\d+ (files?|rows?): |replay ", line)
               for line in proc.stdout.splitlines()), proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    console = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[", line)]
    assert console == [], proc.stderr[-3000:]
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert "bad_input" in events, proc.stderr[-3000:]


def test_a_driver_that_stops_after_moving_some_masks_makes_them_again(tmp_path):
    """A staged table whose masks were moved away (the driver stopped after the move, before
    deleting the table) is not reused: its rows would name masks that are gone."""
    import pyarrow as pa

    from nwwatch.service.clustertask import _side_files_present

    side = tmp_path / "x.side"
    (side / "masks").mkdir(parents=True)
    (side / "masks" / "a.tif").write_bytes(b"mask")
    table = pa.table({"mask_path": ["masks/a.tif", "masks/b.tif"]})
    assert not _side_files_present(table, side)
    (side / "masks" / "b.tif").write_bytes(b"mask")
    assert _side_files_present(table, side)
    assert _side_files_present(pa.table({"contact_angle_deg": [1.0]}), side)  # frames


SCHEDULER_LOST = """
import subprocess, sys, time
from nwwatch.service.clusterconnect import close_connection, connect

if __name__ == "__main__":
    port = sys.argv[1]
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                  "--port", port, "--dashboard-address", ":0"],
                                 stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):  # until it answers
            try:
                connection = client, _ = connect(f"tcp://127.0.0.1:{port}")
                break
            except Exception:
                time.sleep(0.1)
        future = client.submit(time.sleep, 60, pure=False)
        time.sleep(0.5)
    finally:
        scheduler.kill()
        scheduler.wait()
    while future.status == "pending":
        time.sleep(0.05)
    time.sleep(1)  # the client's reconnection attempts meanwhile
    close_connection(connection)
    print("lost", future.status, file=sys.stderr)
"""


def test_a_lost_scheduler_logs_no_cancelled_tracebacks_from_the_client():
    """Was: distributed's client logged its cancelled reconnection tasks at ERROR, with a
    CancelledError traceback each, before the replay's own `lost the Dask scheduler`."""
    proc = _run_script(SCHEDULER_LOST, str(_free_port()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1:] == ["lost cancelled"], proc.stderr[-3000:]
    assert "CancelledError" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.timeout(120)  # before: the replay waited for its worker without end
def test_a_scheduler_without_workers_says_the_replay_waits_for_one(acq, tmp_path,
                                                                    monkeypatch):
    """Was silent: the dashboard line and a bar at 0 until a worker joined (a Slurm job
    still queued, a worker that died with the scheduler). The replay says why it waits,
    then goes on once one joins."""
    import click
    from distributed import LocalCluster

    folder, onnx = acq
    said = []
    echo = click.echo

    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0") as empty:
        def watch(message=None, *args, **kwargs):
            said.append(str(message).removeprefix("\r\033[K"))  # a line above the bar
            if "no Dask worker" in str(message):
                empty.scale(1)  # one joins once the replay has said so
            echo(message, *args, **kwargs)

        monkeypatch.setattr(click, "echo", watch)
        s = replay(folder, tmp_path / "res", model=onnx, dask=empty.scheduler_address,
                   progress=True)
    assert [m for m in said if "no Dask worker" in m] == [
        f"no Dask worker at {empty.scheduler_address} yet: the tasks wait for one to join "
        "(Ctrl-C stops the replay)"]
    assert s.done == N_FRAMES
    assert_exactly_once(tmp_path / "res", N_FRAMES)


def test_the_dashboard_line_stands_above_the_progress_bar_not_after_it(cluster, acq, tmp_path,
                                                                      monkeypatch):
    """At a terminal the dashboard link ran on after the bar's first drawing, on its line:
    `replay  [----]  0/24  0 rows, 0.0 rows/sDask dashboard: http://…/status`."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    address, _ = cluster
    folder, onnx = acq
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    s = replay(folder, tmp_path / "res", model=onnx, dask=address, progress=True)
    assert s.cluster.dashboard
    lines = [part.replace("\033[K", "") for part in re.split(r"[\r\n]", term.getvalue())]
    assert f"Dask dashboard: {s.cluster.dashboard}" in lines, term.getvalue()[:500]
    # and the bar drawn again below it as it was (it stayed away until a task was done)
    at = lines.index(f"Dask dashboard: {s.cluster.dashboard}")
    before = [line.rstrip() for line in lines[:at] if line.strip()]
    after = [line.rstrip() for line in lines[at + 1:] if line.strip()]
    assert after[0] == before[-1], term.getvalue()[:800]


@pytest.mark.timeout(120)
def test_a_replay_waiting_for_a_worker_says_so_without_a_terminal(acq, tmp_path):
    """stderr not a terminal (a batch job's log, a pipe): the replay said nothing while it
    waited for a worker, the one case where a line is needed. Now its warning line names
    the address; the replay goes on once a worker joins."""
    import threading

    from distributed import LocalCluster

    folder, onnx = acq
    lines: list[str] = []
    said = threading.Event()

    def read(stream) -> None:
        for line in stream:
            lines.append(line)
            if "dask_no_workers" in line:
                said.set()

    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0") as empty:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay",
             str(folder), "--out", str(tmp_path / "res"), "--model", str(onnx),
             "--dask", empty.scheduler_address],
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
        reader.start()
        waited = said.wait(30)
        empty.scale(1)  # let it finish either way
        out, _ = proc.communicate(timeout=90)
        reader.join(5)
    assert waited, "".join(lines)[-2000:]
    (line,) = [json.loads(x) for x in lines if "dask_no_workers" in x]
    assert line["level"] == "warning" and line["address"] == empty.scheduler_address
    assert line["message"].startswith(f"no Dask worker at {empty.scheduler_address} yet")
    assert proc.returncode == 3, out  # bad.tif quarantined; every frame written
    assert_exactly_once(tmp_path / "res", N_FRAMES)


def test_the_client_log_filter_is_on_only_while_a_connection_is_open(monkeypatch):
    """The filter that drops distributed.client's CancelledError records (a lost scheduler)
    stays installed while any connection of connect() is open, and no longer: a refused
    connection leaves none behind, and other records of that logger always pass."""
    import asyncio
    import logging

    import distributed

    from nwwatch.service import clusterconnect

    class Client:
        def __init__(self, address, timeout):
            self.address = address

        def close(self):
            pass

    monkeypatch.setattr(clusterconnect, "_probe", lambda address: None)
    monkeypatch.setattr(distributed, "Client", Client)
    log = logging.getLogger("distributed.client")

    def quiet() -> bool:
        return any(isinstance(f, clusterconnect._NoCancelledTracebacks) for f in log.filters)

    def passes(exc: BaseException | None) -> bool:
        info = None if exc is None else (type(exc), exc, None)
        return bool(log.filter(log.makeRecord(log.name, logging.ERROR, __file__, 1, "m", (),
                                              info)))

    first = clusterconnect.connect("tcp://127.0.0.1:1")
    second = clusterconnect.connect("tcp://127.0.0.1:2")
    assert quiet()
    assert not passes(asyncio.CancelledError())
    assert passes(OSError("other")) and passes(None)
    clusterconnect.close_connection(first)
    assert quiet()  # the second is still open
    clusterconnect.close_connection(second)
    assert not quiet() and passes(asyncio.CancelledError())

    def refused(address, timeout):
        raise OSError("refused")

    monkeypatch.setattr(distributed, "Client", refused)
    with pytest.raises(ClusterUnreachableError):
        clusterconnect.connect("tcp://127.0.0.1:3")
    assert not quiet()


@pytest.mark.timeout(120)
def test_a_scheduler_lost_while_the_archive_is_listed_is_named_not_a_traceback(
        acq, tmp_path, monkeypatch):
    """Was a CommClosedError, RuntimeError("ConnectionPool is closed") or AttributeError
    traceback: a scheduler that died between the connection and the driver's first calls
    to it (while a large archive is listed) met those calls, not a cancelled future."""
    import importlib
    import socket

    replay_module = importlib.import_module("nwwatch.service.replay")
    folder, onnx = acq
    port = _free_port()
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                  "--port", str(port), "--dashboard-address", ":0"],
                                 stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        listing = replay_module._inputs_of

        def scheduler_dies_meanwhile(*args, **kwargs):
            scheduler.kill()
            scheduler.wait()
            return listing(*args, **kwargs)

        monkeypatch.setattr(replay_module, "_inputs_of", scheduler_dies_meanwhile)
        with pytest.raises(SchedulerLostError,
                           match=f"^lost the Dask scheduler at tcp://127.0.0.1:{port}$"):
            replay(folder, tmp_path / "res", model=onnx, dask=f"tcp://127.0.0.1:{port}")
    finally:
        scheduler.kill()
        scheduler.wait()


def test_the_driver_does_not_queue_a_frame_whose_file_changed_after_the_worker_read_it(
        acq, tmp_path):
    """The driver reads a queued frame's image itself (workers keep theirs); a file rewritten
    since the worker processed it holds another frame, so it is not queued with that image."""
    import pyarrow as pa

    from nwwatch.service.cluster import _queue_candidates
    from nwwatch.service.clustertask import FileResult
    from nwwatch.service.ledgerdb import FileVersion

    folder, _ = acq
    paths = [folder / "f000.tif", folder / "f001.tif"]
    files = [FileResult(str(p), "s" * 64, FileVersion.of(p.stat())) for p in paths]
    table = pa.Table.from_pylist([
        {"source": str(p), "frame": 0, "source_sha256": f"{k}" * 64, "confidence": 0.5,
         "status": "ok", "contact_angle_deg": 100.0, "model_sha256": "m" * 64,
         "measurement_version": "v", "other": 1} for k, p in enumerate(paths)])
    write_frame_tiff(paths[1], paint_insitu(150, size=64))  # rewritten after the worker
    candidates, sources = _queue_candidates(table, files)
    kept, changed = (c.image() for c in candidates)
    assert kept is not None and kept.shape == (64, 64) and changed is None
    for source in sources:
        source.close()


def test_a_driver_killed_while_committing_a_finished_task_charges_its_file_nothing(
        cluster, tmp_path):
    """The driver claims a task's batch once the worker is done with its files: a driver
    killed between that claim and the hold is not the files' doing. It was charged as a
    crash of the file: three unlucky driver kills quarantined a good tomogram as
    `Interrupted`."""


    address, _ = cluster
    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    write_small_tomogram(acq / "t.tif")
    results = tmp_path / "res"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NWWATCH_CRASH_AT": "after_claim:1"}
    proc = subprocess.run(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "replay", str(acq),
         "--out", str(results), "--kind", "tomogram", "--model", str(tomo_model),
         "--dask", address], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    summary = replay(acq, results, kind="tomogram", model=tomo_model, dask=address)
    assert (summary.done, summary.quarantined, summary.frames) == (1, 0, 1)
    with sqlite3.connect(results / "ledger.sqlite") as db:
        assert db.execute("SELECT state, attempts FROM items").fetchall() == [("done", 0)]
    (mask,) = (results / "masks").iterdir()  # the killed run's mask was removed
    assert ds.dataset(results / "volumes", format="parquet").to_table().column(
        "mask_path").to_pylist() == [f"masks/{mask.name}"]


def _die_on_importing(name: str) -> None:
    """In a worker process: end the process the next time ``name`` is imported."""
    import importlib.abc

    class Die(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname == name:
                os._exit(1)
            return None

    sys.modules.pop(name, None)
    sys.meta_path.insert(0, Die())


def test_a_worker_lost_while_the_replay_checks_the_workers_is_not_an_error(cluster, acq,
                                                                            tmp_path):
    """A worker that dies while the replay asks every worker to import nwwatch (a Slurm job
    at its walltime, a worker killed): it was a CommClosedError traceback and exit 1; its
    tasks go to the other workers like any lost worker's."""
    from distributed import Client

    address, _ = cluster
    folder, onnx = acq
    with Client(address, timeout=30) as client:
        victim = sorted(client.scheduler_info()["workers"])[0]
        client.run(_die_on_importing, "nwwatch.service.clustertask", workers=[victim])
    summary = replay(folder, tmp_path / "res", model=onnx, dask=address)
    assert (summary.done, summary.quarantined) == (N_FRAMES, 1)
    assert_exactly_once(tmp_path / "res", N_FRAMES)
    with Client(address, timeout=30) as client:  # its nanny's new one, for the next tests
        client.wait_for_workers(2, timeout=60)


def test_a_copy_of_a_tomogram_a_worker_refused_is_listed_as_local_replay_lists_it(cluster,
                                                                                  tmp_path):
    """Two copies of a file that only the worker finds bad (a 2-D image, not a volume):
    local replay lists both in quarantine.parquet; the cluster listed the first and counted
    the copy as "skipped (already done)", on every later run too. The driver's log names the
    refused file as local replay's does (only the worker's log named it)."""
    from structlog.testing import capture_logs

    from nwwatch.io import write_frame_tiff

    address, _ = cluster
    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    vol = write_small_tomogram(acq / "t.tif")
    write_frame_tiff(acq / "flat.tif", vol[3])
    (acq / "flat-copy.tif").write_bytes((acq / "flat.tif").read_bytes())
    listed, logged = {}, {}
    for name, dask in (("local", None), ("dask", address)):
        with capture_logs() as logs:
            summary = replay(acq, tmp_path / name, kind="tomogram", model=tomo_model,
                             dask=dask)
        assert (summary.done, summary.skipped, summary.quarantined) == (1, 0, 2), name
        q = pd.read_parquet(tmp_path / name / "quarantine.parquet")
        listed[name] = sorted(zip(q.path, q.error_type, strict=True))
        logged[name] = [(e["source"], e["error_type"]) for e in logs if e["event"] == "bad_input"]
    assert listed["dask"] == listed["local"]
    # one of the copies (on the cluster the one committed first), with local replay's error
    for name in logged:
        assert [(Path(src).parent, e) for src, e in logged[name]] == [
            (acq, "UnsupportedLayoutError")], name
    assert [Path(p).name for p, _ in listed["dask"]] == ["flat-copy.tif", "flat.tif"]


def _staging_refused_for(marker: str, delay_s: float) -> None:
    """On a worker: staging the rows of a task whose files' paths hold ``marker`` is refused
    (``delay_s`` later), as in a results folder that worker cannot write."""
    import nwwatch.results.parquet as parquet

    real = parquet.write_table_atomic

    def refuse(table, path):
        if any(marker in s for s in table.column("source").to_pylist()):
            time.sleep(delay_s)
            raise PermissionError(13, "Permission denied", str(path))
        return real(table, path)

    parquet._real_write_table_atomic = real
    parquet.write_table_atomic = refuse


def _staging_allowed_again() -> None:
    import nwwatch.results.parquet as parquet

    parquet.write_table_atomic = getattr(parquet, "_real_write_table_atomic",
                                         parquet.write_table_atomic)


def test_rows_held_when_a_cluster_error_stops_the_replay_are_written(cluster, acq, tmp_path):
    """A worker that cannot write the results folder stops the replay (no file's fault):
    the rows the driver already held, of tasks that had finished, were dropped with it and
    computed again by the next run, although docs/cluster.md says they are written."""
    from distributed import Client

    from nwwatch.service.clusterconnect import StagingUnwritableError

    address, _ = cluster
    folder, onnx = acq
    (folder / "z-unshared").mkdir()
    write_frame_tiff(folder / "z-unshared" / "late.tif", paint_insitu(140, size=64))
    results = tmp_path / "res"
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)  # each one refuses
        client.run(_staging_refused_for, "z-unshared", 3.0)
        try:
            with pytest.raises(StagingUnwritableError, match="cannot write here"):
                replay(folder, results, model=onnx, dask=address)
        finally:
            client.run(_staging_allowed_again)
    written = rows(results)  # the tasks done before the refused one, each row once
    assert len(written) >= 1 and not written.duplicated(["source", "frame"]).any()
    summary = replay(folder, results, model=onnx, dask=address)
    assert summary.skipped == len(written)
    assert_exactly_once(results, N_FRAMES + 1)


def _staging_elsewhere_for(marker: str) -> None:
    """On a worker: the staged rows of a task whose files' paths hold ``marker`` end up in a
    folder of the worker's own (a node-local path of the same name), not the driver's: moved
    aside once the task is done. The task is looked up by name where it runs."""
    import nwwatch.service.clustertask as clustertask

    real = getattr(clustertask, "_real_run_task", clustertask.run_task)

    def elsewhere(paths, pages, spec):
        res = real(paths, pages, spec)
        if any(marker in p for p in paths):
            os.replace(res.staged, res.staged + ".node-local")
        return res

    clustertask._real_run_task = real
    clustertask.run_task = elsewhere


def _run_task_restored() -> None:
    import nwwatch.service.clustertask as clustertask

    clustertask.run_task = getattr(clustertask, "_real_run_task", clustertask.run_task)


def _files_gone_for(marker: str) -> None:
    """On a worker: the files of a task whose paths hold ``marker`` are deleted just before
    the task runs (deleted during a long backfill)."""
    import nwwatch.service.clustertask as clustertask

    real = getattr(clustertask, "_real_run_task", clustertask.run_task)

    def gone(paths, pages, spec):
        if any(marker in p for p in paths):
            for p in paths:
                Path(p).unlink(missing_ok=True)
        return real(paths, pages, spec)

    clustertask._real_run_task = real
    clustertask.run_task = gone


def test_tasks_whose_files_all_vanished_are_counted_not_taken_for_an_unshared_folder(
        cluster, tmp_path):
    """Tasks with no file left to read share one empty staged file, which the driver removes
    after the first: the check for a folder the workers do not share took the second for one
    and stopped the replay."""
    from distributed import Client

    address, _ = cluster
    folder = tmp_path / "acq" / "gone"
    folder.mkdir(parents=True)
    for i in range(40):
        write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(95 + i, size=64))
    onnx = model(tmp_path)
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        client.run(_files_gone_for, "gone")
        try:
            summary = replay(tmp_path / "acq", tmp_path / "res", model=onnx, dask=address)
        finally:
            client.run(_run_task_restored)
    assert summary.vanished == 40 and summary.cluster.tasks >= 2


def test_a_results_folder_a_worker_sees_but_does_not_share_is_named_as_such(cluster, acq,
                                                                            tmp_path):
    """A worker whose results path is a writable folder of its own (a node-local /scratch):
    the driver found no staged file and said only its path (a FileNotFoundError). Then it
    said `a Dask worker wrote its rows to …`: not which of many nodes."""
    from distributed import Client

    from nwwatch.service.clusterconnect import StagingUnwritableError

    address, _ = cluster
    folder, onnx = acq
    (folder / "z-node").mkdir()
    write_frame_tiff(folder / "z-node" / "late.tif", paint_insitu(140, size=64))
    results = tmp_path / "res"
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        client.run(_staging_elsewhere_for, "z-node")
        try:
            with pytest.raises(StagingUnwritableError,
                               match=rf"\.cluster: {WORKER} wrote its rows to .*, "
                                     r"which this results folder does not hold: the results "
                                     r"folder must be shared with every worker") as caught:
                replay(folder, results, model=onnx, dask=address)
        finally:
            client.run(_run_task_restored)
        assert_names_a_worker(client, str(caught.value))
    assert_ledger_closed(results)
    for leftover in (results / ".cluster").glob("*.node-local"):
        leftover.unlink()
    summary = replay(folder, results, model=onnx, dask=address)
    assert summary.failed == 0  # no file was charged for the folder
    assert_exactly_once(results, N_FRAMES + 1)


def test_a_result_that_cannot_be_fetched_charges_its_file_nothing(cluster, acq, tmp_path,
                                                                  monkeypatch):
    """The scheduler lost while the driver fetched a finished task's result (a
    CommClosedError from the fetch, the task itself fine): its file was charged an attempt,
    `failed on the cluster: CommClosedError(...)`, as if the task had failed. The replay
    now stops with `lost the Dask scheduler`, charging nothing, the rows before written."""
    from distributed import Future
    from distributed.comm.core import CommClosedError

    address, _ = cluster
    folder, onnx = acq
    results = tmp_path / "res"
    real, calls = Future.result, []

    def fetch(self, *a, **kw):
        calls.append(self.key)
        if len(calls) == 2:  # the scheduler's connection closes during the 2nd fetch
            raise CommClosedError("in <TCP (closed) ConnectionPool.gather>: Stream is closed")
        return real(self, *a, **kw)

    monkeypatch.setattr(Future, "result", fetch)
    with pytest.raises(SchedulerLostError, match="lost the Dask scheduler"):
        replay(folder, results, model=onnx, dask=address)
    monkeypatch.undo()
    with sqlite3.connect(results / "ledger.sqlite") as db:
        charged = db.execute("SELECT source FROM items WHERE attempts > 0 AND state != "
                             "'quarantined'").fetchall()
    assert charged == []
    assert len(rows(results)) >= 1  # the first task's rows
    replay(folder, results, model=onnx, dask=address)
    assert_exactly_once(results, N_FRAMES)


def _memory_available_bytes(n_bytes: int | None) -> None:
    """In a process: the memory a tomogram may use is ``n_bytes`` (None: the real figure),
    as on a machine with that much memory."""
    import nwwatch.volume.memory as memory
    from nwwatch.resources import Limit

    real = getattr(memory, "_real_available_memory", memory.available_memory)
    memory._real_available_memory = real
    memory.available_memory = real if n_bytes is None else (
        lambda *a, **kw: Limit(n_bytes, "test"))


def test_a_tomogram_refused_for_the_workers_memory_is_retried_when_the_workers_have_more(
        cluster, tmp_path):
    """On a cluster the workers' memory decides whether a tomogram fits, not the driver's:
    one the workers refused was retried only when it fitted in the driver's memory, so a
    driver on a smaller machine (a login node) kept it quarantined after the workers got
    more memory."""
    from distributed import Client


    address, _ = cluster
    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    write_small_tomogram(acq / "t.tif")
    results = tmp_path / "res"
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        client.run(_memory_available_bytes, 1000)  # small workers
        try:
            first = replay(acq, results, kind="tomogram", model=tomo_model, dask=address)
        finally:
            client.run(_memory_available_bytes, None)  # the workers get their memory back
    assert (first.done, first.quarantined) == (0, 1)
    _memory_available_bytes(1000)  # the driver's machine is the small one now
    try:
        second = replay(acq, results, kind="tomogram", model=tomo_model, dask=address)
    finally:
        _memory_available_bytes(None)
    assert (second.done, second.quarantined, second.frames) == (1, 0, 1)
    assert not (results / "quarantine.parquet").exists() or pd.read_parquet(
        results / "quarantine.parquet").empty


def test_masks_on_another_file_system_are_moved_into_place(cluster, tmp_path):
    """RESULTS/masks a link to another file system (a larger disk for the masks): local
    replay writes masks there; the driver's rename of a staged mask failed (EXDEV) and the
    replay stopped with a traceback, `cannot move a tomogram's mask into place`."""

    from nwwatch.io import read_volume

    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or os.stat(elsewhere).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system at /dev/shm")
    address, _ = cluster
    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    vol = write_small_tomogram(acq / "t.tif")
    results = tmp_path / "res"
    results.mkdir()
    disk = Path(tempfile.mkdtemp(dir=elsewhere, prefix="nwwatch-test-masks-"))
    try:
        (results / "masks").symlink_to(disk)
        summary = replay(acq, results, kind="tomogram", model=tomo_model, dask=address)
        assert (summary.done, summary.frames) == (1, 1)
        (mask_path,) = ds.dataset(results / "volumes", format="parquet").to_table().column(
            "mask_path").to_pylist()
        assert [p.name for p in disk.iterdir()] == [Path(mask_path).name]  # nothing else
        assert read_volume(results / mask_path).data.shape == vol.shape
        assert not (results / STAGING_DIR).exists()
    finally:
        shutil.rmtree(disk, ignore_errors=True)


@pytest.mark.parametrize("on_dask", [False, True])
def test_results_that_cannot_be_written_are_an_error_line_not_a_traceback(cluster, acq,
                                                                          tmp_path, on_dask):
    """`nwwatch replay` whose rows cannot be written (a full disk; here RESULTS/frames a
    file): it printed a ResultsWriteError traceback, local replay and --dask alike."""
    from click.testing import CliRunner

    from nwwatch.cli import main

    folder, onnx = acq
    results = tmp_path / "res"
    results.mkdir()
    (results / "frames").write_text("not a folder\n")
    args = ["replay", str(folder), "--out", str(results), "--model", str(onnx)]
    result = CliRunner().invoke(main, args + (["--dask", cluster[0]] if on_dask else []))
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    assert "cannot write results" in result.output and "Traceback" not in result.output


def test_names_that_are_not_utf8_or_long_give_the_rows_and_masks_of_local_replay(cluster,
                                                                                 acq,
                                                                                 tmp_path):
    """A task's staged file is named by a digest of its files' paths: a path that is not
    UTF-8 failed to encode there (UnicodeEncodeError), so every task holding such a frame
    failed, and the frame was charged an attempt at each replay (local replay measures it).
    A tomogram of such a name, or of a long one, gets a mask named as local replay names it
    (it could not be written, and that stopped the replay: 'a Dask worker cannot write
    here')."""
    address, _ = cluster
    folder, onnx = acq
    (folder / "f000.tif").rename(folder / os.fsdecode(b"f\xff0.tif"))
    tomo_model = model(tmp_path / "tomo", kind="tomogram")
    tomograms = tmp_path / "tomograms"
    tomograms.mkdir()
    names = [os.fsdecode(b"t\xff1.tif"), "t" * 246 + ".tif"]
    for i, name in enumerate(names):
        write_small_tomogram(tomograms / f"{i}.tif", width=6 + 4 * i)
        (tomograms / f"{i}.tif").rename(tomograms / name)
    for name, dask in (("local", None), ("dask", address)):
        summary = replay(folder, tmp_path / name, model=onnx, dask=dask)
        assert (summary.done, summary.failed, summary.frames) == (N_FRAMES, 0, N_FRAMES)
    pd.testing.assert_frame_equal(rows(tmp_path / "local").drop(columns=RUN_COLUMNS),
                                  assert_exactly_once(tmp_path / "dask", N_FRAMES).drop(
                                      columns=RUN_COLUMNS))
    volumes = {}
    for name, dask in (("local", None), ("dask", address)):
        out = tmp_path / f"{name}-tomograms"
        summary = replay(tomograms, out, kind="tomogram", model=tomo_model, dask=dask)
        assert (summary.done, summary.failed, summary.frames) == (2, 0, 2)
        table = ds.dataset(out / "volumes", format="parquet").to_table().to_pandas()
        table = table.sort_values("source").reset_index(drop=True)
        assert {out / m for m in table.mask_path} == set((out / "masks").iterdir())
        volumes[name] = table.assign(mask_path=[  # the batch id apart
            m.rsplit("-", 1)[0] for m in table.mask_path])
    pd.testing.assert_frame_equal(volumes["local"].drop(columns=RUN_COLUMNS),
                                  volumes["dask"].drop(columns=RUN_COLUMNS))


def test_a_replay_with_pictures_does_not_take_rows_staged_without_them(cluster, acq,
                                                                        tmp_path):
    """A driver killed mid-run leaves its tasks' staged rows in RESULTS/.cluster. They were
    taken by the next replay whatever it asked for: resumed with --overlays, the frames of
    those tasks got no picture and no overlay_path, and the replay said it was complete."""
    address, _ = cluster
    folder, onnx = acq
    results = tmp_path / "res"
    _killed_cluster_replay(folder, results, onnx, address, "after_claim:1")
    assert list((results / STAGING_DIR).glob("*.parquet"))  # rows staged without pictures
    summary = replay(folder, results, model=onnx, dask=address, overlays="qa")
    assert (summary.done, summary.frames) == (N_FRAMES, N_FRAMES)
    table = assert_exactly_once(results, N_FRAMES)
    assert table.overlay_path.notna().all()
    assert {results / p for p in table.overlay_path} == set((results / "qa").iterdir())


def test_force_with_other_settings_keeps_the_rows_and_masks_of_the_first_settings(cluster,
                                                                                  tmp_path):
    """The same tomograms with other settings (--triplanar) are other rows and masks. The
    replay compacts at the end, so one file of the acquisition holds both; --force with
    --triplanar then removed every row of those contents from it, and the masks they named,
    while the ledger still listed the first settings' rows as done (never made again)."""
    address, _ = cluster
    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    for k in range(2):
        write_small_tomogram(acq / f"t{k}.tif", width=6 + 5 * k)
    results = tmp_path / "res"
    for options in ({}, {"triplanar": True}, {"triplanar": True, "force": True}):
        summary = replay(acq, results, kind="tomogram", model=tomo_model, dask=address,
                         **options)
        assert (summary.done, summary.frames) == (2, 2)
    table = ds.dataset(results / "volumes", format="parquet").to_table().to_pandas()
    assert sorted(table.measurement_version.str.endswith("+triplanar")) == [False] * 2 + [
        True] * 2
    assert {results / m for m in table.mask_path} == set((results / "masks").iterdir())
    again = replay(acq, results, kind="tomogram", model=tomo_model, dask=address)
    assert (again.skipped, again.done) == (2, 0)


def test_copies_under_other_names_leave_no_pictures_that_no_row_names(cluster, acq,
                                                                       tmp_path):
    """The same frames under other names in another folder (another task): the driver keeps
    one copy's rows, as local replay does, but the other copy's worker had drawn its pictures
    too, left in the QA folder with no row naming them (local replay, which skips a copy
    before reading it, draws none)."""
    address, _ = cluster
    folder, onnx = acq
    archive = tmp_path / "archive"
    for sub in ("a", "b"):
        (archive / sub).mkdir(parents=True)
    for i, f in enumerate(sorted(folder.glob("f*.tif"))[:8]):
        (archive / "a" / f.name).write_bytes(f.read_bytes())
        (archive / "b" / f"copy{i}.tif").write_bytes(f.read_bytes())
    # a copy of the same name: its pictures' names are the kept copy's, which stay
    (archive / "b" / "f000.tif").write_bytes((archive / "a" / "f000.tif").read_bytes())
    pictures = {}
    for name, dask in (("local", None), ("dask", address)):
        out = tmp_path / name
        summary = replay(archive, out, model=onnx, dask=dask, overlays="qa", save_labels=True)
        assert (summary.done, summary.skipped, summary.frames) == (8, 9, 8)
        table = rows(out)
        named = {out / p for p in table.overlay_path}
        named |= {p.with_name(f"{p.stem}-labels.png") for p in named}
        pictures[name] = set((out / "qa").iterdir())
        assert pictures[name] == named
    assert len(pictures["dask"]) == len(pictures["local"]) == 16


def test_a_staging_folder_that_cannot_be_made_is_an_error_line_not_a_traceback(cluster, acq,
                                                                                tmp_path):
    """RESULTS/.cluster a file (the driver cannot make the folder of the staged rows): the
    replay printed a FileExistsError traceback."""
    from click.testing import CliRunner

    from nwwatch.cli import main

    folder, onnx = acq
    results = tmp_path / "res"
    results.mkdir()
    (results / STAGING_DIR).write_text("not a folder\n")
    result = CliRunner().invoke(main, ["replay", str(folder), "--out", str(results), "--model",
                                       str(onnx), "--dask", cluster[0]])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    assert f"{results / STAGING_DIR}: cannot create" in result.output
    assert "Traceback" not in result.output


#: A zone no test machine keeps: UTC+14 all year.
_WORKER_ZONE = "Pacific/Kiritimati"


@pytest.fixture(scope="module")
def far_cluster():
    """One worker process whose local time is :data:`_WORKER_ZONE` (its TZ at start)."""
    from distributed import LocalCluster

    old = os.environ.get("TZ")
    os.environ["TZ"] = _WORKER_ZONE  # inherited by the worker process
    try:
        lc = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                          dashboard_address="127.0.0.1:0")
    finally:
        if old is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = old
        time.tzset()
    with lc:
        yield lc.scheduler_address


def _zoneless_acquisition(folder: Path) -> None:
    folder.mkdir()
    for i in range(3):  # a DateTime tag has no zone: local time where it is read
        tifffile.imwrite(folder / f"z{i}.tif", paint_insitu(100 + 5 * i, size=64),
                         datetime=f"2024:03:01 10:00:0{i}")


def test_workers_in_another_zone_read_zoneless_times_as_this_machine(far_cluster, tmp_path):
    # before: each worker read them in its own zone: rows 14 h off local replay's, marked
    # acquired_at_source "metadata", without a word
    from nwwatch.io.metadata import local_zone_key

    if local_zone_key() in (None, _WORKER_ZONE):
        pytest.skip("this machine's zone has no name, or is the worker's")
    folder, onnx = tmp_path / "acq", model(tmp_path)
    _zoneless_acquisition(folder)
    local = rows(replay(folder, tmp_path / "local", model=onnx).results_dir)
    dask = rows(replay(folder, tmp_path / "dask", model=onnx, dask=far_cluster).results_dir)
    assert list(dask.acquired_at_source) == ["metadata"] * 3
    pd.testing.assert_series_equal(dask.acquired_at, local.acquired_at)
    pd.testing.assert_frame_equal(dask.drop(columns=RUN_COLUMNS),
                                  local.drop(columns=RUN_COLUMNS))


def test_a_driver_whose_zone_has_no_name_refuses_workers_of_another_time(far_cluster,
                                                                        tmp_path,
                                                                        monkeypatch):
    folder, onnx = tmp_path / "acq", model(tmp_path)
    _zoneless_acquisition(folder)
    monkeypatch.setenv("TZ", "XYZ-3")  # a POSIX rule, UTC+3: no zone key to send
    time.tzset()
    try:
        with pytest.raises(ClusterUnavailableError, match=r"keeps another local time than "
                           r"this machine \(UTC offsets \[14\.0\] h against \[3\.0\] h"):
            replay(folder, tmp_path / "res", model=onnx, dask=far_cluster)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert not dataset_files(tmp_path / "res" / "frames")  # refused before any task


def _other_sources() -> None:  # run on a worker: its nwwatch now hashes to other sources
    import nwwatch.service.clustertask as task

    task._real_sources_sha256 = task._sources_sha256
    task._sources_sha256 = lambda: "0" * 64


def _own_sources() -> None:
    import nwwatch.service.clustertask as task

    task._sources_sha256 = task._real_sources_sha256


def _older_measurement() -> None:
    import nwwatch.measure.result as result

    result._real_version, result.MEASUREMENT_VERSION = result.MEASUREMENT_VERSION, "2.0.0"


def _own_measurement() -> None:
    import nwwatch.measure.result as result

    result.MEASUREMENT_VERSION = result._real_version


@pytest.mark.parametrize(("change", "undo", "said"), [
    (_older_measurement, _own_measurement, r"measurement 2\.0\.0 \(here \d"),
    (_other_sources, _own_sources, "its Python sources differ")])
def test_a_worker_with_another_nwwatch_is_refused_before_any_task(cluster, acq, tmp_path,
                                                                  change, undo, said):
    """A worker whose nwwatch differs from the driver's (another release, code edited since
    it started): before, its rows were committed under the driver's measurement version
    (angles of the older code, 180 deg side angles, all called 2.2.14) without a word, or an
    older release's results failed to unpickle as "lost the Dask scheduler"."""
    from distributed import Client

    folder, onnx = acq
    address, _ = cluster
    with Client(address) as client:
        [worker] = list(client.scheduler_info()["workers"])[:1]
        client.run(change, workers=[worker])
        try:
            with pytest.raises(ClusterUnavailableError, match=said) as caught:
                replay(folder, tmp_path / "res", model=onnx, dask=address)
        finally:
            client.run(undo, workers=[worker])
    assert worker in str(caught.value) and "install the driver's nwwatch" in str(caught.value)
    assert not (tmp_path / "res" / "frames").exists()


def _an_earlier_release(version: str | None) -> None:  # run on a worker
    """Its nwwatch as an earlier release's: no ``code_identity``, ``version`` (None: none
    that can be read) and measurement 2.2.14."""
    import nwwatch
    import nwwatch.measure.result as result
    import nwwatch.service.clustertask as task

    task._real_code_identity = task.code_identity
    del task.code_identity
    nwwatch._real_version = nwwatch.__version__
    if version is None:
        del nwwatch.__version__
    else:
        nwwatch.__version__ = version
    result._real_version, result.MEASUREMENT_VERSION = result.MEASUREMENT_VERSION, "2.2.14"


def _this_release() -> None:
    import nwwatch
    import nwwatch.measure.result as result
    import nwwatch.service.clustertask as task

    task.code_identity = task._real_code_identity
    nwwatch.__version__ = nwwatch._real_version
    result.MEASUREMENT_VERSION = result._real_version


@pytest.mark.parametrize(("version", "said"), [
    ("0.1.0", r"the worker's 0\.1\.0 \(measurement 2\.2\.14\), this driver's "),
    (None, r"the worker's version not known \(AttributeError: .*\), this driver's ")])
def test_a_worker_of_an_earlier_release_is_refused_saying_whose_version_is_whose(
        cluster, acq, tmp_path, version, said):
    """A worker whose nwwatch predates the code check: the refusal gave the driver's
    versions in brackets, read as the worker's; now it gives the worker's, read from what
    every release has (``nwwatch.__version__``), and the driver's, each named. A worker
    whose version cannot be read is still refused, the same way."""
    from distributed import Client

    from nwwatch import __version__
    from nwwatch.measure.result import MEASUREMENT_VERSION

    folder, onnx = acq
    address, _ = cluster
    with Client(address) as client:
        [worker] = list(client.scheduler_info()["workers"])[:1]
        client.run(_an_earlier_release, version, workers=[worker])
        try:
            with pytest.raises(ClusterUnavailableError, match=(
                    rf"^the Dask worker {re.escape(worker)} runs another nwwatch than this "
                    rf"driver: {said}{re.escape(__version__)} \(measurement "
                    rf"{re.escape(MEASUREMENT_VERSION)}\); the worker's cannot run this "
                    r"version's check \(.*code_identity.*\): install the driver's nwwatch")):
                replay(folder, tmp_path / "res", model=onnx, dask=address)
        finally:
            client.run(_this_release, workers=[worker])
    assert not (tmp_path / "res" / "frames").exists()


def test_a_worker_that_restarts_with_another_nwwatch_mid_run_is_refused(cluster, acq, tmp_path,
                                                                         monkeypatch):
    """The workers are checked at the start; one that joins or restarts later (its nanny
    after a kill, the environment upgraded meanwhile) committed its rows under the driver's
    versions without a word (angles 10 deg off, exit 0). Each task now compares its code."""
    from distributed import Client

    import nwwatch.service.cluster as cluster_module
    from nwwatch.service.clusterconnect import WorkerCodeMismatchError

    folder, onnx = acq
    address, _ = cluster
    # as for a worker that was not there at the start: no check then
    monkeypatch.setattr(cluster_module, "_check_workers_import_nwwatch", lambda client: None)
    with Client(address) as client:
        workers = list(client.scheduler_info()["workers"])
        client.run(_other_sources, workers=workers)
        try:
            with pytest.raises(WorkerCodeMismatchError) as caught:
                replay(folder, tmp_path / "res", model=onnx, dask=address)
        finally:
            client.run(_own_sources, workers=workers)
        said = str(caught.value)
        assert_names_a_worker(client, said)
    assert "which joined or restarted after the replay started" in said
    assert "its Python sources differ from the driver's" in said
    assert_ledger_closed(tmp_path / "res")
    assert not dataset_files(tmp_path / "res" / "frames")  # every worker differs: no row
    monkeypatch.undo()
    replay(folder, tmp_path / "res", model=onnx, dask=address)  # the workers put right
    assert_exactly_once(tmp_path / "res", N_FRAMES)


def _results_of_an_earlier_release() -> None:  # run on the workers: no code check, no code
    import dataclasses

    import nwwatch.service.clustertask as task

    real = task._real_run_task = task.run_task

    def run_task(paths, pages, spec):
        result = real(paths, pages, dataclasses.replace(spec, code=None))
        result.code = None
        return result

    task.run_task = run_task


def _this_release_results() -> None:
    import nwwatch.service.clustertask as task

    task.run_task = task._real_run_task


def test_rows_of_a_worker_of_an_earlier_release_joining_mid_run_are_refused(cluster, acq,
                                                                            tmp_path,
                                                                            monkeypatch):
    """A worker of an earlier release ignores the task's code check: the driver compares the
    code each result names (none: refused)."""
    from distributed import Client

    import nwwatch.service.cluster as cluster_module
    from nwwatch.service.clusterconnect import WorkerCodeMismatchError

    folder, onnx = acq
    address, _ = cluster
    monkeypatch.setattr(cluster_module, "_check_workers_import_nwwatch", lambda client: None)
    with Client(address) as client:
        client.run(_results_of_an_earlier_release)
        try:
            with pytest.raises(WorkerCodeMismatchError, match="an earlier release") as caught:
                replay(folder, tmp_path / "res", model=onnx, dask=address)
        finally:
            client.run(_this_release_results)
    assert "the Dask worker tcp://" in str(caught.value)  # the one to restart, named
    assert not dataset_files(tmp_path / "res" / "frames")
    # the rerun the message asks for computes its rows again: the refused worker's staged
    # rows (named without the driver's code) are never taken
    monkeypatch.undo()
    s = replay(folder, tmp_path / "res", model=onnx, dask=address)
    assert s.done == N_FRAMES
    assert_exactly_once(tmp_path / "res", N_FRAMES)


def test_a_lost_scheduler_says_what_was_kept(tmp_path, monkeypatch):
    """`Error: lost the Dask scheduler at ...` alone; the rows of the tasks committed before
    are kept, and the same command resumes."""
    import importlib

    from click.testing import CliRunner

    from nwwatch.cli import main

    replay_module = importlib.import_module("nwwatch.service.replay")

    out = tmp_path / "res"

    def lost(*args, **kwargs):
        out.mkdir()
        (out / "ledger.sqlite").write_bytes(b"")
        raise SchedulerLostError("lost the Dask scheduler at tcp://127.0.0.1:1")

    monkeypatch.setattr(replay_module, "replay", lost)
    frame = tmp_path / "f.tif"
    write_frame_tiff(frame, paint_insitu(100.0, size=64))
    result = CliRunner().invoke(main, ["replay", str(frame), "--out", str(out), "--dask",
                                       "tcp://127.0.0.1:1"])
    assert result.exit_code == 1
    assert result.output.strip().endswith(
        "lost the Dask scheduler at tcp://127.0.0.1:1; what was written is kept; run the same "
        f"command again to resume (nwwatch status --out {out})"), result.output


def _cannot_read_f003() -> None:  # run on the workers: as a user that may not read f003.tif
    import nwwatch.filehash as filehash

    real = filehash._real_file_sha256 = filehash.file_sha256

    def file_sha256(path, *args, **kwargs):
        if Path(path).name == "f003.tif":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    filehash.file_sha256 = file_sha256


def _can_read_again() -> None:
    import nwwatch.filehash as filehash

    filehash.file_sha256 = filehash._real_file_sha256


def test_a_worker_that_may_not_read_a_file_the_driver_reads_stops_the_replay(cluster, acq,
                                                                              tmp_path):
    """A worker running as a user that may not read a file the driver reads: before, the file
    was quarantined (exit 3), the reason only in the worker's log."""
    from distributed import Client

    folder, onnx = acq
    address, _ = cluster
    with Client(address) as client:
        client.run(_cannot_read_f003)
        try:
            with pytest.raises(ClusterUnavailableError,
                               match=rf"f003\.tif: {WORKER} cannot read this file \(cannot "
                                     r"read: Permission denied\), which this driver reads"
                               ) as caught:
                replay(folder, tmp_path / "res", model=onnx, dask=address)
        finally:
            client.run(_can_read_again)
        assert_names_a_worker(client, str(caught.value))
    ledger = tmp_path / "res" / "ledger.sqlite"
    if ledger.exists():  # nothing charged to the file
        with sqlite3.connect(ledger) as db:
            assert db.execute("SELECT COUNT(*) FROM quarantine WHERE path LIKE "
                              "'%f003.tif'").fetchone() == (0,)


def test_a_worker_reading_another_version_than_the_driver_sent_stops_the_replay(tmp_path):
    """A stale copy under the same path on a worker's node: the worker's version (size,
    mtime) is not the one the driver listed and still sees, so its rows are of another file
    (before: committed under the name; a later local replay added as many again). A file
    that changed here since it was sent is a file being rewritten, not refused; mtimes within
    the file systems' slack are one version."""
    from nwwatch.service.cluster import MTIME_SLACK_NS, _check_same_file
    from nwwatch.service.clusterconnect import InputNotSharedError
    from nwwatch.service.clustertask import FileResult
    from nwwatch.service.ledgerdb import FileVersion

    path = tmp_path / "f.tif"
    path.write_bytes(b"x" * 100)
    st = path.stat()
    sent = {str(path): (st.st_size, st.st_mtime_ns)}

    def worker_saw(size, mtime_ns):
        return FileResult(str(path), "s" * 64, FileVersion(size, mtime_ns, 0))

    _check_same_file(worker_saw(100, st.st_mtime_ns), sent)
    _check_same_file(worker_saw(100, st.st_mtime_ns + MTIME_SLACK_NS), sent)
    day = 86_400 * 10**9
    with pytest.raises(InputNotSharedError, match="a Dask worker read another file under this "
                                                  "path \\(100 bytes"):
        _check_same_file(worker_saw(100, st.st_mtime_ns + day), sent)
    with pytest.raises(InputNotSharedError, match=r"f\.tif: the Dask worker tcp://10\.0\.0\.7:1 "
                                                  r"at node07 \(pid 5\) read another file"):
        _check_same_file(worker_saw(90, st.st_mtime_ns), sent,
                         "tcp://10.0.0.7:1 at node07 (pid 5)")
    path.write_bytes(b"y" * 120)  # rewritten here since it was sent: not a stale copy
    _check_same_file(worker_saw(100, st.st_mtime_ns + day), sent)
