"""What a Dask worker runs for ``nwwatch replay --dask`` (:mod:`nwwatch.service.cluster`):
hash a task's files, read, segment and measure them with the job of
:func:`nwwatch.service.pipeline.process` (frames, or tomograms), and stage the rows as one
Parquet file whose name is fixed by the files' paths and content hashes, the model hash and the
measurement version, so a task that Dask runs twice finds (or rewrites) the same file. A
tomogram's mask is staged beside it, in ``<staged name>.side/masks/``, for the driver to move
into place once it has claimed the batch. No ledger here: the driver commits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nwwatch.service.batch import Engine
from nwwatch.service.config import OverlaySettings
from nwwatch.service.ledger import Failure, ItemKey
from nwwatch.service.ledgerdb import FileVersion

if TYPE_CHECKING:
    from nwwatch.volume.segment import VolumeOptions

#: Test hook, unset in production: a path; the first task to find that file there removes it
#: and ends its worker process with ``os._exit`` right after writing its staged output (a
#: worker lost mid-run, once).
_EXIT_ONCE_ENV = "NWWATCH_CLUSTER_EXIT_ONCE"
_FAILURES_META = b"nwwatch.cluster.failures"


@dataclass(frozen=True)
class TaskSpec:
    """What every task needs besides its files (sent with each task; small)."""

    model: str
    model_sha256: str
    measurement_version: str
    batch_size: int
    providers: tuple[str, ...]
    threads: int | None
    staging: str
    force: bool = False
    #: QA pictures (``--overlays``): written by the worker under ``results_dir`` (shared with
    #: every worker, as ``staging`` is); their file names depend only on the file's path and
    #: content, the model and the page, so a task run twice rewrites the same files.
    overlays: OverlaySettings = OverlaySettings()
    results_dir: str = ""
    #: "insitu" or "tomogram" (the replay's ``--kind``), and how tomograms are segmented
    #: (None: in-situ; the volume code is not imported for frames).
    kind: str = "insitu"
    volume_options: VolumeOptions | None = None
    #: The driver's time zone (IANA key), in which every worker reads times written without
    #: one (:func:`nwwatch.io.metadata.read_zoneless_in`); None: the worker's own, checked
    #: by the driver to be the same (:func:`zone_answer`).
    zoneless_zone: str | None = None
    #: The driver's :func:`code_identity`, which each task compares with its worker's: the
    #: workers present at the start are checked then, one that joins or restarts later
    #: (its nanny after a kill, after the environment was upgraded) only here. None: no check.
    code: dict[str, str] | None = None
    #: A ``force`` run's task: its paths whose name the rows of their content carry already;
    #: of two files of the same bytes in the task such a file is processed, whatever the
    #: order (the other is a copy the driver leaves alone). Per task, in the spec (not an
    #: argument of :func:`run_task`): a worker of an earlier release still gets the call
    #: it can take, and refuses it by the code check.
    owners: tuple[str, ...] = ()
    #: The task's paths hashed before their header may refuse them: done content touched,
    #: moved or renamed whose hash the driver's ledger does not know for this version
    #: (skipped by the driver as done, not quarantined as too large for this worker's
    #: memory; :func:`~nwwatch.service.batch.hashed_before_header`). Per task, as ``owners``.
    hash_first: tuple[str, ...] = ()


@dataclass
class FileResult:
    """One input file of a task: its content hash and rows, or why it has none."""

    path: str
    sha256: str | None = None
    version: FileVersion | None = None  # as the worker read it (hashes are cached by it)
    n_rows: int = 0
    reason: str = ""
    error_type: str = ""
    permanent: bool = False
    gone: bool = False
    duplicate: bool = False  # same content as an earlier file of the task
    #: refused from its header before it was hashed (``sha256`` None): the driver
    #: quarantines it by the version it listed
    header_refused: bool = False

    @property
    def size(self) -> int | None:
        return None if self.version is None else self.version.size

    @property
    def mtime_ns(self) -> int | None:
        return None if self.version is None else self.version.mtime_ns


@dataclass
class TaskResult:
    staged: str
    #: Files the rows name besides the Parquet file (a tomogram's mask), staged here under
    #: the path the ``mask_path`` column gives.
    side: str = ""
    files: list[FileResult] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0  # compute time on the worker
    reused: bool = False  # the staged output was already there (a re-run)
    staged_bytes: int = 0
    #: the worker's :func:`code_identity`, which the driver compares with its own: a worker
    #: of an earlier release ignores ``TaskSpec.code`` and sends none
    code: dict[str, str] | None = None
    #: the worker that ran the task (:func:`worker_name`), for the driver's messages about
    #: that worker's view (an input or results folder it does not share): one node of many
    worker: str = ""


_SEGMENTERS: dict[tuple[str, str], object] = {}
_SEGMENTERS_LOCK = threading.Lock()  # a worker may run several tasks at once (threads)


def _segmenter(spec: TaskSpec):
    """The worker process's ONNX session of ``spec.model``, loaded once per process."""
    from nwwatch.segment.session import ModelLoadError, Segmenter

    key = (spec.model, spec.model_sha256)
    with _SEGMENTERS_LOCK:
        if key not in _SEGMENTERS:
            try:
                seg = Segmenter(spec.model, providers=spec.providers, threads=spec.threads)
            except ModelLoadError as exc:  # the driver loaded it: say where it did not load
                raise ModelLoadError(f"on the Dask worker {worker_name()}: {exc}") from None
            if seg.model_sha256 != spec.model_sha256:
                raise ModelLoadError(
                    f"{spec.model}: differs on the Dask worker {worker_name()} (sha256 "
                    f"{seg.model_sha256[:12]}, driver {spec.model_sha256[:12]})")
            _SEGMENTERS[key] = seg
        return _SEGMENTERS[key]


