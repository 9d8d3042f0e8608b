"""Crash recovery of the ledger (a mixin of :class:`nwwatch.service.ledger.Ledger`): batches a
crash or a failed write left ``writing`` are adopted or undone, files of a batch that killed the
process are retried in halves (see the ledger's module docstring), and existing results files
are recorded when a lost ledger is rebuilt (:mod:`nwwatch.service.rebuild`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from nwwatch.atomic import remove_if_present
from nwwatch.service.ledgerdb import Failure, ItemKey, PathKey, ReconcileReport


class Recovery:
    """Methods of :class:`~nwwatch.service.ledger.Ledger` (they use its transactions)."""

    def reconcile(self, max_attempts: int) -> ReconcileReport:
        """Finish or undo every batch a crash left ``writing`` (see module docstring), and
        every compaction a crash interrupted (:mod:`nwwatch.service.compaction`)."""
        from nwwatch.service.compaction import recover_compactions

        recover_compactions(self)
        adopted, removed = [], []
        stopped = [r[0] for r in self._db.execute(
            "SELECT batch_id FROM batches WHERE state='writing' AND stopped_at IS NOT NULL")]
        for batch_id in self.unfinished_batches():
            if self.settle(batch_id, max_attempts, crashed=True):
                adopted.append(batch_id)
            else:
                removed.append(batch_id)
        self._remove_temporaries()
        return ReconcileReport(adopted=adopted, removed=removed,
                               stopped=[b for b in stopped if b in adopted + removed])

    def unfinished_batches(self) -> list[str]:
        """Batches still ``writing`` (between claim and commit), except those whose rows this
        process holds in memory for a later file (``Ledger.held``)."""
        return [r[0] for r in self._db.execute(
            "SELECT batch_id FROM batches WHERE state='writing'").fetchall()
            if r[0] not in self.held]

    def settle(self, batch_id: str, max_attempts: int, crashed: bool = False) -> bool:
        """Finish (adopt) a ``writing`` batch whose Parquet file exists, or undo it. Returns
        True when adopted. ``crashed``: the batch stopped the process (its files are split
        or charged an attempt); otherwise (e.g. the ledger could not be written) its files
        are released without one."""
        row = self._db.execute("SELECT parquet, aux, state, held_at, stopped_at FROM batches "
                               "WHERE batch_id=?", (batch_id,)).fetchone()
        if row is None or row[2] != "writing":
            return row is not None and row[2] == "committed"
        parquet_rel, aux_json, _, held_at, stopped_at = row
        parquet = self.results_dir / parquet_rel
        if parquet_rel and parquet.is_file():
            self.supersede(batch_id)
            self._adopt(batch_id, parquet)
            return True
        for rel in json.loads(aux_json):
            remove_if_present(self.results_dir / rel)
        # A held batch had finished: whatever stopped the process came after it. A batch in
        # flight when a stop request timed out (ledgerdb.mark_stopped) was cut short by the
        # operator, not by its files.
        if crashed and held_at is None and stopped_at is None:
            self._release_crashed(batch_id, max_attempts)
        else:
            with self._tx() as db:
                db.execute("UPDATE batches SET state='aborted' WHERE batch_id=?", (batch_id,))
                self._release_leftovers(db, batch_id, time.time())
        return False

    def _adopt(self, batch_id: str, parquet: Path) -> None:
        import pyarrow.parquet as pq

        local = os.path.abspath(parquet)  # a relative "run:1/…" is no URI
        names = pq.read_schema(local).names
        table = pq.read_table(local, columns=[c for c in ("source_sha256", "batch_id")
                                              if c in names])
        shas = table.column("source_sha256").to_pylist()
        batches = (table.column("batch_id").to_pylist() if "batch_id" in names
                   else [None] * len(shas))
        counts: dict[str, int] = {}
        # A file may hold the rows of several batches (nwwatch.service.ledgerhold).
        for sha, row_batch in zip(shas, batches, strict=True):
            if row_batch in (batch_id, None):
                counts[sha] = counts.get(sha, 0) + 1
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET state='committed', committed_at=?, n_rows=? "
                "WHERE batch_id=?", (now, sum(counts.values()), batch_id)
            )
            for sha, n in counts.items():
                db.execute(
                    "UPDATE items SET state='done', n_rows=?, processed_at=?, updated_at=?,"
                    " batch_cap=NULL WHERE batch_id=? AND sha256=?",
                    (n, now, now, batch_id, sha)
                )
            # a fixed file leaves the quarantine list, as with a commit
            self._unquarantine_done(db, batch_id)
            # Items of the batch without rows had failed; they are simply tried again.
            db.execute(
                "UPDATE items SET state='failed', batch_id=NULL, updated_at=? "
                "WHERE batch_id=? AND state='pending'", (now, batch_id)
            )

    def _release_crashed(self, batch_id: str, max_attempts: int) -> None:
        now = time.time()
        reason = f"the service stopped (crash or kill) while processing this file alone " \
                 f"(batch {batch_id})"
        with self._tx() as db:
            db.execute("UPDATE batches SET state='aborted' WHERE batch_id=?", (batch_id,))
            self._restore_superseded(db, batch_id, now)
            pending = db.execute(
                "SELECT sha256, model_sha256, measurement_version, source FROM items "
                "WHERE batch_id=? AND state='pending'", (batch_id,)
            ).fetchall()
            if len(pending) > 1:
                # Which file crashed it is unknown: retry them in halves, no attempt counted.
                db.execute(
                    "UPDATE items SET state='failed', batch_id=NULL, updated_at=?, "
                    "batch_cap=? WHERE batch_id=? AND state='pending'",
                    (now, len(pending) // 2, batch_id),
                )
                return
            for sha, model, version, source in pending:
                failure = Failure(ItemKey(sha, model, version), source, reason, "Interrupted",
                                  permanent=False)
                self._fail(db, failure, max_attempts, now)
                db.execute("UPDATE items SET batch_cap=1 WHERE sha256=? AND model_sha256=? "
                           "AND measurement_version=?", (sha, model, version))

    def _remove_temporaries(self) -> None:
        # Hidden temporaries of atomic writes (nwwatch.atomic) interrupted by a crash; only in
        # our results folder.
        from nwwatch.results.parquet import PARTITION_KEY

        folders = [self.results_dir / sub for sub in ("frames", "volumes", "masks", "")]
        folders += [p for sub in ("frames", "volumes")
                    for p in (self.results_dir / sub).glob(f"{PARTITION_KEY}=*")]
        for folder in folders:
            if folder.is_dir():
                for tmp in folder.glob(".*.part"):
                    tmp.unlink(missing_ok=True)

    def record_results_file(self, batch_id: str, kind: str, parquet: Path, aux: Sequence[Path],
                            items: dict[ItemKey, tuple[PathKey, int]], committed_at: float,
                            processed_at: dict[ItemKey, float] | None = None) -> int:
        """Record an existing Parquet batch file as committed and its items as done (rebuilding
        a lost ledger, :mod:`nwwatch.service.rebuild`). ``items``: key -> (source, rows);
        ``processed_at``: key -> when its rows were made (epoch s; default ``committed_at``).
        Items already done elsewhere keep their first file. Returns the items added."""
        added = 0
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO batches (batch_id, kind, state, parquet, aux, n_rows,"
                " created_at, committed_at) VALUES (?, ?, 'committed', ?, ?, ?, ?, ?)",
                (batch_id, kind, self._rel(parquet), json.dumps([self._rel(a) for a in aux]),
                 sum(item[1] for item in items.values()), committed_at, committed_at),
            )
            for key, (source, n_rows) in items.items():
                done_at = (processed_at or {}).get(key, committed_at)
                added += db.execute(
                    "INSERT OR IGNORE INTO items (sha256, model_sha256, measurement_version,"
                    " source, kind, state, batch_id, n_rows, first_seen, updated_at,"
                    " processed_at) VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?, ?, ?)",
                    (key.sha256, key.model_sha256, key.measurement_version, source, kind,
                     batch_id, n_rows, done_at, done_at, done_at),
                ).rowcount
            self._items_written(db, [(key, source) for key, (source, _) in items.items()])
        return added

