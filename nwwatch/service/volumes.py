"""Tomograms: read -> :func:`nwwatch.volume.segment_volume` -> :func:`volume_metrics` -> 3-D
uint8 mask written atomically as ``RESULTS/masks/{stem}-{sha12}-{batch_id}.tif`` -> one
row, held by :func:`nwwatch.service.pipeline.process` and written with other batches of the
acquisition to ``RESULTS/volumes/acquisition=<key>/`` (:mod:`nwwatch.service.flush`).
"""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from nwwatch.io import (
    ImageTooLargeError,
    InputError,
    check_tomogram,
    read_volume,
    write_volume_tiff,
)
from nwwatch.pathtext import path_text
from nwwatch.results.schema import volume_schema
from nwwatch.segment.session import ModelLoadError
from nwwatch.service.batch import (
    BatchReport,
    Engine,
    Item,
    fail_item,
    provenance,
)
from nwwatch.service.flush import ResultsWriteError
from nwwatch.service.jobs import Job
from nwwatch.service.ledger import Failure, Ledger
from nwwatch.service.names import source_name
from nwwatch.volume import (
    VOLUME_METRIC_FIELDS,
    VOLUME_METRICS_VERSION,
    VolumeModelError,
    segment_volume,
    volume_metrics,
)
from nwwatch.volume.fill import ConstantFill, fill_text, without_constant_fill
from nwwatch.volume.memory import (
    GIB,
    SLICES_PER_CALL,
    TomogramTooLargeError,
    tomogram_memory,
)
from nwwatch.volume.metrics import voxels_with_data

#: The longest mask file name (bytes): Linux's NAME_MAX (255) less what the atomic writer adds
#: to the name of its temporary file (``.{name}.{8 hex}.part``, nwwatch.atomic).
MASK_NAME_MAX_BYTES = 255 - 15


def mask_name(source: str | os.PathLike[str], sha256: str, batch_id: str) -> str:
    """The mask file's path relative to the results folder (the ``mask_path`` column):
    ``masks/{stem}-{sha256[:12]}-{batch_id}.tif``. The stem is written as the ``source``
    column writes it (bytes that are not UTF-8 as ``\\xNN``: the column is text), so a path
    and its ``source`` form give the same name, and cut short where the name would be too
    long for the file system (the content hash and batch keep the names apart)."""
    stem = path_text(Path(source).stem)
    tail = f"-{sha256[:12]}-{batch_id}.tif"
    room = max(0, MASK_NAME_MAX_BYTES - len(tail.encode()))
    stem = stem.encode()[:room].decode("utf-8", "ignore")
    return f"masks/{stem}{tail}"


def mask_path_of(engine: Engine, it: Item, batch_id: str) -> Path:
    return engine.results_dir / mask_name(it.path, it.key.sha256, batch_id)


def check_memory(it: Item, engine: Engine) -> None:
    """Refuse the tomogram of ``it`` (:class:`nwwatch.volume.memory.TomogramTooLargeError`:
    quarantined at once, and tried again at a later start when the memory allows it,
    :func:`retry_tomograms_that_fit`) when its header says it cannot fit
    (:func:`tomogram_memory`); warn when it fits only with the less hungry models."""
    # a model call takes up to the engine's batch of slices
    estimate, available = tomogram_memory(it.path, slices_per_call=engine.batch_size)
    if available is not None and estimate.high > available.value:
        engine.log.warning("tomogram_memory_tight", source=source_name(it.path),
                           needs_gib=[round(estimate.low / GIB, 2),
                                      round(estimate.high / GIB, 2)],
                           available_gib=round(available.value / GIB, 2),
                           available_source=available.source)


#: The refusals :func:`refuse_too_large` raises.
REFUSED_FROM_HEADER = (TomogramTooLargeError, ImageTooLargeError)


