"""The one processing function shared by the live service, ``nwwatch replay`` and the cluster.

:func:`process` turns a list of complete input files into result rows, following the ledger's
claim -> write -> commit protocol (:mod:`nwwatch.service.ledger`), so that a crash at any
point leaves every frame exactly once in the results. What happens to the files of a batch
is the job of their kind (:mod:`nwwatch.service.jobs`): in-situ frames
(:mod:`nwwatch.service.frames`) or tomograms (:mod:`nwwatch.service.volumes`).

Bad input (:class:`InputError`, also anything but a regular file) is quarantined at once; an
unexpected error counts an attempt (quarantined after ``max_attempts``) and processing goes on.
A batch that fails as a whole is split into single files (a loop, not recursion); files the
ledger marks with a ``batch_cap`` (their batch crashed the process) are processed in batches of
at most that many files.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from nwwatch.dashboard import metrics as _metrics
from nwwatch.results.parquet import write_batch
from nwwatch.service.batch import (
    BatchReport,
    Engine,
    FileOutcome,
    ResultsWriteError,
    collect,
    crash_on_source,
    crash_point,
    outcomes,
    refresh_quarantine,
)
from nwwatch.service.batch import Item as _Item
from nwwatch.service.batch import log_of as _log
from nwwatch.service.jobs import job_for
from nwwatch.service.ledger import Failure, LedgerLostError
from nwwatch.service.names import path_key, source_name

__all__ = ["BatchReport", "Engine", "FileOutcome", "ResultsWriteError", "process",
           "refresh_quarantine", "source_name"]


def process(
    files: Sequence[object], engine: Engine, *, force: bool = False
) -> BatchReport:
    """Process complete input files as one batch, exactly once (see the module docstring).

    Parameters
    ----------
    files : paths, or :class:`nwwatch.service.readiness.ReadyFile` (``.path``,
        ``.detected_at``) from the watcher. Files already done (or quarantined) under the
        same content, model and measurement version are skipped unless ``force``.
    engine : the shared state (segmenter, ledger, results folder).
    force : process again even if the ledger says done.

    Returns
    -------
    BatchReport with one :class:`FileOutcome` per input file.

    Raises
    ------
    ResultsWriteError, LedgerWriteError
        Results or the ledger could not be written; nothing was committed and no attempt was
        counted (a batch whose commit failed stays ``writing``: see ``Ledger.settle``).
    LedgerLostError
        The results folder or the ledger was removed or replaced under the process.
    """
    report = BatchReport(batch_id=uuid.uuid4().hex[:16])
    lost = engine.ledger.lost()
    if lost is not None:
        raise LedgerLostError(lost)
    t0 = time.perf_counter()
    items = collect(files, engine, report, force)
    report.timings_ms["hash"] = (time.perf_counter() - t0) * 1e3
    # Files whose batch crashed the process go in batches of at most their cap; the others
    # together. A batch that fails as a whole comes back split into single files.
    work: list[list[_Item]] = []
    normal = [it for it in items if it.batch_cap is None]
    if normal:
        work.append(normal)
    capped = sorted((it for it in items if it.batch_cap is not None), key=lambda it: it.batch_cap)
    for it in capped:
        if work and work[-1] is not normal and work[-1][0].batch_cap == it.batch_cap \
                and len(work[-1]) < it.batch_cap:
            work[-1].append(it)
        else:
            work.append([it])
    first = True
    while work:
        chunk = work.pop(0)
        batch_id = report.batch_id if first else uuid.uuid4().hex[:16]
        first = False
        if not _run_batch(chunk, engine, batch_id, report, force):
            work[:0] = [[it] for it in chunk]
    refresh_quarantine(engine.ledger, engine.results_dir, _log(engine))
    return report


def _run_batch(items: list[_Item], engine: Engine, batch_id: str, report: BatchReport,
               force: bool) -> bool:
    """Claim, process, write and commit ``items`` as one batch. Returns False (nothing
    recorded, no attempt counted) when the batch failed as a whole and has several files:
    the caller retries them one by one."""
    log = _log(engine)
    ledger = engine.ledger
    job = job_for(engine.kind)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = engine.results_dir / job.folder
    aux = job.side_files(engine, items, batch_id)
    parquet = folder / f"{job.folder}-{stamp}-{batch_id}.parquet"
    ledger.claim(batch_id, engine.kind, parquet,
                 [(it.key, path_key(it.path)) for it in items], aux=aux)
    crash_point("after_claim")

    failures: list[Failure] = []
    try:
        crash_point("in_batch")
        crash_on_source(items)
        job.run(items, engine, batch_id, failures, report)
    except ResultsWriteError:
        ledger.abort(batch_id, [], engine.max_attempts, remove=aux)
        raise
    except Exception as exc:  # a whole-batch failure, e.g. in the runtime
        log.exception("batch_failed", batch_id=batch_id, error=repr(exc), files=len(items))
        if len(items) > 1:
            # Find the culprit instead of charging every file of the batch: release them
            # (no attempt counted); the caller processes each file on its own.
            ledger.abort(batch_id, [], engine.max_attempts, remove=aux)
            for it in items:
                it.failed = it.gone = False
                it.rows, it.frames = [], []
            return False
        failures = [
            Failure(it.key, path_key(it.path), f"unexpected error: {exc!r}",
                    type(exc).__name__, False, it.size, it.mtime_ns)
            for it in items
        ]
        quarantined = ledger.abort(batch_id, failures, engine.max_attempts, remove=aux)
        outcomes(report, items, failures, quarantined, batch_id)
        return True

    rows = [row for it in items if not it.failed for row in it.rows]
    t_write = time.perf_counter()
    lost = ledger.lost()
    if lost is not None:  # checked again here: processing the batch took a while
        raise LedgerLostError(lost)
    if rows:
        try:
            write_batch(rows, job.schema(), folder, job.folder, name=parquet.name)
        except OSError as exc:
            ledger.abort(batch_id, [], engine.max_attempts, remove=aux + [parquet])
            raise ResultsWriteError(f"{parquet}: cannot write results ({exc})") from exc
    if rows and force:
        ledger.supersede(batch_id)  # earlier rows of re-processed files go
    report.timings_ms["write"] = (time.perf_counter() - t_write) * 1e3
    crash_point("after_write")
    rows_per_item = {it.key: len(it.rows) for it in items if not it.failed}
    # A LedgerWriteError here leaves the batch "writing"; the daemon settles it once the
    # ledger can be written again (its complete Parquet file is then adopted).
    quarantined = ledger.commit(batch_id, rows_per_item, failures, engine.max_attempts,
                                wrote_parquet=bool(rows))
    report.committed_at = time.time()
    # /metrics: the batch's rows and its write time; the hashing of the whole call once,
    # with its first batch.
    timings = {k: v for k, v in report.timings_ms.items()
               if k == "write" or (k == "hash" and batch_id == report.batch_id)}
    _metrics.observe_commit(rows, timings, report.committed_at)
    if rows:
        report.parquets.append(parquet)
    report.n_rows += len(rows)
    outcomes(report, items, failures, quarantined, batch_id)
    return True
