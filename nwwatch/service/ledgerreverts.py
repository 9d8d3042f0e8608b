"""Files put back to content already processed (a mixin of
:class:`nwwatch.service.ledger.Ledger`).

A file rewritten v1 -> v2 -> v1 under one name is skipped the third time (its content is
done: exactly once), so none of its rows is newer than v2's. When such a file is skipped, the
content it holds is recorded as current in ``RESULTS/reverted.parquet``
(:data:`nwwatch.results.versions.REVERTED_FILE`), which :func:`newest_version_mask` reads:
``nwwatch status``, the dashboard and ``nwwatch report`` show v1's rows again. The file is
the record (a rebuilt ledger reads it back; a compaction leaves it alone); the ledger only
tells, from its items, which content of the path was processed last.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from nwwatch.service.ledgerdb import ItemKey, ItemState, PathKey
from nwwatch.service.names import display


class RevertedFiles:
    """Methods of :class:`~nwwatch.service.ledger.Ledger` (they use its database)."""

    _reverted: dict[tuple[str, str, str], tuple[str, float]] | None = None

    def _reverted_records(self) -> dict[tuple[str, str, str], tuple[str, float]]:
        """(source, model, measurement version) -> (content, when found back, epoch s)."""
        if self._reverted is None:
            from nwwatch.results.versions import read_reverted

            table = read_reverted(self.results_dir)
            self._reverted = {} if table is None else {
                (r["source"], r["model_sha256"], r["measurement_version"]):
                    (r["source_sha256"], r["reverted_at"].timestamp())
                for r in table.to_pylist()}
        return self._reverted

    def revert_unrecorded(self, path: PathKey, key: ItemKey, item: ItemState) -> bool:
        """Whether ``path``, holding ``key``'s content (``item``, done or held), is a file put
        back to that content whose revert is not recorded yet: :meth:`note_skipped` would
        record it. A check that skips a file on its cached hash must not skip it then: the
        hash cache is kept by path, size and mtime for every model, so another model's run
        may have cached this version without this model's revert being recorded."""
        return self._newer_content_at(path, key, item) is not None

    def _newer_content_at(self, path: PathKey, key: ItemKey, item: ItemState
                          ) -> float | None:
        """When (epoch s) the content of ``path`` current for ``key``'s model and measurement
        version was claimed or found back, where that is another content than ``key``'s
        and ``item``'s rows are of this path; else None (nothing to record)."""
        if item.source != path:
            return None
        # A content is as recent as its last claim, when the file held it: not its commit,
        # which a flush makes at one time for every batch it writes (after skips of the path
        # may have been recorded), nor its batch, which a compaction replaces.
        latest = self._db.execute(
            "SELECT sha256, COALESCE(claimed_at, processed_at, updated_at) FROM items "
            "WHERE source=? AND model_sha256=? AND measurement_version=? "
            "AND state IN ('done', 'pending') ORDER BY 2 DESC LIMIT 1",
            (path, key.model_sha256, key.measurement_version)).fetchone()
        found = self._reverted_records().get(
            (display(path), key.model_sha256, key.measurement_version))
        if found is not None and (latest is None or found[1] >= latest[1]):
            current, at = found
        elif latest is not None:
            current, at = latest
        else:
            return None
        return None if current == key.sha256 else float(at)

    def note_skipped(self, path: PathKey, key: ItemKey, item: ItemState) -> bool:
        """``path`` was skipped holding ``key``'s content, done (or held) already. When that
        content's rows are of this path (not a copy under another name) and another content
        of the path was processed (or found back) later, record it as the path's current
        content in ``RESULTS/reverted.parquet`` (written at once, before the hash cache can
        say this version of the path was seen). Returns True when it was recorded.

        Raises OSError when the file cannot be written; the path's version is then left out
        of the hash cache, so it is hashed and recorded at the next look."""
        newer_at = self._newer_content_at(path, key, item)
        if newer_at is None:
            return False
        import pyarrow as pa

        from nwwatch.results.versions import reverted_schema, write_reverted

        records = self._reverted_records()
        changed = dict(records)
        # not before the content it replaces (a clock set back since that claim): the record
        # must read as current, else every rescan would find the revert unrecorded again
        changed[(display(path), key.model_sha256, key.measurement_version)] = (
            key.sha256, max(time.time(), newer_at))
        table = pa.Table.from_pylist([
            {"source": s, "model_sha256": m, "measurement_version": v, "source_sha256": sha,
             "reverted_at": datetime.fromtimestamp(at, UTC)}
            for (s, m, v), (sha, at) in sorted(changed.items())], schema=reverted_schema())
        try:
            write_reverted(table, self.results_dir)
        except OSError:
            self._seen_buffer.pop(path, None)
            raise
        self._reverted = changed
        return True
