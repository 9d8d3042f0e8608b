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
items are released with one attempt counted (a file that crashes the service repeatedly ends
up quarantined instead of crash-looping it). Either way every frame ends up exactly once in
the results.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    sha256 TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    measurement_version TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'quarantined')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    error_type TEXT,
    batch_id TEXT,
    n_rows INTEGER,
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL,
    processed_at REAL,
    PRIMARY KEY (sha256, model_sha256, measurement_version)
);
CREATE INDEX IF NOT EXISTS items_state ON items (state);
CREATE INDEX IF NOT EXISTS items_batch ON items (batch_id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('writing', 'committed', 'aborted')),
    parquet TEXT NOT NULL,
    aux TEXT NOT NULL DEFAULT '[]',
    supersedes TEXT NOT NULL DEFAULT '[]',
    n_rows INTEGER,
    created_at REAL NOT NULL,
    committed_at REAL
);
CREATE TABLE IF NOT EXISTS seen (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    path TEXT PRIMARY KEY,
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    kind TEXT,
    reason TEXT NOT NULL,
    error_type TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    quarantined_at REAL NOT NULL
);
"""


class LedgerBusyError(RuntimeError):
    """Another process holds the ledger (a running service, a replay into the same folder)."""


@dataclass(frozen=True)
class ItemKey:
    """What makes a result unique: the file's content, the model, the measurement code."""

    sha256: str
    model_sha256: str
    measurement_version: str


@dataclass(frozen=True)
class ItemState:
    state: str
    attempts: int
    last_error: str | None
    batch_id: str | None
    source: str


@dataclass(frozen=True)
class Failure:
    """A file of a batch that produced no rows. ``permanent``: bad input, quarantine now."""

    key: ItemKey | None
    source: str
    reason: str
    error_type: str
    permanent: bool
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class ReconcileReport:
    adopted: list[str]
    removed: list[str]  # batch ids whose files were removed and items released


