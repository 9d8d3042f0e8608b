"""Runs of an acquisition folder (a mixin of :class:`nwwatch.service.ledger.Ledger`): a folder
moved away or renamed, and another one made under its name whose files reuse the first's
names, is a new run of that path, whose rows go to a partition of their own.

A file is its content (docs/service.md, "Exactly once"): new content under a name is a new
version of that file, which supersedes the rows of the earlier one (a camera rewriting a
file, a stack grown page by page). Acquisition software that writes every run into a folder
of one name (``Acquisition/frame_000000.tif`` …, day after day) would have each day's frames
supersede the day before's, which were moved out of the watch, never changed. What tells the
two apart is the folder: a file rewritten lies in the same folder, a new run's in another
folder of the same path (another inode: the first one was moved away, or renamed, and keeps
its own). The ledger records, per acquisition folder, its run and the inode of the folder
whose files the run's rows came from (``acquisition_runs``). A batch of files in a folder of
another inode starts the next run when one of its files' names has rows in the run so far
(:meth:`AcquisitionRuns.acquisition_run`); without such a name the run goes on and the
inode recorded follows the folder: a mount that numbers folders anew at every mount (CIFS
without server inode numbers) must not split an acquisition, and files that reuse no name
hide no row. A later run's rows go to ``acquisition=<name>-<hash>-run<N>``
(:func:`nwwatch.results.parquet.acquisition_partition`), and the newest-version rule takes a
file's versions within one run (:mod:`nwwatch.results.versions`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nwwatch.paths import acquisition_of
from nwwatch.results.parquet import PARTITION_KEY, acquisition_partition, partition_run
from nwwatch.service.ledgerdb import PathKey
from nwwatch.service.names import display, path_key, source_name


class AcquisitionRuns:
    """Methods of :class:`~nwwatch.service.ledger.Ledger` (they use its transactions)."""

    held: set[str]

    def acquisition_run(self, source: str, ino: int | None,
                        names: Sequence[PathKey]) -> tuple[int, PathKey | None]:
        """The run of the acquisition folder of ``source`` (a file's ``source`` text) that
        the files ``names`` (ledger keys, files of that folder) belong to, with the folder's
        inode ``ino`` now (None: not known), and the name whose reuse started that run now
        (None: the run goes on). A folder seen for the first time (or by a ledger that did
        not record it: an earlier version's, a rebuilt one) goes on with the newest run its
        results hold."""
        folder = acquisition_of(source)
        row = self._db.execute("SELECT run, ino FROM acquisition_runs WHERE folder=?",
                               (folder,)).fetchone()
        if row is not None and (ino is None or row[1] == ino):
            return int(row[0]), None
        reused = None
        if row is None:
            run = self._newest_run(source)
        else:
            run = int(row[0])
            if row[1] is not None:  # another folder than the run's: a name reused?
                reused = next((n for n in names if self._has_rows_in_run(n, run)), None)
            run += reused is not None
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO acquisition_runs (folder, run, ino, updated_at) "
                       "VALUES (?, ?, ?, ?)", (folder, run, ino, time.time()))
        return run, reused

    def _newest_run(self, source: str) -> int:
        """The newest run of the acquisition folder of ``source`` that the batches name a
        results file of (1 when none does)."""
        base = acquisition_partition(source)
        runs = [1]
        for (parquet,) in self._db.execute(
                "SELECT DISTINCT parquet FROM batches WHERE instr(parquet, ?) > 0",
                (f"/{base}",)):
            folder = Path(parquet).parent.name
            run = partition_run(folder)
            if folder == (base if run == 1 else acquisition_partition(source, run)):
                runs.append(run)
        return max(runs)

    def _has_rows_in_run(self, name: PathKey, run: int) -> bool:
        """Whether content of the file ``name`` has rows in run ``run`` of its folder:
        committed in a file of that run's partition, or held by this process (processed in
        the run so far, its rows not written yet)."""
        for parquet, batch_id, state in self._db.execute(
                "SELECT b.parquet, i.batch_id, i.state FROM items AS i JOIN batches AS b "
                "ON b.batch_id = i.batch_id WHERE i.source=? AND i.state IN ('done', 'pending')",
                (name,)):
            if state == "pending":
                if batch_id in self.held:
                    return True
                continue
            folder = Path(parquet).parent.name if parquet else ""
            # rows outside partitions, or in an earlier layout's: written before any later run
            if parquet and (partition_run(folder) if folder.startswith(f"{PARTITION_KEY}=")
                            else 1) == run:
                return True
        return False


def run_partition(engine: Any, paths: Sequence[Path]) -> str:
    """The partition (``acquisition=…``) of the rows of ``paths``, files of one acquisition
    folder processed by ``engine`` (``.ledger``, ``.log``): the folder's run now
    (:meth:`AcquisitionRuns.acquisition_run`). A run started by these files is logged
    (``acquisition_run_started``, warning)."""
    source = source_name(paths[0])
    folder = acquisition_of(source)
    # the folder on disk: the file's own, or a Gatan time tree's recording folder above it
    levels = max(source.count("/") - folder.count("/"), 1)  # a file in "/": 1 too
    try:
        ino = os.stat(Path(os.path.abspath(paths[0])).parents[levels - 1]).st_ino or None
    except (OSError, IndexError):
        ino = None
    run, reused = engine.ledger.acquisition_run(source, ino, [path_key(p) for p in paths])
    partition = acquisition_partition(source, run)
    if reused is not None:
        engine.log.warning(
            "acquisition_run_started", folder=folder, run=run, partition=partition,
            reused=display(reused),
            reason="another folder of this path (the earlier one moved away or renamed) "
                   "holds files of names the earlier one's rows carry: a new run, whose rows "
                   "go to a partition of their own; the earlier run's rows stay current")
    return partition
