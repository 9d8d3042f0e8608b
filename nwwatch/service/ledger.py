"""The exactly-once ledger: SQLite in WAL mode, one row per (content, model, measurement version).

Protocol for one batch (``pipeline.process``):

1. ``claim``: in one transaction, a ``batches`` row (state ``writing``, the Parquet file name
   it *will* have, masks it may write) and every file's item row (state ``pending``, that
   batch id) are committed **before** anything is read or written.
2. Results are written: masks, then the batch's Parquet file (temporary name, fsync, rename,
   fsync of the folder).
3. ``commit``: in one transaction the batch becomes ``committed``, its items ``done``, and the
   files that failed are recorded as failed or quarantined.

A crash (kill -9 included) can stop this anywhere. On start ``reconcile`` looks at each
batch still ``writing``: if its Parquet file exists under its final name (the rename
happened, so the file is complete) the batch is *adopted* — the items whose content hash is in
the file become ``done``; otherwise every file the batch may have written is removed and its
items are released. A batch of several files that crashed the process is split: its files are
retried in batches of half its size (``batch_cap``), down to one file, without counting an
attempt; a file that crashes the process *alone* counts one, and is quarantined after
``max_attempts`` — the poison is found and its batch-mates do not pay for it. Either way every
frame ends up exactly once in the results.

File paths are stored as :func:`nwwatch.service.names.path_key` (lossless for any name).
The quarantine list is :mod:`nwwatch.service.ledgerquarantine`, files put back to content
already done :mod:`nwwatch.service.ledgerreverts`. Reporting queries live in
:mod:`nwwatch.service.reporting`, the lock in
:mod:`nwwatch.service.lock`, rebuilding from the results in :mod:`nwwatch.service.rebuild`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from nwwatch.atomic import remove_if_present
from nwwatch.results.parquet import drop_rows
from nwwatch.service.ledgerdb import (
    Failure,
    FileVersion,
    ItemKey,
    ItemState,
    LedgerCorruptError,
    LedgerWriteError,
    PathKey,
    ReconcileReport,
    Transaction,
    next_claim_seq,
    open_ledger_db,
)
from nwwatch.service.ledgerhold import HeldBatches
from nwwatch.service.ledgerquarantine import QuarantineList
from nwwatch.service.ledgerreverts import RevertedFiles
from nwwatch.service.lock import (
    LedgerBusyError,
    LedgerElsewhereError,
    LedgerLock,
    LedgerOfAnotherFolderError,
    another_folders_ledger,
    ledger_kept_elsewhere,
    record_ledger_elsewhere,
)
from nwwatch.service.names import file_identity
from nwwatch.service.recovery import Recovery
from nwwatch.service.reporting import LedgerQueries

__all__ = ["Failure", "ItemKey", "ItemState", "Ledger", "LedgerBusyError", "LedgerCorruptError",
           "LedgerLostError", "LedgerWriteError", "ReconcileReport"]

class LedgerLostError(RuntimeError):
    """The results folder, the ledger or its lock was removed or replaced under the running
    process: going on could write rows twice."""


class Ledger(Recovery, HeldBatches, QuarantineList, RevertedFiles):
    """The service's state. One instance per process; not shared across threads.

    Parameters
    ----------
    path : the SQLite file (created with its folder).
    results_dir : the results folder; batch file names are stored relative to it.
    lock : an already held :class:`LedgerLock` of ``path`` and ``results_dir`` (``nwwatch
        ledger rebuild``, a replay's start), released by the caller, after :meth:`close`: it
        may still have to remove files under it. By default the ledger takes the lock and
        :meth:`close` releases it.

    Raises
    ------
    LedgerBusyError : another process holds the ledger; :class:`LedgerElsewhereError`, a
        ledger outside the results folder keeps it and this is another.
    LedgerCorruptError : the file is not a readable SQLite database.
    """

    def __init__(self, path: str | os.PathLike[str], results_dir: str | os.PathLike[str],
                 lock: LedgerLock | None = None):
        self.path = Path(path)
        self.results_dir = Path(results_dir)
        self._seen_buffer: dict[PathKey, tuple[FileVersion, str, bool]] = {}
        self.quarantine_changed = False
        self.held: set[str] = set()
        self._owns_lock = lock is None
        self._lock = lock or LedgerLock(self.path, self.results_dir)
        try:
            other = ledger_kept_elsewhere(self.results_dir, self.path)
            if other is not None:
                raise LedgerElsewhereError(self.results_dir, self.path, other)
            owner = another_folders_ledger(self.results_dir, self.path)
            if owner is not None:  # before the results folder is tied to it
                raise LedgerOfAnotherFolderError(self.results_dir, self.path, owner)
            record_ledger_elsewhere(self.path, self.results_dir)
            self._db = open_ledger_db(self.path, self.results_dir)
        except BaseException:
            if lock is None:
                self._lock.close()
            raise
        self.queries = LedgerQueries(self._db)
        self._identities = {p: file_identity(p) for p in (self.path, self.results_dir)}

    def close(self) -> None:
        try:
            if self._seen_buffer:
                with self._tx():
                    pass
        except LedgerWriteError:
            pass  # only cached hashes: computed again next time
        finally:
            self._db.close()
            if self._owns_lock:
                self._lock.close()

    def lost(self) -> str | None:
        """Why this ledger can no longer be trusted to be the one on disk (its file, the
        results folder or the lock removed or replaced since it was opened), or None."""
        for path, ident in self._identities.items():
            now = file_identity(path)
            if now is None:
                return f"{path} was deleted or cannot be reached"
            if now != ident:
                return f"{path} was replaced by another file or folder"
        return self._lock.lost()

    def probe(self) -> None:
        """One small write transaction: raises LedgerWriteError while the ledger cannot be
        written (the daemon's test for the end of a full disk)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_write_probe', ?)",
                       (str(time.time()),))

    def is_empty(self) -> bool:
        """Nothing recorded yet (a new ledger, or one deleted and created again)."""
        return self._db.execute(
            "SELECT (SELECT COUNT(*) FROM batches) + (SELECT COUNT(*) FROM items)"
        ).fetchone()[0] == 0

    # --- transactions -------------------------------------------------------------------

    def _tx(self):
        return Transaction(self._db, self._flush_seen)

    def transaction(self):
        """A write transaction (``with ledger.transaction() as db``); commits on success."""
        return self._tx()

    # --- lookups ------------------------------------------------------------------------

    def item(self, key: ItemKey) -> ItemState | None:
        row = self._db.execute(
            "SELECT state, attempts, last_error, batch_id, source, batch_cap FROM items "
            "WHERE sha256=? AND model_sha256=? AND measurement_version=?",
            (key.sha256, key.model_sha256, key.measurement_version),
        ).fetchone()
        return None if row is None else ItemState(*row)

    def holds_rows_of(self, path: PathKey, model_sha256: str | None = None,
                      measurement_version: str | None = None) -> bool:
        """Whether ``path`` is the file whose name the rows of a done content carry, of this
        model and measurement version (None: any): its copies elsewhere are skipped, one row
        per content."""
        return self._db.execute(
            "SELECT 1 FROM items WHERE source=? AND state='done' AND (? IS NULL OR "
            "model_sha256=?) AND (? IS NULL OR measurement_version=?) LIMIT 1",
            (path, model_sha256, model_sha256, measurement_version, measurement_version),
        ).fetchone() is not None

    def cached_sha(self, path: PathKey, version: FileVersion, *,
                   trust_earlier: bool = True) -> str | None:
        """The hash of this ``version`` of ``path`` when it was hashed before, else None.

        The hashes are kept by size and mtime (``seen``, which earlier versions of nwwatch
        read and write as they did) and the ctime beside them (``seen_ctime``). A hash an
        earlier version cached, without a ctime, is trusted on size and mtime as it was
        (``trust_earlier``: to skip a file done without reading it, so that an upgrade does
        not read every watched file again), and the ctime it was trusted at is kept, marked
        unconfirmed: a later ctime is a replaced file. It is not trusted to process a file:
        the file is hashed then, which confirms its row."""
        return self._cached(path, version, trust_earlier)[0]

    def _cached(self, path: PathKey, version: FileVersion,
                trust_earlier: bool = True) -> tuple[str | None, bool]:
        """(:meth:`cached_sha`, whether the size and mtime were hashed, or trusted, at another
        ctime: the file was replaced since, keeping them)."""
        buffered = self._seen_buffer.get(path)
        if buffered is not None and buffered[0][:2] == version[:2]:
            recorded, sha, confirmed = buffered
            if recorded != version:
                return None, True
            return (sha if confirmed or trust_earlier else None), False
        row = self._db.execute(
            "SELECT s.sha256, c.ctime_ns, c.confirmed FROM seen AS s LEFT JOIN seen_ctime AS c "
            "ON c.path = s.path WHERE s.path=? AND s.size=? AND s.mtime_ns=?",
            (path, version.size, version.mtime_ns),
        ).fetchone()
        if row is None:
            return None, False
        sha, ctime_ns, confirmed = row
        if ctime_ns is None:  # cached by an earlier version (or after a rollback to one)
            if not trust_earlier:
                return None, False
            self._seen_buffer[path] = (version, sha, False)
            return sha, False
        if ctime_ns != version.ctime_ns:
            return None, True
        return (sha if confirmed or trust_earlier else None), False

    def remember_sha(self, path: PathKey, version: FileVersion, sha256: str) -> None:
        """Cache a file version's hash; written with the next transaction (saves an fsync per
        file; losing it in a crash only costs hashing the file again)."""
        self._seen_buffer[path] = (version, sha256, True)

    def _flush_seen(self, db) -> None:
        if self._seen_buffer:
            items = self._seen_buffer.items()
            # the columns named: the seen table of earlier versions has these four
            db.executemany("INSERT OR REPLACE INTO seen (path, size, mtime_ns, sha256) "
                           "VALUES (?, ?, ?, ?)",
                           [(p, v.size, v.mtime_ns, sha) for p, (v, sha, _) in items])
            db.executemany("INSERT OR REPLACE INTO seen_ctime VALUES (?, ?, ?)",
                           [(p, v.ctime_ns, int(ok)) for p, (v, _, ok) in items])
            self._seen_buffer.clear()

    def done_content_moved_or_touched(self, path: PathKey, size_bytes: int, mtime_ns: int,
                                      model_sha256: str, measurement_version: str) -> bool:
        """Whether content done under this model and measurement version (or processed, its
        rows held by this process) was last hashed at ``path`` (the file touched since), or
        in a file of this same size and mtime (the file moved or renamed: ``mv`` keeps the
        mtime). Such a file whose hash is not known is hashed before its header may refuse
        it, to be skipped as done. A copy (new mtime) or new content of the same size is not
        matched: a size alone is shared by every tomogram of one shape and type."""
        def finished(state: str, batch_id: str | None) -> bool:
            return state == "done" or batch_id in self.held

        buffered = {sha for p, (v, sha, _) in self._seen_buffer.items()
                    if p == path or (v.size, v.mtime_ns) == (size_bytes, mtime_ns)}
        for sha in buffered:
            item = self.item(ItemKey(sha, model_sha256, measurement_version))
            if item is not None and finished(item.state, item.batch_id):
                return True
        # by the primary key and the seen_size_mtime index: a lookup per file, not a scan
        rows = self._db.execute(
            "SELECT i.state, i.batch_id FROM seen AS s JOIN items AS i "
            "ON i.sha256 = s.sha256 WHERE (s.path=? OR (s.size=? AND s.mtime_ns=?)) AND "
            "i.model_sha256=? AND i.measurement_version=? AND i.state IN ('done', 'pending')",
            (path, size_bytes, mtime_ns, model_sha256, measurement_version))
        return any(finished(*row) for row in rows)

    def quarantined_version(self, path: PathKey, version: FileVersion, model_sha256: str,
                            measurement_version: str) -> bool:
        """``quarantined_at`` for this version of ``path``: a quarantine entry made for its
        size and mtime does not hold for a file replaced since, keeping them (hashed at
        another ctime than this one, or to other content). Where the file was not hashed
        (an entry refused before it was read, a ledger rebuilt from the results) nothing
        tells, and the entry holds."""
        if not self.quarantined_at(path, version.size, version.mtime_ns, model_sha256,
                                   measurement_version):
            return False
        recorded = self.quarantined_sha(path)
        sha, replaced = self._cached(path, version)
        if recorded is None or (sha is None and not replaced):
            return True
        return sha == recorded

    def is_finished(self, path: PathKey, version: FileVersion, model_sha256: str,
                    measurement_version: str) -> bool:
        """Cheap check for rescans: done or quarantined for this file version, or processed
        with its rows held by this process (a failed write of them requeues the file itself),
        without I/O (but an open of a file quarantined as unreadable: ``quarantined_at``)."""
        return self.known_state(path, version, model_sha256, measurement_version) is not None

    def known_state(self, path: PathKey, version: FileVersion, model_sha256: str,
                    measurement_version: str) -> str | None:
        """What the ledger knows of this version of ``path`` (by name, size, mtime and ctime,
        without reading it) under this model and measurement version, where nothing is left
        to do for it: "quarantined"; "done", its rows of this path; "copy", done under another
        name (its rows carry that name); "held", processed with its rows held by this
        process. None: the file is to be looked at (hashed, or found done and skipped there).

        A file put back to content of its own done before is not known while its revert is
        unrecorded for this model (:meth:`revert_unrecorded`): skipped here, it would never
        be recorded where another model's run cached the version."""
        if self.quarantined_version(path, version, model_sha256, measurement_version):
            return "quarantined"
        sha = self.cached_sha(path, version)
        if sha is None:
            return None
        key = ItemKey(sha, model_sha256, measurement_version)
        item = self.item(key)
        if item is None:
            return None
        if item.state == "quarantined":
            return "quarantined"
        if item.state != "done" and item.batch_id not in self.held:
            return None
        if self.revert_unrecorded(path, key, item):
            return None
        if item.state != "done":
            return "held"
        return "done" if item.source == path else "copy"

    # --- the batch protocol -------------------------------------------------------------

    def claim(
        self,
        batch_id: str,
        kind: str,
        parquet: Path | None,
        items: Sequence[tuple[ItemKey, PathKey]],
        aux: Sequence[Path] = (),
        started_at: float | None = None,
        processed: bool = False,
    ) -> None:
        """Step 1: record the batch and its items as in flight (see module docstring).

        ``started_at`` (s since the epoch): when the work on the batch began, where that was
        before the claim (a Dask task's batch is claimed by the driver once the worker is
        done); default now. ``nwwatch status`` counts the time from it to the batch's hold
        or commit as processing time.

        ``processed``: the files were processed before the claim, elsewhere (a Dask task): a
        crash before the batch is held is not their doing, and the next start releases them
        without an attempt, as for a held batch (:meth:`Recovery.settle`).

        ``parquet``: the file the rows will be written to, or None when they are held for a
        larger file (:mod:`nwwatch.service.ledgerhold`), which names it later.
        Items already ``done`` (``--force``) are *superseded*: the batch records which earlier
        Parquet files hold their rows (``[file, content hashes, model hash, measurement
        version]``: a file may also hold rows of the same contents made by another model or
        with other settings, which stay), and :meth:`supersede` removes those rows after the
        new file is written (again on reconcile, if a crash came in between).
        """
        now = time.time()
        created = now if started_at is None else min(started_at, now)
        with self._tx() as db:
            old: dict[tuple[str, str, str], set[str]] = {}
            for key, _ in items:
                row = db.execute(
                    "SELECT b.parquet FROM items i JOIN batches b ON b.batch_id = i.batch_id "
                    "WHERE i.sha256=? AND i.model_sha256=? AND i.measurement_version=? "
                    "AND i.state='done' AND b.parquet != ''",
                    (key.sha256, key.model_sha256, key.measurement_version),
                ).fetchone()
                if row is not None:
                    old.setdefault((row[0], key.model_sha256, key.measurement_version),
                                   set()).add(key.sha256)
            supersedes = [[f, sorted(shas), model, version]
                          for (f, model, version), shas in sorted(old.items())]
            db.execute(
                "INSERT INTO batches (batch_id, kind, state, parquet, aux, supersedes,"
                " created_at, held_at) VALUES (?, ?, 'writing', ?, ?, ?, ?, ?)",
                (batch_id, kind, "" if parquet is None else self._rel(parquet),
                 json.dumps([self._rel(a) for a in aux]),
                 json.dumps(supersedes), created, now if processed else None),
            )
            seq = next_claim_seq(db, len(items))
            for n, (key, source) in enumerate(items):
                db.execute(
                    "INSERT INTO items (sha256, model_sha256, measurement_version, source, kind,"
                    " state, batch_id, first_seen, updated_at, claimed_at, claim_seq) "
                    "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET state='pending', batch_id=excluded.batch_id,"
                    " source=excluded.source, updated_at=excluded.updated_at,"
                    " claimed_at=excluded.claimed_at, claim_seq=excluded.claim_seq",
                    (key.sha256, key.model_sha256, key.measurement_version, source, kind,
                     batch_id, now, now, created, seq + n),
                )
            self._items_written(db, items)

    def supersede(self, batch_id: str) -> None:
        """Remove the rows this batch replaces from earlier Parquet files (idempotent: rows
        of this batch itself are never removed), then the masks those rows named (a crash
        in between leaves a mask no row names, never a row without its mask). A file left
        without rows is deleted, and the batches that named it then name no file, so nothing
        later reads it."""
        row = self._db.execute("SELECT supersedes FROM batches WHERE batch_id=?",
                               (batch_id,)).fetchone()
        for rel, shas, *made_by in json.loads(row[0]) if row else []:
            path = self.results_dir / rel
            if path.is_file():
                # only the rows of this batch's model and measurement version (entries of a
                # ledger written before they were recorded: every row of these contents)
                same = dict(zip(("model_sha256", "measurement_version"), made_by, strict=False))
                dropped = drop_rows(path, shas, keep_batch_id=batch_id, same=same)
                masks = dropped.column("mask_path").to_pylist() \
                    if "mask_path" in dropped.column_names else []
                for mask in filter(None, masks):
                    remove_if_present(self.results_dir / mask)
            if not path.is_file():
                with self._tx() as db:
                    db.execute("UPDATE batches SET parquet='' WHERE parquet=?", (rel,))

    def commit(
        self,
        batch_id: str,
        rows_per_item: dict[ItemKey, int],
        failures: Sequence[Failure],
        max_attempts: int,
        wrote_parquet: bool,
    ) -> list[Failure]:
        """Step 3: the batch is done. Returns the failures that are now quarantined."""
        now = time.time()
        quarantined: list[Failure] = []
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET state='committed', committed_at=?, n_rows=?,"
                " parquet=CASE WHEN ? THEN parquet ELSE '' END WHERE batch_id=?",
                (now, sum(rows_per_item.values()), wrote_parquet, batch_id),
            )
            self._mark_done(db, batch_id, rows_per_item, now)
            for failure in failures:
                if self._fail(db, failure, max_attempts, now):
                    quarantined.append(failure)
            self._release_leftovers(db, batch_id, now)
        return quarantined

    def _mark_done(self, db, batch_id: str, rows_per_item: dict[ItemKey, int],
                   now: float) -> None:
        """The batch's items with rows are done; a file fixed after being quarantined (same
        path, new content) leaves the quarantine list."""
        db.executemany(
            "UPDATE items SET state='done', n_rows=?, processed_at=?, updated_at=?,"
            " last_error=NULL, error_type=NULL, batch_cap=NULL "
            "WHERE sha256=? AND model_sha256=? AND measurement_version=?",
            [(n, now, now, k.sha256, k.model_sha256, k.measurement_version)
             for k, n in rows_per_item.items()])
        self._unquarantine_done(db, batch_id)

    @staticmethod
    def _restore_superseded(db, batch_id: str, now: float) -> None:
        # Files processed again (force) whose new rows were never written: their earlier
        # rows are still in the earlier file, so they are done under the earlier batch
        # again (deleting them would let a later run add their rows a second time).
        row = db.execute("SELECT supersedes FROM batches WHERE batch_id=?",
                         (batch_id,)).fetchone()
        for rel, shas, *_ in json.loads(row[0]) if row and row[0] else []:
            earlier = db.execute("SELECT batch_id FROM batches WHERE parquet=? AND "
                                 "state='committed' AND batch_id<>? LIMIT 1",
                                 (rel, batch_id)).fetchone()
            if earlier is None:
                continue
            db.executemany("UPDATE items SET state='done', batch_id=?, updated_at=? "
                           "WHERE batch_id=? AND sha256=? AND state='pending'",
                           [(earlier[0], now, batch_id, sha) for sha in shas])

    @classmethod
    def _release_leftovers(cls, db, batch_id: str, now: float) -> None:
        # Claimed files that produced neither rows nor a failure (they vanished, or results
        # could not be written): back to "never seen" / "failed" without counting an attempt.
        cls._restore_superseded(db, batch_id, now)
        db.execute("DELETE FROM items WHERE batch_id=? AND state='pending' AND attempts=0",
                   (batch_id,))
        db.execute("UPDATE items SET state='failed', batch_id=NULL, updated_at=? "
                   "WHERE batch_id=? AND state='pending'", (now, batch_id))

    def abort(self, batch_id: str, failures: Sequence[Failure], max_attempts: int,
              remove: Iterable[Path] = ()) -> list[Failure]:
        """The batch failed as a whole (an unexpected error): no rows, failures recorded."""
        for path in remove:
            remove_if_present(path)
        now = time.time()
        quarantined = []
        with self._tx() as db:
            db.execute("UPDATE batches SET state='aborted' WHERE batch_id=?", (batch_id,))
            for failure in failures:
                if self._fail(db, failure, max_attempts, now):
                    quarantined.append(failure)
            self._release_leftovers(db, batch_id, now)
        return quarantined

    def _rel(self, path: Path) -> str:
        path = Path(path)
        try:
            return str(path.relative_to(self.results_dir))
        except ValueError:
            return str(path)
