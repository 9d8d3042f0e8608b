"""Compaction: the batch files of each acquisition become one sorted file; the ledger follows
(replay skips, --force supersedes, status counts, rebuild); a kill at every step loses and
duplicates nothing once the next start has recovered, and before the rename readers see the
old files untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from servicekit import REPO, hive_readers, model, paint_insitu

from nwwatch.io import write_frame_tiff
from nwwatch.results.parquet import dataset_files
from nwwatch.results.reading import read_results
from nwwatch.service import replay
from nwwatch.service.cli import compact as compact_cmd
from nwwatch.service.cli import rebuild as rebuild_cmd
from nwwatch.service.cli import status as status_cmd
from nwwatch.service.compaction import STAGING_DIR, compact
from nwwatch.service.rebuild import rebuild_ledger

KEY = ["source", "frame"]


def _frames(results) -> pd.DataFrame:
    """The dataset as a reader sees it: pandas on the folder."""
    return pd.read_parquet(results / "frames")


def _readers(results) -> dict[str, pd.DataFrame]:
    return hive_readers(results)


def _assert_readers_agree(results, expected: pd.DataFrame, duplicates: bool = False) -> None:
    """Every reader sees the rows of ``expected`` (source, frame), each in the partition of
    its acquisition; exactly once, or (``duplicates``) at least once."""
    from nwwatch.results.parquet import acquisition_partition

    want = expected[KEY].astype({"frame": "int64"}).sort_values(KEY).reset_index(drop=True)
    for name, table in _readers(results).items():
        parts = table.source.map(lambda s: acquisition_partition(s).split("=", 1)[1])
        assert (table.acquisition == parts).all(), name
        if duplicates:
            assert set(map(tuple, table[KEY].values)) == set(map(tuple, want.values)), name
            assert len(table) > len(want), name
        else:
            pd.testing.assert_frame_equal(table[KEY], want, obj=name)


def _files(results) -> list[str]:
    return sorted(p.name for p in dataset_files(results / "frames"))


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY).reset_index(drop=True)[
        ["source", "frame", "status", "contact_angle_deg", "source_sha256", "batch_id"]]


@pytest.fixture()
def results(tmp_path):
    """Acquisitions a (3 batch files, 6 frames) and b (2 batch files, 2 frames), replayed
    folder by folder so each batch file holds one acquisition."""
    onnx = model(tmp_path)
    out = tmp_path / "res"
    for name, rounds, first_deg in (("a", [2, 2, 2], 95.0), ("b", [1, 1], 135.0)):
        acq = tmp_path / "in" / name
        acq.mkdir(parents=True)
        n = 0
        for count in rounds:
            for _ in range(count):
                write_frame_tiff(acq / f"f{n:02d}.tif", paint_insitu(first_deg + 5 * n,
                                                                      size=48))
                n += 1
            replay(acq, out, kind="insitu", model=onnx)
    assert len(_files(out)) == 5
    return tmp_path, out, onnx


def test_compaction_merges_each_acquisition_into_one_sorted_file(results):
    tmp, out, onnx = results
    before = _comparable(_frames(out))
    r = CliRunner().invoke(compact_cmd, [str(out)])
    assert r.exit_code == 0, r.output
    assert "compacted 2 acquisition(s): 5 files -> 2, 8 rows" in r.output
    assert len(_files(out)) == 2
    # run again, it has nothing to merge and says why ("compacted 0" alone read as a failure)
    r = CliRunner().invoke(compact_cmd, [str(out)])
    assert r.exit_code == 0, r.output
    assert ("compacted 0 acquisition(s): 0 files -> 0, 0 rows; 2 acquisition(s) in fewer "
            "than 2 files left as they are") in r.output, r.output
    pd.testing.assert_frame_equal(_comparable(_frames(out)), before)
    _assert_readers_agree(out, before)
    for path in dataset_files(out / "frames"):
        table = pq.read_table(path).to_pandas()
        assert list(table.source + table.frame.astype(str)) == sorted(
            table.source + table.frame.astype(str))  # one file, sorted
        assert table.source.map(os.path.dirname).nunique() == 1
    assert not (out / STAGING_DIR).exists()  # no empty staging folder left behind
    # the ledger knows the new files: nothing is processed again, status counts the same
    again = replay(tmp / "in" / "a", out, kind="insitu", model=onnx)
    assert (again.done, again.skipped) == (0, 6)
    st = CliRunner().invoke(status_cmd, ["--out", str(out), "--json"]).output
    assert '"rows": 8' in st and '"ok": ' in st
    # --force replaces rows inside the compacted file, without duplicates
    forced = replay(tmp / "in" / "a" / "f00.tif", out, kind="insitu", model=onnx, force=True)
    assert forced.done == 1
    after = _frames(out)
    assert len(after) == 8 and not after.duplicated(KEY).any()
    # a second compaction has nothing left to do for b; a ledger rebuilt from the results
    # knows every item
    assert compact(out, acquisition=tmp / "in" / "b").acquisitions == 0
    # an acquisition with no results here (a typo) is an error naming it, not "compacted 0"
    with pytest.raises(FileNotFoundError, match="no results of acquisition .*in/c"):
        compact(out, acquisition=tmp / "in" / "c")
    r = CliRunner().invoke(compact_cmd, [str(out), "--acquisition", str(tmp / "in" / "c")])
    assert r.exit_code == 1 and str(tmp / "in" / "a") in r.output, r.output
    os.replace(out / "ledger.sqlite", tmp / "old.sqlite")
    for suffix in ("-wal", "-shm"):
        (out / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
    assert rebuild_ledger(out).rows == 8
    assert replay(tmp / "in", out, kind="insitu", model=onnx).skipped == 8


def test_a_results_file_rewritten_by_pandas_is_compacted_with_the_others(results):
    # Was: ArrowTypeError (string and large_string) from `nwwatch compact`, when a batch file
    # had been rewritten in place by pandas 3 (its text as large_string).
    _, out, _ = results
    before = _comparable(_frames(out))
    path = dataset_files(out / "frames")[0]
    table = pq.read_table(path)
    wide = pa.schema([f.with_type(pa.large_string()) if pa.types.is_string(f.type) else f
                      for f in table.schema])
    pq.write_table(table.cast(wide), path)
    r = CliRunner().invoke(compact_cmd, [str(out)])
    assert r.exit_code == 0, r.output
    assert "5 files -> 2, 8 rows" in r.output
    pd.testing.assert_frame_equal(_comparable(_frames(out)), before)
    for path in dataset_files(out / "frames"):
        assert pq.read_schema(path).field("source").type == pa.string()


def test_an_acquisition_that_gets_more_rows_after_its_compaction_is_merged_again(results):
    """compact merges every acquisition held in several files, finished or not (its help said
    "finished acquisition"): rows that arrive later join the compacted file at the next
    compact."""
    tmp, out, onnx = results
    assert CliRunner().invoke(compact_cmd, [str(out)]).exit_code == 0
    acq = tmp / "in" / "a"
    for n in (6, 7):
        write_frame_tiff(acq / f"f{n:02d}.tif", paint_insitu(95.0 + 5 * n, size=48))
    assert replay(acq, out, kind="insitu", model=onnx).done == 2
    assert len(_files(out)) == 3  # a's compacted file, its new batch file, b's
    r = CliRunner().invoke(compact_cmd, [str(out)])
    assert r.exit_code == 0, r.output
    assert "compacted 1 acquisition(s): 2 files -> 1, 8 rows" in r.output, r.output
    [a_file] = [p for p in dataset_files(out / "frames") if "acquisition=a-" in str(p)]
    table = pq.read_table(a_file).to_pandas()
    assert len(table) == 8
    assert list(zip(table.source, table.frame, strict=True)) == sorted(
        zip(table.source, table.frame, strict=True))
    _assert_readers_agree(out, _frames(out))
    assert replay(tmp / "in", out, kind="insitu", model=onnx).skipped == 10


STEPS = ["compact_staged", "compact_recorded", "compact_renamed", "compact_switched",
         "compact_deleting"]


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_each_step_loses_and_duplicates_nothing(results, step):
    tmp, out, onnx = results
    before = _comparable(_frames(out))
    env = dict(os.environ, NWWATCH_CRASH_AT=f"{step}:1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "nwwatch.service", "compact", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr  # SIGKILLed at the step
    during = _comparable(_frames(out))
    renamed = step not in ("compact_staged", "compact_recorded")
    _assert_readers_agree(out, before, duplicates=renamed)  # pandas, polars, DuckDB
    if not renamed:
        # not renamed yet: readers see exactly the old files
        pd.testing.assert_frame_equal(during, before)
    else:
        # renamed, old files not all gone: nothing is missing, but acquisition a's rows show
        # twice until the next start recovers (the limit in docs/service.md)
        assert set(map(tuple, during[KEY].values)) == set(map(tuple, before[KEY].values))
        assert len(during) > len(before)
    # the next start of a replay (or the service) undoes it before the rename, else
    # finishes it (acquisition a: 3 files -> 1)
    again = replay(tmp / "in", out, kind="insitu", model=onnx)
    assert (again.done, again.skipped, again.failed) == (0, 8, 0)
    pd.testing.assert_frame_equal(_comparable(_frames(out)), before)
    assert len(_files(out)) == (3 if renamed else 5)
    assert not (out / STAGING_DIR).exists()
    # and compaction then completes
    report = compact(out)
    assert len(_files(out)) == 2
    pd.testing.assert_frame_equal(_comparable(_frames(out)), before)
    _assert_readers_agree(out, before)
    assert report.recovered == 0 and not report.mixed_files


def test_compaction_refuses_a_ledger_in_use(results):
    from nwwatch.service.ledger import Ledger

    tmp, out, onnx = results
    held = Ledger(out / "ledger.sqlite", out)  # a running service or replay
    try:
        r = CliRunner().invoke(compact_cmd, [str(out)])
        assert r.exit_code == 1 and "ledger.sqlite" in r.output
        # compaction needs this folder: the advice is to stop the holder, not to go elsewhere
        assert "stop it first" in r.output and "another results folder" not in r.output
        assert f"pid {os.getpid()}" in r.output, r.output
    finally:
        held.close()
    assert len(_files(out)) == 5


def test_ledger_rebuild_refuses_a_ledger_in_use(results):
    from nwwatch.service.cli import ledger as ledger_cmd
    from nwwatch.service.ledger import Ledger

    tmp, out, onnx = results
    held = Ledger(out / "ledger.sqlite", out)
    try:
        r = CliRunner().invoke(ledger_cmd, ["rebuild", str(out)])
        assert r.exit_code == 1 and "ledger.sqlite" in r.output
        assert "stop it first" in r.output and "another results folder" not in r.output
    finally:
        held.close()
    assert not list(out.glob("ledger.sqlite.replaced-*"))  # nothing moved aside


def test_compaction_refuses_a_folder_that_is_not_a_results_folder(tmp_path):
    acq = tmp_path / "acq"  # an acquisition folder: nothing may be written into it
    acq.mkdir()
    (acq / "frame_00001.tif").write_bytes(b"not read")
    r = CliRunner().invoke(compact_cmd, [str(acq)])
    assert r.exit_code == 1 and f"{acq}: not a results folder" in r.output, r.output
    assert sorted(p.name for p in acq.iterdir()) == ["frame_00001.tif"]


def test_compaction_names_a_ledger_given_that_does_not_exist(tmp_path):
    """`compact RES --ledger TYPO` said RES was not a results folder."""
    res = tmp_path / "res"
    (res / "frames").mkdir(parents=True)
    typo = tmp_path / "state" / "ledgr.sqlite"
    r = CliRunner().invoke(compact_cmd, [str(res), "--ledger", str(typo)])
    assert r.exit_code == 1 and f"--ledger {typo}: no such file" in r.output, r.output
    assert "not a results folder" not in r.output
    assert sorted(p.name for p in res.iterdir()) == ["frames"]


def test_ledger_rebuild_refuses_a_folder_that_is_not_a_results_folder(tmp_path):
    """`nwwatch ledger rebuild ACQ` (the wrong folder) wrote ledger.sqlite and its lock into
    the acquisition folder and said "rebuilt from 0 files"."""
    from nwwatch.service.cli import ledger as ledger_cmd

    acq = tmp_path / "acq"
    acq.mkdir()
    (acq / "frame_00001.tif").write_bytes(b"not read")
    r = CliRunner().invoke(ledger_cmd, ["rebuild", str(acq)])
    assert r.exit_code == 1 and f"{acq}: not a results folder" in r.output, r.output
    assert sorted(p.name for p in acq.iterdir()) == ["frame_00001.tif"]
    with pytest.raises(FileNotFoundError, match="not a results folder"):
        rebuild_ledger(acq)
    # a results folder whose damaged ledger is all there is may still be rebuilt (empty)
    res = tmp_path / "res"
    res.mkdir()
    (res / "ledger.sqlite").write_bytes(b"damaged")
    assert rebuild_ledger(res).files == 0


def test_a_compacted_file_emptied_by_a_forced_replay_is_forgotten(results):
    # replay --force replaces every row of the compacted file: the file goes, and the ledger
    # names it no more, so a second compaction neither fails nor reads it.
    tmp, out, onnx = results
    compact(out)
    assert len(_files(out)) == 2
    replay(tmp / "in" / "b", out, kind="insitu", model=onnx, force=True)
    assert len(_files(out)) == 2  # b's compacted file emptied and removed, one new batch file
    compact(out)
    df = _frames(out)
    assert len(df) == 8 and not df.duplicated(KEY).any()


@pytest.mark.parametrize("command", [["compact"], ["ledger", "rebuild"]])
def test_a_results_folder_this_user_may_not_write_is_named_not_a_traceback(results, command):
    """`nwwatch compact RESULTS` / `nwwatch ledger rebuild RESULTS` run as a user who may only
    read the service's results (deploy/README: run them as the service user) ended in a
    PermissionError traceback from opening the ledger's lock file."""
    from servicekit import without_file_access_override

    tmp, out, onnx = results
    wrap = without_file_access_override()
    before = sorted(p.name for p in out.rglob("*"))
    modes = {p: p.stat().st_mode for p in [out, *out.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)
    try:
        proc = subprocess.run([*wrap, sys.executable, "-m", "nwwatch.service", *command,
                               str(out)], cwd=REPO, capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot write {out / 'ledger.sqlite.lock'}: Permission denied" in proc.stderr
    assert "sudo -u" in proc.stderr and "nwwatch" in proc.stderr
    assert sorted(p.name for p in out.rglob("*")) == before


def test_the_dashboard_counts_the_rows_of_a_compaction_cut_short_once_as_status_does(results):
    """Killed between the rename of the compacted file and the deletion of the old ones, the
    folder holds acquisition a's rows twice until the next start recovers it: `nwwatch status`
    (the ledger's files) counted 8 rows, the dashboard and `nwwatch report` (every file
    listed) 14."""
    from nwwatch.dashboard.data import ResultsStore

    tmp, out, onnx = results
    env = dict(os.environ, NWWATCH_CRASH_AT="compact_renamed:1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "nwwatch.service", "compact", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    assert len(_frames(out)) == 14  # a reader of the folder sees a's 6 rows twice
    store = ResultsStore(out)
    store.refresh()
    assert sum(len(a) for a in store.snapshot.values()) == 8
    r = CliRunner().invoke(status_cmd, ["--out", str(out), "--json"])
    assert json.loads(r.output)["rows"] == 8


def test_compaction_under_sudos_umask_keeps_the_file_to_the_services_group(results):
    """The service's files are its user's and group's only (the unit's UMask=0027); `sudo -u
    nwwatch nwwatch compact` runs with umask 0022, and the compacted file, which holds every
    row of the acquisition, was 0644: readable by every user of the PC."""
    tmp, out, onnx = results
    done = subprocess.run([sys.executable, "-m", "nwwatch.service", "compact", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)),
                          preexec_fn=lambda: os.umask(0o022))
    assert done.returncode == 0, done.stderr
    made = [p for p in (out / "frames").rglob("*compact*.parquet")]
    assert made
    for p in made:
        assert p.stat().st_mode & 0o007 == 0, (p, oct(p.stat().st_mode))


def test_compacting_one_acquisition_reads_only_its_partition(results):
    """``--acquisition a`` reads a's partition alone (it once read the rows of every file of
    every acquisition, 7 s for 200 files among 4,500): a damaged file of b is neither read nor
    reported, b is left as it is, and a typo still names every acquisition here."""
    tmp, out, _ = results
    [b_file, *_] = sorted(p for p in dataset_files(out / "frames") if "acquisition=b-" in str(p))
    b_file.write_bytes(b"PAR1 not a parquet file")
    report = compact(out, acquisition=tmp / "in" / "a")
    assert (report.acquisitions, report.files_before, report.files_after) == (1, 3, 1)
    assert report.unreadable_files == [] and report.missing_files == []
    assert len([p for p in dataset_files(out / "frames") if "acquisition=b-" in str(p)]) == 2
    with pytest.raises(FileNotFoundError, match="no results of acquisition .*in/c") as caught:
        compact(out, acquisition=tmp / "in" / "c")
    assert str(tmp / "in" / "a") in str(caught.value) and str(tmp / "in" / "b") in str(
        caught.value)  # b from its readable file, read for the message


def test_a_recording_filed_one_partition_per_second_is_compacted_by_its_name(tmp_path,
                                                                            monkeypatch):
    """Results written before a Gatan recording was one acquisition filed each of its
    Second_NN folders in a partition of its own; ``--acquisition REC`` reads those partitions
    (a time-tree name may hold any recording's rows) and merges them with REC's own."""
    import hashlib

    import nwwatch.service.pipeline as pipeline
    from nwwatch.results.parquet import PARTITION_KEY, acquisition_partition

    def per_folder(source: str) -> str:  # the partition of the folder a file lies in
        parent = os.path.dirname(source)
        digest = hashlib.sha1(parent.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return f"{PARTITION_KEY}={os.path.basename(parent)}-{digest}"

    onnx = model(tmp_path)
    rec, out = tmp_path / "in" / "growth", tmp_path / "res"
    for second in range(3):
        folder = rec / "Hour_00" / "Minute_00" / f"Second_0{second}"
        folder.mkdir(parents=True)
        write_frame_tiff(folder / f"f{second}.tif", paint_insitu(100.0 + 5 * second, size=48))
        with monkeypatch.context() as m:
            if second < 2:  # the first two seconds as filed before
                m.setattr(pipeline, "acquisition_partition", per_folder)
            replay(rec, out, kind="insitu", model=onnx)
    assert sorted(p.parent.name.split("-")[0] for p in dataset_files(out / "frames")) == [
        "acquisition=Second_00", "acquisition=Second_01", "acquisition=growth"]
    report = compact(out, acquisition=rec)
    assert (report.acquisitions, report.files_before, report.rows) == (1, 3, 3)
    [merged] = dataset_files(out / "frames")
    assert merged.parent.name == acquisition_partition(str(folder / "f0.tif"))


def test_a_folder_named_like_a_time_tree_level_is_compacted_by_its_own_name(tmp_path):
    """Files directly in ``.../Hour_01`` are that folder's acquisition (no Minute or Second
    level below): ``--acquisition .../Hour_01`` compacts them, not the folder above."""
    onnx = model(tmp_path)
    acq, out = tmp_path / "in" / "Hour_01", tmp_path / "res"
    acq.mkdir(parents=True)
    for n in range(2):
        write_frame_tiff(acq / f"f{n}.tif", paint_insitu(100.0 + 5 * n, size=48))
        replay(acq, out, kind="insitu", model=onnx)
    report = compact(out, acquisition=acq)
    assert (report.acquisitions, report.files_before, report.rows) == (1, 2, 2)


def test_a_results_file_deleted_by_hand_is_named_missing_not_unreadable(results):
    # Was: "left alone (unreadable)" for a file that is not there, where `status` says
    # missing and what to do
    tmp, out, onnx = results
    gone, damaged = sorted(p.relative_to(out).as_posix()
                           for p in dataset_files(out / "frames"))[:2]
    (out / gone).unlink()
    (out / damaged).write_bytes(b"PAR1 not a parquet file")
    r = subprocess.run([sys.executable, "-m", "nwwatch", "compact", str(out)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert f"left alone (unreadable): {damaged}" in lines
    assert [line for line in lines if line.startswith("missing (")] == [
        f"missing (the ledger names it, the file is gone: deleted? its input files stay done; "
        f"nwwatch ledger rebuild lets them be processed again): {gone}"]
    assert not any(gone in line for line in lines if "unreadable" in line)


def test_an_acquisition_named_in_bytes_that_are_not_utf8_can_be_named(tmp_path):
    # before: "no results of acquisition .../acq\udcff (acquisitions here: .../acq\xff)"
    onnx = model(tmp_path)
    out = tmp_path / "res"
    acq = tmp_path / os.fsdecode(b"acq\xff")
    acq.mkdir()
    for n in range(2):
        write_frame_tiff(acq / f"f{n}.tif", paint_insitu(100.0 + 5 * n, size=48))
        replay(acq, out, kind="insitu", model=onnx)
    assert len(_files(out)) == 2
    report = compact(out, acquisition=acq)
    assert report.acquisitions == 1 and len(_files(out)) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: what `sudo nwwatch compact` is")
@pytest.mark.parametrize("command", [["compact"], ["ledger", "rebuild"]])
def test_root_on_the_services_results_is_refused_naming_the_user_to_run_as(results, command):
    # Was: `sudo nwwatch compact RESULTS` wrote the compacted file as root's, 0640: the
    # service could not read it, and `status` called it damaged.
    tmp, out, onnx = results
    before = {p: (p.stat().st_uid, p.stat().st_mtime_ns) for p in out.rglob("*")}
    os.chown(out, 54321, 54321)
    try:
        r = CliRunner().invoke(compact_cmd if command == ["compact"] else rebuild_cmd,
                               [str(out)])
    finally:
        os.chown(out, 0, 0)
    assert r.exit_code == 1, r.output
    assert f"{out} belongs to 54321: run it as that user (`sudo -u 54321 nwwatch" in r.output
    assert {p: (p.stat().st_uid, p.stat().st_mtime_ns) for p in out.rglob("*")} == before


def test_the_ledger_of_another_results_folder_is_refused_and_nothing_changes(results):
    # before: `compact res_backup --ledger res/ledger.sqlite` (a copy compacted with the
    # original's ledger) exited 0 and left res's ledger naming a file only the copy holds
    # (res then "holds none of" its files: the service refused to start); `compact resA
    # --ledger resB/ledger.sqlite` tied resA to resB's ledger, and `ledger rebuild resA
    # --ledger resB/ledger.sqlite` moved resB's ledger aside and rebuilt it from resA.
    import shutil

    tmp, out, onnx = results
    backup = tmp / "res_backup"
    shutil.copytree(out, backup)
    ledger = out / "ledger.sqlite"
    before = (ledger.read_bytes(), sorted(p.name for p in out.iterdir()), _files(out))
    for command, args in ((compact_cmd, [str(backup), "--ledger", str(ledger)]),
                          (rebuild_cmd, [str(backup), "--ledger", str(ledger)])):
        r = CliRunner().invoke(command, args)
        assert r.exit_code == 1, r.output
        assert f"the ledger of the results folder {out}, not of {backup}" in r.output
    assert (ledger.read_bytes(), sorted(p.name for p in out.iterdir()), _files(out)) == before
    assert not (backup / "ledger.sqlite.elsewhere").exists()
    assert len(_files(backup)) == 5  # nothing compacted there either
    # the copy's own ledger, or none, is what compacts it
    assert CliRunner().invoke(compact_cmd, [str(backup)]).exit_code == 0
    assert len(_files(backup)) == 2 and len(_files(out)) == 5
    # a ledger inside frames/ would be read as results by every reader: refused, as
    # [state] ledger is there
    r = CliRunner().invoke(rebuild_cmd, [str(out), "--ledger",
                                         str(out / "frames" / "ledger.sqlite")])
    assert r.exit_code == 2 and "Invalid value for '--ledger'" in r.output, r.output
    assert not (out / "frames" / "ledger.sqlite").exists()


def _as_written_before_partitions(out, groups: list[list[str]]) -> None:
    """The rows of ``out/frames`` rewritten as a results folder from before partitioning
    holds them: one file at the top of ``frames/`` per group of acquisition values (a group
    of several: a file that mixes them), and the ledger rebuilt from those files."""
    import shutil

    table = pq.read_table(out / "frames")
    for i, group in enumerate(groups):
        mask = pa.compute.is_in(table["acquisition"].cast(pa.string()),
                                pa.array(group, pa.string()))
        rows = table.filter(mask).drop_columns(["acquisition"])
        pq.write_table(rows, out / "frames" / f"frames-20240101T00000{i}000000Z-old{i}.parquet")
    for partition in (out / "frames").glob("acquisition=*"):
        shutil.rmtree(partition)
    rebuild_ledger(out)


def test_files_written_before_partitions_move_into_them_alone_too(results):
    # Was: a file at the top of frames/ (results of a version before partitioning) stayed
    # there when its acquisition had fewer than --min-files files ("1 acquisition(s) in
    # fewer than 2 files left as they are"), so the polars and DuckDB globs of the docs
    # never read its rows; read_results gave them a null acquisition, and a
    # groupby("acquisition") left them out.
    tmp, out, onnx = results
    before = _frames(out)
    values = sorted(before.acquisition.astype(str).unique())
    _as_written_before_partitions(out, [[values[0]], [values[1]]])
    assert not list((out / "frames").glob("acquisition=*"))
    table = read_results(out, current=False).to_pandas()
    assert sorted(table.acquisition.unique()) == values  # from each row's source
    r = CliRunner().invoke(compact_cmd, [str(out)])
    assert r.exit_code == 0, r.output
    assert "compacted 2 acquisition(s): 2 files -> 2, 8 rows" in r.output, r.output
    assert sorted(p.parent.name for p in dataset_files(out / "frames")) == [
        f"acquisition={v}" for v in values]
    _assert_readers_agree(out, before)


def test_rows_of_a_file_that_mixes_acquisitions_read_with_their_acquisition(results):
    tmp, out, onnx = results
    before = _frames(out)
    values = sorted(before.acquisition.astype(str).unique())
    _as_written_before_partitions(out, [values])
    table = read_results(out).to_pandas()
    pd.testing.assert_series_equal(
        table.groupby("acquisition").size(),
        before.astype({"acquisition": str}).groupby("acquisition").size())


def test_a_ledger_beside_an_input_folder_named_frames_is_no_results_folders(results):
    # A layout of the review: input in /srv/nw/frames, results in /srv/nw/results, [state]
    # ledger /srv/nw/ledger.sqlite. The check of another results folder's ledger took the
    # input's frames/ for results and refused the service and replay at their start.
    import shutil

    from nwwatch.service.ledger import Ledger
    from nwwatch.service.lock import another_folders_ledger

    tmp, out, onnx = results
    nw = tmp / "nw"
    shutil.copytree(tmp / "in" / "a", nw / "frames")  # TIFF frames, no Parquet
    (nw / "results").mkdir()
    ledger = nw / "ledger.sqlite"
    assert another_folders_ledger(nw / "results", ledger) is None
    Ledger(ledger, nw / "results").close()
    assert ledger.is_file()
    # a folder that does hold results is one, partitioned or written before partitions
    assert another_folders_ledger(tmp / "elsewhere", out / "ledger.sqlite") == out
    old = tmp / "old"
    (old / "frames").mkdir(parents=True)
    (old / "frames" / "frames-x.parquet").write_bytes(b"")
    assert another_folders_ledger(tmp / "elsewhere", old / "ledger.sqlite") == old


def test_a_relative_results_path_that_looks_like_a_uri(results, monkeypatch):
    # Was: pyarrow read "run:1/frames/…" as a URI of the scheme "run": compact left every
    # file alone as unreadable, and `ledger rebuild run:1` moved the good ledger aside and
    # rebuilt it from 0 files (the next replay refused the folder).
    import shutil

    tmp, out, onnx = results
    shutil.copytree(out, tmp / "run:1")
    monkeypatch.chdir(tmp)
    report = compact("run:1")
    assert (report.acquisitions, report.unreadable_files) == (2, [])
    built = rebuild_ledger("run:1")
    assert (built.files, built.rows, built.unreadable) == (2, 8, [])
    # --force rewrites earlier files without the rows it replaces: a traceback, and the
    # ledger left with batches in flight that every later replay failed on
    forced = replay(tmp / "in" / "a" / "f00.tif", "run:1", kind="insitu", model=onnx,
                    force=True)
    assert forced.done == 1
    assert replay(tmp / "in" / "a", "run:1", kind="insitu", model=onnx).skipped == 6


#: Frame columns measurement 1.0.0 did not write yet (its files, at the top of frames/,
#: hold the others, source, frame, status, reason, angle_valid and droplet_cut not-null).
COLUMNS_AFTER_1_0_0 = [
    "reason_code", "contact_angle_left_uncertainty_deg", "contact_angle_right_uncertainty_deg",
    "facet_source", "facet_inclination_deg", "facet_scatter_px", "n_facet_points",
    "facet_edge", "facet_edge_shift_px", "facet_edge_snr", "wire_status", "cap_excess_px",
    "triple_depth_px", "confidence", "overlay_path", "confidence_ms"]


def test_rows_of_measurement_1_0_0_are_compacted_with_current_rows(results, tmp_path):
    # Was: `nwwatch compact` stopped with ArrowInvalid "Column 'reason_code' is declared
    # non-nullable but contains nulls" on an acquisition holding rows of measurement 1.0.0
    # (no reason_code column) beside current rows, so that folder could never be compacted.
    from nwwatch.dashboard.data import ResultsStore
    from nwwatch.dashboard.report import write_report

    tmp, out, onnx = results
    current = pq.read_table(dataset_files(out / "frames")[0])  # a's f00 and f01
    old = current.drop_columns(COLUMNS_AFTER_1_0_0 + ["droplet_cut"])  # droplet_cut: the
    # other not-null column a file of another writer may lack
    old = old.set_column(old.schema.get_field_index("measurement_version"),
                         "measurement_version", pa.array(["1.0.0"] * old.num_rows))
    old = old.set_column(old.schema.get_field_index("batch_id"), "batch_id",
                         pa.array(["b-1.0.0"] * old.num_rows))
    assert not old.schema.field("status").nullable  # as 1.0.0 declared its columns
    pq.write_table(old, out / "frames" / "frames-20240101T000000000000Z-old100.parquet")
    rebuild_ledger(out)  # the ledger of a service that wrote both
    before = read_results(out, current=False)
    # the reader declares what its rows hold: null reason_code in the 1.0.0 rows
    assert before.schema.field("reason_code").nullable
    before = before.to_pandas()
    assert len(before) == 10

    r = CliRunner().invoke(compact_cmd, [str(out)])
    assert r.exit_code == 0, r.output
    assert "compacted 2 acquisition(s): 6 files -> 2, 10 rows" in r.output, r.output
    [a_file] = [p for p in dataset_files(out / "frames") if "acquisition=a-" in str(p)]
    schema = pq.read_schema(a_file)
    assert schema.field("reason_code").nullable and schema.field("droplet_cut").nullable
    assert not schema.field("status").nullable  # every file holds it: stays not-null
    # every row kept; the 1.0.0 rows read null where they had no column
    after = read_results(out, current=False)
    assert after.schema.field("reason_code").nullable
    key = ["source", "frame", "measurement_version"]
    df = after.to_pandas()
    pd.testing.assert_frame_equal(
        df[key].sort_values(key).reset_index(drop=True),
        before[key].sort_values(key).reset_index(drop=True))
    old_rows = df[df.measurement_version == "1.0.0"]
    assert len(old_rows) == 2 and old_rows.reason_code.isna().all()
    assert df[df.measurement_version != "1.0.0"].reason_code.notna().all()
    # status, the dashboard and the report read the merged file
    st = json.loads(CliRunner().invoke(status_cmd, ["--out", str(out), "--json"]).output)
    assert st["rows"] == 10
    store = ResultsStore(out)
    store.refresh()
    assert sum(len(a) for a in store.snapshot.values()) == 10
    assert write_report(out, tmp_path / "r.html").is_file()
    # replay --force rewrites the merged file without its rows of the forced file
    forced = replay(tmp / "in" / "a" / "f00.tif", out, kind="insitu", model=onnx, force=True)
    assert forced.done == 1
    assert len(read_results(out, current=False)) == 10
    # and a ledger rebuilt from the results knows every row
    os.replace(out / "ledger.sqlite", tmp / "old.sqlite")
    for suffix in ("-wal", "-shm"):
        (out / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
    assert rebuild_ledger(out).rows == 10
    assert CliRunner().invoke(compact_cmd, [str(out)]).exit_code == 0
    assert len(read_results(out, current=False)) == 10
