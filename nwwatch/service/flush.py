"""Fewer, larger Parquet files: the rows of processed batches wait in memory and are written
together, one file per acquisition partition, when enough rows are held or the oldest has
waited long enough (:class:`FlushPolicy`).

Exactly once with the ledger (:mod:`nwwatch.service.ledgerhold`): a processed batch is
*held* (its failures recorded, its items still pending); a flush names the file in the
ledger, writes it atomically (:mod:`nwwatch.atomic`), then commits every batch in it in one
transaction. Rows are counted done only once their file is durably written; a crash before
that loses only work (the files are processed again), a crash after it is adopted from the
file. A file that cannot be written (disk full) releases its batches the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from nwwatch.atomic import remove_if_present
from nwwatch.results.parquet import results_file_name, write_table_atomic
from nwwatch.service.crashpoints import crash_point
from nwwatch.service.ledgerdb import ItemKey
from nwwatch.service.ledgerquarantine import refresh_quarantine
from nwwatch.service.rebuild import RESULT_FOLDERS
from nwwatch.stopsignals import ctrl_c_after_the_call

#: The columns of a row kept in memory for counts and /metrics after the flush.
SUMMARY_KEYS = ("status", "reason_code", "read_ms", "segment_ms", "measure_ms",
                "confidence_ms")


class ResultsWriteError(RuntimeError):
    """Results could not be written (disk full, permissions): not the input file's fault.
    ``folder``: the folder that could not be written, where known (the pause's probe
    writes there, :meth:`nwwatch.service.storagepause.StoragePause.probe`)."""

    def __init__(self, message: str, folder: Path | None = None) -> None:
        super().__init__(message)
        self.folder = folder


@dataclass(frozen=True)
class FlushPolicy:
    """When held rows are written: once ``max_rows`` are held, or once the oldest has been
    held ``max_seconds``. The default writes at the end of every ``process`` call."""

    max_rows: int = 1
    max_seconds: float = 0.0


@dataclass
class HeldBatch:
    """One processed batch waiting for its file: its rows (a table of the result schema), the
    rows per item for the ledger, what /metrics and logs need afterwards."""

    batch_id: str
    folder: str  # "frames" or "volumes"
    partition: str  # "acquisition=<key>"
    table: pa.Table
    rows_per_item: dict[ItemKey, int]
    supersede: bool = False  # replay --force: earlier rows of these files go after the write
    aux: list[Path] = field(default_factory=list)  # masks written with the batch
    summaries: list[dict] = field(default_factory=list)
    detected_at: list[float] = field(default_factory=list)  # done files seen complete
    held_since: float = field(default_factory=time.monotonic)
    #: The input entries of the files with rows (what ``process`` was given: a path or a
    #: ReadyFile), so that a caller can queue them again when the batch is released.
    entries: list = field(default_factory=list)
    #: Counted as processed by the caller (the daemon's tally), which un-counts it if released.
    tallied: bool = False


@dataclass
class Flushed:
    """What one flush wrote: files, rows, batches, when it committed, how long writing took."""

    files: list[Path] = field(default_factory=list)
    rows: int = 0
    batch_ids: list[str] = field(default_factory=list)
    committed_at: float | None = None
    write_ms: float = 0.0
    #: Per watch kind ("insitu", "tomogram": the buffer may hold both): the summaries of its
    #: rows and the time each of its files took to write, for /metrics.
    summaries: dict[str, list[dict]] = field(default_factory=dict)
    file_write_ms: dict[str, list[float]] = field(default_factory=dict)
    detected_at: list[float] = field(default_factory=list)


class RowBuffer:
    """Held batches of the engines sharing one ledger, written by :meth:`flush` (see the
    module docstring)."""

    def __init__(self, policy: FlushPolicy | None = None) -> None:
        self.policy = policy or FlushPolicy()
        self.batches: list[HeldBatch] = []
        #: Batches whose file could not be written, released in the ledger (their files are
        #: to be processed again); the daemon takes them to queue their files again.
        self.released: list[HeldBatch] = []

    @property
    def rows(self) -> int:
        return sum(b.table.num_rows for b in self.batches)

    def holds(self, key: ItemKey) -> bool:
        """Whether the rows of ``key`` wait here (the same content must not be processed
        again before they are written)."""
        return any(key in b.rows_per_item for b in self.batches)

    def add(self, batch: HeldBatch) -> None:
        self.batches.append(batch)

    def take_released(self) -> list[HeldBatch]:
        """The batches released since the last call (see :attr:`released`)."""
        out, self.released = self.released, []
        return out

    def due(self, now: float | None = None) -> bool:
        if not self.batches:
            return False
        now = time.monotonic() if now is None else now
        return (self.rows >= self.policy.max_rows
                or now - self.batches[0].held_since >= self.policy.max_seconds)

    def flush(self, ledger, results_dir: Path, out: Flushed | None = None) -> Flushed:
        """Write every held batch: one file per (folder, partition), each committed in the
        ledger once written, and added to ``out`` (returned; pass one to know what was
        committed when an error stops the flush partway). Raises ResultsWriteError when a
        file cannot be written (its batches are released: processed again later) and
        LedgerWriteError when the ledger cannot (batches not yet written stay held; a written
        file is settled later)."""
        out = Flushed() if out is None else out
        groups: dict[tuple[str, str], list[HeldBatch]] = {}
        for b in self.batches:
            groups.setdefault((b.folder, b.partition), []).append(b)
        t0 = time.perf_counter()
        for (folder, partition), group in groups.items():
            t_file = time.perf_counter()
            kind = RESULT_FOLDERS[folder]
            ids = [b.batch_id for b in group]
            path = results_dir / folder / partition / results_file_name(folder)
            ledger.assign_file(ids, path)
            try:
                table = pa.concat_tables([b.table for b in group])
                write_table_atomic(table, path)
                self._drop(group)
                crash_point("after_write")
                for b in group:
                    if b.supersede:
                        ledger.supersede(b.batch_id)  # earlier rows of re-processed files go
                ledger.commit_held({b.batch_id: b.rows_per_item for b in group})
            except BaseException as exc:
                if path.is_file():
                    # Written (renamed into place) but not committed: a ledger error, or
                    # Ctrl-C during the folder's fsync or just after the rename. The file is
                    # adopted when the batches are settled (the daemon's next try, or
                    # reconcile at the next start), never written a second time.
                    self._drop(group)
                    ledger.held.difference_update(ids)
                    raise
                if not isinstance(exc, Exception):
                    raise  # interrupted before the rename: still held, written later
                self._drop(group)
                self.released += group
                for b in group:
                    for aux in b.aux:
                        remove_if_present(aux)
                ledger.release_held(ids)
                if isinstance(exc, OSError):
                    raise ResultsWriteError(f"{path}: cannot write results ({exc})",
                                            folder=path.parent) from exc
                raise  # not the disk's fault: released (processed again), logged by caller
            out.committed_at = time.time()
            out.files.append(path)
            out.rows += table.num_rows
            out.batch_ids += ids
            for b in group:
                out.summaries.setdefault(kind, []).extend(b.summaries)
                out.detected_at += b.detected_at
            out.file_write_ms.setdefault(kind, []).append((time.perf_counter() - t_file) * 1e3)
            out.write_ms = (time.perf_counter() - t0) * 1e3
        return out

    def _drop(self, group: list[HeldBatch]) -> None:
        ids = {id(b) for b in group}
        self.batches = [b for b in self.batches if id(b) not in ids]


def summary_of(row: dict) -> dict:
    """The part of a row kept after it is handed to the buffer."""
    return {k: row.get(k) for k in SUMMARY_KEYS}


def write_held(engine, report=None, force: bool = False) -> Flushed | None:
    """Write the held rows of ``engine`` (:class:`nwwatch.service.batch.Engine`) when due
    (``force``: now) and commit them; /metrics, ``quarantine.parquet`` and a ``rows_written``
    log line follow, also for the files committed before an error stopped the flush. The
    files written are added to ``report`` (a ``BatchReport``). Returns
    what was written, or None when nothing was due."""
    if not engine.buffer.batches or not (force or engine.buffer.due()):
        return None
    flushed = Flushed()
    try:
        engine.buffer.flush(engine.ledger, engine.results_dir, flushed)
    finally:
        # What was committed before an error is reported all the same; a committed file may
        # take a replaced file off the quarantine list.
        refresh_quarantine(engine.ledger, engine.results_dir, engine.log)
        if flushed.rows:
            _report_written(engine, flushed, report)
    return flushed


@contextmanager
def held_rows_written_at_end(engine, parquet_files: list[Path],
                             also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Write ``engine``'s held rows when the block ends, and on Ctrl-C too (what was processed
    is written, not done again), and when the model turns out unable to process the files
    (``ModelLoadError``: the rows before it are results), or on an error of ``also`` (errors
    of the caller's that say nothing against the held rows); the files written are appended
    to ``parquet_files``. Any other error leaves the held rows unwritten, to be processed
    again."""
    from nwwatch.segment.session import ModelLoadError

    try:
        yield
    except (KeyboardInterrupt, ModelLoadError, *also):
        # already stopping: a stop signal now is the operator's second, and acts at once
        # (a write hung on a network share can be cut short)
        _write_all_held(engine, parquet_files)
        raise
    # The last write of a run that went to its end: a stop signal (Ctrl-C, SIGTERM, SIGHUP)
    # that arrives during it waits until it is done, else the rows of every file processed
    # were lost at the very end (a second one acts at once).
    with ctrl_c_after_the_call():
        _write_all_held(engine, parquet_files)


