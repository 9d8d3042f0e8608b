"""A file put back to content processed before (v1 -> v2 -> v1 under one name) is skipped as
done (the ledger is keyed by content: v1 is never processed twice), and the results say that
v1 is the file's current version again: ``nwwatch status``, the dashboard and ``nwwatch
report`` (one rule, :mod:`nwwatch.results.versions`), also after ``nwwatch compact``, after a
ledger rebuild, and under the running service (docs/service.md, Exactly once)."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner
from servicekit import model, paint_insitu

from nwwatch.dashboard.data import ResultsStore, frame_series
from nwwatch.io import write_frame_tiff
from nwwatch.service import replay
from nwwatch.service.cli import status as status_cmd


def _frame(angle: float) -> np.ndarray:
    return paint_insitu(angle, size=128, half_width=16)  # measured: status ok


def _status(out) -> dict:
    r = CliRunner().invoke(status_cmd, ["--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _shown_angles(out) -> list[float]:
    """The contact angles the dashboard (and the report, which reads the same store) shows."""
    store = ResultsStore(out)
    store.refresh()
    angles = []
    for acq in store.snapshot.values():
        if acq.table is not None:
            angles += [round(float(a)) for a in frame_series(acq)["angle"]]
    return sorted(angles)


def _versions(tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "f.tif", _frame(100.0))
    v1 = (acq / "f.tif").read_bytes()
    write_frame_tiff(tmp_path / "v2.tif", _frame(130.0))
    return acq, v1, (tmp_path / "v2.tif").read_bytes()


def _v1_then_v2_processed(tmp_path):
    """(acq, out, model, v1, v2: the bytes of each) after replays of f.tif as v1, then v2."""
    acq, v1, v2 = _versions(tmp_path)
    onnx = model(tmp_path)
    out = tmp_path / "out"
    replay(acq, out, kind="insitu", model=onnx)
    (acq / "f.tif").write_bytes(v2)
    replay(acq, out, kind="insitu", model=onnx)
    return acq, out, onnx, v1, v2


def test_a_file_reverted_to_processed_content_shows_that_content_as_current(tmp_path):
    acq, v1, v2 = _versions(tmp_path)
    onnx = model(tmp_path)
    out = tmp_path / "out"
    assert replay(acq, out, kind="insitu", model=onnx).done == 1
    (acq / "f.tif").write_bytes(v2)
    assert replay(acq, out, kind="insitu", model=onnx).done == 1
    assert _shown_angles(out) == [130]
    (acq / "f.tif").write_bytes(v1)  # back to v1's bytes
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.skipped) == (0, 1)  # exactly once: v1 is not processed again
    assert pq.read_table(out / "frames").num_rows == 2  # one row per version, no copy
    assert _shown_angles(out) == [100]
    st = _status(out)
    assert st["rows"] == 1 and st["superseded"]["rows"] == 1
    assert st["counts"]["done"] == 2
    # a replay of the unchanged file changes nothing; v2 once more is current again
    assert replay(acq, out, kind="insitu", model=onnx).skipped == 1
    assert _shown_angles(out) == [100]
    (acq / "f.tif").write_bytes(v2)
    assert replay(acq, out, kind="insitu", model=onnx).skipped == 1
    assert _shown_angles(out) == [130]
    (acq / "f.tif").write_bytes(v1)
    replay(acq, out, kind="insitu", model=onnx)
    assert _shown_angles(out) == [100]
    # compaction merges the rows' files; the record of the current version stays
    from nwwatch.service.compaction import compact

    compact(out)
    assert len(list((out / "frames").rglob("*.parquet"))) == 1
    assert _shown_angles(out) == [100] and _status(out)["rows"] == 1


def test_a_copy_of_processed_content_under_another_name_changes_nothing(tmp_path):
    """The same bytes under another name are processed once and their rows carry the first
    path (docs/service.md): a copy is no version of the file it was copied from."""
    acq, out, onnx, v1, v2 = _v1_then_v2_processed(tmp_path)
    (acq / "g.tif").write_bytes(v1)  # v1's bytes under another name
    assert replay(acq, out, kind="insitu", model=onnx).skipped == 2
    assert _shown_angles(out) == [130]


def test_a_file_renamed_after_it_was_processed_is_named_with_the_name_its_rows_keep(tmp_path):
    """Acquisition software that saves each frame as Acquiring.tif and renames it later:
    every frame was filed under that name (the rows keep the first path) and its final name
    skipped as "already done" without a word. The rename is said: in replay's summary, and
    as the service's warning with the advice on ignore_patterns."""
    import structlog
    from structlog.testing import capture_logs

    from nwwatch.service.batch import BatchReport, FileOutcome
    from nwwatch.service.tally import Tally

    acq, v1, v2 = _versions(tmp_path)
    onnx = model(tmp_path)
    out = tmp_path / "out"
    assert replay(acq, out, kind="insitu", model=onnx).done == 1
    (acq / "g.tif").write_bytes(v1)  # a copy: its first name still exists, nothing to say
    s = replay(acq, out, kind="insitu", model=onnx)
    assert s.skipped == 2 and s.renamed == []
    (acq / "f.tif").rename(acq / "seq_0001.tif")
    (acq / "g.tif").unlink()
    s = replay(acq, out, kind="insitu", model=onnx)
    assert s.skipped == 1
    assert s.renamed == [(acq / "seq_0001.tif", str(acq / "f.tif"))]
    assert (f"note: 1 file already done under a name whose file no longer holds it (renamed "
            f"after processing, or a copy of an earlier version; the rows keep that name): "
            f"seq_0001.tif (done as {acq / 'f.tif'})") in s.lines()
    # the temporary name written again with the next frame, before the renamed one is seen
    (acq / "seq_0001.tif").rename(acq / "seq_0002.tif")
    (acq / "f.tif").write_bytes(v2)
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.skipped) == (1, 1)
    assert s.renamed == [(acq / "seq_0002.tif", str(acq / "f.tif"))]
    # the service's log lines for the same outcomes: a file renamed, with the advice; files
    # of a folder renamed, said once for the folder
    moved = [FileOutcome(tmp_path / "run1_final" / name, "skipped", reason="already done",
                         done_as=str(tmp_path / "run1" / name)) for name in ("a.tif", "b.tif")]
    # frames moved one at a time out of a staging folder that stays: each said, with advice
    (tmp_path / "staging").mkdir()
    staged = [FileOutcome(acq / name, "skipped", reason="already done",
                          done_as=str(tmp_path / "staging" / name))
              for name in ("frame_0002.tif", "frame_0003.tif")]
    report = BatchReport("b", files=[FileOutcome(acq / "seq_0001.tif", "skipped",
                                                 reason="already done",
                                                 done_as=str(acq / "f.tif")), *moved, *staged])
    with capture_logs() as logs:
        Tally().record(report, structlog.get_logger())
    renamed, folder, skipped, from_staging, staging_skipped = logs
    # said once per pair of folders too, with the advice for a staging folder
    assert from_staging["event"] == "folder_renamed_after_processing"
    assert "keep that folder out of the watch" in from_staging["reason"]
    assert staging_skipped["event"] == "file_skipped"
    assert renamed["event"] == "file_renamed_after_processing"
    assert renamed["log_level"] == "warning" and renamed["done_as"] == str(acq / "f.tif")
    assert "ignore_patterns" in renamed["reason"]
    assert folder["event"] == "folder_renamed_after_processing"
    assert folder["log_level"] == "warning" and folder["done_in"] == str(tmp_path / "run1")
    assert "ignore_patterns" not in folder["reason"]
    assert skipped["event"] == "file_skipped" and skipped["log_level"] == "info"


