"""Batches whose rows wait in memory for a larger Parquet file (a mixin of
:class:`nwwatch.service.ledger.Ledger`, used by :mod:`nwwatch.service.flush`).

A processed batch is *held*: one transaction records its failures and marks it (``held_at``)
while its items with rows stay ``pending``. Several held batches of one acquisition are then
written as one file: ``assign_file`` names the file in their ``parquet`` column, the file is
written atomically, and ``commit_held`` commits them all in one transaction. A crash in
between is settled by ``reconcile`` like any batch left ``writing``: the named file exists,
so its rows are adopted; or it does not, and the held items are released without an attempt
counted (the batch did not crash the process: it had finished), so they are processed again.
Rows are therefore never lost and never written twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from nwwatch.service.ledgerdb import Failure, ItemKey


class HeldBatches:
    """Methods of :class:`~nwwatch.service.ledger.Ledger` (they use its transactions)."""

    #: Batches of this process whose rows are in memory (:class:`nwwatch.service.flush.RowBuffer`):
    #: ``unfinished_batches`` leaves them to the buffer while the process runs.
    held: set[str]

    def hold(self, batch_id: str, with_rows: Sequence[ItemKey], failures: Sequence[Failure],
             max_attempts: int) -> list[Failure]:
        """The batch is processed, its rows are kept for a later file: record its failures,
        release its items that produced neither rows nor a failure (vanished files), mark it
        held. Returns the failures that are now quarantined."""
        now = time.time()
        quarantined: list[Failure] = []
        with self._tx() as db:
            db.execute("UPDATE batches SET held_at=? WHERE batch_id=?", (now, batch_id))
            for failure in failures:
                if self._fail(db, failure, max_attempts, now):
                    quarantined.append(failure)
            keep = {(k.sha256, k.model_sha256, k.measurement_version) for k in with_rows}
            pending = db.execute(
                "SELECT sha256, model_sha256, measurement_version, attempts FROM items "
                "WHERE batch_id=? AND state='pending'", (batch_id,)).fetchall()
            for sha, model, version, attempts in pending:
                if (sha, model, version) in keep:
                    continue
                if attempts == 0:
                    db.execute("DELETE FROM items WHERE sha256=? AND model_sha256=? AND "
                               "measurement_version=?", (sha, model, version))
                else:
                    db.execute("UPDATE items SET state='failed', batch_id=NULL, updated_at=? "
                               "WHERE sha256=? AND model_sha256=? AND measurement_version=?",
                               (now, sha, model, version))
        self.held.add(batch_id)
        return quarantined

    def assign_file(self, batch_ids: Sequence[str], parquet: Path) -> None:
        """Name the file that will hold these held batches' rows (before it is written)."""
        rel = self._rel(parquet)
        with self._tx() as db:
            db.executemany("UPDATE batches SET parquet=? WHERE batch_id=?",
                           [(rel, b) for b in batch_ids])

    def commit_held(self, batches: dict[str, dict[ItemKey, int]]) -> None:
        """The file named by ``assign_file`` is written: commit the batches (batch id ->
        rows per item) in one transaction."""
        now = time.time()
        with self._tx() as db:
            for batch_id, rows_per_item in batches.items():
                db.execute("UPDATE batches SET state='committed', committed_at=?, n_rows=? "
                           "WHERE batch_id=?", (now, sum(rows_per_item.values()), batch_id))
                self._mark_done(db, batch_id, rows_per_item, now)
        self.held.difference_update(batches)

    def release_held(self, batch_ids: Sequence[str]) -> None:
        """Their rows could not be written: release the items (no attempt counted) so that
        they are processed again, and forget the batches' file."""
        # They leave this process's memory either way: should the ledger not be writable now,
        # they are settled later like any unfinished batch.
        self.held.difference_update(batch_ids)
        now = time.time()
        with self._tx() as db:
            for batch_id in batch_ids:
                db.execute("UPDATE batches SET state='aborted', parquet='' WHERE batch_id=?",
                           (batch_id,))
                self._release_leftovers(db, batch_id, now)
