"""What one call of :func:`nwwatch.service.pipeline.process` works with: the :class:`Engine`
(segmenter, ledger, results folder), the items of a batch, their outcomes and the report;
turning input files into items (hashes from the ledger's cache, regular files only).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nwwatch import __version__
from nwwatch.filehash import file_sha256
from nwwatch.io import InputError, UnreadableFileError, inspect_tiff
from nwwatch.results.outcome import by_outcome, count_rows, flagged_reasons, row_reason_code
from nwwatch.segment.session import Segmenter
from nwwatch.service.config import OverlaySettings
from nwwatch.service.flush import RowBuffer
from nwwatch.service.inputs import check_regular
from nwwatch.service.jobs import job_for
from nwwatch.service.ledger import Failure, ItemKey, ItemState, Ledger
from nwwatch.service.ledgerdb import FileVersion, PathKey
from nwwatch.service.names import display, path_key, source_name
from nwwatch.volume.segment import VolumeOptions


@dataclass
class Engine:
    """What :func:`process` needs, built once per (kind, model) by the daemon or replay."""

    kind: str
    segmenter: Segmenter
    ledger: Ledger
    results_dir: Path
    batch_size: int = 8
    #: In-situ frame groups processed concurrently (``[inference] streams``, resolved by
    #: :meth:`nwwatch.service.inference.InferenceConfig.plan`); 1: one group at a time, the
    #: next one read and the previous one measured in a worker thread.
    streams: int = 1
    #: The session of concurrent streams' network calls (with ``streams`` > 1 on the CPU,
    #: one intra-op thread); None: ``segmenter``, which runs any group that runs alone.
    stream_segmenter: Segmenter | None = None
    #: With ``streams = "auto"``: the bytes its streams beyond the first may take
    #: (:func:`nwwatch.service.streammemory.auto_stream_budget`, when the engine was built);
    #: a call whose frames need more per stream runs fewer. None: no bound.
    stream_memory_bytes: int | None = None
    max_attempts: int = 3
    #: How tomograms are segmented (``[tomogram]`` in the configuration).
    volume_options: VolumeOptions = field(default_factory=VolumeOptions)
    #: QA pictures of in-situ frames (``[output] overlays``, ``replay --overlays``).
    overlays: OverlaySettings = field(default_factory=OverlaySettings)
    #: Offer processed frames to ``RESULTS/label-queue`` (:mod:`nwwatch.results.label_queue`).
    #: Off on a Dask worker: the cluster's driver offers them from the rows it commits.
    label_queue: bool = True
    #: The structlog logger of the engine's lines; None: ``nwwatch.pipeline``'s.
    log: Any = None
    #: Rows of processed batches waiting for a larger Parquet file (nwwatch.service.flush);
    #: by default written at the end of every ``process`` call.
    buffer: RowBuffer = field(default_factory=RowBuffer)
    #: Called between network batches and files: the daemon pings the systemd watchdog
    #: from here, so a long batch is not mistaken for a hung loop.
    heartbeat: object = None

    def __post_init__(self) -> None:
        if self.log is None:
            from nwwatch.logsetup import get_logger

            self.log = get_logger("nwwatch.pipeline")

    def beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat()

    @property
    def measurement_version(self) -> str:
        return job_for(self.kind).measurement_version(self)

    def key(self, sha256: str) -> ItemKey:
        return ItemKey(sha256, self.segmenter.model_sha256, self.measurement_version)


@dataclass
class FileOutcome:
    """What happened to one input file: state in done, skipped, failed, quarantined, gone.

    ``rows``: for a done file, one small dict per row written (``frame``, ``status``,
    ``reason_code``, ``contact_angle_deg``) for summaries and log lines."""

    path: Path
    state: str
    n_rows: int = 0
    reason: str = ""
    detected_at: float | None = None
    batch_id: str = ""
    rows: list[dict] = field(default_factory=list)
    #: The content processed (SHA-256), for a done file: a file changed since is another
    #: version of it (:class:`nwwatch.service.tally.Tally`).
    sha256: str = ""
    #: For a file skipped as done: the name its content was done under when that file no
    #: longer holds it (renamed after it was processed, or a copy of an earlier version of
    #: it; its rows keep that name).
    done_as: str = ""
    #: For a file skipped by a forced run: the name whose rows hold its content, a file that
    #: still holds the same bytes (forcing the copy would move those rows to it).
    copy_of: str = ""
    #: For a file skipped as done: its own path's content was done before (its bytes
    #: unchanged, its mtime new: not known by its version until hashed).
    earlier: bool = False

    def row_counts(self) -> Counter[tuple[str, str]]:
        """This file's rows by (status, reason_code)."""
        return count_rows(self.rows)


