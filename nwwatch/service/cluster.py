"""``nwwatch replay --dask ADDRESS``: the replay's per-file work on a Dask distributed cluster.

The driver (this process) keeps everything stateful: it lists and vets the files, skips what
its ledger lists as done, and commits results with the ledger's claim -> hold -> write ->
commit protocol (:mod:`nwwatch.service.ledger`), one batch per task and acquisition. Workers
only compute (:func:`nwwatch.service.clustertask.run_task`): a task hashes its files, reads,
segments and measures them with the code of local replay
(:func:`nwwatch.service.pipeline.process`'s frame or tomogram job) and writes its rows to a
*staged* Parquet file ``RESULTS/.cluster/{version}-{model12}-{digest}.parquet``, whose name is
fixed by the paths and content hashes of its files, the model hash and the measurement version
(a tomogram's mask beside it, in ``{name}.side/``). The driver then holds the rows under a new
batch id (deleting the staged file; moving a mask to ``RESULTS/masks/``, named as local replay
names it, once the batch is claimed) and writes them like local replay: one file per
acquisition partition, ``RESULTS/frames/acquisition=<key>/`` (``volumes/``), by size or time
(:mod:`nwwatch.service.flush`). A tomogram is a task of its own.

Dask runs a task again when its worker dies, so a task may run twice (at-least-once); the
result is still exactly once: a re-run finds its staged output already there (or writes the
same rows again under the same name), and only the driver, one task result at a time, commits
to the ledger, which never holds a content key twice. A driver killed at any point resumes
from its ledger like local replay (a batch claimed but not written is undone, one written but
not committed is adopted, one held but not written is released: processed again). Readers skip
``.cluster``."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nwwatch.segment.session import ModelLoadError
from nwwatch.service import clusterconnect
from nwwatch.service.batch import Engine, forced_copy_of, hashed_before_header, note_skipped
from nwwatch.service.childsignals import ctrl_c_after_the_call
from nwwatch.service.clustertask import FileResult, TaskResult, TaskSpec, code_identity, run_task
from nwwatch.service.clusterworkers import WorkerWatch
from nwwatch.service.crashpoints import crash_point
from nwwatch.service.flush import held_rows_written_at_end, write_held
from nwwatch.service.jobs import job_for
from nwwatch.service.ledger import Failure, ItemKey
from nwwatch.service.ledgerdb import FileVersion
from nwwatch.service.ledgerquarantine import opens_as_regular_file, refresh_quarantine
from nwwatch.service.names import path_key, source_name
from nwwatch.stopsignals import raise_lost_interrupt

#: Staged task outputs, inside the results folder (hidden: readers and rebuild skip it).
STAGING_DIR = ".cluster"
#: Tasks are sized to about this much work: scheduler overhead per task is a few ms.
TARGET_TASK_S = 2.0


# --- the driver side ----------------------------------------------------------------------

@dataclass
class ClusterStats:
    """What a cluster replay cost, for the benchmark and the docs."""

    workers: int = 0
    threads: int = 0
    tasks: int = 0
    reused: int = 0  # tasks that found their staged output (re-runs)
    split: int = 0  # failed multi-file tasks retried file by file
    worker_seconds: float = 0.0  # compute time summed over tasks (on the workers)
    driver_commit_seconds: float = 0.0  # the driver's ledger + Parquet work
    sent_bytes: int = 0  # task arguments through the scheduler (pickled)
    received_bytes: int = 0  # task results through the scheduler (pickled)
    staged_bytes: int = 0  # staged Parquet through the shared results folder
    frames_per_task: list[int] = field(default_factory=list)
    dashboard: str | None = None


def run_on_cluster(todo: Iterable[tuple[Path, object]], address: str, engine: Engine,
                   summary, bar, *, inference, chunk_frames: int, force: bool = False,
                   log=None, connection=None,
                   then: Callable[[], Iterable[tuple[Path, object]]] | None = None
                   ) -> ClusterStats:
    """Process the ``(file, structural check)`` pairs of ``todo`` on the cluster at
    ``address``, committing each task's rows to ``engine``'s ledger as it comes back.
    Counts go to ``summary`` (a :class:`~nwwatch.service.replaysummary.ReplaySummary`) and ``bar``;
    ``chunk_frames``: frames of the first tasks (local replay's chunk). ``connection``: the
    caller's :func:`nwwatch.service.clusterconnect.connect` (it closes it); None: connect
    when there is work. ``then``: called once ``todo`` is done, every task of it committed,
    for more pairs to process the same way (the TIFF exports of originals refused by then).
    """
    from distributed import as_completed

    stats = ClusterStats()
    staging = (engine.results_dir / STAGING_DIR).resolve()
    pending = iter(todo)
    first = next(pending, None)
    if first is None and then is not None:  # every file refused, skipped or done already
        pending, then = iter(then()), None
        first = next(pending, None)
    if first is None:  # all done already (a finished backfill resumed): no cluster needed
        clear_staging(staging)
        return stats
    pending = itertools.chain([first], pending)
    own = connection is None
    client, _ = connection = clusterconnect.connect(address) if own else connection
    try:
        with ctrl_c_after_the_call():
            info = client.scheduler_info()
            stats.workers = len(info.get("workers", {}))
            stats.threads = sum(client.nthreads().values())
            _check_workers_import_nwwatch(client)
            zone_key = _check_workers_zone(client)

        if "dashboard" in info.get("services", {}):
            stats.dashboard = client.dashboard_link
            log.info("dask_dashboard", url=stats.dashboard)
            if bar.enabled:  # a line of its own above the bar, not after it
                bar.note(f"Dask dashboard: {stats.dashboard}")
        if not stats.workers:  # legitimate (Slurm jobs still queued), but say why it waits
            waiting = (f"no Dask worker at {address} yet: the tasks wait for one to join "
                       "(Ctrl-C stops the replay)")
            if bar.enabled:
                log.info("dask_no_workers", address=address)
                bar.note(waiting)
            else:  # a batch job's log, a pipe: the one line that explains the silence
                log.warning("dask_no_workers", address=address, message=waiting)
        n_local = clusterconnect.local_workers(address)
        threads = inference.threads
        if threads is None and n_local is not None:  # share this machine's cores
            threads = max(1, (os.cpu_count() or 1) // n_local)
        try:
            staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # RESULTS/.cluster a file, say: one error line, no traceback
            from nwwatch.service.flush import ResultsWriteError

            raise ResultsWriteError(f"{staging}: cannot create the folder of the tasks' "
                                    f"staged rows ({exc.strerror or exc})",
                                    folder=staging) from None
        spec = TaskSpec(model=str(Path(engine.segmenter.model_path).resolve()),
                        model_sha256=engine.segmenter.model_sha256,
                        measurement_version=engine.measurement_version,
                        batch_size=engine.batch_size, providers=tuple(inference.providers),
                        threads=threads, staging=str(staging), force=force,
                        overlays=engine.overlays,
                        results_dir=str(engine.results_dir.resolve()), kind=engine.kind,
                        volume_options=(engine.volume_options if engine.kind == "tomogram"
                                        else None),
                        zoneless_zone=zone_key, code=code_identity())
        # Until the first task tells how long a frame takes: local replay's chunk, or fewer
        # frames so that every worker gets a share of a small folder.
        frames_per_task = max(engine.batch_size, min(chunk_frames,
                                                     math.ceil(summary.files
                                                               / max(1, stats.threads))))
        volumes = engine.kind == "tomogram"
        if volumes:  # a tomogram is a task of its own: minutes, and a worker's memory
            frames_per_task = 1
        window = 2 * max(1, stats.threads)  # tasks queued ahead, so no worker waits
        futures = as_completed()
        inflight: dict[str, tuple[object, list[tuple[Path, int]]]] = {}
        seen_here: dict[str, tuple[int, int]] = {}  # (size, mtime_ns) as sent, by path
        refuses_from_header = job_for(engine.kind).header_refusal is not None

        def submit(chunk: list[tuple[Path, int]]) -> None:
            # absolute: a worker's working directory is its own (`dask worker` started
            # elsewhere), and a relative path there names another file or none
            args = ([os.path.abspath(p) for p, _ in chunk], [n for _, n in chunk])
            for path in args[0]:
                if (version := _version_here(path)) is not None:
                    seen_here[path] = version
            # --force: of two files of the same bytes in a task the worker keeps the one
            # whose name the content's rows carry; the other is a copy (_commit)
            owners = tuple(p for p in args[0] if engine.ledger.holds_rows_of(
                path_key(p), spec.model_sha256, spec.measurement_version)) if force else ()
            hash_first = _hash_first(engine, args[0]) if refuses_from_header else ()
            task_spec = (dataclasses.replace(spec, owners=owners, hash_first=hash_first)
                         if owners or hash_first else spec)
            fut = client.submit(run_task, *args, task_spec,
                                key=f"nwwatch-task-{uuid.uuid4().hex}", pure=False)
            stats.sent_bytes += len(pickle.dumps((args, task_spec)))
            inflight[fut.key] = (fut, chunk)
            futures.add(fut)

        def fill() -> None:
            while len(inflight) < window:
                chunk, frames = [], 0
                for file, inspected in pending:
                    n = max(1, getattr(inspected, "n_pages", 1))
                    chunk.append((file, n))
                    frames += n
                    if frames >= frames_per_task:
                        break
                if not chunk:
                    return
                submit(chunk)

        fill()
        # The cluster failing (its scheduler lost, a worker that cannot see the input or
        # write the results folder) says nothing against the rows of the tasks done before:
        # they are written, not computed again.
        # A local:N cluster is the replay's own: no worker joins it, and nannies that did
        # not restart their workers (each died on a task at once) left the replay waiting
        # for ever. Its tasks are cancelled after LOCAL_WORKERS_GONE_S without a worker.
        watch = WorkerWatch(client, address, stats.workers, log,
                            echo=bar.note if bar.enabled else None,
                            give_up_s=LOCAL_WORKERS_GONE_S if n_local is not None else None,
                            on_give_up=lambda: client.cancel(
                                [f for f, _ in list(inflight.values())]))
        with held_rows_written_at_end(engine, summary.parquet_files,
                                      also=(clusterconnect.ClusterUnavailableError,
                                            clusterconnect.ClusterUnreachableError)), \
                _scheduler_lost_named(client, address), watch:
            for fut in futures:
                raise_lost_interrupt()  # a SIGTERM whose exception a callback swallowed
                _, chunk = inflight.pop(fut.key)
                if fut.status == "cancelled" and watch.gave_up:
                    names = [p.name for p, _ in chunk] + [
                        p.name for _, c in inflight.values() for p, _ in c]
                    raise clusterconnect.ClusterUnavailableError(
                        f"every Dask worker of {address} died and none was restarted for "
                        f"{LOCAL_WORKERS_GONE_S:g} s (a file that ends its worker process: a "
                        "crash of a reader or of ONNX Runtime, or the memory limit); the "
                        f"files in flight: {', '.join(names[:5])}"
                        f"{', …' if len(names) > 5 else ''}. What was written is kept: "
                        "replay them without --dask to see which one fails")
                if fut.status == "cancelled":
                    raise clusterconnect.SchedulerLostError(
                        f"lost the Dask scheduler at {address}")
                try:
                    with ctrl_c_after_the_call():  # a finished task's result: a short wait
                        res = fut.result()
                except Exception as exc:  # the task failed as a whole (KilledWorker included)
                    if fut.status != "error":  # not the task: fetching its result failed
                        _raise_if_scheduler_lost(client, address)
                        raise clusterconnect.SchedulerLostError(
                            f"lost the Dask scheduler at {address} (fetching a task's result: "
                            f"{exc!r})") from None
                    if isinstance(exc, (ModelLoadError,  # a worker's model, results
                                        clusterconnect.StagingUnwritableError,  # folder or
                                        clusterconnect.WorkerCodeMismatchError)):  # code:
                        raise  # no file's fault, and every task would fail alike
                    if len(chunk) > 1:
                        log.warning("cluster_task_failed", n_files=len(chunk), error=repr(exc))
                        stats.split += 1
                        for one in chunk:
                            submit([one])
                    else:
                        _record_task_failure(engine, chunk[0][0], exc, summary, log)
                        bar.advance(1, 0)
                    fut.release()
                    fill()
                    if not inflight and then is not None:  # (as below)
                        pending, then = iter(then()), None
                        fill()
                    continue
                if getattr(res, "code", None) != spec.code:  # a worker of an earlier release
                    _refuse_other_code(client, fut, res)
                fut.release()
                t = time.perf_counter()
                n_rows = _commit(res, engine, summary, force, log, seen_here)
                written = write_held(engine)  # when due: enough rows, or held long enough
                if written is not None:
                    summary.parquet_files.extend(written.files)
                stats.driver_commit_seconds += time.perf_counter() - t
                stats.tasks += 1
                stats.reused += res.reused
                stats.worker_seconds += res.seconds
                stats.received_bytes += len(pickle.dumps(res))
                stats.staged_bytes += res.staged_bytes
                stats.frames_per_task.append(res.frames)
                bar.advance(len(chunk), n_rows)
                if res.frames and not res.reused and not volumes:  # tasks of TARGET_TASK_S
                    per_frame_s = res.seconds / res.frames
                    frames_per_task = min(64 * engine.batch_size, max(
                        engine.batch_size, math.ceil(TARGET_TASK_S / max(per_frame_s, 1e-4))))
                fill()
                if not inflight and then is not None:
                    # every task committed: the refusals read on the workers are recorded
                    pending, then = iter(then()), None
                    fill()
        clear_staging(staging)
    except Exception:
        _raise_if_scheduler_lost(client, address)
        raise
    finally:
        if own:
            clusterconnect.close_connection(connection)
    return stats


#: Seconds a ``local:N`` replay waits without any worker before it stops.
LOCAL_WORKERS_GONE_S = 60.0


def _refuse_other_code(client, fut, res: TaskResult) -> None:
    """Raise :class:`~nwwatch.service.clusterconnect.WorkerCodeMismatchError` for the result
    ``res`` of the task ``fut``, which names no code or another than the driver's (a worker
    of an earlier release, which ignores the task's check), naming its worker; its staged
    rows are removed (their name, made without the driver's code, is no rerun's)."""
    try:
        worker = ", ".join(w for ws in client.who_has([fut]).values() for w in ws)
    except Exception:  # noqa: BLE001 - the scheduler gone meanwhile: the worker unnamed
        worker = ""
    for staged in (res.staged, res.side):
        if staged and os.path.isdir(staged):
            shutil.rmtree(staged, ignore_errors=True)
        elif staged:
            with suppress(OSError):
                os.unlink(staged)
    raise clusterconnect.WorkerCodeMismatchError(
        f"the Dask worker {worker or '(not known any more)'}, which joined or restarted after "
        "the replay started, runs another nwwatch than the driver (one without this "
        "version's check: an earlier release); its rows are not committed. Rows committed so "
        "far are kept: restart every worker with the driver's nwwatch and run the same "
        "command again")


def _raise_if_scheduler_lost(client, address: str) -> None:
    """The scheduler lost between two calls (killed, its job ended) surfaces as whatever the
    call met: CommClosedError, "ConnectionPool is closed", an AttributeError of a closed
    client. One message for all, as when a task's future is cancelled."""
    if client.status != "running":
        raise clusterconnect.SchedulerLostError(
            f"lost the Dask scheduler at {address}") from None


@contextmanager
def _scheduler_lost_named(client, address: str) -> Iterator[None]:
    """An error of the block raised as ``SchedulerLostError`` when the scheduler is lost
    (:func:`_raise_if_scheduler_lost`)."""
    try:
        yield
    except Exception:
        _raise_if_scheduler_lost(client, address)
        raise


def _check_workers_import_nwwatch(client) -> None:
    """Raise :class:`~nwwatch.service.clusterconnect.ClusterUnavailableError` naming a worker
    that cannot import the task's module (a task sent to it would fail to unpickle there and
    leave the replay waiting without end: distributed's worker drops the message), or whose
    nwwatch differs from the driver's (:func:`nwwatch.service.clustertask.code_identity`: its
    rows would carry this version's name and be skipped as done by later runs; another
    release fails to read the tasks' results as a scheduler lost). Workers that join later
    (or restart) are checked by each task (``TaskSpec.code``); one lost while it is asked is
    not."""
    import importlib

    answers = client.run(importlib.import_module, "nwwatch.service.clustertask",
                         on_error="return")
    for worker, answer in answers.items():
        if isinstance(answer, ImportError):
            raise clusterconnect.ClusterUnavailableError(
                f"the Dask worker {worker} cannot import nwwatch ({answer}): install the "
                "driver's nwwatch version in every worker's Python environment") from None
        # A connection error: the worker was lost meanwhile (killed, its job ended); its
        # tasks go to the others, as when one is lost mid-run.
        if isinstance(answer, BaseException) and not isinstance(answer, OSError):
            raise answer
    mine = code_identity()
    for worker, answer in client.run(code_identity, on_error="return").items():
        if isinstance(answer, OSError):
            continue  # lost meanwhile, as above
        if isinstance(answer, BaseException):  # an nwwatch without this function
            raise clusterconnect.ClusterUnavailableError(
                f"the Dask worker {worker} runs another nwwatch than this driver: "
                f"{_release_of(client, worker)}, this driver's {mine['nwwatch']} (measurement "
                f"{mine['measurement']}); the worker's cannot run this version's check "
                f"({type(answer).__name__}: {answer}): install the driver's nwwatch in every "
                "worker's Python environment") from None
        differ = [f"{what} {answer.get(what)} (here {value})" for what, value in mine.items()
                  if what != "sources" and answer.get(what) != value]
        if not differ and answer.get("sources") != mine["sources"]:
            differ = ["the same version numbers, but its Python sources differ from this "
                      "driver's (edited, or another build)"]
        if differ:
            raise clusterconnect.ClusterUnavailableError(
                f"the Dask worker {worker} runs another nwwatch than this driver: "
                + "; ".join(differ) + ". Its rows would carry this version's name: install "
                "the driver's nwwatch in every worker's Python environment (and restart "
                "workers started before an upgrade)")


def _release_of(client, worker: str) -> str:
    """``the worker's 0.1.0 (measurement 2.2.14)``: the nwwatch release of ``worker``, whose
    nwwatch has no :func:`~nwwatch.service.clustertask.code_identity` (an earlier release),
    read from what every release has, or why it could not be read (said, never raised: the
    refusal this serves is the message)."""

    # Defined here, so that it is sent by value (cloudpickle): a function of this module
    # sent by name would not exist in the worker's earlier release.
    def release_there() -> str:
        import nwwatch

        version = str(nwwatch.__version__)
        try:
            from nwwatch.measure.result import MEASUREMENT_VERSION
        except Exception:  # noqa: BLE001 - a release without it: the version says enough
            return version
        return f"{version} (measurement {MEASUREMENT_VERSION})"

    try:
        answer = client.run(release_there, workers=[worker], on_error="return").get(worker)
    except Exception as exc:  # noqa: BLE001 - the worker or scheduler lost meanwhile
        answer = exc
    if isinstance(answer, str):
        return f"the worker's {answer}"
    why = f"{type(answer).__name__}: {answer}" if isinstance(answer, BaseException) else "no answer"
    return f"the worker's version not known ({why})"


def _check_workers_zone(client) -> str | None:
    """The zone every worker is to read times without a zone in: this machine's (its IANA
    key), so that rows equal local replay's whatever zone the workers run in. Raise
    :class:`~nwwatch.service.clusterconnect.ClusterUnavailableError` naming a worker that
    has no data for that zone, or, when this machine's zone has no key (a POSIX ``TZ``
    rule), one whose local time differs from this machine's."""
    from nwwatch.io.metadata import local_zone_key
    from nwwatch.service.clustertask import zone_answer, zone_offsets

    key = local_zone_key()
    answers = client.run(zone_answer, key, on_error="return")
    mine = zone_offsets()
    for worker, answer in answers.items():
        if isinstance(answer, BaseException):
            if isinstance(answer, OSError):  # lost meanwhile: its tasks go to the others
                continue
            raise answer
        if key is not None and answer is not None:
            raise clusterconnect.ClusterUnavailableError(
                f"Dask worker {worker}: {answer}: it could not read times written without a "
                f"zone as this machine does ({key}); install the time zone data (tzdata) "
                "there") from None
        if key is None and tuple(answer) != mine:
            raise clusterconnect.ClusterUnavailableError(
                f"Dask worker {worker} keeps another local time than this machine (UTC "
                f"offsets {sorted(set(answer))} h against {sorted(set(mine))} h this year "
                f"and around it), and this machine's zone has no name to send it "
                f"(TZ={os.environ.get('TZ')!r}): times written without a zone would differ "
                "from a local replay's; give this machine TZ=Area/City (e.g. "
                "TZ=Europe/Berlin), or the workers this machine's zone") from None
    return key


def _version_here(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path`` as this driver sees it, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


#: A worker's file and the driver's are other versions when their sizes differ or their
#: modification times lie further apart than this (file systems keep mtimes to 1 ns-2 s).
MTIME_SLACK_NS = 2_000_000_000


def _worker_named(worker: str) -> str:
    """A worker as the driver's messages name it: ``worker`` is a task result's
    :func:`~nwwatch.service.clustertask.worker_name` (its address, host and pid), empty
    where not known."""
    return f"the Dask worker {worker}" if worker else "a Dask worker"


def _hash_first(engine: Engine, paths: list[str]) -> tuple[str, ...]:
    """Those of a task's ``paths`` that its worker hashes before their header may refuse
    them (``TaskSpec.hash_first``): no hash known for this version, and
    :func:`~nwwatch.service.batch.hashed_before_header` (as ``collect`` decides locally: done
    content touched, moved or renamed; an indexed lookup per file)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:  # the worker says what became of it
            continue
        name = path_key(p)
        if engine.ledger.cached_sha(name, FileVersion.of(st), trust_earlier=False) is None \
                and hashed_before_header(engine, name, st.st_size, st.st_mtime_ns):
            out.append(p)
    return tuple(out)


def _refused_for_memory(engine: Engine, f: FileResult) -> bool:
    """Whether the worker refused ``f`` as its job refuses a file from its header (a
    tomogram too large for the worker's memory), here after it was hashed."""
    if not f.permanent or job_for(engine.kind).header_refusal is None:
        return False
    from nwwatch.service.volumes import REFUSED_FROM_HEADER  # the tomogram job's, loaded

    return f.error_type in {t.__name__ for t in REFUSED_FROM_HEADER}


def _machine_limit(f: FileResult) -> bool:
    """Whether the worker refused ``f`` for what its machine lacks (``Failure.machine_limit``:
    the exception's ``machine_limit``, known here by its name)."""
    if not f.permanent or not f.error_type:
        return False
    from nwwatch.volume.memory import TomogramTooLargeError

    return f.error_type == TomogramTooLargeError.__name__


def _check_same_file(f: FileResult, seen_here: dict[str, tuple[int, int]],
                     worker: str = "") -> None:
    """Raise :class:`~nwwatch.service.clusterconnect.InputNotSharedError` when the worker
    (``worker``: :func:`_worker_named`'s) could not read a file this driver reads (a worker
    running as another user), or read another version of it than this driver sent and
    still sees (a stale copy under the same path on the worker's node): the file's rows, or
    its quarantine, would be this run's under a name whose content here is another. A file
    refused unhashed (from its header) is compared by its version too."""
    if f.sha256 is None and f.error_type == "UnreadableFileError" and \
            opens_as_regular_file(f.path):
        raise clusterconnect.InputNotSharedError(
            f"{f.path}: {_worker_named(worker)} cannot read this file ({f.reason}), which "
            "this driver reads: every worker must run as a user that may read the input")
    sent = seen_here.get(f.path)
    if f.version is None or sent is None:
        return
    theirs = (f.version.size, f.version.mtime_ns)
    if theirs[0] == sent[0] and abs(theirs[1] - sent[1]) <= MTIME_SLACK_NS:
        return
    if _version_here(f.path) == sent:  # not changed here since: the worker sees another file
        raise clusterconnect.InputNotSharedError(
            f"{f.path}: {_worker_named(worker)} read another file under this path "
            f"({theirs[0]} bytes, "
            f"modified {_when(theirs[1])}) than this driver sees ({sent[0]} bytes, modified "
            f"{_when(sent[1])}): every worker must see the input itself under the same "
            "absolute path, not a copy of its own")


def _when(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _commit(res: TaskResult, engine: Engine, summary, force: bool, log,
            seen_here: dict[str, tuple[int, int]] | None = None) -> int:
    """Hand one task's rows to ``engine``'s row buffer and record its failures, with the
    ledger protocol of :func:`nwwatch.service.pipeline.process`: per acquisition a batch is
    claimed, then held (its rows wait in memory for a larger file in the acquisition's
    partition, :mod:`nwwatch.service.flush`), or committed at once when it has no rows.
    Returns the rows held. Raises InputNotSharedError when a worker's file is not this
    driver's (:func:`_check_same_file`, against ``seen_here``), before anything of the task
    is recorded."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nwwatch.results.outcome import count_table
    from nwwatch.results.parquet import acquisition_partition
    from nwwatch.service.flush import SUMMARY_KEYS, HeldBatch, ResultsWriteError

    ledger = engine.ledger
    early: list[Failure] = []
    # per acquisition partition: the items to claim, their failures, rows per item
    parts: dict[str, tuple[list, list[Failure], dict[ItemKey, int]]] = {}
    seen: set[ItemKey] = set()
    copies: list[tuple[str, FileResult, ItemKey]] = []  # skipped: done or held elsewhere
    replayed: list[str] = []  # the paths whose rows this task adds
    worker = _worker_named(res.worker)  # one node of many: the one to mend
    for f in res.files:
        if not f.gone:
            _check_same_file(f, seen_here or {}, res.worker)
    for f in res.files:
        if f.gone:
            # Never found on the worker, but here: every file would be. (One the worker
            # hashed and then found changed or removed while reading it is no such case.)
            if f.size is None and os.path.lexists(f.path):
                raise clusterconnect.InputNotSharedError(
                    f"{f.path}: {worker} does not find this file, which exists here: the "
                    "input must be shared with every worker under the same absolute path")
            if f.size is not None and os.path.lexists(f.path):  # hashed, then it changed
                summary.changed.append(Path(f.path))
            else:
                summary.vanished += 1
            continue
        name = path_key(f.path)
        if f.sha256 is None:  # could not even be hashed: bad input
            size, mtime_ns = f.size, f.mtime_ns
            if f.header_refused:
                # listed by the version this driver sent (the worker's mtime may differ
                # within MTIME_SLACK_NS), which a rescan and retry_tomograms_that_fit
                # compare exactly; changed here since: a new version, as local replay says
                sent = (seen_here or {}).get(f.path)
                if sent is not None:
                    if _version_here(f.path) != sent:
                        summary.changed.append(Path(f.path))
                        continue
                    size, mtime_ns = sent
                log.warning("bad_input", source=source_name(f.path), reason=f.reason,
                            error_type=f.error_type)  # as local replay logs it
            early.append(Failure(None, name, f.reason, f.error_type, True, size, mtime_ns))
            continue
        if f.version is not None:
            ledger.remember_sha(name, f.version, f.sha256)
        key = engine.key(f.sha256)
        known = ledger.item(key)
        copy_of = forced_copy_of(ledger, name, known, f.sha256) if force else ""
        if copy_of:  # its rows stay with the file that holds the same bytes (batch.collect)
            summary.copies.append((Path(f.path), copy_of))
            copies.append((name, f, key))
            continue
        if force and known is not None and known.state == "done" and \
                _refused_for_memory(engine, f):
            # listed by its version, not claimed (as batch.collect): a failure of its item
            # would quarantine the content whose rows stay on disk (processed twice later)
            # by the version this driver sent, as a refusal before the hash; changed here
            # since: a new version (as the unhashed refusal above, and local replay)
            sent = (seen_here or {}).get(f.path)
            if sent is not None and _version_here(f.path) != sent:
                summary.changed.append(Path(f.path))
                continue
            size, mtime_ns = sent or (f.size, f.mtime_ns)
            log.warning("bad_input", source=source_name(f.path), reason=f.reason,
                        error_type=f.error_type)
            early.append(Failure(None, name, f.reason, f.error_type, True, size, mtime_ns))
            continue
        if f.duplicate or key in seen or engine.buffer.holds(key) or (
                known is not None and known.state in ("done", "quarantined") and not force):
            # done (or held) by another task or run: rows not added
            if not f.duplicate and (engine.buffer.holds(key) or (
                    known is not None and known.state == "done")):
                # its path's quarantined version, if any, has been replaced (as batch.collect)
                ledger.release_quarantine(name, f.size, f.mtime_ns, f.sha256)
            if known is not None and known.state != "quarantined" and not f.duplicate:
                note_skipped(engine, Path(f.path), key, known)
            copies.append((name, f, key))
            continue
        seen.add(key)
        claim, failures, rows_per_item = parts.setdefault(
            acquisition_partition(source_name(f.path)), ([], [], {}))
        claim.append((key, name))
        if f.reason:
            failures.append(Failure(key, name, f.reason, f.error_type, f.permanent, f.size,
                                    f.mtime_ns, machine_limit=_machine_limit(f)))
            # logged by the worker, in its own log; here too, as local replay logs it
            if f.permanent:
                log.warning("bad_input", source=source_name(f.path), reason=f.reason,
                            error_type=f.error_type)
            else:
                log.error("unexpected_error", source=source_name(f.path), reason=f.reason)
        else:
            rows_per_item[key] = f.n_rows
            replayed.append(f.path)
    if early:
        summary.quarantined += len(ledger.record_failures(early, engine.max_attempts))
    n_rows = 0
    if parts and not Path(res.staged).is_file():
        # written by the worker into a folder of its own under the same path (a node-local
        # /scratch or /tmp): not the driver's results folder, so every task's rows would be
        # lost alike: said as such, not as one missing file. (A task with no file
        # to read, all gone, shares its empty staged file with others: not read, not checked)
        raise clusterconnect.StagingUnwritableError(
            f"{Path(res.staged).parent}: {worker} wrote its rows to {res.staged}, which "
            "this results folder does not hold: the results folder must be shared with every "
            "worker under the same path, and writable by them")
    staged = pq.read_table(res.staged) if parts else None
    if staged is not None:
        # The driver's clock, not the worker's: RESULTS/reverted.parquet is stamped here
        # (ledgerreverts) and the newest-version rule compares it with this column, so a
        # worker whose clock runs ahead would keep a file's later version current.
        at = staged.schema.get_field_index("processed_at")
        staged = staged.set_column(at, "processed_at", pa.array(
            [datetime.now(UTC)] * staged.num_rows, staged.schema.field(at).type))
    job = job_for(engine.kind)
    for partition, (claim, failures, rows_per_item) in parts.items():
        batch_id = uuid.uuid4().hex[:16]
        keep = pa.array(sorted(k.sha256 for k in rows_per_item), pa.string())
        table = staged.filter(pc.is_in(staged.column("source_sha256"), keep))
        table = table.set_column(table.schema.get_field_index("batch_id"), "batch_id",
                                 pa.array([batch_id] * table.num_rows, pa.string()))
        # A tomogram's mask, staged by the worker, goes where local replay writes it, named
        # after this batch; claimed first, so a driver stopped in between removes it.
        moves = _mask_moves(table, res.side, batch_id) if res.side else []
        aux = [engine.results_dir / final for _, final in moves]
        # Rows' file named when written (service.flush); the task's time counts (status).
        # The worker is done with the files: a driver stopped before the hold charges them
        # nothing (``processed``).
        ledger.claim(batch_id, engine.kind, None, claim, aux=aux,
                     started_at=time.time() - res.seconds, processed=True)
        crash_point("after_claim")
        if moves:
            try:
                (engine.results_dir / "masks").mkdir(exist_ok=True)
                for staged_mask, final in moves:
                    _move_into_place(staged_mask, engine.results_dir / final)
            except OSError as exc:
                ledger.abort(batch_id, [], engine.max_attempts, remove=aux)
                raise ResultsWriteError(f"{engine.results_dir / 'masks'}: cannot move a "
                                        f"tomogram's mask into place ({exc})",
                                        folder=engine.results_dir / "masks") from exc
            finals = dict((str(s.relative_to(res.side)), f) for s, f in moves)
            table = table.set_column(table.schema.get_field_index("mask_path"), "mask_path",
                                     pa.array([finals.get(m) for m in
                                               table.column("mask_path").to_pylist()],
                                              pa.string()))
        table = table.replace_schema_metadata(None).cast(job.schema())
        if table.num_rows:
            held = HeldBatch(batch_id, job.folder, partition, table, rows_per_item,
                             supersede=force, aux=aux,
                             summaries=table.select(list(SUMMARY_KEYS)).to_pylist())
            with ctrl_c_after_the_call():  # held in the ledger and the buffer, or neither
                quarantined = ledger.hold(batch_id, list(rows_per_item), failures,
                                          engine.max_attempts)
                engine.buffer.add(held)
            if engine.kind == "insitu":
                from nwwatch.service.frames import offer_to_label_queue

                offer_to_label_queue(engine, *_queue_candidates(table, res.files))
        else:
            quarantined = ledger.commit(batch_id, rows_per_item, failures,
                                        engine.max_attempts, wrote_parquet=False)
        n_rows += table.num_rows
        summary.done += len(rows_per_item)
        summary.quarantined += len(quarantined)
        summary.failed += len(failures) - len(quarantined)
        summary.frames += table.num_rows
        summary.rows.update(count_table(table))
    for path in replayed:  # (a file skipped as done above was not: no note, no warning)
        summary.note_replayed(path, log)
    # A copy of a quarantined content (the first may have been refused just now) is listed
    # under its own name, as local replay lists it (batch.quarantine_duplicates).
    for name, f, key in copies:
        if ledger.quarantine_copy(name, f.size, f.mtime_ns, key) is not None:
            summary.quarantined += 1
        else:
            summary.skipped += 1
            known = ledger.item(key)  # its own path's content, done before (as batch.collect)
            summary.skipped_earlier += (known is not None and known.state == "done"
                                        and known.source == name and not f.duplicate)
    if copies and engine.overlays.mode != "none":
        _remove_pictures_of_copies(engine, res, copies)
    refresh_quarantine(ledger, engine.results_dir, log)
    # The rows are held in this process now: a driver killed before they are written
    # processes the files again (the ledger releases held batches whose file is missing).
    Path(res.staged).unlink(missing_ok=True)
    if res.side:
        shutil.rmtree(res.side, ignore_errors=True)  # masks of rows not kept (done already)
    return n_rows


def _remove_pictures_of_copies(engine: Engine, res: TaskResult,
                               copies: list[tuple[str, FileResult, ItemKey]]) -> None:
    """Remove the QA pictures that a task's worker drew for files whose rows the driver
    dropped (copies of a content whose rows another task holds): local replay, which skips
    them before reading, draws none, and no row names them. A picture of the same name as
    the kept copy's (the same file stem) is that copy's, and stays."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nwwatch.atomic import remove_if_present
    from nwwatch.results.pictures import picture_stem

    kept_source = {}
    for _, f, key in copies:
        item = engine.ledger.item(key)
        if item is not None:
            kept_source[source_name(f.path)] = (item.source, key)
    table = pq.read_table(res.staged, columns=["source", "frame", "overlay_path"])
    copied = pa.array(list(kept_source), pa.string())
    table = table.filter(pc.is_in(table.column("source"), copied))
    for row in table.to_pylist():
        if not row["overlay_path"]:
            continue
        source, key = kept_source[row["source"]]
        stem = picture_stem(os.fsdecode(source), key.sha256, key.model_sha256, row["frame"],
                            key.measurement_version)
        if row["overlay_path"] != (engine.overlays.folder / f"{stem}.png").as_posix():
            overlay = engine.results_dir / row["overlay_path"]
            remove_if_present(overlay)
            remove_if_present(overlay.with_name(f"{overlay.stem}-labels.png"))


def _move_into_place(staged: Path, final: Path) -> None:
    """Rename ``staged`` to ``final``; where ``final``'s folder lies on another file system
    (``RESULTS/masks`` a link to a larger disk) copy it there under a hidden temporary name
    first (nwwatch.atomic), so that ``final`` is never a partial file."""
    import errno

    from nwwatch.atomic import atomic_write

    try:
        os.replace(staged, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with atomic_write(final) as out, open(staged, "rb") as src:
            shutil.copyfileobj(src, out)
        staged.unlink()


def _mask_moves(table, side: str, batch_id: str) -> list[tuple[Path, str]]:
    """(staged mask, final ``mask_path``) of each row of ``table`` that names a mask."""
    from nwwatch.service.volumes import mask_name

    return [(Path(side) / staged, mask_name(source, sha256, batch_id))
            for source, sha256, staged in zip(table.column("source").to_pylist(),
                                              table.column("source_sha256").to_pylist(),
                                              table.column("mask_path").to_pylist(),
                                              strict=True) if staged]


def _queue_candidates(table, files: list[FileResult]) -> tuple[list, list]:
    """The labelling-queue candidates of a task's committed rows (``table``), and the files
    their images are read from (:class:`nwwatch.service.frames.PageSource`, to be closed).
    Workers hold the images and the driver the rows, so each candidate's image is read here,
    and only if the frame enters the queue: that page alone, from the file (opened once for
    all its pages), unless it is not the one the worker processed (size or modification
    time changed since)."""
    from nwwatch.results.label_queue import Candidate, QueueEntry
    from nwwatch.service.frames import PageSource

    sources = {source_name(f.path): PageSource(f.path, f.size, f.mtime_ns) for f in files}

    def reader(source: str, page: int):
        return sources[source].page(page) if source in sources else lambda: None

    columns = ("source", "frame", "source_sha256", "confidence", "status",
               "contact_angle_deg", "model_sha256", "measurement_version")
    return ([Candidate(QueueEntry(*(row[c] for c in columns)), reader(row["source"], row["frame"]))
             for row in table.select(list(columns)).to_pylist()], list(sources.values()))


def _record_task_failure(engine: Engine, path: Path, exc: BaseException, summary, log) -> None:
    """A one-file task that failed as a whole (e.g. it killed its worker each time Dask
    tried it): an attempt is counted, quarantined after ``max_attempts`` as in local replay."""
    from nwwatch.filehash import file_sha256

    try:
        st = os.stat(path)
        key = engine.key(file_sha256(path))
    except OSError:
        return  # vanished or unreadable meanwhile: seen again on the next replay
    failure = Failure(key, path_key(path), f"failed on the cluster: {exc!r}",
                      type(exc).__name__, False, st.st_size, st.st_mtime_ns)
    log.error("cluster_file_failed", source=str(path), error=repr(exc))
    if engine.ledger.record_failures([failure], engine.max_attempts):
        summary.quarantined += 1
    else:
        summary.failed += 1
    refresh_quarantine(engine.ledger, engine.results_dir, log)


def clear_staging(staging: Path) -> None:
    """Staged outputs left by tasks of an earlier, interrupted driver; nothing of this run
    is left once every task is committed."""
    for leftover in [*staging.glob("*.parquet"), *staging.glob(".*.part")]:
        leftover.unlink(missing_ok=True)
    for side in staging.glob("*.side"):  # tomograms' staged masks
        shutil.rmtree(side, ignore_errors=True)
    try:
        staging.rmdir()
    except OSError:
        pass