def run_task(paths: list[str], pages: list[int], spec: TaskSpec) -> TaskResult:
    """Process input files on a worker into one staged Parquet file (see the module docs)."""
    import pyarrow.parquet as pq

    from nwwatch.filehash import file_sha256
    from nwwatch.io import InputError, UnreadableFileError
    from nwwatch.io.metadata import read_zoneless_in
    from nwwatch.results.parquet import write_table_atomic
    from nwwatch.service.batch import Item
    from nwwatch.service.inputs import check_regular
    from nwwatch.service.jobs import job_for

    mine = code_identity()  # also sent back with the result, for the driver to compare
    if spec.code is not None and mine != spec.code:
        from nwwatch.service.clusterconnect import WorkerCodeMismatchError

        differ = [f"{what} {mine.get(what)} (driver {value})" for what, value in
                  spec.code.items() if what != "sources" and mine.get(what) != value] or [
            "the same version numbers, but its Python sources differ from the driver's"]
        raise WorkerCodeMismatchError(
            f"the Dask worker {worker_name()}, which joined or "
            f"restarted after the replay started, runs another nwwatch than the driver: "
            + "; ".join(differ) + ". Rows committed so far are kept: restart every worker "
            "with the driver's nwwatch and run the same command again")
    read_zoneless_in(spec.zoneless_zone)  # the same for every task of a replay: no race
    t0 = time.perf_counter()
    results = {p: FileResult(p) for p in paths}
    items: list[Item] = []
    seen: dict[str, int] = {}  # content -> its item's index
    owned = set(spec.owners)
    # A file its header refuses (a tomogram too large for this worker's memory) is not read
    # through to be hashed first: without a hash, the driver quarantines it by its version.
    refusal = job_for(spec.kind).header_refusal
    hash_first = set(spec.hash_first)
    for p, n_pages in zip(paths, pages, strict=True):
        r = results[p]
        try:
            st = check_regular(Path(p))
            r.version = FileVersion.of(st)
            if refusal is not None and p not in hash_first and _refused_from_header(
                    refusal, r, spec.batch_size):
                continue
            r.sha256 = file_sha256(Path(p))
        except FileNotFoundError:
            r.gone = True
            continue
        except (PermissionError, InputError) as exc:
            err = exc if isinstance(exc, InputError) else UnreadableFileError(
                Path(p), f"cannot read: {exc.strerror}")
            r.reason, r.error_type, r.permanent = err.reason, type(err).__name__, True
            continue
        if r.sha256 in seen:  # the same content twice: the driver skips the second
            first = seen[r.sha256]
            if p not in owned or items[first].entry in owned:
                r.duplicate = True
                continue
            results[items[first].entry].duplicate = True  # a copy of this owner's bytes
            items[first] = Item(Path(p), items[first].key, r.size, r.mtime_ns, None, entry=p,
                                pages=n_pages)
            continue
        seen[r.sha256] = len(items)
        items.append(Item(Path(p), ItemKey(r.sha256, spec.model_sha256,
                                           spec.measurement_version),
                          r.size, r.mtime_ns, None, entry=p, pages=n_pages))
    # The rows name their file (``source``), so the name covers paths and contents: a task
    # of the same bytes under other paths (a copied folder) must not find, or overwrite,
    # this task's rows; the same task run again finds them. The QA pictures asked for are
    # in the rows too (``overlay_path``): a table staged by a stopped driver's replay with
    # other pictures is not this one's. Paths as bytes: a name that is not UTF-8 is lossless.
    pictures = spec.overlays
    # The driver's code too: rows staged by a worker of other code (refused) are never
    # found again by the rerun that follows the refusal.
    code = json.dumps(spec.code, sort_keys=True).encode() if spec.code is not None else b""
    digest = hashlib.sha256(b"\n".join(
        [spec.model_sha256.encode(), spec.measurement_version.encode(), code,
         f"{pictures.mode} {pictures.save_labels} ".encode() + os.fsencode(pictures.folder)]
        + sorted(f"{it.key.sha256} ".encode() + os.fsencode(it.entry) for it in items)
    )).hexdigest()
    staged = Path(spec.staging) / (f"{spec.measurement_version}-{spec.model_sha256[:12]}-"
                                   f"{digest[:32]}.parquet")
    side = staged.with_suffix(".side")
    result = TaskResult(str(staged), str(side) if spec.kind == "tomogram" else "")
    table = pq.read_table(staged) if staged.is_file() and not spec.force else None
    if table is not None and _side_files_present(table, side):
        result.reused = True  # a re-run: the first run's output is complete
    else:
        table = _compute(items, spec, digest[:16], side)
        try:
            write_table_atomic(table, staged)
        except OSError as exc:  # the results folder, not the files: every task would fail
            from nwwatch.service.clusterconnect import StagingUnwritableError

            raise StagingUnwritableError(
                f"{spec.staging}: the Dask worker {worker_name()} cannot write here "
                f"({exc.strerror or exc}): "
                "the results folder must be shared with every worker under the same path, "
                "and writable by them") from None
        _exit_once()
    counts: dict[str, int] = {}
    for sha in table.column("source_sha256").to_pylist():
        counts[sha] = counts.get(sha, 0) + 1
    meta = json.loads((table.schema.metadata or {}).get(_FAILURES_META, b"{}"))
    failed, gone = meta.get("failed", {}), set(meta.get("gone", []))
    for r in results.values():
        if r.path in gone:  # vanished while being read: released, seen again next time
            r.gone = True
        elif r.sha256 in failed and r.path in failed[r.sha256]["paths"]:
            f = failed[r.sha256]
            r.reason, r.error_type, r.permanent = f["reason"], f["error_type"], f["permanent"]
        elif r.sha256 is not None and not r.duplicate:
            r.n_rows = counts.get(r.sha256, 0)
    result.files = [results[p] for p in paths]
    result.frames = table.num_rows
    result.code = mine
    result.worker = worker_name()
    result.seconds = time.perf_counter() - t0
    result.staged_bytes = staged.stat().st_size
    return result


