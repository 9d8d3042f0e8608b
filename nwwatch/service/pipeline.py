"""The one processing function shared by the live service and ``nwwatch replay``.

:func:`process` turns a list of complete input files into result rows, following the ledger's
claim -> write -> commit protocol (:mod:`nwwatch.service.ledger`), so that a crash at any
point leaves every frame exactly once in the results. Per file:

- in-situ: read -> :func:`normalize_image` -> :class:`Segmenter` (frames of all files of
  the batch together, ``batch_size`` at a time) -> :func:`measure_contact_angle` -> one row
  per page;
- tomogram: read -> :func:`nwwatch.volume.segment_volume` -> 3-D uint8 mask written
  atomically as ``RESULTS/masks/{stem}-{sha12}-{batch_id}.tif`` -> :func:`volume_metrics` ->
  one row.

A batch holds the files of one acquisition. Its rows are held and written with those of
other batches of the acquisition, by size or time, to
``RESULTS/{frames,volumes}/acquisition=<key>/*.parquet`` (:mod:`nwwatch.service.flush`).

Bad input (:class:`InputError`, also anything but a regular file) is quarantined at once; an
unexpected error counts an attempt (quarantined after ``max_attempts``) and processing goes on.
A batch that fails as a whole is split into single files (a loop, not recursion); files the
ledger marks with a ``batch_cap`` (their batch crashed the process) are processed in batches of
at most that many files.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from nwwatch import __version__
from nwwatch.classes import DROPLET
from nwwatch.dashboard import metrics as _metrics
from nwwatch.io import InputError
from nwwatch.normalize import normalize_image
from nwwatch.results.parquet import acquisition_partition, rows_to_table
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
    write_pictures,
)
from nwwatch.service.batch import Item as _Item
from nwwatch.service.batch import log_of as _log
from nwwatch.service.flush import HeldBatch, summary_of, write_held
from nwwatch.service.ledger import Failure, LedgerLostError
from nwwatch.service.names import path_key, source_name

__all__ = ["BatchReport", "Engine", "FileOutcome", "ResultsWriteError", "process",
           "refresh_quarantine", "source_name", "write_held"]

FRAMES_DIR = "frames"
VOLUMES_DIR = "volumes"
MASKS_DIR = "masks"


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
    if force and engine.buffer.batches:
        write_held(engine, report, force=True)  # rows of files about to be replaced go first
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
    while work:
        chunk = work.pop(0)
        batch_id = report.batch_id if first else uuid.uuid4().hex[:16]
        first = False
        if not _run_batch(chunk, engine, batch_id, report, force):
            work[:0] = [[it] for it in chunk]
    if engine.buffer.due():
        write_held(engine, report)
    refresh_quarantine(engine.ledger, engine.results_dir, _log(engine))
    return report


def _by_acquisition(items) -> list[list[_Item]]:
    """``items`` grouped by the folder their file lies in, in order of first appearance."""
    groups: dict[str, list[_Item]] = {}
    for it in items:
        groups.setdefault(_acquisition(it), []).append(it)
    return list(groups.values())


def _acquisition(it: _Item) -> str:
    return os.path.dirname(source_name(it.path))


def _run_batch(items: list[_Item], engine: Engine, batch_id: str, report: BatchReport,
               force: bool) -> bool:
    """Claim, process and hold ``items`` as one batch (a batch without rows is committed at
    once). Returns False (nothing
    recorded, no attempt counted) when the batch failed as a whole and has several files:
    the caller retries them one by one."""
    log = _log(engine)
    ledger = engine.ledger
    if engine.kind == "tomogram":
        folder = VOLUMES_DIR
        aux = [_mask_path(engine, it, batch_id) for it in items]
    else:
        folder = FRAMES_DIR
        aux = []
    # The rows' file is named when they are written (nwwatch.service.flush).
    ledger.claim(batch_id, engine.kind, None,
                 [(it.key, path_key(it.path)) for it in items], aux=aux)
    crash_point("after_claim")

    failures: list[Failure] = []
    try:
        crash_point("in_batch")
        crash_on_source(items)
        if engine.kind == "tomogram":
            _run_tomograms(items, engine, batch_id, failures, report)
        else:
            _run_frames(items, engine, batch_id, failures, report)
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
    rows_per_item = {it.key: len(it.rows) for it in items if not it.failed}
    if rows:
        table = rows_to_table(rows, _schema(engine.kind))
        # The batch is done; its rows wait for a larger file (committed when it is written).
        quarantined = ledger.hold(batch_id, list(rows_per_item), failures, engine.max_attempts)
        engine.buffer.add(HeldBatch(
            batch_id, folder, acquisition_partition(rows[0]["source"]), table, rows_per_item,
            supersede=force, aux=aux, summaries=[summary_of(r) for r in rows],
            detected_at=[it.detected_at for it in items
                         if not it.failed and it.detected_at is not None]))
    else:
        quarantined = ledger.commit(batch_id, rows_per_item, failures, engine.max_attempts,
                                    wrote_parquet=False)
        report.committed_at = time.time()
    report.timings_ms["hold"] = (time.perf_counter() - t_write) * 1e3
    # /metrics: the hashing of the whole call once, with its first batch.
    if batch_id == report.batch_id and "hash" in report.timings_ms:
        _metrics.observe_commit([], {"hash": report.timings_ms["hash"]})
    report.n_rows += len(rows)
    outcomes(report, items, failures, quarantined, batch_id)
    return True


def _fail_item(it: _Item, exc: BaseException, failures: list[Failure], engine: Engine) -> None:
    it.failed = True
    permanent = isinstance(exc, InputError)
    reason = exc.reason if permanent else f"unexpected error: {exc!r}"
    failures.append(Failure(it.key, path_key(it.path), reason, type(exc).__name__,
                            permanent, it.size, it.mtime_ns))
    if permanent:
        _log(engine).warning("bad_input", source=source_name(it.path), reason=reason,
                             error=type(exc).__name__)
    else:
        _log(engine).error("unexpected_error", source=source_name(it.path), reason=reason,
                           exc_info=exc)


def _provenance(engine: Engine, it: _Item, batch_id: str) -> dict:
    seg = engine.segmenter
    return {
        "source_sha256": it.key.sha256,
        "model_name": seg.name,
        "model_sha256": seg.model_sha256,
        "provider": seg.provider,
        "nwwatch_version": __version__,
        "measurement_version": engine.measurement_version,
        "batch_id": batch_id,
    }


def _run_frames(items: list[_Item], engine: Engine, batch_id: str, failures: list[Failure],
                report: BatchReport) -> None:
    """Read, segment and measure the frames of ``items``, appending rows to each item.

    Three stages overlap: while ONNX Runtime (which releases the GIL) segments one group of
    files, a worker thread reads and normalises the next group and measures the previous
    one. Groups hold about ``batch_size`` frames (page counts from the structural check);
    frames of equal shape within a group go through the network together.
    """
    from nwwatch.io import read_frames
    from nwwatch.measure import measure_contact_angle
    from nwwatch.results import label_queue
    from nwwatch.segment.confidence import frame_confidence

    groups: list[list[_Item]] = [[]]
    frames_in_group = 0
    for it in items:
        pages = max(1, it.pages)
        if groups[-1] and frames_in_group + pages > engine.batch_size:
            groups.append([])
            frames_in_group = 0
        groups[-1].append(it)
        frames_in_group += pages
    processed_at = datetime.now(UTC)
    spent = {"read": 0.0, "segment": 0.0, "measure": 0.0}
    queue_candidates: list[tuple[_Item, label_queue.Candidate]] = []

    def read_group(group: list[_Item]) -> list[tuple[_Item, object, np.ndarray]]:
        t_group = time.perf_counter()
        queue = []
        for it in group:
            t = time.perf_counter()
            try:
                it.frames = read_frames(it.path)
                normalised = [normalize_image(f.image) for f in it.frames]
            except FileNotFoundError:
                it.failed, it.gone = True, True  # vanished: released, no attempt counted
                continue
            except Exception as exc:
                _fail_item(it, exc, failures, engine)
                continue
            it.read_ms = (time.perf_counter() - t) * 1e3 / max(1, len(it.frames))
            queue.extend((it, f, x) for f, x in zip(it.frames, normalised, strict=True))
        spent["read"] += (time.perf_counter() - t_group) * 1e3
        return queue

    def measure_chunk(queue, chunk: list[int], out, per_frame_ms: float) -> None:
        t_chunk = time.perf_counter()
        for j, i in enumerate(chunk):
            it, frame, _ = queue[i]
            if it.failed:
                continue
            t = time.perf_counter()
            try:
                result = measure_contact_angle(out.labels[j], out.probabilities[j, DROPLET],
                                               frame.pixel_size_nm)
                t_confidence = time.perf_counter()
                row = result.as_row()
                row["confidence"] = frame_confidence(out.probabilities[j], out.labels[j],
                                                     result.angle_valid)
                t_end = time.perf_counter()
            except Exception as exc:
                _fail_item(it, exc, failures, engine)
                continue
            row.update(
                source=source_name(it.path),
                frame=int(frame.index),
                acquired_at=frame.acquired_at,
                acquired_at_source=frame.acquired_at_source,
                processed_at=processed_at,
                read_ms=it.read_ms,
                segment_ms=per_frame_ms,
                measure_ms=(t_confidence - t) * 1e3,
                confidence_ms=(t_end - t_confidence) * 1e3,
                **_provenance(engine, it, batch_id),
            )
            if engine.overlays.wanted(row["status"]):  # QA pictures ([output] overlays)
                row["overlay_path"] = write_pictures(engine, it, frame, out.labels[j], result)
            it.rows.append(row)
            queue_candidates.append((it, label_queue.Candidate(label_queue.QueueEntry(
                row["source"], row["frame"], it.key.sha256, row["confidence"], row["status"],
                row["contact_angle_deg"], it.key.model_sha256), frame.image)))
        spent["measure"] += (time.perf_counter() - t_chunk) * 1e3

    # One worker, first in first out: read(g+1) is queued before measure(g), so the next
    # group is ready when the network is free again, and rows keep the files' order.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nwwatch-worker") as pool:
        next_read = pool.submit(read_group, groups[0])
        measured = []
        for g in range(len(groups)):
            queue = next_read.result()
            if g + 1 < len(groups):
                next_read = pool.submit(read_group, groups[g + 1])
            by_shape: dict[tuple[int, int], list[int]] = {}
            for i, (_, _, x) in enumerate(queue):
                by_shape.setdefault(x.shape, []).append(i)
            for indices in by_shape.values():
                for start in range(0, len(indices), engine.batch_size):
                    chunk = indices[start:start + engine.batch_size]
                    engine.beat()
                    t = time.perf_counter()
                    out = engine.segmenter.segment(np.stack([queue[i][2] for i in chunk]))
                    elapsed_ms = (time.perf_counter() - t) * 1e3
                    spent["segment"] += elapsed_ms
                    measured.append(pool.submit(measure_chunk, queue, chunk, out,
                                                elapsed_ms / len(chunk)))
        for future in measured:
            future.result()
    try:  # the queue is a by-product: a failure to write it never fails the frames
        label_queue.offer(engine.results_dir, [c for it, c in queue_candidates
                                               if not it.failed])
    except Exception as exc:
        _log(engine).error("label_queue_failed", error=repr(exc), exc_info=exc)
    report.timings_ms.update(spent)


def _mask_path(engine: Engine, it: _Item, batch_id: str) -> Path:
    return engine.results_dir / MASKS_DIR / f"{it.path.stem}-{it.key.sha256[:12]}-{batch_id}.tif"


def _run_tomograms(items: list[_Item], engine: Engine, batch_id: str,
                   failures: list[Failure], report: BatchReport) -> None:
    from nwwatch.io import read_volume, write_volume_tiff
    from nwwatch.volume import segment_volume, volume_metrics

    for it in items:
        engine.beat()
        try:
            t = time.perf_counter()
            volume = read_volume(it.path)
            read_ms = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            seg = segment_volume(engine.segmenter, volume.data, batch_size=engine.batch_size,
                                 **engine.volume_options.as_kwargs())
            mask = seg.mask
            segment_ms = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            mask_path = _mask_path(engine, it, batch_id)
            try:
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                write_volume_tiff(mask_path, np.ascontiguousarray(mask, dtype=np.uint8),
                                  voxel_size_nm=volume.voxel_size_nm)
            except OSError as exc:
                raise ResultsWriteError(f"{mask_path}: cannot write the mask ({exc})") from exc
            metrics = volume_metrics(mask, volume.voxel_size_nm).as_row()
            measure_ms = (time.perf_counter() - t) * 1e3
        except ResultsWriteError:
            raise
        except FileNotFoundError:
            it.failed, it.gone = True, True
            continue
        except Exception as exc:
            _fail_item(it, exc, failures, engine)
            continue
        st_time = datetime.fromtimestamp(it.mtime_ns / 1e9, UTC)
        # NaN (not computed: a sparse mask or no finite voxel) is stored and logged as null.
        agreement = seg.threshold_agreement if math.isfinite(seg.threshold_agreement) else None
        row = dict(metrics)
        row.update(
            source=source_name(it.path),
            # "suspect": still a result (the mask may be right), but one to look at first.
            status=seg.verdict.status,
            reason="; ".join(seg.verdict.why),
            reason_code=seg.verdict.reason_code,
            mask_path=str(mask_path.relative_to(engine.results_dir)),
            uncertain_fraction=seg.uncertain_fraction,
            threshold_agreement=agreement,
            acquired_at=st_time,
            acquired_at_source="mtime",
            processed_at=datetime.now(UTC),
            read_ms=read_ms,
            segment_ms=segment_ms,
            measure_ms=measure_ms,
            **_provenance(engine, it, batch_id),
        )
        if seg.verdict.status == "suspect":  # the warning and the row say the same
            _log(engine).warning("volume_suspect", source=source_name(it.path),
                                 reason_code=seg.verdict.reason_code, why=list(seg.verdict.why),
                                 uncertain_fraction=round(seg.uncertain_fraction, 4),
                                 threshold_agreement=None if agreement is None
                                 else round(agreement, 4))
        it.rows.append(row)


def _schema(kind: str):
    from nwwatch.results.schema import frame_schema, volume_schema

    return volume_schema() if kind == "tomogram" else frame_schema()