def test_the_current_version_survives_a_ledger_rebuild(tmp_path):
    acq, out, onnx, v1, v2 = _v1_then_v2_processed(tmp_path)
    (acq / "f.tif").write_bytes(v1)
    replay(acq, out, kind="insitu", model=onnx)
    from nwwatch.service.compaction import compact

    compact(out)  # one file, written after v1 was found back: its time tells nothing
    (out / "ledger.sqlite").unlink()
    for extra in out.glob("ledger.sqlite-*"):
        extra.unlink()
    # the ledger is rebuilt from the results at the next start; nothing is processed again
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.skipped) == (0, 1)
    assert _shown_angles(out) == [100]
    (acq / "f.tif").write_bytes(v2)
    replay(acq, out, kind="insitu", model=onnx)
    assert _shown_angles(out) == [130]


def test_the_running_service_shows_a_reverted_file_as_its_earlier_version(tmp_path):
    from servicekit import DaemonProcess, wait_rows, write_config

    acq, v1, v2 = _versions(tmp_path)
    (acq / "f.tif").unlink()
    res = tmp_path / "res"
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.3)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        for k, content in enumerate((v1, v2, v1)):  # within one flush: v1 and v2 held
            tmp = acq / ".f.tif.tmp"
            tmp.write_bytes(content)
            tmp.rename(acq / "f.tif")
            daemon.wait_event("file_skipped" if k == 2 else "file_processed", timeout=60,
                              count=1 if k == 2 else k + 1)
        wait_rows(res, 2, timeout=60, proc=daemon)
        assert daemon.wait_event("file_reverted")["source"] == str(acq / "f.tif")
        assert _shown_angles(res) == [100]
        # v2's frame left the labelling queue (v1's was replaced by v2's when v2 came, and
        # v1 is not processed again); was: v2's entry stayed
        from nwwatch.results.label_queue import read_queue

        assert read_queue(res) == []
        tmp.write_bytes(v2)  # v2 once more, after its rows were written
        tmp.rename(acq / "f.tif")
        daemon.wait_event("file_skipped", timeout=60, count=2)
        assert _shown_angles(res) == [130]
        tmp.write_bytes(v1)
        tmp.rename(acq / "f.tif")
        daemon.wait_event("file_skipped", timeout=60, count=3)
        assert _shown_angles(res) == [100]
        st = _status(res)
        assert st["rows"] == 1 and st["counts"]["done"] == 2
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    assert pq.read_table(res / "frames").num_rows == 2
    shutil.rmtree(acq)