class Ledger:
    """The service's state. One instance per process; not shared across threads.

    Parameters
    ----------
    path : the SQLite file (created with its folder).
    results_dir : the results folder; batch file names are stored relative to it.
    """

    def __init__(self, path: str | os.PathLike[str], results_dir: str | os.PathLike[str],
                 readonly: bool = False):
        self.path = Path(path)
        self.results_dir = Path(results_dir)
        self.readonly = readonly
        self._seen_buffer: dict[str, tuple[int, int, str]] = {}
        if readonly:
            # `nwwatch status` beside a running service: never writes, never creates.
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: no ledger here (nothing processed yet?)")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0,
                                       isolation_level=None)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One writer per ledger: reconcile would otherwise treat another live process's batch
        # in flight as a crash. The lock dies with the process (kill -9 included).
        self._lock = open(self.path.with_name(self.path.name + ".lock"), "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "?"
            self._lock.close()
            raise LedgerBusyError(
                f"{self.path}: in use by another nwwatch process (pid {holder}); stop it or "
                "use another results folder"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when commit returns (power cut included), which the
        # exactly-once argument needs; costs ~one fsync per batch.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    def close(self) -> None:
        if self._seen_buffer and not self.readonly:
            with self._tx():
                pass
        self._db.close()
        lock = getattr(self, "_lock", None)
        if lock is not None and not lock.closed:
            lock.close()

    # --- transactions -------------------------------------------------------------------

    def _tx(self):
        return _Transaction(self._db, self._flush_seen)

    # --- lookups ------------------------------------------------------------------------

    def item(self, key: ItemKey) -> ItemState | None:
        row = self._db.execute(
            "SELECT state, attempts, last_error, batch_id, source FROM items "
            "WHERE sha256=? AND model_sha256=? AND measurement_version=?",
            (key.sha256, key.model_sha256, key.measurement_version),
        ).fetchone()
        return None if row is None else ItemState(*row)

    def cached_sha(self, path: str, size: int, mtime_ns: int) -> str | None:
        buffered = self._seen_buffer.get(path)
        if buffered is not None and buffered[:2] == (size, mtime_ns):
            return buffered[2]
        row = self._db.execute(
            "SELECT sha256 FROM seen WHERE path=? AND size=? AND mtime_ns=?",
            (path, size, mtime_ns),
        ).fetchone()
        return None if row is None else row[0]

    def remember_sha(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        """Cache a file version's hash; written with the next transaction (saves an fsync per
        file; losing it in a crash only costs hashing the file again)."""
        self._seen_buffer[path] = (size, mtime_ns, sha256)

    def _flush_seen(self, db) -> None:
        if self._seen_buffer:
            db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)",
                           [(p, *v) for p, v in self._seen_buffer.items()])
            self._seen_buffer.clear()

    def quarantined_at(self, path: str, size: int, mtime_ns: int) -> bool:
        """True when this exact version (size, mtime) of ``path`` is quarantined."""
        row = self._db.execute(
            "SELECT 1 FROM quarantine WHERE path=? AND size IS ? AND mtime_ns IS ?",
            (path, size, mtime_ns),
        ).fetchone()
        return row is not None

    def is_finished(self, path: str, size: int, mtime_ns: int, model_sha256: str,
                    measurement_version: str) -> bool:
        """Cheap check for rescans: done or quarantined for this file version, without I/O."""
        if self.quarantined_at(path, size, mtime_ns):
            return True
        sha = self.cached_sha(path, size, mtime_ns)
        if sha is None:
            return False
        item = self.item(ItemKey(sha, model_sha256, measurement_version))
        return item is not None and item.state in ("done", "quarantined")

    # --- the batch protocol -------------------------------------------------------------

    def claim(
        self,
        batch_id: str,
        kind: str,
        parquet: Path,
        items: Sequence[tuple[ItemKey, str]],
        aux: Sequence[Path] = (),
    ) -> None:
        """Step 1: record the batch and its items as in flight (see module docstring).

        Items already ``done`` (``--force``) are *superseded*: the batch records which earlier
        Parquet files hold their rows, and :meth:`supersede` removes those rows after the new
        file is written (again on reconcile, if a crash came in between).
        """
        now = time.time()
        with self._tx() as db:
            old: dict[str, set[str]] = {}
            for key, _ in items:
                row = db.execute(
                    "SELECT b.parquet FROM items i JOIN batches b ON b.batch_id = i.batch_id "
                    "WHERE i.sha256=? AND i.model_sha256=? AND i.measurement_version=? "
                    "AND i.state='done' AND b.parquet != ''",
                    (key.sha256, key.model_sha256, key.measurement_version),
                ).fetchone()
                if row is not None:
                    old.setdefault(row[0], set()).add(key.sha256)
            supersedes = [[f, sorted(shas)] for f, shas in sorted(old.items())]
            db.execute(
                "INSERT INTO batches (batch_id, kind, state, parquet, aux, supersedes,"
                " created_at) VALUES (?, ?, 'writing', ?, ?, ?, ?)",
                (batch_id, kind, self._rel(parquet), json.dumps([self._rel(a) for a in aux]),
                 json.dumps(supersedes), now),
            )
            for key, source in items:
                db.execute(
                    "INSERT INTO items (sha256, model_sha256, measurement_version, source, kind,"
                    " state, batch_id, first_seen, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET state='pending', batch_id=excluded.batch_id,"
                    " source=excluded.source, updated_at=excluded.updated_at",
                    (key.sha256, key.model_sha256, key.measurement_version, source, kind,
                     batch_id, now, now),
                )

    def supersede(self, batch_id: str) -> None:
        """Remove the rows this batch replaces from earlier Parquet files (idempotent: rows
        of this batch itself are never removed). Each file is rewritten atomically, or
        deleted when nothing is left in it."""
        row = self._db.execute("SELECT supersedes FROM batches WHERE batch_id=?",
                               (batch_id,)).fetchone()
        for rel, shas in json.loads(row[0]) if row else []:
            path = self.results_dir / rel
            if not path.is_file():
                continue
            table = pq.read_table(path)
            drop = pa.compute.is_in(table.column("source_sha256"), pa.array(shas))
            if "batch_id" in table.column_names:
                other = pa.compute.not_equal(table.column("batch_id"), batch_id)
                drop = pa.compute.and_(drop, pa.compute.fill_null(other, True))
            if not pa.compute.any(drop).as_py():
                continue
            kept = table.filter(pa.compute.invert(drop))
            if kept.num_rows:
                from nwwatch.results.parquet import write_table_atomic

                write_table_atomic(kept, path)
            else:
                path.unlink()

    def add_aux(self, batch_id: str, aux: Sequence[Path]) -> None:
        """Record more files a ``writing`` batch may create (before creating them)."""
        row = self._db.execute("SELECT aux FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
        names = json.loads(row[0]) + [self._rel(a) for a in aux]
        with self._tx() as db:
            db.execute("UPDATE batches SET aux=? WHERE batch_id=?", (json.dumps(names), batch_id))

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
            for key, n_rows in rows_per_item.items():
                db.execute(
                    "UPDATE items SET state='done', n_rows=?, processed_at=?, updated_at=?,"
                    " last_error=NULL, error_type=NULL "
                    "WHERE sha256=? AND model_sha256=? AND measurement_version=?",
                    (n_rows, now, now, key.sha256, key.model_sha256, key.measurement_version),
                )
            # A file fixed after being quarantined (same path, new content) leaves the list.
            db.execute(
                "DELETE FROM quarantine WHERE path IN (SELECT source FROM items "
                "WHERE batch_id=? AND state='done')", (batch_id,)
            )
            for failure in failures:
                if self._fail(db, failure, max_attempts, now):
                    quarantined.append(failure)
            self._release_leftovers(db, batch_id, now)
        return quarantined

    @staticmethod
    def _release_leftovers(db, batch_id: str, now: float) -> None:
        # Claimed files that produced neither rows nor a failure (they vanished, or results
        # could not be written): back to "never seen" / "failed" without counting an attempt.
        db.execute("DELETE FROM items WHERE batch_id=? AND state='pending' AND attempts=0",
                   (batch_id,))
        db.execute("UPDATE items SET state='failed', batch_id=NULL, updated_at=? "
                   "WHERE batch_id=? AND state='pending'", (now, batch_id))

    def abort(self, batch_id: str, failures: Sequence[Failure], max_attempts: int,
              remove: Iterable[Path] = ()) -> list[Failure]:
        """The batch failed as a whole (an unexpected error): no rows, failures recorded."""
        for path in remove:
            path.unlink(missing_ok=True)
        now = time.time()
        quarantined = []
        with self._tx() as db:
            db.execute("UPDATE batches SET state='aborted' WHERE batch_id=?", (batch_id,))
            for failure in failures:
                if self._fail(db, failure, max_attempts, now):
                    quarantined.append(failure)
            self._release_leftovers(db, batch_id, now)
        return quarantined

    def record_failures(self, failures: Sequence[Failure], max_attempts: int) -> list[Failure]:
        """Record failures that happened outside any batch (e.g. while hashing)."""
        now = time.time()
        with self._tx() as db:
            return [f for f in failures if self._fail(db, f, max_attempts, now)]

    def _fail(self, db, failure: Failure, max_attempts: int, now: float) -> bool:
        attempts = 1
        if failure.key is not None:
            k = failure.key
            row = db.execute(
                "SELECT attempts FROM items WHERE sha256=? AND model_sha256=? "
                "AND measurement_version=?", (k.sha256, k.model_sha256, k.measurement_version)
            ).fetchone()
            attempts = (row[0] if row else 0) + 1
            state = "quarantined" if failure.permanent or attempts >= max_attempts else "failed"
            db.execute(
                "INSERT INTO items (sha256, model_sha256, measurement_version, source, kind,"
                " state, attempts, last_error, error_type, first_seen, updated_at) "
                "VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET state=excluded.state, attempts=excluded.attempts,"
                " last_error=excluded.last_error, error_type=excluded.error_type,"
                " batch_id=NULL, updated_at=excluded.updated_at",
                (k.sha256, k.model_sha256, k.measurement_version, failure.source, state,
                 attempts, failure.reason, failure.error_type, now, now),
            )
        else:
            state = "quarantined" if failure.permanent else "failed"
        if state == "quarantined":
            db.execute(
                "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (failure.source, failure.size, failure.mtime_ns,
                 failure.key.sha256 if failure.key else None, None, failure.reason,
                 failure.error_type, attempts, now),
            )
            return True
        return False

    # --- crash recovery -----------------------------------------------------------------

    def reconcile(self, max_attempts: int) -> ReconcileReport:
        """Finish or undo every batch a crash left ``writing`` (see module docstring)."""
        adopted, removed = [], []
        rows = self._db.execute(
            "SELECT batch_id, parquet, aux FROM batches WHERE state='writing'"
        ).fetchall()
        for batch_id, parquet_rel, aux_json in rows:
            parquet = self.results_dir / parquet_rel
            if parquet_rel and parquet.is_file():
                self.supersede(batch_id)
                self._adopt(batch_id, parquet)
                adopted.append(batch_id)
            else:
                for rel in json.loads(aux_json):
                    (self.results_dir / rel).unlink(missing_ok=True)
                self._release(batch_id, max_attempts)
                removed.append(batch_id)
        self._remove_temporaries()
        return ReconcileReport(adopted=adopted, removed=removed)

    def _adopt(self, batch_id: str, parquet: Path) -> None:
        table = pq.read_table(parquet, columns=["source_sha256"])
        counts: dict[str, int] = {}
        for sha in table.column("source_sha256").to_pylist():
            counts[sha] = counts.get(sha, 0) + 1
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET state='committed', committed_at=?, n_rows=? "
                "WHERE batch_id=?", (now, table.num_rows, batch_id)
            )
            for sha, n in counts.items():
                db.execute(
                    "UPDATE items SET state='done', n_rows=?, processed_at=?, updated_at=? "
                    "WHERE batch_id=? AND sha256=?", (n, now, now, batch_id, sha)
                )
            # Items of the batch without rows had failed; they are simply tried again.
            db.execute(
                "UPDATE items SET state='failed', batch_id=NULL, updated_at=? "
                "WHERE batch_id=? AND state='pending'", (now, batch_id)
            )

    def _release(self, batch_id: str, max_attempts: int) -> None:
        now = time.time()
        reason = f"the service stopped (crash or kill) while processing batch {batch_id}"
        with self._tx() as db:
            db.execute("UPDATE batches SET state='aborted' WHERE batch_id=?", (batch_id,))
            pending = db.execute(
                "SELECT sha256, model_sha256, measurement_version, source FROM items "
                "WHERE batch_id=? AND state='pending'", (batch_id,)
            ).fetchall()
            for sha, model, version, source in pending:
                failure = Failure(ItemKey(sha, model, version), source, reason, "Interrupted",
                                  permanent=False)
                self._fail(db, failure, max_attempts, now)

    def _remove_temporaries(self) -> None:
        # Hidden temporaries of atomic writes (nwwatch.atomic) interrupted by a crash; only in
        # our results folder.
        for sub in ("frames", "volumes", "masks", ""):
            folder = self.results_dir / sub
            if folder.is_dir():
                for tmp in folder.glob(".*.part"):
                    tmp.unlink(missing_ok=True)

    def _rel(self, path: Path) -> str:
        path = Path(path)
        try:
            return str(path.relative_to(self.results_dir))
        except ValueError:
            return str(path)

    # --- reporting ----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        out = {"pending": 0, "done": 0, "failed": 0, "quarantined": 0}
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
            out[state] = n
        out["rows"] = self._db.execute(
            "SELECT COALESCE(SUM(n_rows), 0) FROM items WHERE state='done'"
        ).fetchone()[0]
        out["quarantined_files"] = self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        return out

    def quarantined(self) -> list[dict]:
        cur = self._db.execute(
            "SELECT path, sha256, reason, error_type, attempts, quarantined_at FROM quarantine "
            "ORDER BY quarantined_at"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def last_done(self) -> dict | None:
        row = self._db.execute(
            "SELECT source, n_rows, processed_at FROM items WHERE state='done' "
            "ORDER BY processed_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
        return None if row is None else {"source": row[0], "n_rows": row[1],
                                         "processed_at": row[2]}

    def throughput(self, window_s: float = 600.0) -> tuple[int, float]:
        """(rows committed in the last ``window_s`` seconds, rows per second over that span)."""
        since = time.time() - window_s
        row = self._db.execute(
            "SELECT COALESCE(SUM(n_rows), 0), MIN(created_at), MAX(committed_at) FROM batches "
            "WHERE state='committed' AND committed_at >= ?", (since,)
        ).fetchone()
        n, first, last = row
        if not n or first is None or last is None or last <= first:
            return int(n or 0), 0.0
        return int(n), n / (last - first)

    def quarantine_table(self) -> pa.Table:
        rows = self.quarantined()
        for row in rows:
            row["quarantined_at"] = datetime.fromtimestamp(row["quarantined_at"], UTC)
        return pa.Table.from_pylist(
            rows,
            schema=pa.schema([
                pa.field("path", pa.string()), pa.field("sha256", pa.string()),
                pa.field("reason", pa.string()), pa.field("error_type", pa.string()),
                pa.field("attempts", pa.int32()),
                pa.field("quarantined_at", pa.timestamp("us", tz="UTC")),
            ]),
        )

    def forget(self, keys: Sequence[ItemKey]) -> None:
        """Make items new again (``--force``)."""
        with self._tx() as db:
            for k in keys:
                db.execute(
                    "DELETE FROM items WHERE sha256=? AND model_sha256=? AND "
                    "measurement_version=?", (k.sha256, k.model_sha256, k.measurement_version)
                )


class _Transaction:
    def __init__(self, db: sqlite3.Connection, before_commit=None) -> None:
        self.db = db
        self.before_commit = before_commit

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        if self.before_commit is not None:
            self.before_commit(self.db)
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
