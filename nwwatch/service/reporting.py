"""Read-only questions to the ledger: counts by state, throughput, the last file done and the
quarantine list (``nwwatch status``, ``quarantine.parquet``). Paths come back as text
(:func:`nwwatch.service.names.display`)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from nwwatch.service.ledgerdb import sqlite_uri
from nwwatch.service.lock import ledger_kept_elsewhere
from nwwatch.service.names import display

#: The batch id of ``nwwatch compact``'s merged batch starts with this (the batches a service
#: or replay claims are bare hex).
COMPACTED_BATCH_PREFIX = "compact-"


class LedgerQueries:
    """Queries on an open ledger connection (the service's own, or a read-only one from
    :func:`open_readonly`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: the queries inside it see the ledger at one moment (a batch
        committed between two of them made ``nwwatch status`` count its files done and its
        rows not, or the reverse)."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def counts(self) -> dict[str, int]:
        """Items by state (``pending``, ``done``, ``failed``, ``quarantined``), ``rows`` of the
        done items, ``quarantined_files`` and ``done_files`` (the distinct files done items
        are of).

        An item is one file content for one model and measurement version, so
        ``quarantined`` and ``quarantined_files`` differ by design: a file refused before it
        was hashed (not a TIFF, truncated, a link out of the folder) is on the quarantine
        list without an item; an item stays quarantined when its file is later replaced
        (the list then drops the path) or under an earlier model; two paths with one
        content are one item. ``quarantined_files`` (the quarantine list, one per path, what
        quarantine.parquet holds) is the count to show.
        """
        out = {"pending": 0, "done": 0, "failed": 0, "quarantined": 0}
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
            out[state] = n
        out["rows"] = self._db.execute(
            "SELECT COALESCE(SUM(n_rows), 0) FROM items WHERE state='done'"
        ).fetchone()[0]
        out["quarantined_files"] = self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        # done items of distinct files: fewer where a file was processed by several models or
        # in several versions
        out["done_files"] = self._db.execute(
            "SELECT COUNT(DISTINCT source) FROM items WHERE state='done'").fetchone()[0]
        return out

    def processed_since(self, source: str | bytes, since: float,
                        other_than: str | None = None) -> bool:
        """True when content of the file ``source`` (a path key) other than ``other_than``
        (SHA-256; None: any) was processed (done, or held for a larger file) at or after
        ``since`` (epoch s): the file was processed in another version then."""
        return self._db.execute(
            "SELECT 1 FROM items WHERE source=? AND state IN ('done', 'pending') AND "
            "COALESCE(processed_at, updated_at) >= ? AND sha256 IS NOT ? LIMIT 1",
            (source, since, other_than)).fetchone() is not None

    def quarantined(self) -> list[dict]:
        """One dict per quarantined file: path, sha256, reason, error_type, attempts,
        quarantined_at (epoch seconds), oldest first."""
        cur = self._db.execute(
            "SELECT path, sha256, reason, error_type, attempts, quarantined_at FROM quarantine "
            "ORDER BY quarantined_at"
        )
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        for row in rows:
            row["path"] = display(row["path"])
        return rows

    def quarantined_gone(self) -> set[str]:
        """The paths (text, as :meth:`quarantined` gives them) of the quarantined files no
        longer found here. Looked up by the ledger's key, the name's own bytes: the text form
        of a name that is not UTF-8 (``\\xNN``) names no file."""
        return {display(key) for (key,) in self._db.execute("SELECT path FROM quarantine")
                if not os.path.lexists(key)}

    def failed_gone(self) -> int:
        """How many failed items (files to be tried again) no longer have their content at
        their path: the file was deleted since, or holds other content (hashed to another
        content since, or another size or mtime than the content that failed was hashed at).
        Nothing will try them again; a file that changed is processed as its new version.
        A failed item whose file cannot be looked at, or whose hash was never cached, counts
        as still there."""
        gone = 0
        for source, sha, size, mtime_ns, seen_sha in self._db.execute(
                "SELECT i.source, i.sha256, s.size, s.mtime_ns, s.sha256 FROM items AS i "
                "LEFT JOIN seen AS s ON s.path = i.source WHERE i.state='failed'"):
            try:
                st = os.stat(source)
            except (FileNotFoundError, NotADirectoryError):
                gone += 1
                continue
            except OSError:  # not reachable now (a share away, a permission): unknown
                continue
            if seen_sha is None:
                continue
            # the path's last hashed content is another, or the file changed since
            gone += seen_sha != sha or (st.st_size, st.st_mtime_ns) != (size, mtime_ns)
        return gone

    def committed_parquets(self) -> list[str]:
        """Parquet files (relative to the results folder) of committed batches, oldest first:
        the files that hold the rows the ledger counts as done."""
        # Several batches may share one file (nwwatch.service.ledgerhold): each file once.
        return list(dict.fromkeys(r[0] for r in self._db.execute(
            "SELECT parquet FROM batches WHERE state='committed' AND parquet != '' "
            "ORDER BY committed_at, rowid")))

    def committed_batches(self, folder: str) -> list[tuple[str, str, list[str]]]:
        """(batch_id, parquet, aux) of the committed batches whose file lies in ``folder``
        (``frames`` or ``volumes``), oldest first."""
        return [(b, p, json.loads(a)) for b, p, a in self._db.execute(
            "SELECT batch_id, parquet, aux FROM batches WHERE state='committed' "
            "AND parquet LIKE ? ORDER BY committed_at, rowid", (f"{folder}/%",))]

    def compactions(self) -> list[dict]:
        """Compactions under way or interrupted (:mod:`nwwatch.service.compaction`); list
        fields decoded."""
        cur = self._db.execute("SELECT id, kind, state, staged, final, old_batches, "
                               "old_files, aux, n_rows FROM compactions")
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            rec = dict(zip(names, row, strict=True))
            for key in ("old_batches", "old_files", "aux"):
                rec[key] = json.loads(rec[key])
            out.append(rec)
        return out

    def last_done(self) -> dict | None:
        """The last file done (``source``, ``n_rows``, ``processed_at``): of the files of the
        newest commit, the last by name (:meth:`done_last` gives them all)."""
        done = self.done_last()
        return None if not done else {k: done[-1][k] for k in ("source", "n_rows",
                                                                "processed_at")}

    def done_last(self) -> list[dict]:
        """The files done at the newest ``processed_at`` (a batch's files share it), by name:
        ``source``, ``n_rows``, ``processed_at`` and ``parquet`` (the results file of their
        batch, relative to the results folder; None when the ledger names none)."""
        rows = self._db.execute(
            "SELECT i.source, i.n_rows, i.processed_at, b.parquet FROM items i "
            "LEFT JOIN batches b ON b.batch_id = i.batch_id WHERE i.state='done' AND "
            "i.processed_at = (SELECT MAX(processed_at) FROM items WHERE state='done')"
        ).fetchall()
        done = [{"source": display(source), "n_rows": n_rows, "processed_at": processed_at,
                 "parquet": parquet or None} for source, n_rows, processed_at, parquet in rows]
        return sorted(done, key=lambda d: d["source"])

    def throughput(self, window_s: float = 600.0) -> tuple[int, float]:
        """(rows committed in the last ``window_s`` seconds, rows per second of the time spent
        processing them). That time is the union of the batches' spans from claim to processed
        (held for a later file, or committed); the idle time between batches, while no frame
        arrived, does not count. A compaction's batch, which spans the batches it merged,
        carries their rows but no processing time of its own."""
        since = time.time() - window_s
        (n,) = self._db.execute("SELECT COALESCE(SUM(n_rows), 0) FROM batches "
                                "WHERE state='committed' AND committed_at >= ?",
                                (since,)).fetchone()
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(batches)")}
        # a ledger of an older version, opened read-only, may lack it (not migrated yet)
        end = "COALESCE(held_at, committed_at)" if "held_at" in columns else "committed_at"
        spans = self._db.execute(
            f"SELECT created_at, {end} FROM batches WHERE state='committed' "
            "AND committed_at >= ? AND substr(batch_id, 1, ?) != ? ORDER BY created_at",
            (since, len(COMPACTED_BATCH_PREFIX), COMPACTED_BATCH_PREFIX)).fetchall()
        busy_s, reach = 0.0, float("-inf")
        for start, stop in spans:
            start = max(start, reach)
            if stop > start:
                busy_s += stop - start
                reach = stop
        if not n or busy_s <= 0:
            return int(n or 0), 0.0
        return int(n), n / busy_s


class NoLedgerYetError(FileNotFoundError):
    """No ledger at the path, and nothing says it is kept elsewhere: nothing processed yet,
    or a ledger the caller was not told where to find."""


def open_readonly(path: str | os.PathLike[str]) -> LedgerQueries:
    """Open a ledger read-only, beside a running service or not: nothing in it is written.

    A reader of a write-ahead-log database makes SQLite create the ``-wal`` and ``-shm``
    files beside it where they are missing, and SQLite leaves them there after a
    read-only connection closes: empty or redundant, harmless, used again by the next writer.

    Raises FileNotFoundError when there is no ledger at ``path`` (:class:`NoLedgerYetError`
    where nothing says it is kept elsewhere).
    """
    file = Path(path)
    if not file.is_file():
        other = ledger_kept_elsewhere(file.parent, file)
        if other is not None:
            raise FileNotFoundError(f"{file}: no ledger here; the service that writes these "
                                    f"results keeps it in {other} ([state] ledger): give its "
                                    "--config")
        raise NoLedgerYetError(f"{file}: no ledger here (nothing processed yet? a service "
                               "whose [state] ledger lies elsewhere: give its --config)")
    db = sqlite3.connect(sqlite_uri(file, "mode=ro"), uri=True, timeout=30.0,
                         isolation_level=None)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        db.close()
        wal = file.with_name(file.name + "-wal")
        if "readonly database" not in str(exc) or (wal.exists() and wal.stat().st_size):
            raise
        # A stopped service's ledger (no write-ahead log left) in a folder this user may
        # not write (a member of the service's group): a read of a WAL database must create
        # the -shm file beside it, which fails. The file holds everything: read it as such.
        db = sqlite3.connect(sqlite_uri(file, "mode=ro&immutable=1"), uri=True, timeout=30.0,
                             isolation_level=None)
    return LedgerQueries(db)