def test_a_file_reverted_after_both_versions_were_written_in_one_flush(tmp_path):
    """v1 and v2 processed and their rows written together (one flush commits both batches
    at one time), then v1 put back: v1 is current again. Was: the tie in the ledger's
    times read v1 as the newer content, and the revert was not recorded."""
    from servicekit import DaemonProcess, wait_rows, write_config

    acq, v1, v2 = _versions(tmp_path)
    (acq / "f.tif").unlink()
    res = tmp_path / "res"
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.3,
                       flush_seconds=3.0)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        tmp = acq / ".f.tif.tmp"
        for k, content in enumerate((v1, v2)):
            tmp.write_bytes(content)
            tmp.rename(acq / "f.tif")
            daemon.wait_event("file_processed", timeout=60, count=k + 1)
        wait_rows(res, 2, timeout=60, proc=daemon)
        # the rows file is there before its log line: wait for the line, then count
        daemon.wait_event("rows_written", timeout=60)
        assert len([e for e in daemon.events() if e.get("event") == "rows_written"]) == 1
        assert _shown_angles(res) == [130]
        tmp.write_bytes(v1)
        tmp.rename(acq / "f.tif")
        assert daemon.wait_event("file_reverted")["source"] == str(acq / "f.tif")
        assert _shown_angles(res) == [100]
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0


def _current_contents(out) -> dict[str, str]:
    """model_sha256 -> the source_sha256 of its current row of f.tif (read_results' rule)."""
    from nwwatch.results.reading import read_results

    rows = read_results(out).to_pylist()
    assert len({r["model_sha256"] for r in rows}) == len(rows)  # one current row per model
    return {r["model_sha256"]: r["source_sha256"] for r in rows}


def _put_back_after_another_models_run(tmp_path):
    """f.tif v1 -> v2 under model A, put back to v1, then a replay with model B, which hashes
    (and caches) the file's v1 version and processes it: (acq, out, model A, model B, v1)."""
    from onnx_models import build_threshold_model

    acq, out, onnx, v1, v2 = _v1_then_v2_processed(tmp_path)
    other = build_threshold_model(tmp_path / "other.onnx", sharpness=9.0)  # another hash
    (acq / "f.tif").write_bytes(v1)
    assert replay(acq, out, kind="insitu", model=other).done == 1
    return acq, out, onnx, other, v1


def test_a_file_put_back_is_recorded_for_a_model_whose_run_comes_after_anothers(tmp_path):
    """v1 -> v2 under model A, back to v1, a replay with model B, then one with A: A's current
    row is v1's. Was: the ledger's hash cache (by path, size and mtime, for every model) held
    v1's version from B's run, so A's replay skipped the file as done without recording the
    revert, and v2's row stayed A's current one while the file held v1."""
    import hashlib

    from nwwatch.results.versions import REVERTED_FILE
    from nwwatch.segment.session import Segmenter

    acq, out, onnx, other, v1 = _put_back_after_another_models_run(tmp_path)
    a, b = Segmenter(onnx).model_sha256, Segmenter(other).model_sha256
    held = hashlib.sha256(v1).hexdigest()
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.skipped) == (0, 1)  # exactly once: v1 is not processed again
    assert pq.read_table(out / "frames").num_rows == 3  # A's v1 and v2, B's v1
    assert _current_contents(out) == {a: held, b: held}
    reverted = pq.read_table(out / REVERTED_FILE).to_pylist()
    assert [(r["model_sha256"], r["source_sha256"]) for r in reverted] == [(a, held)]
    # recorded once: a replay of the unchanged file skips it without writing the record again
    written = (out / REVERTED_FILE).stat().st_mtime_ns
    assert replay(acq, out, kind="insitu", model=onnx).skipped == 1
    assert (out / REVERTED_FILE).stat().st_mtime_ns == written


