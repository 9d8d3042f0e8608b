"""The quarantine list of the ledger (a mixin of :class:`nwwatch.service.ledger.Ledger`):
failures recorded against their item, a file quarantined when its failure is permanent or
its attempts reach ``max_attempts``, and a file leaving the list once its path holds content
that is done (fixed and processed, or replaced by bytes already done).

The list is keyed by path; each entry names the file version (size, mtime) it was made for,
so a rescan of that same version skips the file without reading it.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from nwwatch.service.ledgerdb import Failure, PathKey


def opens_as_regular_file(path: PathKey) -> bool:
    """``path`` opens for reading as a regular file (non-blocking: a FIFO never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


class QuarantineList:
    """Methods of :class:`~nwwatch.service.ledger.Ledger` (they use its transactions)."""

    #: Set when the list changed: ``quarantine.parquet`` is rewritten
    #: (:func:`refresh_quarantine`). Set before the change commits: a
    #: stop signal's exception raised as the commit returns must not leave the file stale
    #: (a change that then fails to commit costs one rewrite).
    quarantine_changed: bool

    def quarantined_at(self, path: PathKey, size: int, mtime_ns: int,
                       model_sha256: str | None = None,
                       measurement_version: str | None = None) -> bool:
        """True when this exact version (size, mtime) of ``path`` is quarantined, unless it
        was quarantined as unreadable and now opens: a permission fixed (``chmod``, the
        service user added to the share's group) changes neither size nor mtime, so the
        version alone would keep the file quarantined for good. It then stays listed until
        processed (or quarantined again for what reading it shows).

        With ``model_sha256`` and ``measurement_version``: a file quarantined while its
        content was processed (hashed) is so for the models and measurements that tried it
        only; under another (the model that failed every frame replaced) it is tried again.
        One refused before it was hashed (not a TIFF, truncated), or whose content no item
        records (a ledger rebuilt from the results), stays, whatever the model."""
        row = self._db.execute(
            "SELECT error_type, sha256 FROM quarantine WHERE path=? AND size IS ? AND "
            "mtime_ns IS ?", (path, size, mtime_ns),
        ).fetchone()
        if row is None:
            return False
        if row[0] == "UnreadableFileError" and opens_as_regular_file(path):
            return False
        if row[1] is not None and model_sha256 is not None and measurement_version is not None:
            keys = self._db.execute("SELECT model_sha256, measurement_version FROM items "
                                    "WHERE sha256=?", (row[1],)).fetchall()
            # no item at all: a ledger rebuilt from the results, which keeps the list but not
            # the items of quarantined content: quarantined still
            return not keys or (model_sha256, measurement_version) in keys
        return True

    def quarantined_paths(self) -> set[PathKey]:
        """The paths the list holds, whatever their version: one query, so that a rescan
        asks :meth:`quarantined_at` (a query and a stat a file) only of these."""
        return {row[0] for row in self._db.execute("SELECT path FROM quarantine")}

    def quarantine_error_type(self, path: PathKey) -> str | None:
        """The error type of ``path``'s entry of the list (None: not listed)."""
        row = self._db.execute("SELECT error_type FROM quarantine WHERE path=?",
                               (path,)).fetchone()
        return None if row is None else row[0]

    def quarantined_sha(self, path: PathKey) -> str | None:
        """The content hash the quarantine entry of ``path`` recorded (None: none, or refused
        before the file was hashed)."""
        row = self._db.execute("SELECT sha256 FROM quarantine WHERE path=?", (path,)).fetchone()
        return None if row is None else row[0]

    def release_quarantine(self, path: PathKey, size: int, mtime_ns: int,
                           sha256: str | None = None) -> None:
        """``path`` now holds content that is done (skipped as already done): an entry of
        another version of it (size, mtime; or, with ``sha256``, the file's content now,
        another recorded content: a file replaced keeping size and mtime) leaves the list;
        one of this very version stays."""
        stale = ("FROM quarantine WHERE path=? AND (NOT (size IS ? AND mtime_ns IS ?) OR "
                 "(? IS NOT NULL AND sha256 IS NOT NULL AND sha256 != ?))",
                 (path, size, mtime_ns, sha256, sha256))
        if self._db.execute("SELECT 1 " + stale[0], stale[1]).fetchone() is None:
            return  # the usual case: no transaction
        with self._tx() as db:
            gone = db.execute("DELETE " + stale[0], stale[1]).rowcount
            self.quarantine_changed |= gone > 0  # before the commit: see quarantine_changed

    def quarantine_copy(self, path: PathKey, size: int, mtime_ns: int, key) -> str | None:
        """List ``path`` (this version) as quarantined when its content (``key``, an
        :class:`~nwwatch.service.ledgerdb.ItemKey`) is: a copy of a bad file under another
        name (or the file touched without a change) has the same fault, and a rescan or a
        replay should skip it unread and count it as quarantined, as it does the original.
        Returns the reason it is listed with, or None when the content is not quarantined."""
        row = self._db.execute(
            "SELECT last_error, error_type, attempts FROM items WHERE sha256=? AND "
            "model_sha256=? AND measurement_version=? AND state='quarantined'",
            (key.sha256, key.model_sha256, key.measurement_version)).fetchone()
        if row is None:
            return None
        reason = f"same content as a quarantined file: {row[0] or 'quarantined'}"
        self.quarantine_changed = True  # before the commit: see quarantine_changed
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (path, size, mtime_ns, key.sha256, None, reason, row[1], row[2],
                        time.time()))
        return reason

    def quarantined_as(self, error_type: str) -> list[tuple[PathKey, int | None, int | None]]:
        """(path, size, mtime_ns) of each entry of the list quarantined as ``error_type``."""
        return [tuple(r) for r in self._db.execute(
            "SELECT path, size, mtime_ns FROM quarantine WHERE error_type=?", (error_type,))]

    def retry_quarantined(self, path: PathKey, error_type: str) -> bool:
        """Take ``path``'s entry quarantined as ``error_type`` off the list, and its content's
        items from ``quarantined`` to ``failed`` (attempts kept): the file is tried again at
        the next scan. For a refusal caused by what the machine lacked, not by the file (a
        tomogram larger than the memory then allowed), once that has changed. Returns True
        when an entry was taken off."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT sha256 FROM quarantine WHERE path=? AND error_type=?",
                             (path, error_type)).fetchone()
            if row is None:
                return False
            self.quarantine_changed = True  # before the commit: see quarantine_changed
            db.execute("DELETE FROM quarantine WHERE path=?", (path,))
            if row[0] is not None:
                db.execute("UPDATE items SET state='failed', batch_id=NULL, updated_at=? "
                           "WHERE sha256=? AND state='quarantined' AND error_type=?",
                           (now, row[0], error_type))
        return True

    def retry_quarantined_that_fit(self, error_type: str, fits: Callable[[Path], object]
                                   ) -> list[tuple[Path, object]]:
        """:meth:`retry_quarantined` for every entry quarantined as ``error_type`` whose file
        is still the version refused (same size and mtime: a changed file is a new version,
        processed as such) and for which ``fits(path)`` is not None (the machine now has what
        the file needs, e.g. its header read again against the memory). Returns (path, what
        ``fits`` returned) of each entry taken off the list."""
        retried = []
        for key, size, mtime_ns in self.quarantined_as(error_type):
            path = Path(os.fsdecode(key))
            try:
                st = path.stat()
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                continue
            found = fits(path)
            if found is not None and self.retry_quarantined(key, error_type):
                retried.append((path, found))
        return retried

    def _unquarantine_done(self, db, batch_id: str) -> None:
        """Files of the batch now done leave the quarantine list (fixed after quarantine)."""
        gone = db.execute(
            "DELETE FROM quarantine WHERE path IN (SELECT source FROM items "
            "WHERE batch_id=? AND state='done')", (batch_id,)).rowcount
        self.quarantine_changed |= gone > 0

    def record_failures(self, failures: Sequence[Failure], max_attempts: int) -> list[Failure]:
        """Record failures that happened outside any batch (e.g. while hashing)."""
        now = time.time()
        with self._tx() as db:
            return [f for f in failures if self._fail(db, f, max_attempts, now)]

    def _fail(self, db, failure: Failure, max_attempts: int, now: float) -> bool:
        attempts = 1
        if failure.machine_limit and failure.key is not None and \
                self._kept_done(db, failure.key, now):
            # its rows stay on disk, the only ones: quarantining its content would have it
            # processed again (two rows) once it fits; listed by its version instead, as a
            # refusal from the header before the hash
            failure = replace(failure, key=None, permanent=True)
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
            self._items_written(db, [(k, failure.source)])
        else:
            state = "quarantined" if failure.permanent else "failed"
        if state == "quarantined":
            db.execute(
                "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (failure.source, failure.size, failure.mtime_ns,
                 failure.key.sha256 if failure.key else None, None, failure.reason,
                 failure.error_type, attempts, now),
            )
            self.quarantine_changed = True
            return True
        return False

    def _kept_done(self, db, key, now: float) -> bool:
        """Put the item ``key`` claimed by a batch while done (``--force``: its batch
        supersedes its earlier rows) back to done under the batch whose file holds those rows,
        and take it off what its batch supersedes, so the rows stay. False when the item was
        not done before its claim (no earlier rows)."""
        row = db.execute("SELECT state, batch_id FROM items WHERE sha256=? AND model_sha256=? "
                         "AND measurement_version=?",
                         (key.sha256, key.model_sha256, key.measurement_version)).fetchone()
        if row is None or row[0] != "pending" or row[1] is None:
            return False
        batch_id = row[1]
        found = db.execute("SELECT supersedes FROM batches WHERE batch_id=?",
                           (batch_id,)).fetchone()
        entries = json.loads(found[0]) if found and found[0] else []
        for entry in entries:
            rel, shas, *made_by = entry
            if key.sha256 not in shas or made_by not in ([], [key.model_sha256,
                                                               key.measurement_version]):
                continue
            earlier = db.execute("SELECT batch_id FROM batches WHERE parquet=? AND "
                                 "state='committed' AND batch_id<>? LIMIT 1",
                                 (rel, batch_id)).fetchone()
            if earlier is None:
                continue
            shas.remove(key.sha256)
            db.execute("UPDATE batches SET supersedes=? WHERE batch_id=?",
                       (json.dumps([e for e in entries if e[1]]), batch_id))
            db.execute("UPDATE items SET state='done', batch_id=?, updated_at=? WHERE "
                       "sha256=? AND model_sha256=? AND measurement_version=?",
                       (earlier[0], now, key.sha256, key.model_sha256, key.measurement_version))
            return True
        return False

    def restore_quarantine(self, rows: Sequence[dict]) -> int:
        """Put back the list of ``quarantine.parquet`` (``rows``: its dicts) into a rebuilt
        ledger. A file that still holds the content quarantined (its ``sha256``) is
        quarantined at its present version, so it is not tried again (a file that crashed the
        process); one that failed before it was hashed is listed without a version, so the
        next scan checks it once more. Files gone or changed since are left out. Returns the
        number of entries restored."""
        from nwwatch.filehash import file_sha256
        from nwwatch.service.names import path_key

        entries = []
        for row in rows:
            path = Path(row["path"])
            try:
                st = path.stat()
                if row.get("sha256") is not None and file_sha256(path) != row["sha256"]:
                    continue  # replaced since: processed as a new file
            except OSError:
                continue
            version = (st.st_size, st.st_mtime_ns) if row.get("sha256") else (None, None)
            when = row["quarantined_at"]
            entries.append((path_key(path), *version, row.get("sha256"), None, row["reason"],
                            row["error_type"], int(row["attempts"]),
                            when.timestamp() if hasattr(when, "timestamp") else float(when)))
        if entries:
            self.quarantine_changed = True  # before the commit: see quarantine_changed
            with self._tx() as db:
                db.executemany("INSERT OR REPLACE INTO quarantine VALUES "
                               "(?, ?, ?, ?, ?, ?, ?, ?, ?)", entries)
        return len(entries)


def refresh_quarantine(ledger: Any, results_dir: Path, log: Any, force: bool = False) -> None:
    """Rewrite ``results_dir/quarantine.parquet`` from ``ledger`` when its list changed (files
    quarantined, or quarantined files replaced and processed), or when ``force``. ``ledger``:
    a :class:`nwwatch.service.ledger.Ledger`; a failed write is logged on ``log`` and tried
    again with the next change."""
    if not (force or ledger.quarantine_changed):
        return
    try:
        from nwwatch.results.quarantine import write_quarantine

        write_quarantine(ledger.queries.quarantined(), results_dir)
        ledger.quarantine_changed = False
    except OSError as exc:  # tried again with the next change
        log.error("quarantine_write_failed", error=repr(exc))
