"""The one processing function shared by the live service, ``nwwatch replay`` and the cluster.

:func:`process` turns a list of complete input files into result rows, following the ledger's
claim -> hold -> write -> commit protocol (:mod:`nwwatch.service.ledger`), so that a crash
at any point leaves every frame exactly once in the results. What happens to the files of a batch
is the job of their kind (:mod:`nwwatch.service.jobs`): in-situ frames
(:mod:`nwwatch.service.frames`) or tomograms (:mod:`nwwatch.service.volumes`).

Bad input (:class:`InputError`, also anything but a regular file) is quarantined at once; an
unexpected error counts an attempt (quarantined after ``max_attempts``) and processing goes on.
A batch that fails as a whole is split into single files (a loop, not recursion); files the
ledger marks with a ``batch_cap`` (their batch crashed the process) are processed in batches of
at most that many files.

A batch holds the files of one acquisition. Its rows are held and written with those of
other batches of the acquisition, by size or time, to
``RESULTS/{frames,volumes}/acquisition=<key>/*.parquet`` (:mod:`nwwatch.service.flush`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from nwwatch.dashboard import metrics as _metrics
from nwwatch.paths import acquisition_of
from nwwatch.results.parquet import acquisition_partition, rows_to_table
from nwwatch.segment.session import ModelLoadError
from nwwatch.service.batch import (
    BatchReport,
    Engine,
    FileOutcome,
    collect,
    outcomes,
    quarantine_duplicates,
)
from nwwatch.service.batch import Item as _Item
from nwwatch.service.crashpoints import crash_on_source, crash_point
from nwwatch.service.flush import HeldBatch, ResultsWriteError, summary_of, write_held
from nwwatch.service.jobs import job_for
from nwwatch.service.ledger import Failure, LedgerLostError, LedgerWriteError
from nwwatch.service.ledgerquarantine import refresh_quarantine
from nwwatch.service.names import path_key, source_name
from nwwatch.stopsignals import ctrl_c_after_the_call

__all__ = ["BatchReport", "Engine", "FileOutcome", "ResultsWriteError", "process",
           "refresh_quarantine", "source_name", "write_held"]


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
        Results or the ledger could not be written; the batch that failed was not committed
        and no attempt was counted (a batch whose commit failed stays ``writing``: see
        ``Ledger.settle``). Once the files have been hashed the exception carries
        ``.report``: the outcomes of the files this call finished before the error (rows
        committed, or held for a later file; failures recorded). Files without an outcome
        there were not finished (their batch failed, was not reached, or its rows were
        released by the failed flush) and are to be processed again.
    LedgerLostError
        The results folder or the ledger was removed or replaced under the process.
    ModelLoadError
        The model cannot process these files at all (a tomogram model that ONNX Runtime
        cannot run on the volume's slices): the batch is released, no attempt counted.
    """
    report = BatchReport(batch_id=uuid.uuid4().hex[:16])
    lost = engine.ledger.lost()
    if lost is not None:
        raise LedgerLostError(lost)
    # With ``force`` too, content whose rows this process still holds is skipped by collect
    # (processed in this run already), so held rows need not be written first.
    t0 = time.perf_counter()
    items = collect(files, engine, report, force)
    report.timings_ms["hash"] = (time.perf_counter() - t0) * 1e3
    # Files whose batch crashed the process go in batches of at most their cap; the others
    # together. A batch that fails as a whole comes back split into single files.
    work: list[list[_Item]] = []
    # One batch per acquisition: its rows go to that acquisition's partition.
    normal: list[_Item] = []
    for part in _by_acquisition(it for it in items if it.batch_cap is None):
        work.append(part)
        normal = part
    capped = sorted((it for it in items if it.batch_cap is not None), key=lambda it: it.batch_cap)
    for it in capped:
        last = work[-1] if work else None
        if last is not None and last is not normal and last[0].batch_cap == it.batch_cap \
                and len(last) < it.batch_cap and _acquisition(last[0]) == _acquisition(it):
            last.append(it)
        else:
            work.append([it])
    first = True
    try:
        while work:
            chunk = work.pop(0)
            batch_id = report.batch_id if first else uuid.uuid4().hex[:16]
            first = False
            if not _run_batch(chunk, engine, batch_id, report, force):
                work[:0] = [[it] for it in chunk]
        write_held(engine, report)  # when due
        quarantine_duplicates(report, engine)
    except (ResultsWriteError, LedgerWriteError) as exc:
        # Batches of this call may be committed or held already (a flush can stop after the
        # file of one acquisition): the caller counts those and queues only the rest again.
        exc.report = _finished_part(report, engine)
        raise
    refresh_quarantine(engine.ledger, engine.results_dir, engine.log)
    return report