def row_summary(row: dict) -> dict:
    """The part of a result row that summaries and log lines show: a frame's number and
    angle, a volume's solid fraction (a tomogram's line said ``"frame": null,
    "contact_angle_deg": null``)."""
    if "frame" not in row:  # a volume row
        solid = row.get("solid_fraction")
        return {"status": row.get("status"), "reason_code": row_reason_code(row),
                "solid_fraction": None if solid is None or not math.isfinite(solid)
                else round(float(solid), 4)}
    angle = row.get("contact_angle_deg")
    out = {"frame": row.get("frame"), "status": row.get("status"),
           "reason_code": row_reason_code(row)}
    if "angle_valid" in row:  # frame rows: a refused frame may keep its angle (not valid)
        out["angle_valid"] = bool(row["angle_valid"])
    out["contact_angle_deg"] = None if angle is None else round(float(angle), 2)
    return out


def outcome_log_fields(outcome: FileOutcome) -> tuple[dict, list[dict]]:
    """Fields of the log lines of a done file: (the file's line, one line per frame). A
    single-frame file's line carries that frame's status, reason code and angle, with no
    frame lines; a multi-page file's line carries the counts by outcome and reason code."""
    if len(outcome.rows) == 1:
        return dict(outcome.rows[0]), []
    counts = outcome.row_counts()
    return (dict(by_outcome(counts), reason_codes=flagged_reasons(counts)),
            [dict(r) for r in outcome.rows])


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
class Item:
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
    #: Changed since it was hashed (gone too: released, no attempt; a new version now).
    changed: bool = False
    batch_cap: int | None = None  # from the ledger: this file's last batch crashed

    def changed_since_hashed(self) -> bool:
        """True (and ``gone``, ``changed``) when the file is no longer the version hashed —
        another size or mtime, or removed: what was read is not the content ``key`` names,
        and a failure to read it says nothing about that content. Checked after reading."""
        try:
            st = os.stat(self.path)
            same = (st.st_size, st.st_mtime_ns) == (self.size, self.mtime_ns)
        except OSError:
            same = False
        if not same:
            self.failed = self.gone = self.changed = True
        return not same