def test_a_rescan_looks_at_a_file_put_back_that_another_models_run_cached(tmp_path):
    """The rescan's check without reading the file (and replay's, the same) leaves a file put
    back to done content to the batch while its revert is not recorded for this model."""
    from nwwatch.measure import MEASUREMENT_VERSION
    from nwwatch.segment.session import Segmenter
    from nwwatch.service.ledger import Ledger
    from nwwatch.service.ledgerdb import FileVersion
    from nwwatch.service.names import path_key

    acq, out, onnx, other, v1 = _put_back_after_another_models_run(tmp_path)
    name, version = path_key(acq / "f.tif"), FileVersion.of((acq / "f.tif").stat())
    a, b = Segmenter(onnx).model_sha256, Segmenter(other).model_sha256
    ledger = Ledger(out / "ledger.sqlite", out)
    try:
        assert ledger.cached_sha(name, version) is not None  # B's run hashed this version
        assert not ledger.is_finished(name, version, a, MEASUREMENT_VERSION)
        assert ledger.is_finished(name, version, b, MEASUREMENT_VERSION)
        assert ledger.known_state(name, version, a, MEASUREMENT_VERSION) is None
        assert ledger.known_state(name, version, b, MEASUREMENT_VERSION) == "done"
    finally:
        ledger.close()
    replay(acq, out, kind="insitu", model=onnx)  # records it
    ledger = Ledger(out / "ledger.sqlite", out)
    try:
        assert ledger.known_state(name, version, a, MEASUREMENT_VERSION) == "done"
    finally:
        ledger.close()


def test_the_service_records_a_file_put_back_while_another_model_ran(tmp_path):
    """The service started again with model A after a run with model B saw the file put back
    to v1 (done under A): its start-up rescan takes the file, and A's current row is v1's.
    Was: ``initial_scan`` found no candidate and v2's row stayed current."""
    import hashlib

    from servicekit import DaemonProcess, write_config

    from nwwatch.segment.session import Segmenter

    acq, out, onnx, other, v1 = _put_back_after_another_models_run(tmp_path)
    daemon = DaemonProcess(write_config(tmp_path / "c.toml", acq, out, onnx, settle=0.3),
                           tmp_path / "log")
    try:
        assert daemon.wait_event("initial_scan", timeout=60)["candidates"] == 1
        assert daemon.wait_event("file_reverted", timeout=60)["source"] == str(acq / "f.tif")
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0
    assert not [e for e in daemon.events() if e.get("event") == "file_processed"]
    held = hashlib.sha256(v1).hexdigest()
    assert _current_contents(out)[Segmenter(onnx).model_sha256] == held


def _processed_an_hour_ahead(out, content: bytes) -> None:
    """As if ``content`` had been claimed and processed while the clock ran an hour ahead
    (set back since, e.g. by an NTP step): its ledger times and its rows' ``processed_at``."""
    import hashlib
    import sqlite3
    from datetime import timedelta

    import pyarrow as pa
    import pyarrow.compute as pc

    sha = hashlib.sha256(content).hexdigest()
    with sqlite3.connect(out / "ledger.sqlite") as db:
        db.execute("UPDATE items SET claimed_at = claimed_at + 3600, processed_at = "
                   "processed_at + 3600, updated_at = updated_at + 3600 WHERE sha256=?", (sha,))
    for file in (out / "frames").rglob("*.parquet"):
        table = pq.read_table(file)
        mine = pc.equal(table["source_sha256"], sha).to_pylist()
        if any(mine):
            i = table.schema.get_field_index("processed_at")
            at = [t + timedelta(hours=1) if m else t
                  for t, m in zip(table["processed_at"].to_pylist(), mine, strict=True)]
            table = table.set_column(i, table.schema.field(i),
                                     pa.array(at, table.schema.field(i).type))
            pq.write_table(table, file)


