"""Read-only questions to the ledger: counts by state, throughput, the last file done and the
quarantine list (``nwwatch status``, ``quarantine.parquet``). Paths come back as text
(:func:`nwwatch.service.names.display`)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from nwwatch.service.names import display


class LedgerQueries:
    """Queries on an open ledger connection (the service's own, or a read-only one from
    :func:`open_readonly`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def close(self) -> None:
        self._db.close()

    def counts(self) -> dict[str, int]:
        """Items by state (``pending``, ``done``, ``failed``, ``quarantined``), ``rows`` of the
        done items, and ``quarantined_files``.

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
        return out

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
        row = self._db.execute(
            "SELECT source, n_rows, processed_at FROM items WHERE state='done' "
            "ORDER BY processed_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
        return None if row is None else {"source": display(row[0]), "n_rows": row[1],
                                         "processed_at": row[2]}

    def throughput(self, window_s: float = 600.0) -> tuple[int, float]:
        """(rows committed in the last ``window_s`` seconds, rows per second while busy).

        Busy is the union of the batches' claimed -> committed intervals: the idle time
        between them (a replay run again minutes later, an acquisition pause) does not count.
        (Not claimed -> held: ``replay --dask`` claims a task's files only once it is
        computed.) Two replays 7 minutes apart printed "0.03 rows/s while busy" when the rate
        was taken over the whole span."""
        since = time.time() - window_s
        batches = self._db.execute(
            "SELECT n_rows, created_at, committed_at FROM batches "
            "WHERE state='committed' AND committed_at >= ? ORDER BY created_at", (since,)
        ).fetchall()
        n = sum(rows or 0 for rows, _, _ in batches)
        busy_s, end = 0.0, float("-inf")
        for _, start, stop in batches:
            if stop > end:
                busy_s += stop - max(start, end)
                end = stop
        return int(n), (n / busy_s if n and busy_s > 0 else 0.0)


def open_readonly(path: str | os.PathLike[str]) -> LedgerQueries:
    """Open a ledger without writing or creating anything (beside a running service).

    Raises FileNotFoundError when there is no ledger at ``path``.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no ledger here (nothing processed yet?)")
    return LedgerQueries(sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=30.0,
                                         isolation_level=None))