def collect(files: Sequence[object], engine: Engine, report: BatchReport,
             force: bool) -> list[Item]:
    """Hash the files (from the ledger's cache when the version is known) and keep those to
    process; records the others' outcomes in ``report``."""
    ledger = engine.ledger
    items: list[Item] = []
    early_failures: list[Failure] = []
    for entry in files:
        path = Path(getattr(entry, "path", entry))
        detected_at = getattr(entry, "detected_at", None)
        name = path_key(path)
        try:
            st = check_regular(path)
            version = FileVersion.of(st)
            # processed unless found done: a hash of an earlier version, which did not
            # see a file replaced keeping size and mtime, is not taken
            sha = ledger.cached_sha(name, version, trust_earlier=False)
            if sha is None:
                if _refused_from_header(path, st, engine, report, detected_at,
                                        early_failures):
                    continue
                # the watchdog is pinged while a file of many GB is hashed (minutes on a share)
                sha = file_sha256(path, progress=engine.beat)
                ledger.remember_sha(name, version, sha)
        except FileNotFoundError:
            report.files.append(FileOutcome(path, "gone", reason="file vanished"))
            continue
        except (PermissionError, InputError) as exc:
            err = exc if isinstance(exc, InputError) else UnreadableFileError(
                path, f"cannot read: {exc.strerror}")
            size, mtime = _stat(path)
            early_failures.append(Failure(None, name, err.reason, type(err).__name__, True,
                                          size, mtime))
            report.files.append(FileOutcome(path, "quarantined", reason=err.reason))
            continue
        key = engine.key(sha)
        known = ledger.item(key)
        copy_of = forced_copy_of(ledger, name, known, sha, engine.beat) if force else ""
        if copy_of:
            report.files.append(FileOutcome(path, "skipped", reason="a copy of done content",
                                            copy_of=copy_of))
            continue
        if force and known is not None and known.state == "done" and _refused_from_header(
                path, st, engine, report, detected_at, early_failures, done_content=True):
            # refused by its version, before its claim: a failure of the claimed item would
            # quarantine the content its rows on disk still hold (processed twice later)
            continue
        if known is not None and known.state in ("done", "quarantined") and not force:
            if known.state == "done":  # its path's quarantined version has been replaced
                ledger.release_quarantine(name, st.st_size, st.st_mtime_ns, sha)
                note_skipped(engine, path, key, known)
                moved_from = _moved_from(ledger, name, known.source, sha, engine.beat)
                if moved_from:
                    report.files.append(FileOutcome(path, "skipped", reason="already done",
                                                    done_as=moved_from))
                    continue
            elif not ledger.quarantined_at(name, st.st_size, st.st_mtime_ns):
                # a copy of quarantined content: listed under its own name too
                why = ledger.quarantine_copy(name, st.st_size, st.st_mtime_ns, key)
                if why is not None:
                    report.files.append(FileOutcome(path, "quarantined", reason=why,
                                                    detected_at=detected_at))
                    continue
            report.files.append(FileOutcome(path, "skipped", reason=f"already {known.state}",
                                            earlier=known.state == "done"
                                            and known.source == name))
            continue
        if engine.buffer.holds(key):  # processed, its rows wait for their file
            ledger.release_quarantine(name, st.st_size, st.st_mtime_ns, sha)
            if known is not None:
                note_skipped(engine, path, key, known)
            report.files.append(FileOutcome(path, "skipped", reason="already done"))
            continue
        if any(it.key == key for it in items):  # same content twice in one batch
            report.files.append(FileOutcome(path, "skipped", reason="duplicate content",
                                            detected_at=detected_at, sha256=sha))
            continue
        info = getattr(entry, "info", None)
        if getattr(info, "size_bytes", st.st_size) != st.st_size:
            # the structural check was of an earlier version (a stack grown since it was
            # found ready): its page count would leave the new pages without rows
            try:
                info = inspect_tiff(path)
            except Exception:  # noqa: BLE001 - whatever its check meets, a new version: the
                # next look at it checks it as the service checks every file
                report.files.append(FileOutcome(
                    path, "gone", reason="changed since it was found ready: processed again "
                                         "as the new version", detected_at=detected_at))
                continue
            entry = dataclasses.replace(entry, info=info)
        items.append(Item(path, key, st.st_size, st.st_mtime_ns, detected_at, entry=entry,
                           pages=getattr(info, "n_pages", 1),
                           batch_cap=None if known is None else known.batch_cap))
    if early_failures:
        ledger.record_failures(early_failures, engine.max_attempts)
    return items


def hashed_before_header(engine: Engine, name: PathKey, size_bytes: int,
                         mtime_ns: int) -> bool:
    """Whether a file whose hash is not known is hashed before its header may refuse it
    (too large for the memory): done content last hashed at its path (touched since) or in
    a file of its size and mtime (moved or renamed), to be skipped as done whatever the
    memory now. Used by :func:`collect` and a Dask driver (``TaskSpec.hash_first``)."""
    return engine.ledger.done_content_moved_or_touched(
        name, size_bytes, mtime_ns, engine.segmenter.model_sha256, engine.measurement_version)


