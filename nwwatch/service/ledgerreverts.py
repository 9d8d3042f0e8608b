"""Files put back to content already processed (a mixin of
:class:`nwwatch.service.ledger.Ledger`).

A file rewritten v1 -> v2 -> v1 under one name is skipped the third time (its content is
done: exactly once), so none of its rows is newer than v2's. When such a file is skipped, the
content it holds is recorded as current in ``RESULTS/reverted.parquet``
(:data:`nwwatch.results.versions.REVERTED_FILE`), which :func:`newest_version_mask` reads:
``nwwatch status``, the dashboard and ``nwwatch report`` show v1's rows again. The file is
the record (a rebuilt ledger reads it back; a compaction leaves it alone); the ledger only
tells, from its items, which content the file was last seen to hold: by the order of its
claims and finds (``items.claim_seq``), not by the clock, so that a clock set back between
two contents neither hides a revert nor makes a recorded one look unrecorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from nwwatch.service.ledgerdb import ItemKey, ItemState, PathKey, next_claim_seq
from nwwatch.service.names import display


class RevertedFiles:
    """Methods of :class:`~nwwatch.service.ledger.Ledger` (they use its database)."""

    _reverted: dict[tuple[str, str, str], tuple[str, float]] | None = None
    # (model, measurement version) -> the paths with more than one item of that series: a
    # superset (items are added to it as they are written, never taken out), so that the
    # rescan's check of a file already done, nearly always the only content of its path,
    # needs no query of the path's contents
    _several: dict[tuple[str, str], set[PathKey]] | None = None

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

    def _paths_of_several_contents(self, model_sha256: str, measurement_version: str
                                   ) -> set[PathKey]:
        """The paths with more than one item of this model and measurement version (one
        query per series, then kept up to date by :meth:`_items_written`)."""
        if self._several is None:
            self._several = {}
        series = (model_sha256, measurement_version)
        paths = self._several.get(series)
        if paths is None:
            paths = {row[0] for row in self._db.execute(
                "SELECT source FROM items WHERE model_sha256=? AND measurement_version=? "
                "GROUP BY source HAVING COUNT(*) > 1", series)}
            self._several[series] = paths
        return paths

    def _items_written(self, db, items: Iterable[tuple[ItemKey, PathKey]]) -> None:
        """Items were inserted, or given ``source`` (``items``: key, source), in the write
        transaction ``db``: their paths join :meth:`_paths_of_several_contents` where they
        now have more than one. Every statement that inserts an item or changes its source
        calls it (a rolled back transaction only leaves a path there needlessly)."""
        if not self._several:
            return
        for key, source in items:
            paths = self._several.get((key.model_sha256, key.measurement_version))
            if paths is None or source in paths:
                continue
            count = db.execute(
                "SELECT COUNT(*) FROM items WHERE source=? AND model_sha256=? AND "
                "measurement_version=?",
                (source, key.model_sha256, key.measurement_version)).fetchone()[0]
            if count > 1:
                paths.add(source)

    def revert_unrecorded(self, path: PathKey, key: ItemKey, item: ItemState) -> bool:
        """Whether ``path``, holding ``key``'s content (``item``, done or held), is a file put
        back to that content whose revert is not recorded yet: :meth:`note_skipped` would
        record it. A check that skips a file on its cached hash must not skip it then: the
        hash cache is kept by path, size and mtime for every model, so another model's run
        may have cached this version without this model's revert being recorded."""
        if item.source != path:
            return False
        if path not in self._paths_of_several_contents(key.model_sha256,
                                                       key.measurement_version):
            # ``key``'s is the path's only content, unless a record names another
            records = self._reverted_records()
            found = records.get((display(path), key.model_sha256, key.measurement_version)) \
                if records else None
            if found is None or found[0] == key.sha256:
                return False
        current = self._current_content(path, key.model_sha256, key.measurement_version)
        return current is not None and current != key.sha256

    def _current_content(self, path: PathKey, model_sha256: str, measurement_version: str
                         ) -> str | None:
        """The content the ledger last saw ``path`` hold, of those done or in flight for this
        model and measurement version: the last claimed or found back (:meth:`note_skipped`),
        in the ledger's order of them (``claim_seq``); None when there is none."""
        # A content is as recent as its last claim, when the file held it: not its commit,
        # which a flush makes at one time for every batch it writes (after skips of the path
        # may have been recorded), nor its batch, which a compaction replaces.
        latest = self._db.execute(
            "SELECT sha256, claim_seq, COALESCE(claimed_at, processed_at, updated_at) "
            "FROM items WHERE source=? AND model_sha256=? AND measurement_version=? "
            "AND state IN ('done', 'pending') "
            "ORDER BY claim_seq IS NULL, claim_seq DESC, 3 DESC LIMIT 1",
            (path, model_sha256, measurement_version)).fetchone()
        if latest is not None and latest[1] is not None:
            # numbered claims and finds are later than anything unnumbered, records included
            # (every record written since is numbered with its content)
            return latest[0]
        # nothing numbered (a ledger of an earlier version, or rebuilt from the results): by
        # time, the record of a file found back included
        found = self._reverted_records().get(
            (display(path), model_sha256, measurement_version))
        if found is not None and (latest is None or found[1] >= latest[2]):
            return found[0]
        return None if latest is None else latest[0]

    def note_skipped(self, path: PathKey, key: ItemKey, item: ItemState) -> bool:
        """``path`` was skipped holding ``key``'s content, done (or held) already. When that
        content's rows are of this path (not a copy under another name) and the file was seen
        to hold another content since that content's claim (:meth:`revert_unrecorded`),
        record it as the path's current content in ``RESULTS/reverted.parquet`` (written at
        once, before the hash cache can say this version of the path was seen), stamped with
        the clock's time, and number the find in the ledger's claim order. Returns True when
        it was recorded.

        Raises OSError when the file or the ledger cannot be written; the path's version is
        then left out of the hash cache, so it is hashed and recorded at the next look."""
        if not self.revert_unrecorded(path, key, item):
            return False
        import pyarrow as pa

        from nwwatch.results.versions import reverted_schema, write_reverted

        changed = dict(self._reverted_records())
        changed[(display(path), key.model_sha256, key.measurement_version)] = (
            key.sha256, time.time())
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
        # After the record (a crash in between only records it again): the ledger now knows
        # this content as the file's latest, whatever the clock says of the record's time.
        try:
            with self._tx() as db:
                db.execute("UPDATE items SET claim_seq=? WHERE sha256=? AND model_sha256=? "
                           "AND measurement_version=?",
                           (next_claim_seq(db), key.sha256, key.model_sha256,
                            key.measurement_version))
        except OSError:
            self._seen_buffer.pop(path, None)
            raise
        return True
