"""The one processing function shared by the live service and ``nwwatch replay``.

:func:`process` turns a list of complete input files into result rows, following the ledger's
claim -> write -> commit protocol (:mod:`nwwatch.service.ledger`), so that a crash at any
point leaves every frame exactly once in the results. Per file:

- in-situ: read -> :func:`normalize_image` -> :class:`Segmenter` (frames of all files of
  the batch together, ``batch_size`` at a time) -> :func:`measure_contact_angle` -> one row
  per page, all written in one Parquet file ``RESULTS/frames/frames-*-{batch_id}.parquet``;
- tomogram: read -> :func:`nwwatch.volume.segment_volume` -> 3-D uint8 mask written
  atomically as ``RESULTS/masks/{stem}-{sha12}-{batch_id}.tif`` -> :func:`volume_metrics` ->
  one row in ``RESULTS/volumes/volumes-*-{batch_id}.parquet``.

Bad input (:class:`InputError`) is quarantined at once; an unexpected error counts an attempt
(quarantined after ``max_attempts``) and processing goes on.
"""

from __future__ import annotations

import math
import os
import signal
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from nwwatch import __version__
from nwwatch.classes import DROPLET
from nwwatch.dashboard import metrics as _metrics
from nwwatch.io import InputError, UnreadableFileError
from nwwatch.normalize import normalize_image
from nwwatch.results.parquet import write_batch, write_table_atomic
from nwwatch.segment.session import Segmenter, file_sha256
from nwwatch.service.ledger import Failure, ItemKey, Ledger
from nwwatch.volume.segment import VolumeOptions

FRAMES_DIR = "frames"
VOLUMES_DIR = "volumes"
MASKS_DIR = "masks"
QUARANTINE_FILE = "quarantine.parquet"


#: Test hook: ``NWWATCH_CRASH_AT="after_claim:N"`` or ``"after_write:N"`` makes the process
#: SIGKILL itself the N-th time it reaches that point, to test crash recovery in the exact
#: window between two steps of the ledger protocol. Unset in production.
_CRASH_ENV = "NWWATCH_CRASH_AT"
_crash_counts: dict[str, int] = {}