def _refused_from_header(path: Path, st: os.stat_result, engine: Engine, report: BatchReport,
                         detected_at: float | None, failures: list[Failure],
                         done_content: bool = False) -> bool:
    """Whether the job refuses ``path`` from its header alone (a tomogram too large for the
    memory), checked before the file is hashed: hashing reads it whole, minutes for tens of
    GB on a share, while the loop serves no other file. When refused, its outcome is added to
    ``report`` and its failure to ``failures`` (quarantined under the version ``st``, by path,
    size and mtime: unhashed, a rescan skips that version unread); a file changed meanwhile
    is reported gone instead (processed again as the new version). Unless ``done_content``
    (the file's content is known done: a ``--force`` run, its item and rows kept), a file
    :func:`hashed_before_header` matches is not refused here (False). Raises what reading the
    header raises besides the refusal (FileNotFoundError, PermissionError)."""
    refusal = job_for(engine.kind).header_refusal
    if refusal is None:
        return False
    try:
        refusal(path, engine.batch_size)
    except InputError as exc:
        err = exc
    else:
        return False
    if not done_content and hashed_before_header(engine, path_key(path), st.st_size,
                                                 st.st_mtime_ns):
        return False
    if _stat(path) != (st.st_size, st.st_mtime_ns):  # the header read may be another version's
        report.files.append(FileOutcome(
            path, "gone", reason="changed while it was read: processed again as the new "
                                 "version", detected_at=detected_at))
        return True
    engine.log.warning("bad_input", source=source_name(path), reason=err.reason,
                       error_type=type(err).__name__)
    report.files.append(FileOutcome(path, "quarantined", reason=err.reason,
                                    detected_at=detected_at))
    failures.append(Failure(None, path_key(path), err.reason, type(err).__name__, True,
                            st.st_size, st.st_mtime_ns))
    return True


def forced_copy_of(ledger, name, known: ItemState | None, sha: str, beat=None) -> str:
    """For a ``--force`` run: the name (shown) whose rows hold the content ``sha`` of the
    file ``name`` when that is another file that still holds those bytes, else "". One row
    per content: processing the copy would move those rows, possibly out of another
    acquisition, to it; the copy is skipped instead."""
    if known is None or known.state != "done" or known.source == name:
        return ""
    try:  # only a file seen to hold the bytes (gone, unreadable, a folder now: no copy)
        there = _content_of(ledger, known.source, beat)
    except (OSError, InputError):
        return ""
    return display(known.source) if there == sha else ""


def _content_of(ledger, name, beat=None) -> str:
    """The sha256 of the regular file ``name`` (a ledger key) as it is now: the ledger's
    hash of its version, else hashed. Raises FileNotFoundError when it is gone, OSError or
    InputError when it cannot be read as a regular file."""
    path = Path(os.fsdecode(name))
    st = check_regular(path)
    there = ledger.cached_sha(name, FileVersion.of(st), trust_earlier=False)
    return there if there is not None else file_sha256(path, progress=beat)


def _moved_from(ledger, name, done_as, sha: str, beat=None) -> str:
    """The name (shown) the content ``sha`` of the file ``name`` was done under, when that
    file no longer holds it (renamed after it was processed: gone, or written again with
    another frame, as a temporary name acquisition software reuses); "" when it is the same
    file or still holds that content (a copy). The file there is hashed unless the ledger
    knows its version: this is the rare case of content done under another name."""
    if done_as == name:
        return ""
    try:
        there = _content_of(ledger, done_as, beat)
    except FileNotFoundError:
        return display(done_as)
    except (OSError, InputError):  # unreadable there: nothing known of a move
        return ""
    return display(done_as) if there != sha else ""


def note_skipped(engine: Engine, path: Path, key: ItemKey, known: ItemState) -> None:
    """``path`` skipped, its content done or held already: a file put back to content it held
    before becomes current again in the results (:mod:`nwwatch.service.ledgerreverts`);
    logged as ``file_reverted``; the labelling queue's frames of its other contents leave
    the queue (:func:`nwwatch.results.label_queue.forget_other_contents`). A write that fails
    is logged and tried at the next look."""
    try:
        if not engine.ledger.note_skipped(path_key(path), key, known):
            return
    except OSError as exc:
        engine.log.warning("reverted_write_failed", source=source_name(path),
                           error=repr(exc))
        return
    from nwwatch.results import label_queue

    try:  # the queue is a by-product: its failure never fails the file (as in frames.py)
        label_queue.forget_other_contents(engine.results_dir, source_name(path), key.sha256)
    except Exception as exc:
        engine.log.error("label_queue_failed", error=repr(exc), exc_info=exc)
    engine.log.info("file_reverted", source=source_name(path), sha256=key.sha256)


