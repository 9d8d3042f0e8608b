"""The ledger's claim -> write -> commit protocol and crash reconciliation, step by step."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pyarrow as pa
import pytest

from nwwatch.results.parquet import write_batch
from nwwatch.service import lock as lock_module
from nwwatch.service.ledger import Failure, ItemKey, Ledger
from nwwatch.service.lock import LedgerBusyError, LedgerLock
from nwwatch.service.reporting import open_readonly

SCHEMA = pa.schema([pa.field("source", pa.string()), pa.field("source_sha256", pa.string())])


def _key(i: int) -> ItemKey:
    return ItemKey(f"sha{i}", "model", "1.0.0")


def _claim(ledger: Ledger, tmp_path, batch: str, ids, aux=()):
    parquet = tmp_path / "frames" / f"frames-x-{batch}.parquet"
    ledger.claim(batch, "insitu", parquet, [(_key(i), f"/acq/f{i}.tif") for i in ids], aux=aux)
    return parquet


def test_commit_marks_items_done(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    parquet = _claim(ledger, tmp_path, "b1", [1, 2])
    assert ledger.item(_key(1)).state == "pending"
    write_batch([{"source": "/acq/f1.tif", "source_sha256": "sha1"}], SCHEMA, parquet.parent,
                "frames", name=parquet.name)
    ledger.commit("b1", {_key(1): 1}, [Failure(_key(2), "/acq/f2.tif", "bad", "NotATiffError",
                                               True)], 3, wrote_parquet=True)
    assert ledger.item(_key(1)).state == "done"
    assert ledger.item(_key(2)).state == "quarantined"
    assert [q["path"] for q in ledger.queries.quarantined()] == ["/acq/f2.tif"]
    assert ledger.reconcile(3).adopted == []


def test_crash_after_rename_adopts_the_batch(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    parquet = _claim(ledger, tmp_path, "b1", [1, 2])
    # item 2 failed in this batch; only item 1 has rows; then the process died before commit
    write_batch([{"source": "/acq/f1.tif", "source_sha256": "sha1"}] * 3, SCHEMA,
                parquet.parent, "frames", name=parquet.name)
    ledger.close()
    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    report = ledger.reconcile(3)
    assert report.adopted == ["b1"] and report.removed == []
    assert ledger.item(_key(1)).state == "done"
    assert ledger.item(_key(2)).state == "failed"  # tried again, no rows were written for it
    assert ledger.queries.counts()["rows"] == 3
    assert parquet.exists()


def test_crash_before_rename_removes_partial_files_and_counts_an_attempt(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    mask = tmp_path / "masks" / "v-b1.tif"
    _claim(ledger, tmp_path, "b1", [1], aux=[mask])
    mask.parent.mkdir()
    mask.write_bytes(b"half a mask")
    (tmp_path / "frames").mkdir()
    tmp = tmp_path / "frames" / ".frames-x-b1.parquet.1234abcd.part"
    tmp.write_bytes(b"PAR1 half a footer")
    ledger.close()
    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    report = ledger.reconcile(max_attempts=2)
    assert report.removed == ["b1"]
    assert not mask.exists() and not tmp.exists()
    item = ledger.item(_key(1))
    assert (item.state, item.attempts) == ("failed", 1)
    # a file that crashes the service again ends up quarantined, not crash-looping it
    _claim(ledger, tmp_path, "b2", [1])
    ledger.close()
    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    ledger.reconcile(max_attempts=2)
    assert ledger.item(_key(1)).state == "quarantined"
    assert "stopped" in ledger.queries.quarantined()[0]["reason"]


def test_finished_lookup_by_path_and_file_version(tmp_path):
    from nwwatch.service.ledgerdb import FileVersion

    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    v = FileVersion(size=10, mtime_ns=123, ctime_ns=456)
    ledger.remember_sha("/acq/f1.tif", v, "sha1")
    assert not ledger.is_finished("/acq/f1.tif", v, "model", "1.0.0")
    _claim(ledger, tmp_path, "b1", [1])
    ledger.commit("b1", {_key(1): 1}, [], 3, wrote_parquet=False)
    assert ledger.is_finished("/acq/f1.tif", v, "model", "1.0.0")
    assert not ledger.is_finished("/acq/f1.tif", v._replace(mtime_ns=124), "model", "1.0.0")
    # replaced with the size and mtime kept (cp -p, rsync -a): another ctime
    assert not ledger.is_finished("/acq/f1.tif", v._replace(ctime_ns=457), "model", "1.0.0")
    assert not ledger.is_finished("/acq/f1.tif", v, "model2", "1.0.0")  # new model


def test_readonly_ledger_for_status(tmp_path):
    Ledger(tmp_path / "l.sqlite", tmp_path).close()
    ro = open_readonly(tmp_path / "l.sqlite")
    assert ro.counts()["done"] == 0


def test_forced_reprocessing_replaces_rows_even_across_a_crash(tmp_path):
    schema = pa.schema([pa.field("source_sha256", pa.string()), pa.field("batch_id", pa.string())])
    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    old = _claim(ledger, tmp_path, "b1", [1, 2])
    write_batch([{"source_sha256": "sha1", "batch_id": "b1"},
                 {"source_sha256": "sha2", "batch_id": "b1"}], schema, old.parent, "frames",
                name=old.name)
    ledger.commit("b1", {_key(1): 1, _key(2): 1}, [], 3, wrote_parquet=True)
    new = _claim(ledger, tmp_path, "b2", [1])  # --force on file 1 only
    write_batch([{"source_sha256": "sha1", "batch_id": "b2"}], schema, new.parent, "frames",
                name=new.name)
    ledger.close()  # crash before supersede and commit
    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    assert ledger.reconcile(3).adopted == ["b2"]
    import pyarrow.dataset as ds

    rows = ds.dataset(tmp_path / "frames").to_table().to_pylist()
    assert sorted((r["source_sha256"], r["batch_id"]) for r in rows) == [("sha1", "b2"),
                                                                       ("sha2", "b1")]
    ledger.reconcile(3)  # idempotent
    assert len(ds.dataset(tmp_path / "frames").to_table()) == 2


def test_one_writer_per_ledger(tmp_path):
    import pytest

    from nwwatch.service.ledger import LedgerBusyError

    first = Ledger(tmp_path / "l.sqlite", tmp_path)
    with pytest.raises(LedgerBusyError, match="in use by another nwwatch process"):
        Ledger(tmp_path / "l.sqlite", tmp_path)
    open_readonly(tmp_path / "l.sqlite").close()  # status still works
    first.close()
    Ledger(tmp_path / "l.sqlite", tmp_path).close()


def test_a_lock_taken_on_a_lock_file_deleted_meanwhile_is_taken_again(tmp_path, monkeypatch):
    # A failed replay start removes the lock file it created while still holding it
    # (startundo): another process that opened that file before, and locks it after the
    # release, must not hold a lock on a deleted file (a third could then take the path's).
    path = tmp_path / "l.sqlite"
    first, real_flock, calls = LedgerLock(path), fcntl.flock, []

    def first_removes_its_files_and_releases(handle, op):
        if not calls:  # the second opener, its lock file open, about to lock it
            first.path.unlink()
            first.close()
        calls.append(op)
        return real_flock(handle, op)

    monkeypatch.setattr(lock_module.fcntl, "flock", first_removes_its_files_and_releases)
    second = LedgerLock(path)
    monkeypatch.setattr(lock_module.fcntl, "flock", real_flock)
    try:
        assert len(calls) == 2  # locked the deleted file, then the one the path names
        assert second.lost() is None
        with pytest.raises(LedgerBusyError):
            LedgerLock(path)
    finally:
        second.close()


def test_throughput_is_rows_per_second_of_processing_not_of_the_idle_time_between(tmp_path):
    """`nwwatch status` printed "N rows/s while busy" from the first batch's claim to the
    last commit, idle time included: two replays a minute apart, each ~18 rows/s, showed
    0.25 rows/s. Busy time is the union of the batches' claim → processed spans (held
    batches: until held; overlapping streams counted once); a compaction's batch, which
    spans the batches it merged, adds no time."""
    import time

    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    for batch, ids in (("b1", [1, 2]), ("b2", [3, 4]), ("b3", [5])):
        _claim(ledger, tmp_path, batch, ids)
        ledger.commit(batch, {_key(i): 1 for i in ids}, [], 3, wrote_parquet=True)
    t0 = time.time() - 200.0
    with ledger.transaction() as db:
        # b1 took 2 s; b2 1 s, then waited 9 s held for the flush; b3 ran beside b2 (a stream)
        for batch, created, held, committed in (("b1", 0.0, None, 2.0), ("b2", 100.0, 101.0, 110.0),
                                                ("b3", 100.5, None, 101.5)):
            db.execute("UPDATE batches SET created_at=?, held_at=?, committed_at=?, n_rows=? "
                       "WHERE batch_id=?", (t0 + created, None if held is None else t0 + held,
                                            t0 + committed, 4 if batch != "b3" else 2, batch))
        # `nwwatch compact` merged b1 and b2: their rows move to its batch, which spans both
        db.execute("UPDATE batches SET n_rows=0 WHERE batch_id IN ('b1', 'b2')")
        db.execute("INSERT INTO batches (batch_id, kind, state, parquet, n_rows, created_at, "
                   "committed_at) VALUES ('compact-1', 'insitu', 'committed', 'x', 8, ?, ?)",
                   (t0, t0 + 110.0))
    ledger.close()
    ro = open_readonly(tmp_path / "l.sqlite")
    rows, rate = ro.throughput(600.0)
    assert rows == 10
    assert rate == pytest.approx(10 / 3.5)  # busy: 0-2 s and 100-101.5 s
    assert ro.throughput(1.0) == (0, 0.0)


def test_a_ledger_without_committed_batches_has_no_rate(tmp_path):
    Ledger(tmp_path / "l.sqlite", tmp_path).close()
    ro = open_readonly(tmp_path / "l.sqlite")
    try:
        assert ro.throughput(600.0) == (0, 0.0)
    finally:
        ro.close()
    ro.close()


def test_a_ledger_without_claim_times_gets_the_column_and_keeps_its_items(tmp_path):
    """Ledgers made before items recorded their claim time open with the column added; the
    items they hold keep their state (and the revert rule falls back to their times)."""
    import sqlite3

    from nwwatch.service.ledgerdb import open_ledger_db

    path = tmp_path / "ledger.sqlite"
    db = open_ledger_db(path)
    db.execute("INSERT INTO items (sha256, model_sha256, measurement_version, source, kind, "
               "state, first_seen, updated_at, processed_at) "
               "VALUES ('s', 'm', 'v', '/a/f.tif', 'insitu', 'done', 1, 2, 3)")
    db.execute("ALTER TABLE items DROP COLUMN claimed_at")
    db.close()
    db = open_ledger_db(path)
    assert "claimed_at" in {r[1] for r in db.execute("PRAGMA table_info(items)")}
    assert db.execute("SELECT state, claimed_at, processed_at FROM items").fetchall() == [
        ("done", None, 3.0)]
    db.close()
    assert sqlite3.connect(path).execute(
        "SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("7",)


def test_claim_numbers_are_dropped_after_an_earlier_version_wrote_the_ledger(tmp_path):
    """The revert rule orders a path's contents by the ledger's claim numbers
    (``items.claim_seq``); an earlier version claims without them, so after a rollback (its
    ``schema_version`` in the ledger) the numbers kept would put its claims before older
    ones: they are dropped, and the rule orders by time until new claims are numbered."""
    import sqlite3

    from nwwatch.service.ledgerdb import open_ledger_db

    path = tmp_path / "ledger.sqlite"
    db = open_ledger_db(path)
    db.execute("INSERT INTO items (sha256, model_sha256, measurement_version, source, kind, "
               "state, first_seen, updated_at, processed_at, claim_seq) "
               "VALUES ('s', 'm', 'v', '/a/f.tif', 'insitu', 'done', 1, 2, 3, 5)")
    db.close()
    db = open_ledger_db(path)  # this version again: the numbers stay
    assert db.execute("SELECT claim_seq FROM items").fetchall() == [(5,)]
    db.execute("UPDATE meta SET value='6' WHERE key='schema_version'")  # an earlier version
    db.close()
    db = open_ledger_db(path)
    assert db.execute("SELECT state, claim_seq FROM items").fetchall() == [("done", None)]
    db.close()
    assert sqlite3.connect(path).execute(
        "SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("7",)


def test_hashes_cached_by_an_earlier_version_are_trusted_to_skip_not_to_process(tmp_path):
    """An earlier version cached hashes by size and mtime (table ``seen``, four columns, which
    it keeps writing after a rollback): they are trusted to skip a file done without reading
    it, so an upgrade reads no watched file again, but not to process one (a file replaced
    keeping size and mtime while the earlier version ran was filed under its old hash)."""
    import sqlite3

    from nwwatch.service.ledgerdb import FileVersion, open_ledger_db

    path = tmp_path / "ledger.sqlite"
    open_ledger_db(path).close()
    v = FileVersion(size=10, mtime_ns=123, ctime_ns=456)
    with sqlite3.connect(path) as db:  # what the earlier version writes
        db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)", ("/a.tif", 10, 123, "old"))
    ledger = Ledger(path, tmp_path)
    try:
        assert ledger.cached_sha("/a.tif", v) == "old"
        assert ledger.cached_sha("/a.tif", v, trust_earlier=False) is None
        ledger.remember_sha("/a.tif", v, "new")  # hashed to be processed
        with ledger.transaction():  # any write transaction stores the buffered hashes
            pass
        assert ledger._seen_buffer == {}
        assert ledger.cached_sha("/a.tif", v, trust_earlier=False) == "new"
        assert ledger.cached_sha("/a.tif", v._replace(ctime_ns=457)) is None  # replaced
    finally:
        ledger.close()
    with sqlite3.connect(path) as db:  # the earlier version's own write still works
        db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)", ("/b.tif", 1, 2, "y"))
        assert [r[1] for r in db.execute("PRAGMA table_info(seen)")] == [
            "path", "size", "mtime_ns", "sha256"]

def test_an_earlier_versions_hash_trusted_once_sees_a_later_replacement(tmp_path):
    """Trusted to skip, the earlier version's hash keeps the ctime it was trusted at: a file
    replaced after the upgrade, keeping size and mtime, is not skipped for good."""
    import sqlite3

    from nwwatch.service.ledgerdb import FileVersion, open_ledger_db

    path = tmp_path / "ledger.sqlite"
    open_ledger_db(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)", ("/a.tif", 10, 123, "old"))
    v = FileVersion(size=10, mtime_ns=123, ctime_ns=456)
    ledger = Ledger(path, tmp_path)
    try:
        assert ledger.cached_sha("/a.tif", v) == "old"  # a rescan's skip
        with ledger.transaction():
            pass
        assert ledger.cached_sha("/a.tif", v) == "old"
        assert ledger.cached_sha("/a.tif", v, trust_earlier=False) is None  # unconfirmed
        assert ledger.cached_sha("/a.tif", v._replace(ctime_ns=999)) is None  # replaced
    finally:
        ledger.close()


def test_a_seen_table_with_more_columns_is_still_written(tmp_path):
    # a development build made seen with nullable ctime_ns and ino columns: the writes name
    # their four columns
    import sqlite3

    from nwwatch.service.ledgerdb import FileVersion, open_ledger_db

    path = tmp_path / "ledger.sqlite"
    open_ledger_db(path).close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE seen ADD COLUMN ctime_ns INTEGER")
        db.execute("ALTER TABLE seen ADD COLUMN ino INTEGER")
    ledger = Ledger(path, tmp_path)
    try:
        v = FileVersion(size=1, mtime_ns=2, ctime_ns=3)
        ledger.remember_sha("/b.tif", v, "y")
        with ledger.transaction():
            pass
        assert ledger.cached_sha("/b.tif", v, trust_earlier=False) == "y"
    finally:
        ledger.close()


def test_an_interruption_while_a_transaction_begins_leaves_none_open(tmp_path):
    """A signal's exception (a hang-up, SIGTERM) raised while the buffered hashes are written
    at the start of a transaction: that transaction is rolled back, so the rows held in memory
    can still be written on the way out ("cannot start a transaction within a transaction"
    before), and the hashes stay buffered for the next one."""
    import sqlite3

    from nwwatch.service.ledgerdb import FileVersion

    class Interrupted(Exception):
        pass

    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    try:
        ledger.remember_sha("/a.tif", FileVersion(size=10, mtime_ns=123, ctime_ns=456), "sha")
        flush_seen = ledger._flush_seen

        def interrupted_halfway(db):
            db.execute("INSERT INTO seen (path, size, mtime_ns, sha256) VALUES ('/b', 1, 2, 'x')")
            raise Interrupted

        ledger._flush_seen = interrupted_halfway
        with pytest.raises(Interrupted):
            with ledger.transaction():
                pass
        assert not ledger._db.in_transaction
        ledger._flush_seen = flush_seen
        with ledger.transaction():
            pass
        assert ledger._seen_buffer == {}
    finally:
        ledger.close()
    db = sqlite3.connect(tmp_path / "l.sqlite")
    assert [r[0] for r in db.execute("SELECT path FROM seen")] == ["/a.tif"]
    db.close()


def test_a_change_of_the_quarantine_list_is_noted_even_if_interrupted_as_it_commits(
        tmp_path, monkeypatch):
    """A stop signal's exception raised as a commit returns (the change is in the ledger):
    the list is still marked changed, so ``quarantine.parquet`` is rewritten on the way out
    (before, it kept a file that the ledger no longer lists)."""
    from nwwatch.service import ledgerdb

    ledger = Ledger(tmp_path / "l.sqlite", tmp_path)
    try:
        ledger.record_failures([Failure(_key(1), "/acq/f1.tif", "bad", "NotATiffError", True,
                                        size=10, mtime_ns=123)], 3)
        ledger.quarantine_changed = False  # written out
        real_exit = ledgerdb.Transaction.__exit__

        def committed_then_interrupted(self, *exc_info):
            real_exit(self, *exc_info)
            raise KeyboardInterrupt

        monkeypatch.setattr(ledgerdb.Transaction, "__exit__", committed_then_interrupted)
        with pytest.raises(KeyboardInterrupt):
            ledger.release_quarantine("/acq/f1.tif", 11, 124)  # replaced: leaves the list
        monkeypatch.undo()
        assert ledger.queries.quarantined() == []
        assert ledger.quarantine_changed
    finally:
        ledger.close()


@pytest.mark.parametrize("name", ["sample#3", "grid%41", "q?x", "run 5 é"])
def test_a_results_folder_named_with_uri_characters_is_read_where_it_is(tmp_path, name):
    """``#``, ``?`` and ``%`` are ordinary in a folder's name ("sample#3"): the read-only
    opening (status, report, dashboard) and the record of a stop read that folder's ledger.
    Before, SQLite took them as a URI's fragment, query or escape: status said the ledger
    was damaged and advised a rebuild, an empty database was created at the path cut short,
    and a stop was counted as a crash."""
    from nwwatch.service.ledgerdb import mark_stopped

    results = tmp_path / name
    ledger = Ledger(results / "ledger.sqlite", results)
    try:
        _claim(ledger, results, "b1", [1])
    finally:
        ledger.close()
    queries = open_readonly(results / "ledger.sqlite")
    try:
        assert queries.counts()["pending"] == 1
    finally:
        queries.close()
    assert mark_stopped(results / "ledger.sqlite") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_ledger_path_sqlite_cannot_open_is_named_as_too_long_not_damaged(tmp_path):
    """SQLite opens paths of at most 504 bytes (512 with "-journal"): a longer results path
    was "the ledger is damaged; run nwwatch ledger rebuild", which then had nothing to do.
    The configuration names the length; a replay's --out gets ENAMETOOLONG saying it."""
    import errno

    from servicekit import model, write_config

    from nwwatch.service.config import ConfigError, load_config
    from nwwatch.service.ledgerdb import MAX_LEDGER_PATH_BYTES, open_ledger_db

    base = tmp_path / ("a" * 200) / ("b" * 200)
    fits = base / ("c" * (MAX_LEDGER_PATH_BYTES - len(str(base)) - len("/ledger.sqlite") - 1))
    longer = Path(str(fits) + "d")
    for folder in (fits, longer):
        folder.mkdir(parents=True)
    assert len(str(fits / "ledger.sqlite")) == MAX_LEDGER_PATH_BYTES
    open_ledger_db(fits / "ledger.sqlite").close()
    with pytest.raises(OSError) as caught:
        open_ledger_db(longer / "ledger.sqlite")
    assert caught.value.errno == errno.ENAMETOOLONG
    assert "505 bytes long" in str(caught.value) and "shorter path" in str(caught.value)
    acq = tmp_path / "acq"
    acq.mkdir()
    with pytest.raises(ConfigError, match=r"state\.ledger: .*505 bytes long"):
        load_config(write_config(tmp_path / "c.toml", acq, longer, model(tmp_path)))
    from nwwatch.service import replay

    with pytest.raises(ConfigError, match=r"--out: .*506 bytes long"):
        replay(acq, longer.parent / (longer.name + "e"), model=model(tmp_path))
    assert not (longer.parent / (longer.name + "e")).exists()  # nothing made