def _finished_part(report: BatchReport, engine: Engine) -> BatchReport:
    """``report`` without the done files whose batch the failed flush released (their rows
    were not written and their items are pending again: they are to be processed again)."""
    released = {b.batch_id for b in engine.buffer.released}
    report.files = [o for o in report.files
                    if not (o.state == "done" and o.batch_id in released)]
    report.n_rows = sum(o.n_rows for o in report.files if o.state == "done")
    return report


def _by_acquisition(items) -> list[list[_Item]]:
    """``items`` grouped by acquisition (:func:`nwwatch.paths.acquisition_of`), in order of
    first appearance."""
    groups: dict[str, list[_Item]] = {}
    for it in items:
        groups.setdefault(_acquisition(it), []).append(it)
    return list(groups.values())


def _acquisition(it: _Item) -> str:
    return acquisition_of(source_name(it.path))


def _run_batch(items: list[_Item], engine: Engine, batch_id: str, report: BatchReport,
               force: bool) -> bool:
    """Claim, process and hold ``items`` as one batch (a batch without rows is committed at
    once). Returns False (nothing
    recorded, no attempt counted) when the batch failed as a whole and has several files:
    the caller retries them one by one."""
    log = engine.log
    ledger = engine.ledger
    job = job_for(engine.kind)
    aux = job.side_files(engine, items, batch_id)
    # The rows' file is named when they are written (nwwatch.service.flush).
    ledger.claim(batch_id, engine.kind, None,
                 [(it.key, path_key(it.path)) for it in items], aux=aux)
    crash_point("after_claim")

    failures: list[Failure] = []
    try:
        crash_point("in_batch")
        crash_on_source(items)
        job.run(items, engine, batch_id, failures, report)
    except (ResultsWriteError, ModelLoadError):
        # Not the files' fault (no attempt counted): results that cannot be written, or a
        # model that cannot process this kind of input at all (a tomogram job's
        # VolumeModelError), which stops the caller as a model that does not load would.
        ledger.abort(batch_id, [], engine.max_attempts, remove=aux)
        raise
    except Exception as exc:  # a whole-batch failure, e.g. in the runtime
        log.exception("batch_failed", batch_id=batch_id, error=repr(exc), n_files=len(items))
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
    rows_per_item = {it.key: len(it.rows) for it in items if not it.failed}
    if rows:
        table = rows_to_table(rows, job.schema())
        held = HeldBatch(
            batch_id, job.folder, acquisition_partition(rows[0]["source"]), table,
            rows_per_item, supersede=force, aux=aux, summaries=[summary_of(r) for r in rows],
            detected_at=[it.detected_at for it in items
                         if not it.failed and it.detected_at is not None],
            entries=[it.entry for it in items if not it.failed])
        # The batch is done; its rows wait for a larger file (committed when it is written).
        # A stop between the two steps would leave it held in the ledger but not in the buffer
        # that a stopping replay writes: its rows lost to this run (released at the next).
        with ctrl_c_after_the_call():
            quarantined = ledger.hold(batch_id, list(rows_per_item), failures,
                                      engine.max_attempts)
            engine.buffer.add(held)
    else:
        quarantined = ledger.commit(batch_id, rows_per_item, failures, engine.max_attempts,
                                    wrote_parquet=False)
        report.committed_at = time.time()
    report.timings_ms["hold"] = (time.perf_counter() - t_write) * 1e3
    # /metrics: the hashing of the whole call once, with its first batch.
    if batch_id == report.batch_id and "hash" in report.timings_ms:
        _metrics.observe_commit([], {"hash": report.timings_ms["hash"]}, kind=engine.kind)
    report.n_rows += len(rows)
    outcomes(report, items, failures, quarantined, batch_id)
    return True
