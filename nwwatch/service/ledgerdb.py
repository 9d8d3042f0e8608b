"""The ledger's SQLite file and records: the schema, opening it (with an integrity check),
write transactions whose failures (disk full, I/O error) are :class:`LedgerWriteError`, and the
value types of :class:`nwwatch.service.ledger.Ledger`."""

from __future__ import annotations

import errno
import os
import shlex
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from nwwatch.paths import default_ledger

SCHEMA_VERSION = 7

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
    batch_cap INTEGER,
    claimed_at REAL,
    claim_seq INTEGER,
    PRIMARY KEY (sha256, model_sha256, measurement_version)
);
CREATE INDEX IF NOT EXISTS items_state ON items (state);
CREATE INDEX IF NOT EXISTS items_batch ON items (batch_id);
CREATE INDEX IF NOT EXISTS items_source ON items (source);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('writing', 'committed', 'aborted')),
    parquet TEXT NOT NULL,
    aux TEXT NOT NULL DEFAULT '[]',
    supersedes TEXT NOT NULL DEFAULT '[]',
    n_rows INTEGER,
    created_at REAL NOT NULL,
    committed_at REAL,
    held_at REAL,
    stopped_at REAL
);
CREATE TABLE IF NOT EXISTS seen (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
-- a file moved or renamed keeps its size and mtime: found by them before its header may
-- refuse it (Ledger.done_content_moved_or_touched)
CREATE INDEX IF NOT EXISTS seen_size_mtime ON seen (size, mtime_ns);
CREATE TABLE IF NOT EXISTS seen_ctime (
    path TEXT PRIMARY KEY, ctime_ns INTEGER NOT NULL, confirmed INTEGER NOT NULL
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
CREATE TABLE IF NOT EXISTS compactions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('staged', 'switched')),
    staged TEXT NOT NULL,
    final TEXT NOT NULL,
    old_batches TEXT NOT NULL,
    old_files TEXT NOT NULL,
    aux TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""


PathKey = str | bytes


class FileVersion(NamedTuple):
    """One version of a file, told without reading it. Size and mtime alone are not enough:
    frames of one camera have one size, and a copy that keeps times (``cp -p``, ``rsync
    -a``), an export tool that sets them, or a file system of whole seconds repeats the
    mtime. The status change time changes with every replacement (it cannot be set from user
    space); it also changes with a chmod or chown, which only costs hashing the file again.
    (The inode is left out: CIFS mounts without server inode numbers renumber files at every
    mount.)"""

    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileVersion:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns)


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
    source: PathKey
    batch_cap: int | None = None


@dataclass(frozen=True)
class Failure:
    """A file of a batch that produced no rows. ``permanent``: bad input, quarantine now.
    ``source``: the file's :func:`~nwwatch.service.names.path_key`. ``machine_limit``: refused
    for what the machine lacks (a tomogram too large for the memory now), not for its
    content: an item done before this batch claimed it (``--force``) stays done with its
    rows, and the file is listed by its version, to be retried once it fits."""

    key: ItemKey | None
    source: PathKey
    reason: str
    error_type: str
    permanent: bool
    size: int | None = None
    mtime_ns: int | None = None
    machine_limit: bool = False


@dataclass(frozen=True)
class ReconcileReport:
    adopted: list[str]
    removed: list[str]  # batch ids whose files were removed and items released
    # those of both that a stop request cut short (:func:`mark_stopped`): no crash
    stopped: list[str] = field(default_factory=list)

    def log_to(self, log) -> None:
        """One line for what a start found unfinished: ``reconciled_after_crash`` (warning)
        for batches a crash or kill left, ``resumed_after_stop`` (info) for those a stop
        request (Ctrl-C, SIGTERM, SIGHUP) cut short, whose files were charged nothing."""
        adopted = [b for b in self.adopted if b not in self.stopped]
        removed = [b for b in self.removed if b not in self.stopped]
        if adopted or removed:
            log.warning("reconciled_after_crash", adopted=adopted, removed=removed)
        if self.stopped:
            log.info("resumed_after_stop", batches=self.stopped,
                     adopted=[b for b in self.adopted if b in self.stopped])