#: Refusals of a file the service may not read: it is read as soon as it opens
#: (``quarantined_at``), so its TIFF export must not stand in for it meanwhile (the frames
#: would get rows twice, the export's and then the original's). A stack refused as too large
#: for the memory is not retried once its export stood in (``retry_stacks_that_fit``).
RETRIED_REFUSALS = frozenset({"UnreadableFileError"})


def quarantined_now(engine: Engine, path: Path) -> bool:
    """Whether ``engine``'s ledger lists the present version of ``path`` as quarantined
    for its model and measurement version, for what the file is (not a refusal that is
    retried, :data:`RETRIED_REFUSALS`), as a rescan and a replay skip it (False for a file
    gone): an original so refused has its TIFF export read in its place."""
    try:
        st = path.stat()
    except OSError:
        return False
    key = path_key(path)
    if engine.ledger.quarantine_error_type(key) in RETRIED_REFUSALS:
        return False
    return engine.ledger.quarantined_version(key, FileVersion.of(st),
                                             engine.segmenter.model_sha256,
                                             engine.measurement_version)


def _stat(path: Path) -> tuple[int | None, int | None]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def outcomes(report: BatchReport, items: list[Item], failures: list[Failure],
              quarantined: list[Failure], batch_id: str) -> None:
    reasons = {f.source: f.reason for f in failures}
    q = {f.source for f in quarantined}
    for it in items:
        name = path_key(it.path)
        if it.gone:
            why = ("changed while it was read: processed again as the new version"
                   if it.changed else "file vanished")
            report.files.append(FileOutcome(it.path, "gone", reason=why, batch_id=batch_id))
        elif name in reasons:
            state = "quarantined" if name in q else "failed"
            report.files.append(FileOutcome(it.path, state, reason=reasons[name],
                                            detected_at=it.detected_at, batch_id=batch_id))
        else:
            report.files.append(FileOutcome(it.path, "done", n_rows=len(it.rows),
                                            detected_at=it.detected_at, batch_id=batch_id,
                                            sha256=it.key.sha256,
                                            rows=[row_summary(r) for r in it.rows]))


def fail_item(it: Item, exc: BaseException, failures: list[Failure], engine: Engine) -> None:
    """Record that ``it`` failed with ``exc``: bad input (:class:`InputError`) is permanent,
    anything else counts an attempt and is logged with its traceback."""
    it.failed = True
    permanent = isinstance(exc, InputError)
    reason = exc.reason if permanent else f"unexpected error: {exc!r}"
    failures.append(Failure(it.key, path_key(it.path), reason, type(exc).__name__,
                            permanent, it.size, it.mtime_ns,
                            machine_limit=getattr(exc, "machine_limit", False)))
    if permanent:
        engine.log.warning("bad_input", source=source_name(it.path), reason=reason,
                           error_type=type(exc).__name__)
    else:
        engine.log.error("unexpected_error", source=source_name(it.path), reason=reason,
                         exc_info=exc)


def provenance(engine: Engine, it: Item, batch_id: str) -> dict:
    """The provenance columns every row of ``it`` shares."""
    seg = engine.segmenter
    return {
        "source_sha256": it.key.sha256,
        "model_name": seg.name,
        "model_sha256": seg.model_sha256,
        "provider": seg.provider,
        "nwwatch_version": __version__,
        "measurement_version": it.key.measurement_version,  # engine.key() put it there
        "batch_id": batch_id,
    }


def quarantine_duplicates(report: BatchReport, engine: Engine) -> None:
    """Files skipped as a duplicate of content processed in the same call whose content was
    quarantined: listed under their own names and reported as quarantined too (they were
    counted as skipped and never listed, although they hold the same bad bytes)."""
    for i, o in enumerate(report.files):
        if o.state != "skipped" or o.reason != "duplicate content" or not o.sha256:
            continue
        size, mtime = _stat(o.path)
        if size is None:
            continue
        why = engine.ledger.quarantine_copy(path_key(o.path), size, mtime,
                                            engine.key(o.sha256))
        if why is not None:
            report.files[i] = FileOutcome(o.path, "quarantined", reason=why,
                                          detected_at=o.detected_at)