def refuse_too_large(path: Path, batch_size: int) -> None:
    """Raise the refusal of the tomogram at ``path`` when its header says it is too large:
    ``TomogramTooLargeError`` (the memory, :func:`tomogram_memory`) or ``ImageTooLargeError``
    (more than a file read whole may hold). Run before the file is hashed
    (:func:`nwwatch.service.batch.collect`, a Dask task): hashing reads the whole file, tens
    of GB on a share, only for it to be refused from its header. Any other fault of the
    header is left to :func:`volume_rows`, which reads the file (the ledger then knows its
    content)."""
    try:
        tomogram_memory(path, slices_per_call=batch_size)
    except REFUSED_FROM_HEADER:
        raise
    except InputError:
        return


def retry_tomograms_that_fit(ledger: Ledger, log, check_memory: bool = True,
                             slices_per_call: int = SLICES_PER_CALL) -> int:
    """Take off the quarantine list every tomogram refused as too large for the memory
    (``TomogramTooLargeError``) that now fits (:func:`tomogram_memory`, its header read
    again): the limit was raised (the unit's ``MemoryMax``, then a restart) or the machine
    has more memory. Its file is then tried again at the next scan, like a file quarantined
    as unreadable once it opens; one that still cannot fit stays listed, unread. Run when the
    service or a replay starts. ``check_memory`` False: every one whose file is unchanged is
    tried again, unread (a Dask replay: the workers' memory decides, and a worker refuses
    one that still cannot fit from its header). Logs ``tomogram_retried`` per file; returns
    their number."""
    def fits(path: Path) -> tuple:
        try:
            return (tomogram_memory(path, slices_per_call=slices_per_call) if check_memory
                    else (None, None))
        except (OSError, InputError):  # still too large, or no longer a readable TIFF
            return None

    retried = ledger.retry_quarantined_that_fit(TomogramTooLargeError.__name__, fits)
    for path, (estimate, available) in retried:
        log.info("tomogram_retried", source=source_name(path),
                 needs_gib=None if estimate is None
                 else [round(estimate.low / GIB, 2), round(estimate.high / GIB, 2)],
                 available_gib=None if available is None
                 else round(available.value / GIB, 2))
    return len(retried)


def log_constant_fill(log, path: Path, fill: tuple[ConstantFill, ...]) -> None:
    """The ``volume_constant_fill`` warning: the file, the fill's values and the share of
    its voxels taken as no data (never solid, out of the grey range and the references)."""
    log.warning("volume_constant_fill", source=source_name(path),
                values=[f.value for f in fill],
                no_data_share=round(sum(f.share for f in fill), 4),
                why=f"constant fill {fill_text(fill)} taken as no data (as NaN)")