def test_new_content_after_a_revert_recorded_past_a_clock_set_back_is_current(tmp_path):
    """v2 claimed an hour ahead of the clock (set back since), v1 put back and recorded, then
    new content v3 processed: v3's row is current. Was: the record was stamped no earlier
    than v2's claim, an hour ahead, so it read as newer than v3's row and v1 was shown while
    the file held v3 until the clock caught up."""
    import hashlib
    import sqlite3

    acq, out, onnx, v1, v2 = _v1_then_v2_processed(tmp_path)
    with sqlite3.connect(out / "ledger.sqlite") as db:
        db.execute("UPDATE items SET claimed_at = claimed_at + 3600 WHERE sha256=?",
                   (hashlib.sha256(v2).hexdigest(),))
    (acq / "f.tif").write_bytes(v1)
    assert replay(acq, out, kind="insitu", model=onnx).skipped == 1
    assert _shown_angles(out) == [100]
    write_frame_tiff(tmp_path / "v3.tif", _frame(115.0))
    (acq / "f.tif").write_bytes((tmp_path / "v3.tif").read_bytes())
    assert replay(acq, out, kind="insitu", model=onnx).done == 1
    assert _shown_angles(out) == [115]


def test_a_file_put_back_after_the_clock_was_set_back_is_recorded_once(tmp_path):
    """v2 claimed and processed while the clock ran an hour ahead (its rows too), then v1 put
    back: the revert is recorded once, and so is nothing after new content v3, although the
    clock gives both finds an earlier time than v2's claim. The ledger orders claims and
    finds by a number of its own; a record compared with v2's claim by time read as older,
    and every rescan took the file again and wrote the record again until the clock passed
    v2's claim. (v2's rows, stamped an hour ahead, read as the newest to status and the
    dashboard until the clock passes them: docs/service.md.)"""
    import hashlib

    from nwwatch.measure import MEASUREMENT_VERSION
    from nwwatch.results.versions import REVERTED_FILE
    from nwwatch.segment.session import Segmenter
    from nwwatch.service.ledger import Ledger
    from nwwatch.service.ledgerdb import FileVersion
    from nwwatch.service.names import path_key

    acq, out, onnx, v1, v2 = _v1_then_v2_processed(tmp_path)
    _processed_an_hour_ahead(out, v2)
    (acq / "f.tif").write_bytes(v1)
    assert replay(acq, out, kind="insitu", model=onnx).skipped == 1
    record = pq.read_table(out / REVERTED_FILE).to_pylist()
    assert [r["source_sha256"] for r in record] == [hashlib.sha256(v1).hexdigest()]
    assert _shown_angles(out) == [130]  # the clock's limit: v2's rows read as newer
    written = (out / REVERTED_FILE).stat().st_mtime_ns

    def finished() -> bool:
        ledger = Ledger(out / "ledger.sqlite", out)
        try:
            return ledger.is_finished(path_key(acq / "f.tif"), FileVersion.of(
                (acq / "f.tif").stat()), Segmenter(onnx).model_sha256, MEASUREMENT_VERSION)
        finally:
            ledger.close()

    assert finished()
    assert replay(acq, out, kind="insitu", model=onnx).skipped == 1
    assert (out / REVERTED_FILE).stat().st_mtime_ns == written
    write_frame_tiff(tmp_path / "v3.tif", _frame(115.0))
    (acq / "f.tif").write_bytes((tmp_path / "v3.tif").read_bytes())
    assert replay(acq, out, kind="insitu", model=onnx).done == 1
    assert finished()  # v3 is the file's latest content: nothing to record
    assert replay(acq, out, kind="insitu", model=onnx).skipped == 1
    assert (out / REVERTED_FILE).stat().st_mtime_ns == written


def test_the_ledger_orders_claims_and_finds_by_its_own_count_not_the_clock(tmp_path,
                                                                           monkeypatch):
    """The rule the rescan's check and the record share (``Ledger.known_state``,
    ``note_skipped``), on the ledger alone: v1 done, v2 claimed an hour ahead of the clock,
    v1 put back (its version cached, as another model's run leaves it) is a revert to record,
    once; v3 claimed after it at the clock's time is the file's latest content."""
    import time

    from nwwatch.service.ledger import Ledger
    from nwwatch.service.ledgerdb import FileVersion, ItemKey

    model_sha, version = "m" * 64, "1"
    name = str(tmp_path / "acq" / "f.tif")
    k1, k2, k3 = (ItemKey(c * 64, model_sha, version) for c in "abc")
    now = time.time
    ledger = Ledger(tmp_path / "out" / "ledger.sqlite", tmp_path / "out")
    try:
        def done(batch: str, key: ItemKey, at: FileVersion) -> None:
            ledger.claim(batch, "insitu", None, [(key, name)])
            ledger.commit(batch, {key: 1}, [], 3, wrote_parquet=False)
            ledger.remember_sha(name, at, key.sha256)

        done("b1", k1, FileVersion(10, 1, 1))
        assert ledger.known_state(name, FileVersion(10, 1, 1), model_sha, version) == "done"
        monkeypatch.setattr(time, "time", lambda: now() + 3600.0)
        done("b2", k2, FileVersion(10, 2, 2))
        monkeypatch.setattr(time, "time", now)
        back = FileVersion(10, 3, 3)
        ledger.remember_sha(name, back, k1.sha256)
        assert ledger.known_state(name, back, model_sha, version) is None  # to record
        assert ledger.note_skipped(name, k1, ledger.item(k1))
        assert ledger.known_state(name, back, model_sha, version) == "done"
        assert not ledger.note_skipped(name, k1, ledger.item(k1))  # recorded once
        done("b3", k3, FileVersion(10, 4, 4))
        assert ledger.known_state(name, FileVersion(10, 4, 4), model_sha, version) == "done"
        assert not ledger.note_skipped(name, k3, ledger.item(k3))
    finally:
        ledger.close()