def _refused_from_header(refusal: Callable[[Path, int], None], r: FileResult,
                         batch_size: int) -> bool:
    """Whether ``refusal`` (the job's ``header_refusal``) refuses the file of ``r``, whose
    ``version`` is set: then ``r`` says why, or, when the file is no longer that version (the
    header read may be another's), that it is gone (the driver reports it changed while read,
    processed again as its new version). Raises what reading the header raises besides."""
    from nwwatch.io import InputError

    try:
        refusal(Path(r.path), batch_size)
    except InputError as exc:
        try:
            st = os.stat(r.path)
            now = (st.st_size, st.st_mtime_ns)
        except OSError:
            now = None
        if now != (r.size, r.mtime_ns):
            r.gone = True
        else:
            r.reason, r.error_type, r.permanent = exc.reason, type(exc).__name__, True
            r.header_refused = True
        return True
    return False


def worker_name() -> str:
    """This process as the messages name a worker: ``tcp://10.0.0.7:38699 at node07 (pid
    23206)`` — its Dask address (none outside a Dask worker), its host and its process, so
    that the operator of a cluster of many nodes finds the one to mend."""
    import socket

    try:
        from distributed import get_worker

        address = f"{get_worker().address} "
    except (ImportError, ValueError):  # ValueError: not run by a Dask worker
        address = ""
    return f"{address}at {socket.gethostname()} (pid {os.getpid()})"


def code_identity() -> dict[str, str]:
    """What decides the rows this process gives: nwwatch's version, the versions the rows are
    keyed by (measurement, tomogram segmentation and metrics), and a hash of its Python
    sources (one release installed anywhere gives the same; another release, or edited code,
    another). The driver compares each worker's with its own
    (:func:`nwwatch.service.cluster._check_workers_import_nwwatch`): the rows carry the
    driver's versions, so a worker with other code would give rows that claim to be this
    version's."""
    from nwwatch import __version__
    from nwwatch.measure.result import MEASUREMENT_VERSION
    from nwwatch.volume.metrics import VOLUME_METRICS_VERSION
    from nwwatch.volume.segment import SEGMENTATION_VERSION

    return {"nwwatch": __version__, "measurement": MEASUREMENT_VERSION,
            "tomogram segmentation": SEGMENTATION_VERSION,
            "tomogram metrics": VOLUME_METRICS_VERSION, "sources": _sources_sha256()}