def _crash_point(name: str) -> None:
    spec = os.environ.get(_CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


class ResultsWriteError(RuntimeError):
    """Results could not be written (disk full, permissions): not the input file's fault."""


@dataclass
class Engine:
    """What :func:`process` needs, built once per (kind, model) by the daemon or replay."""

    kind: str
    segmenter: Segmenter
    ledger: Ledger
    results_dir: Path
    batch_size: int = 8
    max_attempts: int = 3
    #: How tomograms are segmented (``[tomogram]`` in the configuration).
    volume_options: VolumeOptions = field(default_factory=VolumeOptions)
    log: object = None
    #: Called between network batches and files: the daemon pings the systemd watchdog
    #: from here, so a long batch is not mistaken for a hung loop.
    heartbeat: object = None

    def beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat()

    @property
    def measurement_version(self) -> str:
        if self.kind == "tomogram":
            from nwwatch.volume import VOLUME_METRICS_VERSION

            # The mask depends on the segmentation settings as much as on the model.
            return f"{VOLUME_METRICS_VERSION}+{self.volume_options.version}"
        from nwwatch.measure import MEASUREMENT_VERSION

        return MEASUREMENT_VERSION

    def key(self, sha256: str) -> ItemKey:
        return ItemKey(sha256, self.segmenter.model_sha256, self.measurement_version)


@dataclass
class FileOutcome:
    """What happened to one input file: state in done, skipped, failed, quarantined, gone."""

    path: Path
    state: str
    n_rows: int = 0
    reason: str = ""
    detected_at: float | None = None


@dataclass
class BatchReport:
    batch_id: str
    files: list[FileOutcome] = field(default_factory=list)
    n_rows: int = 0
    parquets: list[Path] = field(default_factory=list)
    committed_at: float | None = None  # wall time the ledger commit returned
    timings_ms: dict[str, float] = field(default_factory=dict)

    def count(self, state: str) -> int:
        return sum(1 for f in self.files if f.state == state)


@dataclass
class _Item:
    path: Path
    key: ItemKey
    size: int
    mtime_ns: int
    detected_at: float | None
    entry: object = None  # what the caller passed (path or ReadyFile)
    pages: int = 1  # from the structural check when known; only used to group reads
    frames: list = field(default_factory=list)
    read_ms: float = 0.0
    rows: list[dict] = field(default_factory=list)
    failed: bool = False
    gone: bool = False


def source_name(path: str | os.PathLike[str]) -> str:
    """The ``source`` column: the absolute path, without resolving symlinks, so live watching
    and replay of the same folder write the same string."""
    return os.path.abspath(path)


def _log(engine: Engine):
    if engine.log is None:
        from nwwatch.service.logsetup import get_logger

        engine.log = get_logger("nwwatch.pipeline")
    return engine.log


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
    ResultsWriteError
        Results could not be written; nothing was committed and no attempt was counted.
    """
    log = _log(engine)
    batch_id = uuid.uuid4().hex[:16]
    report = BatchReport(batch_id=batch_id)
    ledger = engine.ledger
    items: list[_Item] = []
    early_failures: list[Failure] = []
    t0 = time.perf_counter()
    for entry in files:
        path = Path(getattr(entry, "path", entry))
        detected_at = getattr(entry, "detected_at", None)
        name = source_name(path)
        try:
            st = os.stat(path)
            sha = ledger.cached_sha(name, st.st_size, st.st_mtime_ns)
            if sha is None:
                sha = file_sha256(path)
                ledger.remember_sha(name, st.st_size, st.st_mtime_ns, sha)
        except FileNotFoundError:
            report.files.append(FileOutcome(path, "gone", reason="file vanished"))
            continue
        except PermissionError as exc:
            err = UnreadableFileError(path, f"cannot read: {exc.strerror}")
            early_failures.append(Failure(None, name, err.reason, type(err).__name__, True,
                                          None, None))
            report.files.append(FileOutcome(path, "quarantined", reason=err.reason))
            continue
        key = engine.key(sha)
        known = ledger.item(key)
        if known is not None and known.state in ("done", "quarantined") and not force:
            report.files.append(FileOutcome(path, "skipped", reason=f"already {known.state}"))
            continue
        if any(it.key == key for it in items):  # same content twice in one batch
            report.files.append(FileOutcome(path, "skipped", reason="duplicate content"))
            continue
        info = getattr(entry, "info", None)
        items.append(_Item(path, key, st.st_size, st.st_mtime_ns, detected_at, entry=entry,
                           pages=getattr(info, "n_pages", 1)))
    if early_failures:
        ledger.record_failures(early_failures, engine.max_attempts)
        _rewrite_quarantine(engine)
    if not items:
        return report

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if engine.kind == "tomogram":
        folder, prefix = engine.results_dir / VOLUMES_DIR, "volumes"
        aux = [_mask_path(engine, it, batch_id) for it in items]
    else:
        folder, prefix = engine.results_dir / FRAMES_DIR, "frames"
        aux = []
    parquet = folder / f"{prefix}-{stamp}-{batch_id}.parquet"
    ledger.claim(batch_id, engine.kind, parquet,
                 [(it.key, source_name(it.path)) for it in items], aux=aux)
    report.timings_ms["hash"] = (time.perf_counter() - t0) * 1e3
    _crash_point("after_claim")

    failures: list[Failure] = []
    try:
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
            # (no attempt counted) and process each file on its own.
            ledger.abort(batch_id, [], engine.max_attempts, remove=aux)
            for it in items:
                sub = process([it.entry], engine, force=force)
                report.files.extend(sub.files)
                report.n_rows += sub.n_rows
                report.parquets.extend(sub.parquets)
                report.committed_at = sub.committed_at or report.committed_at
            return report
        failures = [
            Failure(it.key, source_name(it.path), f"unexpected error: {exc!r}",
                    type(exc).__name__, False, it.size, it.mtime_ns)
            for it in items
        ]
        quarantined = ledger.abort(batch_id, failures, engine.max_attempts, remove=aux)
        _outcomes(report, items, failures, quarantined)
        if quarantined:
            _rewrite_quarantine(engine)
        return report

    rows = [row for it in items if not it.failed for row in it.rows]
    t_write = time.perf_counter()
    if rows:
        try:
            schema = _schema(engine.kind)
            write_batch(rows, schema, folder, prefix, name=parquet.name)
        except OSError as exc:
            ledger.abort(batch_id, [], engine.max_attempts, remove=aux + [parquet])
            raise ResultsWriteError(f"{parquet}: cannot write results ({exc})") from exc
    if rows and force:
        ledger.supersede(batch_id)  # earlier rows of re-processed files go
    report.timings_ms["write"] = (time.perf_counter() - t_write) * 1e3
    _crash_point("after_write")
    rows_per_item = {it.key: len(it.rows) for it in items if not it.failed}
    quarantined = ledger.commit(batch_id, rows_per_item, failures, engine.max_attempts,
                                wrote_parquet=bool(rows))
    report.committed_at = time.time()
    _metrics.observe_commit(rows, report.timings_ms, report.committed_at)  # /metrics
    report.parquets = [parquet] if rows else []
    report.n_rows = len(rows)
    _outcomes(report, items, failures, quarantined)
    if quarantined:
        _rewrite_quarantine(engine)
    return report


def _outcomes(report: BatchReport, items: list[_Item], failures: list[Failure],
              quarantined: list[Failure]) -> None:
    reasons = {f.source: f.reason for f in failures}
    q = {f.source for f in quarantined}
    for it in items:
        name = source_name(it.path)
        if it.gone:
            report.files.append(FileOutcome(it.path, "gone", reason="file vanished"))
        elif name in reasons:
            state = "quarantined" if name in q else "failed"
            report.files.append(FileOutcome(it.path, state, reason=reasons[name],
                                            detected_at=it.detected_at))
        else:
            report.files.append(FileOutcome(it.path, "done", n_rows=len(it.rows),
                                            detected_at=it.detected_at))


def _fail_item(it: _Item, exc: BaseException, failures: list[Failure], engine: Engine) -> None:
    it.failed = True
    permanent = isinstance(exc, InputError)
    reason = exc.reason if permanent else f"unexpected error: {exc!r}"
    failures.append(Failure(it.key, source_name(it.path), reason, type(exc).__name__,
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
                row = result.as_row()
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
                measure_ms=(time.perf_counter() - t) * 1e3,
                **_provenance(engine, it, batch_id),
            )
            it.rows.append(row)
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
    report.timings_ms.update(spent)


def _mask_path(engine: Engine, it: _Item, batch_id: str) -> Path:
    return engine.results_dir / MASKS_DIR / f"{it.path.stem}-{it.key.sha256[:12]}-{batch_id}.tif"


def _run_tomograms(items: list[_Item], engine: Engine, batch_id: str,
                   failures: list[Failure], report: BatchReport) -> None:
    from nwwatch.io import read_volume, write_volume_tiff
    from nwwatch.volume import (
        AGREEMENT_WARN_BELOW,
        UNCERTAIN_WARN_FRACTION,
        segment_volume,
        volume_metrics,
    )

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
            status="ok",
            reason="",
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
        why = ([f"uncertain_fraction > {UNCERTAIN_WARN_FRACTION}"]
               if seg.uncertain_fraction > UNCERTAIN_WARN_FRACTION else [])
        if agreement is not None and agreement < AGREEMENT_WARN_BELOW:
            why.append(f"threshold_agreement < {AGREEMENT_WARN_BELOW}")
        if why:
            # Still a result (the mask may be right), but one a person should look at first.
            _log(engine).warning("volume_suspect", source=source_name(it.path), why=why,
                                 uncertain_fraction=round(seg.uncertain_fraction, 4),
                                 threshold_agreement=None if agreement is None
                                 else round(agreement, 4))
        it.rows.append(row)


def _schema(kind: str):
    from nwwatch.results.schema import frame_schema, volume_schema

    return volume_schema() if kind == "tomogram" else frame_schema()


def _rewrite_quarantine(engine: Engine) -> None:
    """``RESULTS/quarantine.parquet``: every quarantined file with its reason, rewritten whole
    (atomically) whenever the list changes."""
    try:
        write_table_atomic(engine.ledger.quarantine_table(),
                           engine.results_dir / QUARANTINE_FILE)
    except OSError as exc:
        _log(engine).error("quarantine_write_failed", error=repr(exc))