def test_the_rescan_check_asks_for_a_paths_other_contents_only_where_it_has_some(tmp_path):
    """The rescan's check of a file already done (``Ledger.is_finished``, once per done file at
    every rescan) looks for a later content of its path only where the path has more than
    one in the ledger: nearly no path has, and that query was a fourth per file. A path that
    gets a second content while the ledger is open is asked about from then on."""
    from nwwatch.service.ledger import Ledger
    from nwwatch.service.ledgerdb import FileVersion, ItemKey

    model_sha, version = "m" * 64, "1"
    ledger = Ledger(tmp_path / "out" / "ledger.sqlite", tmp_path / "out")
    statements: list[str] = []
    try:
        for n, c in enumerate("ab"):
            key = ItemKey(c * 64, model_sha, version)
            ledger.claim(f"b{n}", "insitu", None, [(key, f"/acq/{c}.tif")])
            ledger.commit(f"b{n}", {key: 1}, [], 3, wrote_parquet=False)
            ledger.remember_sha(f"/acq/{c}.tif", FileVersion(10, 1, 1), key.sha256)
        ledger._db.set_trace_callback(statements.append)
        for name in ("/acq/a.tif", "/acq/b.tif"):
            assert ledger.is_finished(name, FileVersion(10, 1, 1), model_sha, version)
        assert not [s for s in statements if "FROM items WHERE source=" in s]
        # b.tif's content c, then back to b (cached as another model's run leaves it)
        key = ItemKey("c" * 64, model_sha, version)
        ledger.claim("b2", "insitu", None, [(key, "/acq/b.tif")])
        ledger.commit("b2", {key: 1}, [], 3, wrote_parquet=False)
        ledger.remember_sha("/acq/b.tif", FileVersion(10, 3, 3), "b" * 64)
        statements.clear()
        assert not ledger.is_finished("/acq/b.tif", FileVersion(10, 3, 3), model_sha, version)
        assert [s for s in statements if "FROM items WHERE source=" in s]
    finally:
        ledger._db.set_trace_callback(None)
        ledger.close()


def test_the_newest_version_rule_reads_the_record_of_reverted_files():
    from datetime import UTC, datetime, timedelta

    import pyarrow as pa

    from nwwatch.results.versions import newest_version_mask

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = pa.Table.from_pylist([
        {"source": "/acq/s.tif", "model_sha256": "A", "measurement_version": "5",
         "source_sha256": sha, "processed_at": t0 + timedelta(seconds=s)}
        for sha, s in (("v1", 0), ("v2", 1), ("v3", 2))])
    assert newest_version_mask(rows).tolist() == [False, False, True]
    record = pa.Table.from_pylist([
        {"source": "/acq/s.tif", "model_sha256": "A", "measurement_version": "5",
         "source_sha256": "v1", "reverted_at": t0 + timedelta(seconds=s)}
        for s in (1.5,)])
    # put back to v1 after v2 was processed, before v3 was: v3 is still the newest
    assert newest_version_mask(rows, record).tolist() == [False, False, True]
    later = record.set_column(4, "reverted_at", pa.array([t0 + timedelta(seconds=3)],
                                                         pa.timestamp("us", tz="UTC")))
    assert newest_version_mask(rows, later).tolist() == [True, False, False]
    # a record of another series, or of content without rows there, changes nothing
    other = later.set_column(1, "model_sha256", pa.array(["B"]))
    assert newest_version_mask(rows, other).tolist() == [False, False, True]
    unknown = later.set_column(3, "source_sha256", pa.array(["v9"]))
    assert newest_version_mask(rows, unknown).tolist() == [False, False, True]
    assert Counter(newest_version_mask(rows.slice(2), later).tolist()) == Counter([True])


