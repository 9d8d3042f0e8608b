"""``nwwatch status`` counts what the results say about the files as they are now: the rows of
the newest version of each file (a stack processed again as it grew page by page), the
dashboard's and the report's rows, and states the earlier versions' rows apart. Also after
``replay --force``, whose earlier rows leave the committed files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from click.testing import CliRunner
from onnx_models import INSITU_GREY
from servicekit import REPO, model, paint_insitu

from nwwatch.dashboard.data import ResultsStore
from nwwatch.io import write_frame_tiff
from nwwatch.results.outcome import count_table
from nwwatch.service import replay
from nwwatch.service.cli import status as status_cmd
from nwwatch.service.reporting import open_readonly


def _ok_frame(angle: float) -> np.ndarray:
    return paint_insitu(angle, size=128, half_width=16)  # measured: status ok


def _wire_only_frame() -> np.ndarray:
    image = _ok_frame(120.0)
    image[image == INSITU_GREY[2]] = INSITU_GREY[0]  # no droplet
    return image


def _status(out) -> tuple[dict, str]:
    runner = CliRunner()
    r = runner.invoke(status_cmd, ["--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    text = runner.invoke(status_cmd, ["--out", str(out)])
    assert text.exit_code == 0, text.output
    return json.loads(r.output), text.output


def _dashboard_counts(out) -> Counter:
    """(status, reason_code) of the rows the dashboard and report show."""
    store = ResultsStore(out)
    store.refresh()
    total: Counter = Counter()
    for acq in store.snapshot.values():
        if acq.table is not None:
            total += count_table(acq.table)
    return total


@pytest.fixture()
def grown(tmp_path):
    """A stack its writer grows page by page, closing it after each (3 versions: 1, 2, then
    3 pages; page 1 has no droplet), replayed after each page, and one ordinary frame."""
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "single.tif", _ok_frame(100.0))
    stack = acq / "stack.tif"
    onnx = model(tmp_path)
    out = tmp_path / "out"
    summaries = []
    for page in (_ok_frame(110.0), _wire_only_frame(), _ok_frame(130.0)):
        tifffile.imwrite(stack, page, append=True)
        summaries.append(replay(acq, out, kind="insitu", model=onnx))
    return acq, out, onnx, summaries


def test_status_counts_the_newest_version_of_a_grown_stack_as_the_dashboard_shows(grown):
    acq, out, _, summaries = grown
    # each replay says what it did: the third processed the stack's third version, 3 rows
    assert [(s.done, s.skipped, s.frames) for s in summaries] == [(2, 0, 2), (1, 1, 2),
                                                                  (1, 1, 3)]
    assert summaries[-1].lines()[1].startswith("3 rows: 2 ok, 1 flagged (no_droplet 1)")
    every = pq.read_table(out / "frames").to_pandas()
    assert len(every) == 7  # 1 + 1 + 2 + 3: every version's rows stay in the files
    st, text = _status(out)
    newest = Counter({("ok", "ok"): 3, ("no_droplet", "no_droplet"): 1})
    assert {(r["status"], r["reason_code"]): r["rows"] for r in st["rows_by_reason"]} == newest
    assert _dashboard_counts(out) == newest  # what the dashboard and report show
    assert st["rows"] == 4 and st["rows_by_outcome"] == {"ok": 3, "flagged": 1}
    assert st["superseded"] == {"rows": 3, "versions": 2, "files": 1,
                                "rows_by_outcome": {"ok": 2, "flagged": 1}}
    assert st["counts"]["done"] == 4  # ledger items: one per version of a file
    assert "rows: 4 (3 ok, 1 flagged (no_droplet 1)), of the newest version of each file" \
        in text
    assert ("superseded: 3 rows of 2 earlier versions of 1 file (processed again when the "
            "file changed") in text
    assert "kept in the results files but not counted in rows" in text


def test_status_counts_a_forced_replay_once_and_keeps_earlier_versions_apart(grown):
    acq, out, onnx, _ = grown
    before = pq.read_table(out / "frames").num_rows
    s = replay(acq, out, kind="insitu", model=onnx, force=True)
    assert (s.done, s.frames) == (2, 4)  # the files as they are: 1 + 3 rows
    # --force removed the newest version's earlier rows from the committed files that
    # status reads; the older versions' rows (other contents) stay
    ledger = open_readonly(out / "ledger.sqlite")
    try:
        files = [out / rel for rel in ledger.committed_parquets()]
    finally:
        ledger.close()
    committed = pq.ParquetDataset(files).read().to_pandas()
    assert len(committed) == before
    stack = committed[committed.source.str.endswith("stack.tif")]
    versions = stack.groupby("source_sha256").frame.apply(sorted).tolist()
    assert sorted(versions) == [[0], [0, 1], [0, 1, 2]]  # each version once, not twice
    st, text = _status(out)
    assert st["rows"] == 4 and st["rows_by_outcome"] == {"ok": 3, "flagged": 1}
    assert st["superseded"]["rows"] == 3 and st["superseded"]["versions"] == 2
    assert _dashboard_counts(out) == Counter({("ok", "ok"): 3, ("no_droplet", "no_droplet"): 1})


def test_status_without_earlier_versions_prints_no_superseded_line(tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", _ok_frame(100.0))
    out = tmp_path / "out"
    replay(acq, out, kind="insitu", model=model(tmp_path))
    st, text = _status(out)
    assert st["rows"] == 1 and st["superseded"]["rows"] == 0
    assert "rows: 1 (1 ok, 0 flagged)\n" in text and "superseded" not in text
    # fast: the command reads Parquet columns and never loads pandas (0.2-0.4 s to import)
    code = ("import sys\nfrom nwwatch.cli import main\n"
            f"sys.argv = ['nwwatch', 'status', '--out', {str(out)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code\n"
            "print('PANDAS', 'pandas' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "rows: 1 (1 ok" in run.stdout and "PANDAS False" in run.stdout, run.stdout


def test_integers_and_masks_cross_between_arrow_and_numpy_exactly():
    """The buffer-level helpers (they spare `nwwatch status` pyarrow's import of pandas):
    nulls, chunks and slices with an offset."""
    from datetime import UTC, datetime

    import pyarrow as pa

    from nwwatch.results.versions import bool_mask, codes, epoch_s, int_values

    column = pa.chunked_array([pa.array(["a", None, "b"]), pa.array(["b", "a", None, "c"])])
    code, values = codes(column)
    assert [values[c] if c >= 0 else None for c in code] == column.to_pylist()
    sliced = pa.array([5, None, 7, 8, None], pa.int32()).slice(1, 4)
    ints, valid = int_values(sliced)
    assert valid.tolist() == [False, True, True, False] and ints[valid].tolist() == [7, 8]
    assert int_values(pa.array([3, 4], pa.uint8()))[0].tolist() == [3, 4]
    when = pa.array([datetime(2026, 1, 1, tzinfo=UTC), None], pa.timestamp("ms", tz="UTC"))
    assert epoch_s(when)[0] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert np.isnan(epoch_s(when)[1])
    keep = np.array([True, False, True, True, False, False, True, False, True])
    table = pa.table({"x": list(range(9))})
    assert table.filter(bool_mask(keep))["x"].to_pylist() == [0, 2, 3, 6, 8]
    assert codes(pa.chunked_array([pa.nulls(2)]))[0].tolist() == [-1, -1]


def test_rows_are_grouped_by_equal_values_and_the_newest_of_each_group_is_found():
    """row_groups and newest_of_groups, the grouping the newest-version rule, the repeated-row
    rule and status's count of superseded versions share: nulls equal each other, a column
    the table lacks is left out, dictionary chunks with dictionaries of their own (and a
    null among a dictionary's values) group by value."""
    import pyarrow as pa

    from nwwatch.results.versions import newest_of_groups, row_groups

    table = pa.table({
        "a": pa.chunked_array([pa.array(["x", "y", None]).dictionary_encode(),
                               pa.DictionaryArray.from_arrays(pa.array([0, 1, 1, 2], pa.int32()),
                                                              pa.array(["y", "x", None]))]),
        "b": [1, 1, 2, 2, 1, 1, None]})
    assert row_groups(table, ("a", "b", "missing")).tolist() == [2, 3, 1, 4, 2, 2, 0]
    assert row_groups(table, ("a",)).tolist() == [1, 2, 0, 2, 1, 1, 0]
    assert row_groups(table, ("missing",)).tolist() == [0] * 7
    assert row_groups(table.slice(0, 0), ("a", "b")).tolist() == []
    # many columns of many values: numbered without overflowing
    wide = pa.table({f"c{i}": [j % 5 for j in range(3000)] for i in range(40)})
    assert row_groups(wide, wide.column_names).tolist() == [j % 5 for j in range(3000)]
    group = np.array([0, 1, 0, 1, 0, 2])
    when = np.array([5.0, np.nan, 7.0, np.nan, 7.0, np.nan])
    # latest time; of one time the later row; NaN rows only: the last of them
    assert newest_of_groups(group, when).tolist() == [4, 3, 5]
    assert newest_of_groups(np.zeros(0, np.int64), np.zeros(0)).tolist() == []


def test_rows_of_another_model_are_a_series_of_their_own_not_an_earlier_version():
    """A folder processed again under another model keeps both series (the dashboard shows
    each); within each, the newest version of each file counts."""
    from datetime import UTC, datetime, timedelta

    import pyarrow as pa

    from nwwatch.results.versions import newest_version_mask

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [  # (model, content, processed) of /acq/s.tif page 0
        ("A", "v1", 0), ("B", "v1", 1), ("A", "v2", 2), ("C", None, 3), ("C", None, 4)]
    table = pa.Table.from_pylist([
        {"source": "/acq/s.tif", "model_sha256": m, "measurement_version": "5",
         "source_sha256": sha, "processed_at": t0 + timedelta(seconds=s)}
        for m, sha, s in rows])
    # A: v2 replaces v1; B: its only version; rows without a content hash are kept
    assert newest_version_mask(table).tolist() == [False, True, True, True, True]


def test_a_tomogram_rewritten_under_its_name_counts_once_on_the_dashboard_and_in_status(
        tmp_path):
    """Volume rows carry source_sha256 too: the dashboard read volumes without it and showed
    every version of a rewritten tomogram, where status counts the newest."""
    from datetime import UTC, datetime, timedelta

    import pyarrow as pa

    from nwwatch.results.outcome import count_results

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    (tmp_path / "volumes").mkdir()
    paths = []
    for k, (sha, status) in enumerate((("a" * 64, "suspect"), ("b" * 64, "ok"))):
        path = tmp_path / "volumes" / f"volumes-{k}.parquet"
        pq.write_table(pa.Table.from_pylist([{
            "source": "/acq/t/tomo.tif", "status": status, "reason_code": status,
            "source_sha256": sha, "processed_at": t0 + timedelta(seconds=k),
            "acquired_at": t0, "model_sha256": "m" * 64, "measurement_version": "1+seg3"}]),
            path)
        paths.append(path)
    assert _dashboard_counts(tmp_path) == Counter({("ok", "ok"): 1})
    counted = count_results(paths)
    assert counted.current == Counter({("ok", "ok"): 1})
    assert counted.superseded == Counter({("suspect", "suspect"): 1})
    assert (counted.superseded_versions, counted.superseded_files) == (1, 1)


def test_a_stack_grown_under_the_running_service_counts_its_newest_version(setup):
    """The live path: a stack closed after every page, each version processed by the service
    and held for a larger file (flush_seconds), so several versions may share one file.
    `nwwatch status` beside the running service counts the newest version's rows, as the
    dashboard does; the service's own counts (the stopping line, STATUS) say files and
    versions apart: one file, three versions processed, every version's rows written
    (docs/service.md, Summaries). Was: processed_files 3 for the one stack."""
    from servicekit import DaemonProcess, wait_rows, write_config

    tmp, acq, res, onnx = setup
    cfg = write_config(tmp / "c.toml", acq, res, onnx, settle=0.3, flush_seconds=2.0)
    daemon = DaemonProcess(cfg, tmp / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        for k, page in enumerate((_ok_frame(110.0), _wire_only_frame(), _ok_frame(130.0))):
            tifffile.imwrite(acq / "stack.tif", page, append=True)
            daemon.wait_event("file_processed", timeout=60, count=k + 1)
        wait_rows(res, 6, timeout=60, proc=daemon)  # 1 + 2 + 3: every version's rows
        tifffile.imwrite(acq / "other.tif", _ok_frame(120.0))  # a second file, one version
        daemon.wait_event("file_processed", timeout=60, count=4)
        wait_rows(res, 7, timeout=60, proc=daemon)
        st, text = _status(res)
        assert st["rows"] == 4 and st["rows_by_outcome"] == {"ok": 3, "flagged": 1}
        assert st["superseded"] == {"rows": 3, "versions": 2, "files": 1,
                                    "rows_by_outcome": {"ok": 2, "flagged": 1}}
        assert _dashboard_counts(res) == Counter({("ok", "ok"): 3,
                                                  ("no_droplet", "no_droplet"): 1})
        assert "superseded: 3 rows of 2 earlier versions of 1 file" in text
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    stopping = [e for e in daemon.events() if e.get("event") == "stopping"][-1]
    assert (stopping["processed_files"], stopping["processed_versions"],
            stopping["processed_rows"]) == (2, 4, 7)


def test_the_service_status_line_says_versions_apart_from_files():
    from nwwatch.service.tally import Tally

    tally = Tally(processed_files=2, processed_versions=4, processed_rows=7)
    assert tally.status_text(0).startswith("queue 0 files; processed 2 files in 4 versions "
                                           "(7 rows: ")
    tally.processed_versions = 2  # no file processed again: as before
    assert tally.status_text(0).startswith("queue 0 files; processed 2 files (7 rows: ")


def test_a_released_batch_uncounts_files_by_their_ledger_keys():
    """A held batch released (its rows not written) leaves the count of files only for the
    files with no version still processed, asked of the ledger by each file's key: a
    non-UTF-8 path's key is its bytes, which its ``source`` text (\\xNN) does not give back;
    and a done file without rows is one of the batch's files too."""
    import os
    from pathlib import Path

    import pyarrow as pa

    from nwwatch.service.flush import HeldBatch
    from nwwatch.service.ledgerdb import ItemKey
    from nwwatch.service.names import path_key, source_name
    from nwwatch.service.tally import Tally

    stacks = [Path(os.fsdecode(b"/acq/stack-\xff%d.tif" % k)) for k in (1, 2)]
    empty = Path("/acq/empty.tif")  # done without rows, released with the batch
    kept = {path_key(p) for p in stacks}  # another version of each stays done
    asked = []

    class Queries:
        def processed_since(self, source, since, other_than=None):
            asked.append(source)
            return source in kept

    table = pa.table({"source": [source_name(p) for p in stacks], "status": ["ok"] * 2,
                      "reason_code": ["ok"] * 2})
    keys = {ItemKey(c * 64, "m" * 64, "5"): n for c, n in (("a", 1), ("b", 1), ("c", 0))}
    batch = HeldBatch("b1", "frames", "acquisition=x", table, keys,
                      entries=[*stacks, empty])
    tally = Tally(processed_files=3, processed_versions=5, processed_rows=4,
                  row_counts=Counter({("ok", "ok"): 4}))
    tally.uncount(batch, Queries())
    assert sorted(asked, key=repr) == sorted([*kept, path_key(empty)], key=repr)
    # read by the source text, both stacks would leave the count and the empty file stay
    assert (tally.processed_files, tally.processed_versions, tally.processed_rows) == (2, 2, 2)
    assert tally.row_counts == Counter({("ok", "ok"): 2})


def test_a_results_file_the_ledger_names_that_is_gone_is_named_not_silently_left_out(tmp_path):
    """A committed results file deleted by hand: its files stay done in the ledger (never
    processed again), and `nwwatch status` counted the rows left without a word, as though
    the results were complete."""
    onnx = model(tmp_path)
    acq, out = tmp_path / "acq", tmp_path / "out"
    acq.mkdir()
    for i in range(2):  # two replays: two results files
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(100.0 + 10 * i))
        replay(acq, out, kind="insitu", model=onnx)
    files = sorted((out / "frames").rglob("*.parquet"))
    assert len(files) == 2
    files[0].unlink()
    s, text = _status(out)
    assert s["rows"] == 1 and s["missing_files"] == [str(files[0])], s
    assert "1 results file(s) the ledger names are missing" in text, text
    assert str(files[0]) in text and "nwwatch ledger rebuild" in text


def test_status_says_whose_rows_after_the_model_file_is_replaced(tmp_path):
    """A fine-tuned model copied over the configured path: the folder is processed again,
    a row per frame of each model. status counts both (as the dashboard's pages do), and says
    how many rows each model holds, newest first, so the new model's are not read as the
    old one's."""
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", _ok_frame(100.0))
    write_frame_tiff(acq / "b.tif", _wire_only_frame())
    out = tmp_path / "out"
    onnx = model(tmp_path)
    replay(acq, out, kind="insitu", model=onnx)
    model(tmp_path, sharpness=9.0)  # same path and name, new content
    replay(acq, out, kind="insitu", model=onnx)
    write_frame_tiff(acq / "c.tif", _ok_frame(110.0))
    replay(acq, out, kind="insitu", model=onnx)
    st, text = _status(out)
    assert st["rows"] == 5
    by_model = st["rows_by_model"]
    assert [(m["model_name"], m["rows"], m["rows_by_outcome"]) for m in by_model] == [
        ("model", 3, {"ok": 2, "flagged": 1}), ("model", 2, {"ok": 1, "flagged": 1})]
    rows = pq.read_table(out / "frames").to_pandas()
    newest = rows[rows.source.str.endswith("c.tif")].model_sha256.iloc[0]
    assert by_model[0]["model_sha256"] == newest != by_model[1]["model_sha256"]
    assert ("by model, newest first (2 models: 2 files processed by several, their rows "
            "counted once per model):") in text
    assert st["files_of_several_models"] == 2  # a and b; c only by the new model
    # 5 done items of 3 files: the top line says so (a newcomer read "5 files")
    assert ("files: 5 done (once per content, model and measurement version; 3 distinct "
            "files), ") in text
    assert f"    model {newest[:12]}: 3 rows (2 ok, 1 flagged (no_droplet 1)), last " in text
    # one model: no such lines
    only = tmp_path / "only"
    replay(acq, only, kind="insitu", model=onnx)
    assert "by model" not in _status(only)[1]


def test_status_counts_one_model_file_deployed_under_another_name_as_one_model(tmp_path):
    """The same ONNX file (one sha256) copied under another name and given to a later replay:
    status listed two models, "model" and "site-model", of one hash, where the dashboard and
    `nwwatch report` show one series. A model is its content: one model, run under two
    names, both said."""
    import shutil

    acq, out = tmp_path / "acq", tmp_path / "out"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", _ok_frame(100.0))
    write_frame_tiff(acq / "b.tif", _wire_only_frame())
    onnx = model(tmp_path)
    replay(acq, out, kind="insitu", model=onnx)
    (tmp_path / "m").mkdir()
    site = shutil.copy(onnx, tmp_path / "m" / "site-model.onnx")
    write_frame_tiff(acq / "c.tif", _ok_frame(110.0))
    replay(acq, out, kind="insitu", model=site)  # a and b are done already: c alone
    st, text = _status(out)
    assert st["rows"] == 3
    (only,) = st["rows_by_model"]
    assert (only["model_name"], only["model_names"], only["rows"]) == (
        "site-model", ["site-model", "model"], 3)
    assert st["files_of_several_models"] is None
    assert "  by model (1 model, run under 2 names):\n" in text, text
    assert (f"    site-model {only['model_sha256'][:12]} (also named model): 3 rows (2 ok, "
            "1 flagged (no_droplet 1)), last ") in text, text
    store = ResultsStore(out)  # the dashboard's and the report's pages: one series too
    store.refresh()
    assert len(store.snapshot) == 1


def test_status_of_an_in_situ_and_a_tomogram_model_says_no_file_counts_twice(tmp_path):
    """Results of an in-situ model and a tomogram model (two watches, or two replays into one
    folder): the heading said "a frame processed by several counts once per model", though
    neither had processed a file of the other."""
    from servicekit import write_small_tomogram

    acq, tomo, out = tmp_path / "acq", tmp_path / "tomo", tmp_path / "out"
    acq.mkdir()
    tomo.mkdir()
    write_frame_tiff(acq / "a.tif", _ok_frame(100.0))
    write_small_tomogram(tomo / "v.tif")
    replay(acq, out, kind="insitu", model=model(tmp_path))
    replay(tomo, out, kind="tomogram", model=model(tmp_path / "t", kind="tomogram"))
    st, text = _status(out)
    assert st["rows"] == 2 and len(st["rows_by_model"]) == 2
    assert "  by model, newest first (2 models):\n" in text, text
    assert "processed by several" not in text
    assert st["files_of_several_models"] == 0


def test_names_with_a_newline_or_a_tab_cannot_add_lines_to_the_status(tmp_path):
    # before: 'ok\nrows: 999 (999 ok).tif' printed a line "rows: 999 (999 ok).tif ..." of
    # its own, and a quarantined 'bad\nquarantined: none.tif' a line "quarantined: none..."
    acq, out = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_frame_tiff(acq / "ok\nrows: 999 (999 ok).tif", _ok_frame(120.0))
    (acq / "bad\tquarantined: none.tif").write_bytes(b"II*\x00 not a tiff")
    replay(acq, out, model=model(tmp_path))
    text = CliRunner().invoke(status_cmd, [str(out)]).output
    assert not [line for line in text.splitlines() if line.startswith(("rows: 999", "quar"
                                                                        "antined: none"))]
    assert r"ok\nrows: 999 (999 ok).tif" in text and r"bad\tquarantined: none.tif" in text


def test_status_reads_again_when_a_compaction_replaced_its_files_while_it_read(
        tmp_path, monkeypatch):
    # Was: the files listed, then read after `nwwatch compact` had replaced them: the rows
    # counted short (here 0 of 3), missing_files empty, nothing telling the count was off.
    from nwwatch.service import status as status_module
    from nwwatch.service.compaction import compact
    from nwwatch.service.status import service_status

    acq, out = tmp_path / "acq", tmp_path / "out"
    acq.mkdir()
    onnx = model(tmp_path)
    for i in range(3):  # three replays: three files of one acquisition
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(100.0 + 10 * i))
        replay(acq, out, kind="insitu", model=onnx)
    real, calls = status_module.count_results, []

    def compacted_meanwhile(paths, *more):
        paths = list(paths)
        if not calls:
            compact(out)  # between the listing and the reading
        calls.append(len(paths))
        return real(paths, *more)

    monkeypatch.setattr(status_module, "count_results", compacted_meanwhile)
    got = service_status(out / "ledger.sqlite", out)
    assert calls == [3, 1]  # read again, the compacted file alone
    assert got["rows"] == got["counts"]["rows"] == 3 and got["missing_files"] == []


def test_a_ledger_snapshot_does_not_see_a_batch_committed_inside_it(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    queries = open_readonly(tmp_path / "l.sqlite")
    with queries.snapshot():
        before = queries._db.execute("SELECT count(*) FROM t").fetchone()
        db.execute("INSERT INTO t VALUES (1)")
        assert queries._db.execute("SELECT count(*) FROM t").fetchone() == before
    assert queries._db.execute("SELECT count(*) FROM t").fetchone() == (1,)
    queries.close()
    db.close()


def test_one_model_under_two_measurement_versions_is_two_series_not_two_models():
    from nwwatch.service.status import _model_lines

    models = [{"model_name": "insitu-default", "model_sha256": "c2bf5c2cbf74" + "0" * 52,
               "measurement_version": version, "rows": 5, "last_processed_at": None,
               "rows_by_reason": [{"status": "ok", "reason_code": "ok", "rows": 5}]}
              for version in ("2.2.18", "2.2.5")]
    lines = _model_lines(models, shared_files=5)
    assert lines[0] == ("  by model and measurement version, newest first (2 series: 5 files "
                        "processed by several, their rows counted once per series):")
    assert lines[1].startswith("    insitu-default c2bf5c2cbf74 measurement 2.2.18: 5 rows")
    # one model file under two names, one measurement version: models, not series
    renamed = [dict(models[0], model_name=name) for name in ("a", "b")]
    assert _model_lines(renamed, None)[0] == "  by model, newest first (2 models):"