class LedgerCorruptError(RuntimeError):
    """The ledger file is damaged; ``nwwatch ledger rebuild`` recovers it from the results."""



class LedgerWriteError(OSError):
    """The ledger could not be written (disk full, I/O error): not the input's fault."""


#: The longest ledger path (bytes, absolute) SQLite opens: its unix file layer takes paths of
#: at most 512 bytes, the ``-journal`` suffix included (505 bytes fail, 504 open).
MAX_LEDGER_PATH_BYTES = 512 - len("-journal")


def ledger_path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why SQLite cannot open a ledger at ``path`` (its absolute path, or the one its
    symbolic links lead to, which SQLite follows, too long), or None."""
    size = max(len(os.fsencode(os.path.abspath(path))), len(os.fsencode(os.path.realpath(path))))
    if size <= MAX_LEDGER_PATH_BYTES:
        return None
    return (f"the ledger's path is {size} bytes long (symbolic links followed); SQLite opens "
            f"ledgers of paths up to {MAX_LEDGER_PATH_BYTES} bytes: give the results folder "
            f"(or the ledger) a shorter path")


def open_ledger_db(path: Path, results_dir: Path | None = None) -> sqlite3.Connection:
    """Open (or create) the ledger, check it and bring its schema up to date. ``results_dir``
    (the ledger's results folder) is named in the rebuild command of a damaged ledger."""
    fresh = not path.exists() or path.stat().st_size == 0
    try:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when commit returns (power cut included), which the
            # exactly-once argument needs; costs ~one fsync per batch.
            db.execute("PRAGMA synchronous=FULL")
            if not fresh:
                problems = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems))
            db.executescript(_SCHEMA)
            stored = db.execute(
                "SELECT value FROM meta WHERE key='schema_version'").fetchone()
            columns = {r[1] for r in db.execute("PRAGMA table_info(items)")}
            if "batch_cap" not in columns:  # ledgers of schema version 1
                db.execute("ALTER TABLE items ADD COLUMN batch_cap INTEGER")
            if "claimed_at" not in columns:  # when the file last held the content
                db.execute("ALTER TABLE items ADD COLUMN claimed_at REAL")
            if "claim_seq" not in columns:  # the order in which files held contents
                db.execute("ALTER TABLE items ADD COLUMN claim_seq INTEGER")
            elif stored is not None and _older_schema(stored[0]):
                # an earlier version wrote the ledger since (a rollback): its claims carry
                # no number, so the numbers kept would order them wrongly; the revert rule
                # orders by time again until new claims are numbered
                db.execute("UPDATE items SET claim_seq=NULL WHERE claim_seq IS NOT NULL")
            batch_columns = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
            if "held_at" not in batch_columns:
                # processed, rows waiting for their file (nwwatch.service.ledgerhold)
                db.execute("ALTER TABLE batches ADD COLUMN held_at REAL")
            if "stopped_at" not in batch_columns:  # in flight when a stop timed out
                db.execute("ALTER TABLE batches ADD COLUMN stopped_at REAL")
            # Written at every open, also unchanged: the write is what finds a ledger this
            # user may not write (named at the start, not at the first batch). Updated in
            # place: a run refused after the open (a model that does not fit) leaves the
            # ledger's contents as it found them, its rows in their order.
            if stored is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
            else:
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                           (str(SCHEMA_VERSION),))
        except BaseException:
            db.close()
            raise
    except sqlite3.OperationalError as exc:
        if (problem := ledger_path_problem(path)) is not None:  # not damage: no rebuild
            raise OSError(errno.ENAMETOOLONG, problem, str(path)) from None
        if "disk is full" in str(exc) or "I/O error" in str(exc):
            raise LedgerWriteError(f"{path}: cannot write the ledger ({exc})") from exc
        if "readonly database" in str(exc):  # a permission, not damage: no rebuild
            raise PermissionError(errno.EACCES, f"Permission denied ({exc}; the file, or its "
                                  "-wal or -shm file beside it, is not writable by this user)",
                                  str(path)) from None
        raise LedgerCorruptError(_corrupt_message(path, exc, results_dir)) from None
    except sqlite3.DatabaseError as exc:
        raise LedgerCorruptError(_corrupt_message(path, exc, results_dir)) from None
    return db