def test_a_cluster_replay_records_a_reverted_file_as_local_replay_does(tmp_path):
    """``replay --dask``: the workers hash the files and the driver skips a done content,
    recording it as current as :func:`nwwatch.service.pipeline.process` does."""
    import pytest

    pytest.importorskip("distributed")
    acq, v1, v2 = _versions(tmp_path)
    onnx = model(tmp_path)
    out = tmp_path / "out"
    replay(acq, out, kind="insitu", model=onnx)
    (acq / "f.tif").write_bytes(v2)
    replay(acq, out, kind="insitu", model=onnx, dask="local:1")
    assert _shown_angles(out) == [130]
    (acq / "f.tif").write_bytes(v1)
    s = replay(acq, out, kind="insitu", model=onnx, dask="local:1")
    assert (s.done, s.skipped) == (0, 1)
    assert pq.read_table(out / "frames").num_rows == 2
    assert _shown_angles(out) == [100]


def _pixel_sizes_bad_and_good(bad, good) -> None:
    """The same frame twice, the same bytes but for the pixel size: ``bad`` anisotropic
    (0.5 x 0.6 nm, bad input quarantined after the file was hashed), ``good`` square."""
    import tifffile

    frame = _frame(100.0)
    per_cm = 1e7  # nm in a centimetre (resolution unit 3)
    for path, y_nm in ((bad, 0.6), (good, 0.5)):
        tifffile.imwrite(path, frame, resolution=(per_cm / 0.5, per_cm / y_nm),
                         resolutionunit=3)


def _latest_row(out) -> dict:
    rows = pq.read_table(out / "frames").to_pylist()
    return max(rows, key=lambda r: r["processed_at"])


def _same_size_and_mtime(path, content: bytes) -> None:
    """Replace ``path`` with ``content`` of its size, keeping its mtime (as ``cp -p``,
    ``rsync -a`` or a clock of whole seconds may)."""
    import os

    st = path.stat()
    assert len(content) == st.st_size
    path.write_bytes(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_new_version_with_the_same_size_and_mtime_is_processed(tmp_path):
    import hashlib

    acq, v1, v2 = _versions(tmp_path)
    onnx = model(tmp_path)
    out = tmp_path / "out"
    assert replay(acq, out, kind="insitu", model=onnx).done == 1
    _same_size_and_mtime(acq / "f.tif", v2)
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.skipped) == (1, 0)  # not "already done": the content is new
    assert _shown_angles(out) == [130]
    # --force measures the file again, and files its rows under the content it read
    _same_size_and_mtime(acq / "f.tif", v1)
    assert replay(acq, out, kind="insitu", model=onnx, force=True).done == 1
    latest = _latest_row(out)
    assert latest["source_sha256"] == hashlib.sha256(v1).hexdigest()
    assert round(latest["contact_angle_deg"]) == 100


def test_a_quarantined_file_replaced_with_the_same_size_and_mtime_is_tried_again(tmp_path):
    from nwwatch.service.ledger import Ledger
    from nwwatch.service.ledgerdb import FileVersion
    from nwwatch.service.names import path_key

    acq = tmp_path / "acq"
    acq.mkdir()
    _pixel_sizes_bad_and_good(acq / "f.tif", tmp_path / "good.tif")
    onnx = model(tmp_path)
    out = tmp_path / "out"
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.quarantined) == (0, 1)
    _same_size_and_mtime(acq / "f.tif", (tmp_path / "good.tif").read_bytes())
    # the rescan's check without reading the file does not take it for the quarantined one
    ledger = Ledger(out / "ledger.sqlite", out)
    try:
        from nwwatch.measure import MEASUREMENT_VERSION
        from nwwatch.segment.session import Segmenter

        seg = Segmenter(onnx)
        assert not ledger.is_finished(path_key(acq / "f.tif"), FileVersion.of(
            (acq / "f.tif").stat()), seg.model_sha256, MEASUREMENT_VERSION)
    finally:
        ledger.close()
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.quarantined) == (1, 0)
    assert _shown_angles(out) == [100]