@functools.cache
def _sources_sha256() -> str:
    """SHA-256 over the package's ``.py`` files (their paths inside it and their bytes, in
    path order), read once per process."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def zone_answer(zone_key: str | None) -> object:
    """Run on each worker before the tasks: with ``zone_key``, None when this machine can
    read times in that zone, else why not (its zone data lacks it); without one, this
    machine's local zone as :func:`zone_offsets` sees it."""
    if zone_key is not None:
        from nwwatch.io.metadata import read_zoneless_in

        try:
            read_zoneless_in(zone_key)
        except Exception as exc:  # noqa: BLE001 - said to the driver, which refuses
            return f"no time zone data for {zone_key} ({type(exc).__name__}: {exc})"
        return None
    return zone_offsets()


def zone_offsets() -> tuple[float, ...]:
    """UTC offsets (hours) of this machine's local time at noon on the first of each month
    of last, this and next year: two machines that give the same read zone-less times the
    same way in those years."""
    from datetime import datetime

    year = datetime.now().year
    return tuple(datetime(y, m, 1, 12).astimezone().utcoffset().total_seconds() / 3600
                 for y in (year - 1, year, year + 1) for m in range(1, 13))


def _side_files_present(table, side: Path) -> bool:
    """Whether the staged masks that a staged table's rows name are all there (a driver
    stopped after moving some into place leaves a table whose masks must be made again)."""
    if "mask_path" not in table.column_names:
        return True
    return all((side / m).is_file() for m in table.column("mask_path").to_pylist() if m)


def _compute(items, spec: TaskSpec, batch_id: str, side: Path):
    """Rows of ``items`` as a table, with the files that failed or vanished in its schema
    metadata (so that a re-run that finds the table knows them too); a tomogram's mask is
    written under ``side``."""
    from nwwatch.logsetup import get_logger
    from nwwatch.results.parquet import rows_to_table
    from nwwatch.service.batch import BatchReport
    from nwwatch.service.flush import ResultsWriteError
    from nwwatch.service.jobs import job_for

    _json_logs()
    # The job of ``process`` itself (read -> segment -> measure -> rows), without its
    # ledger steps, which the driver does.
    job = job_for(spec.kind)
    seg = _segmenter(spec)
    failures: list[Failure] = []
    # No labelling queue here (the driver offers the frames from the rows it commits:
    # several processes must not rewrite one queue file at once); the only files a task
    # writes under the results folder are its QA pictures, one per frame, and a tomogram's
    # masks go to ``side`` (the driver moves them into place). Otherwise a private folder,
    # dropped, stands for the results folder.
    scratch = Path(tempfile.mkdtemp(prefix="nwwatch-task-"))
    if spec.kind == "tomogram":
        shutil.rmtree(side, ignore_errors=True)  # an earlier run's partial masks
        results_dir = side
    else:
        results_dir = Path(spec.results_dir) if spec.overlays.mode != "none" else scratch
    extra = {"volume_options": spec.volume_options} if spec.volume_options is not None else {}
    try:
        engine = Engine(kind=spec.kind, segmenter=seg, ledger=None, results_dir=results_dir,
                        batch_size=spec.batch_size, log=get_logger("nwwatch.cluster"),
                        overlays=spec.overlays, label_queue=False, **extra)
        try:
            job.run(items, engine, batch_id, failures, BatchReport(batch_id))
        except ResultsWriteError as exc:  # a staged mask: the results folder, every task
            from nwwatch.service.clusterconnect import StagingUnwritableError

            raise StagingUnwritableError(
                f"{exc}: the Dask worker {worker_name()} cannot write here; the results "
                "folder must be shared with every worker under the same path, and writable "
                "by them") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = [row for it in items if not it.failed for row in it.rows]
    failed = {}
    for f in failures:
        sha = f.key.sha256
        failed.setdefault(sha, {"reason": f.reason, "error_type": f.error_type,
                                "permanent": f.permanent, "paths": []})
        failed[sha]["paths"] += [str(it.path) for it in items
                                 if it.key.sha256 == sha]
    table = rows_to_table(rows, job.schema())
    meta = dict(table.schema.metadata or {})
    gone = [str(it.path) for it in items if it.gone]
    meta[_FAILURES_META] = json.dumps({"failed": failed, "gone": gone}).encode()
    return table.replace_schema_metadata(meta)


def _json_logs() -> None:
    """The worker's lines (``bad_input``, ``volume_suspect``) as one JSON object per line, as
    every nwwatch command writes them: a worker process starts with structlog's console
    format, and a ``local:N`` worker writes to the replay's own stderr."""
    import structlog

    from nwwatch.logsetup import configure_logging

    if not structlog.is_configured():
        configure_logging("warning")  # the level of replay's own log


def _exit_once() -> None:
    marker = os.environ.get(_EXIT_ONCE_ENV)
    if not marker:
        return
    try:
        os.unlink(marker)  # only one process succeeds
    except FileNotFoundError:
        return
    os._exit(1)