def _write_all_held(engine, parquet_files: list[Path]) -> None:
    written = write_held(engine, force=True)
    if written is not None:
        parquet_files.extend(written.files)


def _report_written(engine, flushed: Flushed, report) -> None:
    """/metrics, the ``report`` and a ``rows_written`` log line for committed files."""
    from nwwatch.dashboard import metrics as _metrics
    for kind in sorted(flushed.summaries.keys() | flushed.file_write_ms.keys()):
        _metrics.observe_commit(flushed.summaries.get(kind, []), {},
                                flushed.committed_at, kind=kind,
                                write_ms=flushed.file_write_ms.get(kind, []))
    _metrics.observe_outcomes([("done", t) for t in flushed.detected_at], flushed.committed_at)
    if report is not None:
        report.parquets += flushed.files
        report.committed_at = flushed.committed_at
        report.timings_ms["write"] = report.timings_ms.get("write", 0.0) + flushed.write_ms
    latency_s = max((flushed.committed_at - t for t in flushed.detected_at), default=None)
    engine.log.info("rows_written", files=[str(f.relative_to(engine.results_dir))
                                         for f in flushed.files],
                  rows=flushed.rows, batch_ids=flushed.batch_ids,
                  write_ms=round(flushed.write_ms, 1),
                  max_latency_ms=None if latency_s is None else round(latency_s * 1e3, 1))