def _older_schema(stored: str) -> bool:
    """Whether the ``schema_version`` a ledger records is older than :data:`SCHEMA_VERSION`."""
    try:
        return int(stored) < SCHEMA_VERSION
    except ValueError:
        return True


def next_claim_seq(db: sqlite3.Connection, count: int = 1) -> int:
    """The first of ``count`` new numbers of the ledger's claim order (``items.claim_seq``),
    reserved in the write transaction ``db`` is in. The order in which the files were seen
    to hold their contents, independent of the clock, which may be set back between two
    claims."""
    row = db.execute("SELECT value FROM meta WHERE key='claim_seq'").fetchone()
    first = int(row[0]) + 1 if row is not None else 1
    db.execute("INSERT OR REPLACE INTO meta VALUES ('claim_seq', ?)", (str(first + count - 1),))
    return first


def sqlite_uri(path: str | os.PathLike[str], query: str) -> str:
    """The SQLite URI of the file ``path`` with ``query`` (e.g. ``"mode=ro"``): the path
    percent-encoded, so that a ``#``, ``?`` or ``%`` in a folder's name ("sample#3") names
    that folder, not a fragment, a query or another character (SQLite would open, and
    create, the file at the path cut there)."""
    return f"{Path(os.path.abspath(path)).as_uri()}?{query}"


def mark_stopped(path: Path, timeout_s: float = 2.0) -> int:
    """Record in the ledger at ``path`` that the batches in flight (``writing``, not held) were
    cut short by a stop request (SIGTERM past ``stop_timeout_seconds``), not by a crash: the
    next start releases their files without an attempt (:meth:`Recovery.settle`). Its own
    connection (called from the stop-deadline thread), never creating the file; gives up
    after ``timeout_s`` while another connection writes. Returns how many were marked."""
    return stop_batches(path, timeout_s)[0]


def stop_batches(path: Path, timeout_s: float = 2.0) -> tuple[int, int]:
    """:func:`mark_stopped`, and how many batches are held (processed, their rows not yet
    written: the next start releases their files without an attempt too), in one
    connection: (batches marked stopped, batches held)."""
    db = sqlite3.connect(sqlite_uri(path, "mode=rw"), uri=True, timeout=timeout_s,
                         isolation_level=None)
    try:
        marked = db.execute("UPDATE batches SET stopped_at=? WHERE state='writing' AND "
                            "held_at IS NULL AND stopped_at IS NULL", (time.time(),)).rowcount
        (held,) = db.execute("SELECT COUNT(*) FROM batches WHERE state='writing' AND "
                             "held_at IS NOT NULL").fetchone()
        return marked, held
    finally:
        db.close()


def rebuild_command(path: Path, results_dir: Path | None) -> str:
    """The `nwwatch ledger rebuild` command line for the ledger ``path`` of ``results_dir``,
    ready to paste (``--ledger`` only where it is not the default)."""
    command = f"nwwatch ledger rebuild {shlex.quote(str(results_dir or 'RESULTS'))}"
    if results_dir is None or Path(path) != default_ledger(results_dir):
        command += f" --ledger {shlex.quote(str(path))}"
    return command


def _corrupt_message(path: Path, exc: Exception, results_dir: Path | None) -> str:
    command = rebuild_command(path, results_dir)
    return (f"{path}: the ledger is damaged ({exc}); stop the service and run `{command}` "
            "to rebuild it from the results (docs/service.md, Faults and recovery)")


class Transaction:
    def __init__(self, db: sqlite3.Connection, before_commit=None) -> None:
        self.db = db
        self.before_commit = before_commit

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            if self.before_commit is not None:
                self.before_commit(self.db)
        except BaseException as exc:
            # whatever interrupts (a signal's exception too) must not leave the transaction
            # open: the next one, the held rows' write on the way out, could not begin
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise LedgerWriteError(f"cannot write the ledger ({exc})") from exc
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.OperationalError as error:
                exc = error
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass
        if isinstance(exc, sqlite3.OperationalError):
            raise LedgerWriteError(f"cannot write the ledger ({exc})") from exc