def test_a_file_replaced_while_an_earlier_version_ran_is_filed_under_its_own_content(tmp_path):
    """The earlier version cached hashes by size and mtime alone; a file it saw, replaced
    keeping both, was measured by the update but its rows filed under the old content's hash
    (and that content then counted as done)."""
    import hashlib
    import sqlite3

    from nwwatch.service.names import path_key

    acq, out, onnx, v1, v2 = _v1_then_v2_processed(tmp_path)
    # as the earlier version leaves its cache: v2's hash by size and mtime, no ctime
    with sqlite3.connect(out / "ledger.sqlite") as db:
        db.execute("DELETE FROM seen_ctime")
    _same_size_and_mtime(acq / "f.tif", v1)  # replaced under it, keeping both
    with sqlite3.connect(out / "ledger.sqlite") as db:
        st = (acq / "f.tif").stat()
        db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)",
                   (path_key(acq / "f.tif"), st.st_size, st.st_mtime_ns,
                    hashlib.sha256(v2).hexdigest()))
    replay(acq, out, kind="insitu", model=onnx, force=True)
    latest = _latest_row(out)
    assert latest["source_sha256"] == hashlib.sha256(v1).hexdigest()
    assert round(latest["contact_angle_deg"]) == 100


def test_a_quarantined_file_replaced_by_content_done_elsewhere_leaves_the_list(tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    _pixel_sizes_bad_and_good(acq / "f.tif", acq / "g.tif")
    onnx = model(tmp_path)
    out = tmp_path / "out"
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.quarantined) == (1, 1)
    _same_size_and_mtime(acq / "f.tif", (acq / "g.tif").read_bytes())  # now g's content
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.quarantined, s.skipped) == (0, 0, 2)
    assert not pq.read_table(out / "quarantine.parquet").num_rows
    assert _status(out)["quarantined"] == []


def test_a_file_overwritten_with_a_broken_one_counts_no_rows_until_it_is_mended(tmp_path):
    # Was: quarantined, yet its earlier content's row still counted as its current result in
    # status, the dashboard and the report (the file counted twice: quarantined and done).
    acq, v1, v2 = _versions(tmp_path)
    onnx = model(tmp_path)
    out = tmp_path / "out"
    replay(acq, out, kind="insitu", model=onnx)
    assert _status(out)["rows"] == 1 and _shown_angles(out) == [100]
    (acq / "f.tif").write_bytes(b"not a tiff: the writer crashed mid-rewrite")
    replay(acq, out, kind="insitu", model=onnx)
    st = _status(out)
    assert st["counts"]["quarantined_files"] == 1
    assert st["rows"] == 0 and st["superseded"]["rows"] == 1
    assert _shown_angles(out) == []
    # mended with new content: its rows are the file's again
    (acq / "f.tif").write_bytes(v2)
    replay(acq, out, kind="insitu", model=onnx)
    assert _status(out)["rows"] == 1 and _shown_angles(out) == [130]


def test_a_quarantine_supersedes_only_the_rows_processed_before_it():
    from datetime import UTC, datetime

    import pyarrow as pa

    from nwwatch.results.versions import newest_version_mask

    def at(s: int) -> datetime:
        return datetime.fromtimestamp(1_700_000_000 + s, UTC)

    rows = pa.table({"source": ["/a/f.tif", "/a/f.tif", "/a/g.tif"],
                     "source_sha256": ["x", "x", "y"], "frame": [0, 1, 0],
                     "processed_at": [at(0), at(0), at(5)],
                     "model_sha256": ["m", "m", "m"], "measurement_version": ["1", "1", "1"]})
    quarantined = pa.table({"path": ["/a/f.tif", "/a/g.tif"],
                            "quarantined_at": pa.array([at(3), at(3)],
                                                       pa.timestamp("us", tz="UTC"))})
    # f.tif went bad after its rows; g.tif was quarantined before its rows (since mended)
    assert newest_version_mask(rows, quarantined=quarantined).tolist() == [False, False, True]
    # f.tif found back at the content of its rows after the quarantine: current again
    reverted = pa.table({"source": ["/a/f.tif"], "source_sha256": ["x"],
                         "model_sha256": ["m"], "measurement_version": ["1"],
                         "reverted_at": pa.array([at(4)], pa.timestamp("us", tz="UTC"))})
    assert newest_version_mask(rows, reverted, quarantined).tolist() == [True, True, True]
    # quarantined for the content its rows are of (another model crashed on it; the ledger
    # quarantines per model): the rows of this series stay current
    same = quarantined.append_column("sha256", pa.array(["x", None], pa.string()))
    assert newest_version_mask(rows, quarantined=same).tolist() == [True, True, True]
    # quarantined for other content, hashed: earlier rows superseded, as without a hash
    other = quarantined.append_column("sha256", pa.array(["z", "z"], pa.string()))
    assert newest_version_mask(rows, quarantined=other).tolist() == [False, False, True]