def volume_rows(items: list[Item], engine: Engine, batch_id: str, failures: list[Failure],
                report: BatchReport) -> None:
    """Segment each tomogram of ``items``, write its mask and append its row to the item's
    ``rows``; a tomogram that cannot fit in memory is refused from its header first."""
    for it in items:
        engine.beat()
        try:
            t = time.perf_counter()
            # the header again, though collect may have read it: a file whose hash was
            # cached, or one hashed first as perhaps done content (touched, moved), was not
            # refused there, and the memory available is read now, just before the voxels
            check_memory(it, engine)
            volume = check_tomogram(read_volume(it.path))
            if it.changed_since_hashed():  # these voxels are not the content hashed
                del volume
                continue
            read_ms = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            # A constant fill is no data: taken out here (and not looked for again by
            # segment_volume), the file's own voxels are let go before the segmentation
            # holds its float copy.
            data, fill = without_constant_fill(volume.data)
            # the metrics and the mask need all three sizes; the model's check compares the
            # axes the file declares (an ImageJ stack without spacing= declares no depth)
            voxel_size_nm, declared_nm = volume.voxel_size_nm, volume.declared_voxel_size_nm
            del volume
            if fill:
                log_constant_fill(engine.log, it.path, fill)
            # The watchdog is pinged while one volume is segmented and measured, not only
            # between files: a large tomogram takes longer than systemd's WatchdogSec.
            seg = segment_volume(engine.segmenter, data, batch_size=engine.batch_size,
                                 heartbeat=engine.beat, fill=fill,
                                 voxel_size_nm=declared_nm,
                                 **engine.volume_options.as_kwargs())
            mask = seg.mask
            # Where the volume has no data (NaN, infinite, a constant fill), the solid's
            # boundary is a cut, not a surface: one byte a voxel, and only for such volumes.
            valid = voxels_with_data(data)
            # The pixels are not needed past the segmentation: the metrics' distance
            # transform is a tomogram's memory peak (docs/tomography.md, "Memory").
            del data
            segment_ms = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            # The metrics first: a tomogram that fails in them (a MemoryError in the distance
            # transform) must leave no mask that no row names, one per attempt.
            metrics = volume_metrics(mask, voxel_size_nm, heartbeat=engine.beat,
                                     valid=valid).as_row()
            del valid
            mask_path = mask_path_of(engine, it, batch_id)
            try:
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                write_volume_tiff(mask_path, np.ascontiguousarray(mask, dtype=np.uint8),
                                  voxel_size_nm=voxel_size_nm)
            except OSError as exc:
                raise ResultsWriteError(f"{mask_path}: cannot write the mask ({exc})",
                                        folder=mask_path.parent) from exc
            measure_ms = (time.perf_counter() - t) * 1e3
        except ResultsWriteError:
            raise
        except VolumeModelError as exc:
            # The model's fault (it cannot run on such slices), not this file's: retrying or
            # quarantining the file would not help and the next tomogram fails alike. Stop,
            # as for a model that does not load (the batch is released, no attempt counted).
            raise ModelLoadError(f"{exc} (while segmenting {source_name(it.path)})") from exc
        except FileNotFoundError:
            it.failed, it.gone = True, True
            continue
        except Exception as exc:
            if not it.changed_since_hashed():  # else released: a new version now
                fail_item(it, exc, failures, engine)
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
            # "ok" for an ok mask, as a frame row's and the file's log line ("" before)
            reason_code=seg.verdict.reason_code or "ok",
            mask_path=str(mask_path.relative_to(engine.results_dir)),
            uncertain_fraction=seg.uncertain_fraction,
            threshold_agreement=agreement,
            acquired_at=st_time,
            acquired_at_source="mtime",
            processed_at=datetime.now(UTC),
            read_ms=read_ms,
            segment_ms=segment_ms,
            measure_ms=measure_ms,
            **provenance(engine, it, batch_id),
        )
        if seg.verdict.status == "suspect":  # the warning and the row say the same
            engine.log.warning("volume_suspect", source=source_name(it.path),
                             reason_code=seg.verdict.reason_code, why=list(seg.verdict.why),
                             uncertain_fraction=round(seg.uncertain_fraction, 4),
                             threshold_agreement=None if agreement is None
                             else round(agreement, 4))
        it.rows.append(row)
        # The batch's stage times, as a frame batch reports them (the file_processed line).
        for stage, ms in (("read", read_ms), ("segment", segment_ms), ("measure", measure_ms)):
            report.timings_ms[stage] = report.timings_ms.get(stage, 0.0) + ms


def _measurement_version(engine: Engine) -> str:
    # The mask depends on the segmentation settings as much as on the model.
    return f"{VOLUME_METRICS_VERSION}+{engine.volume_options.version}"


#: The tomogram job of :func:`nwwatch.service.pipeline.process`.
VOLUME_JOB = Job(kind="tomogram", folder="volumes",
                 schema=lambda: volume_schema(VOLUME_METRIC_FIELDS),
                 measurement_version=_measurement_version, run=volume_rows,
                 side_files=lambda engine, items, batch_id: [
                     mask_path_of(engine, it, batch_id) for it in items],
                 header_refusal=refuse_too_large)
