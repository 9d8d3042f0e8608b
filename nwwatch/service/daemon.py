"""The resident service: watch folders, batch ready files, :func:`process` them, tell systemd.

One processing loop in the main thread does everything that touches the ledger and the
model; watchdog's threads only record file activity in the :class:`Tracker`. The loop:

1. pings the systemd watchdog (so a hung loop, not just a live process, is detected);
2. every second: stops when the results folder, the ledger or its lock was removed or
   replaced (exit 78: going on could write rows twice); restarts a dead observer, or one
   whose folder was renamed away or replaced (device and inode compared), and retries
   folders that were missing — each followed by a rescan; and every ``backoff_seconds``
   retries a rewrite of ``quarantine.parquet`` that failed;
3. rescans each folder every ``rescan_seconds`` (and once at start) for files the events
   missed — files already done for this model are recognised from the ledger by
   (path, size, mtime, ctime) without being read;
4. polls the tracker for ready files, quarantines bad ones (never opening anything but a
   regular file), and processes a batch when ``batch_size`` frames are waiting or the oldest
   has waited ``max_batch_latency_ms``.

While results or the ledger cannot be written (disk full), processing pauses
(:mod:`nwwatch.service.storagepause`); batches a failed write left unfinished are settled
before anything else. A ``[dashboard]``'s server thread starts once the service is ready
and stops with the loop, which feeds :mod:`nwwatch.dashboard.metrics` and never waits for it.

SIGTERM/SIGINT/SIGHUP: stop watching, finish the batch in flight, settle anything unfinished,
exit 0; a thread woken by the signal ends the process should the batch in flight outlive
``stop_timeout_seconds``, or the wind-down after it its own bound (:mod:`nwwatch.service.stopping`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from nwwatch.dashboard import metrics as _metrics
from nwwatch.logsetup import get_logger
from nwwatch.segment.session import ModelLoadError
from nwwatch.service.config import ServiceConfig, make_folder
from nwwatch.service.engines import (
    BadInput,
    EngineSpec,
    build_engines,
    check_models,
    inspect_input,
    quarantine_inputs,
)
from nwwatch.service.flush import FlushPolicy, write_held
from nwwatch.service.inputs import LAYOUT_NOTES, layout_of_other_kind
from nwwatch.service.ledger import Ledger, LedgerLostError, LedgerWriteError
from nwwatch.service.ledgerdb import FileVersion
from nwwatch.service.names import path_key, source_name
from nwwatch.service.notify import Notifier
from nwwatch.service.pipeline import (
    BatchReport,
    ResultsWriteError,
    process,
    refresh_quarantine,
)
from nwwatch.service.readiness import QueuedFiles, Tracker
from nwwatch.service.rebuild import open_ledger
from nwwatch.service.stopping import BATCH, BETWEEN_BATCHES, HELD_ROWS, StopDeadline
from nwwatch.service.storagepause import StoragePause
from nwwatch.service.tally import Tally
from nwwatch.service.watcher import FolderWatcher, exports_beside, stop_watchers
from nwwatch.service.watches import Watch
from nwwatch.stopsignals import StopEvent

#: Seconds between checks of observers, watched folders and the results folder.
SUPERVISE_S = 1.0
#: Seconds between STATUS updates to systemd.
STATUS_S = 1.0
#: Idle sleep of the loop (bounds the reaction time to events and to SIGTERM).
TICK_S = 0.05
#: Seconds of looking at waiting files (readiness checks, about 1 ms a file) per turn of the
#: loop: a backlog is looked at a slice at a time between batches, watchdog pings and stops.
POLL_BUDGET_S = 0.5


class Daemon:
    """The service. ``run()`` blocks until SIGTERM/SIGINT (or :meth:`stop`) and returns 0.

    Raises LedgerLostError (results folder or ledger removed or replaced while running),
    ModelLoadError (also while running: a model that cannot process its folder's files),
    and the start-up errors of the ledger, the models and the configuration.
    """

    def __init__(self, config: ServiceConfig, notifier: Notifier | None = None,
                 stop_event: StopEvent | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.log = get_logger("nwwatch.service")
        self.tracker = Tracker()
        # May already be set by a SIGTERM that arrived while the process was starting.
        self._stop = stop_event or StopEvent()  # set by the signal handler: no lock
        self._watch_errors: dict[Path, float] = {}
        self.pause = StoragePause(config.backoff_seconds, self.log, self.notifier.status)
        self.tally = Tally()
        # The loop's watches and queued paths (for files released after a failed write).
        self._watches: list[Watch] = []
        self._queued: QueuedFiles = QueuedFiles()
        #: Ready (serving): an error raised from here on stopped a running service.
        self.started = False
        #: While :meth:`run` runs: told what the loop does, which decides what a stop that
        #: runs out of time cut short.
        self._deadline: StopDeadline | None = None

    def stop(self, *_args) -> None:
        self._stop.set()

    def _on_change(self, index: int):
        settle = self.config.watches[index].settle_seconds

        def callback(path: Path, closed: bool) -> None:
            self.tracker.touch(path, index, settle, closed=closed)

        return callback

    def _inspect(self, path: Path):
        for watch in self.config.watches:
            if path.is_relative_to(watch.path):
                return inspect_input(path, watch.path, watch.follow_symlinks)
        return inspect_input(path, path.parent)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.stop)
        if hasattr(signal, "SIGXFSZ"):
            # A file size limit must read as a failed write (EFBIG), not kill the service.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        deadline = self._deadline = StopDeadline(
            self._stop, self.config.stop_timeout_seconds, self.log, ledger=self.config.ledger)
        try:
            return self._run()
        finally:
            self._deadline = None
            deadline.disarm()

    def _doing(self, stage: str) -> None:
        if self._deadline is not None:
            self._deadline.doing(stage)

    @contextlib.contextmanager
    def _during(self, stage: str) -> Iterator[None]:
        with (contextlib.nullcontext() if self._deadline is None
              else self._deadline.during(stage)):
            yield

    def _wind_down(self, exit_status: int = 0) -> None:
        """The loop has ended: no batch in flight (see :meth:`StopDeadline.wind_down`)."""
        if self._deadline is not None:
            self._deadline.wind_down(exit_status)

    def _run(self) -> int:
        cfg = self.config
        specs = [EngineSpec(w.kind, w.model, f"watch[{i}].model")
                 for i, w in enumerate(cfg.watches)]
        # `systemctl status` says which step a long start is in (a ledger rebuilt from a
        # year of results, sessions made on a GPU, a large folder listed).
        starting = self.notifier.status
        starting("starting: checking the models")
        # Before anything is created: a start refused for its model left a results folder
        # tied to the [state] ledger it named, which refused the corrected configuration.
        check_models(specs, cfg.inference, cfg.source)
        make_folder(cfg, "output.results", cfg.results)
        make_folder(cfg, "state.ledger", cfg.ledger.parent)
        starting(f"starting: opening the ledger {cfg.ledger} (rebuilt from the results "
                 "when missing)")
        ledger = self.ledger = open_ledger(cfg.ledger, cfg.results, self.log)
        watches: list[Watch] = []
        dashboard = None
        try:
            ledger.reconcile(cfg.max_attempts).log_to(self.log)
            flush_policy = FlushPolicy(max_rows=cfg.flush_rows, max_seconds=cfg.flush_seconds)
            starting("starting: loading the models")
            engines = build_engines(specs, ledger, cfg.results, inference=cfg.inference,
                                    flush=flush_policy,
                                    max_attempts=cfg.max_attempts, tomogram=cfg.tomogram,
                                    log=self.log, source=cfg.source,
                                    overlays=cfg.overlays)  # [output] overlays
            for engine in engines:
                engine.heartbeat = self.notifier.watchdog
                seg = engine.segmenter  # /metrics: nwwatch_model_info
                _metrics.set_model(seg.name, seg.model_sha256, seg.provider, engine.kind)
            _metrics.set_last_frame((ledger.queries.last_done() or {}).get("processed_at"))
            refresh_quarantine(ledger, cfg.results, self.log, force=True)
            watches = [Watch(i, w, engines[i],
                              FolderWatcher(w, self._on_change(i), self.tracker.forget))
                       for i, w in enumerate(cfg.watches)]
            for w in watches:
                w.start(self.log, self._watch_errors)
            queued = QueuedFiles()
            self._watches, self._queued = watches, queued
            # the dashboard counts a folder's files seen and not yet queued live: a file that
            # arrives while a long batch runs (no queue update until it ends) counts at once
            _metrics.set_seen_files(self.tracker)
            starting("starting: listing the watched folders")
            now = time.monotonic()
            for w in watches:
                n = w.rescan(self.tracker, queued, self.log)
                w.next_rescan = now + w.config.rescan_seconds
                self.log.info("initial_scan", path=str(w.config.path), candidates=n)
            next_supervise = next_status = next_quarantine = now
            self.notifier.ready(self._status_text(watches))
            self.started = True
            self.log.info("ready", watches=len(watches), results=str(cfg.results),
                          ledger=str(cfg.ledger))
            if cfg.dashboard is not None:  # [dashboard]: its supervised server thread
                from nwwatch.dashboard.server import DashboardThread

                dashboard = DashboardThread(cfg.results, cfg.ledger, cfg.dashboard, self.log,
                                            live=True)
                dashboard.start()
            self._doing(BETWEEN_BATCHES)
            while not self._stop.is_set():
                now = time.monotonic()
                self.notifier.watchdog(now)
                if now >= next_supervise:
                    next_supervise = now + SUPERVISE_S
                    lost = ledger.lost()
                    if lost is not None:
                        raise LedgerLostError(lost)
                    for w in watches:
                        w.supervise(self.tracker, queued, self.log, self._watch_errors)
                    if ledger.quarantine_changed and now >= next_quarantine:
                        next_quarantine = now + cfg.backoff_seconds  # a failed rewrite
                        refresh_quarantine(ledger, cfg.results, self.log)
                for w in watches:
                    if now >= w.next_rescan:
                        w.next_rescan = now + w.config.rescan_seconds
                        w.rescan(self.tracker, queued, self.log)
                did_work = False
                if self.pause.due(now):
                    did_work = self._work(watches, queued, now)
                if now >= next_status:
                    next_status = now + STATUS_S
                    self._publish_queue(queued)
                    self.notifier.status(self._status_text(watches))
                if not did_work:
                    self._stop.wait(TICK_S)
            self._wind_down()  # the batch in flight is over: stop_timeout_seconds was for it
            self.notifier.stopping()
            with self._during(HELD_ROWS):
                self._write_held(watches)
                self._settle_unfinished()
            self._doing("writing quarantine.parquet")
            refresh_quarantine(ledger, cfg.results, self.log)  # if a rewrite failed
            self.tally.log_stopping(self.log, len(queued))
        except ModelLoadError as exc:
            if not self.started:  # a model that does not load: startup_failed alone (cli.py)
                raise
            # A model that cannot process its folder's files (the same for every file): a person
            # is needed. Rows so far are written; the batch was released (no attempt counted).
            self.log.error("model_unusable", error=str(exc),
                           action="stopped processing; fix or replace the model, then "
                                  "restart the service")
            self._wind_down(exit_status=78)  # cli.py's status for it
            with self._during(HELD_ROWS):
                self._write_held(watches)
                self._settle_unfinished()
            raise
        except LedgerLostError as exc:
            self._wind_down(exit_status=78)  # cli.py's status for it
            self.log.error("results_lost", reason=str(exc),
                           action="stopped processing (going on could write rows twice); "
                                  "restart the service once the results folder and ledger "
                                  "are where they belong")
            raise
        finally:
            if dashboard is not None:
                self._doing("stopping the dashboard")
                dashboard.stop()
            _metrics.set_seen_files(None)
            self._doing("stopping the folders' observers")
            stop_watchers([w.watcher for w in watches], self.log)
            self._doing("closing the ledger")
            ledger.close()
            self.notifier.close()
        self.log.info("stopped")
        return 0

    def _work(self, watches: list[Watch], queued: QueuedFiles, now: float) -> bool:
        """Settle what a failed write left, quarantine bad files, run due batches. Returns
        True when a batch ran. A failed write pauses processing (see module docstring)."""
        try:
            if self.pause.paused:
                # Writable again? Settle what the failure left, then probe.
                self._settle_unfinished(raise_errors=True)
                self.pause.probe(self.ledger)
            ready, bad = self.tracker.poll(self._inspect, now, budget_s=POLL_BUDGET_S)
            for item in ready:
                w = watches[item.watch]
                if item.path in queued:
                    # a newer version found ready while the older waits: the newer's
                    # structural check (a stack's pages) is the one its batch must read by
                    w.files = [item if f.path == item.path else f for f in w.files]
                    continue
                if w.left_out_as_export(item.path):
                    continue  # a TIFF export: its original is read (the rescan names it)
                w.files.append(item)
                w.since = w.since if w.since is not None else now
                queued.add(item.path)
            try:
                if bad:  # after the ready ones: an export among them, left out, is queued again
                    self._quarantine_bad(bad, watches)
            finally:  # also when the quarantine's write fails: else they stay counted waiting
                if ready or bad:
                    # the dashboard counts them queued from now (the tracker did until here)
                    self._publish_queue(queued)
                    self.tracker.handed_over()
            did_work = False
            for w in watches:
                if not w.files:
                    continue
                waited_ms = (now - w.since) * 1e3
                if (w.frames() >= w.engine.batch_size
                        or waited_ms >= self.config.inference.max_batch_latency_ms):
                    self._write_before_batch(w)
                    if self._stop.is_set():
                        # A stop that came before or during that write: the batch is not
                        # started (it could outlast stop_timeout_seconds); its files were not
                        # taken or claimed, and the next start finds them as new.
                        break
                    self._run_batch(w, queued)
                    did_work = True
                    if self._stop.is_set():
                        break
            for w in watches:  # held rows whose time or count has come
                self._write_due(w)
            # files left for the next look: loop again at once (the watchdog pinged, a stop
            # seen) instead of waiting a tick
            did_work = did_work or self.tracker.due_left(now)
        except (ResultsWriteError, LedgerWriteError) as exc:
            self._released(watches, queued, requeue=True)
            self._publish_queue(queued)  # requeued ones
            self.pause.pause(exc)
            return False
        self.pause.resume()
        return did_work

    def _released(self, watches: list[Watch], queued: QueuedFiles, requeue: bool) -> None:
        """Files of held batches released because their rows could not be written: no
        longer counted as processed, and (``requeue``) back at the head of their watch's
        queue, processed again as soon as processing resumes; otherwise the next rescan
        finds them. Files of the batch in flight are already back in the queue."""
        buffers = {id(w.engine.buffer): w.engine.buffer for w in watches}
        now = time.monotonic()
        for buffer in buffers.values():
            for batch in buffer.take_released():
                if batch.tallied:
                    self.tally.uncount(batch, self.ledger.queries)
                for entry in batch.entries:
                    path = getattr(entry, "path", None)
                    if path is None or path in queued:
                        continue
                    self.log.info("file_requeued", source=str(path), batch_id=batch.batch_id,
                                  reason="its rows could not be written",
                                  next="at once" if requeue else "when the folder is scanned")
                    if not requeue:
                        continue
                    w = watches[entry.watch]
                    w.files.insert(0, entry)
                    w.since = now - self.config.inference.max_batch_latency_ms / 1e3
                    queued.add(path)

    def _write_before_batch(self, w: Watch) -> None:
        """Write the held rows (of every watch: they share one buffer) before the next batch
        of ``w`` when they would otherwise wait past ``flush_seconds`` for it to end, judged
        by the seconds a frame of the watch's last batch took (:attr:`Watch.seconds_per_frame`).
        Before a watch's first measured batch: always before a tomogram's (seconds to minutes,
        not known beforehand), never before an in-situ one (usually short). Rows are written
        only between batches: otherwise a group watching both kinds would see its in-situ
        rows frozen for as long as each tomogram takes."""
        buffer = w.engine.buffer
        if not buffer.batches:
            return
        if w.seconds_per_frame is not None:
            ahead_s = w.seconds_per_frame * w.next_batch_frames()
        elif w.config.kind == "tomogram":
            ahead_s = math.inf
        else:
            return
        if buffer.due(time.monotonic() + ahead_s):
            self._write_due(w, force=True)

    def _write_due(self, w: Watch, force: bool = False) -> None:
        """Write the held rows of ``w`` whose time or count has come (``force``: all now).
        A failed write of results or ledger propagates (processing pauses); anything else is
        logged and the ledger reconciled as after a crash, and the service goes on."""
        try:
            if w.engine.buffer.batches:
                with self._during(HELD_ROWS):
                    write_held(w.engine, force=force)
        except (ResultsWriteError, LedgerWriteError):
            raise
        except Exception as exc:  # keep serving whatever happens
            self.log.exception("batch_crashed", error=repr(exc), stage="write")
            self._released(self._watches, self._queued, requeue=False)
            self._reconcile()

    def _reconcile(self) -> None:
        """Settle batches left between claim and commit, as after a crash (batches whose
        rows this process still holds are left alone)."""
        try:
            self.ledger.reconcile(self.config.max_attempts)
        except Exception as again:
            self.log.exception("reconcile_failed", error=repr(again))

    def _write_held(self, watches: list[Watch]) -> None:
        """On stop: write every engine's held rows (a failure leaves them to be processed
        again after the restart)."""
        for w in watches:
            try:
                write_held(w.engine, force=True)
            except Exception as exc:
                self.log.error("held_rows_not_written", error=repr(exc),
                               note="their files are processed again at the next start")
                self._released(watches, self._queued, requeue=False)

    def _settle_unfinished(self, raise_errors: bool = False) -> None:
        """Adopt or undo batches a failed ledger write left ``writing`` (no attempt counted),
        so that a clean stop leaves none."""
        ledger: Ledger = self.ledger
        try:
            for batch_id in ledger.unfinished_batches():
                adopted = ledger.settle(batch_id, self.config.max_attempts)
                self.log.info("batch_settled", batch_id=batch_id,
                              outcome="adopted" if adopted else "released")
        except LedgerWriteError as exc:
            if raise_errors:
                raise
            self.log.error("batch_left_unfinished", error=str(exc),
                           note="settled at the next start")

    def _queued_files(self) -> int:
        """Files queued for a batch (not those of the batch in flight)."""
        return sum(len(w.files) for w in self._watches)

    def _publish_queue(self, queued: QueuedFiles) -> None:
        """The queue's counts for the dashboard and /metrics: files queued for a batch, and
        per acquisition those queued or in the batch in flight."""
        _metrics.set_queue(self._queued_files(), queued.by_acquisition())

    def _run_batch(self, w: Watch, queued: QueuedFiles) -> None:
        batch = w.take()
        # The loop sets the queued files' counts and systemd's STATUS only between batches:
        # the files left waiting behind this one (a burst, a long stack) would read as an
        # empty queue while it runs. (Files seen meanwhile are counted from the tracker, live.)
        self._publish_queue(queued)
        self.notifier.status(self._status_text(self._watches))
        frames = sum(max(1, getattr(f.info, "n_pages", 1)) for f in batch)
        t0 = time.monotonic()
        try:
            with _metrics.in_flight(frames), self._during(BATCH):
                report = process(batch, w.engine)
        except (ResultsWriteError, LedgerWriteError) as exc:
            # Not the files' fault. Files the call finished (rows committed or held, failures
            # recorded) are counted now: tried again they would only be skipped. The others
            # go back to the head of the queue for the next try.
            report = getattr(exc, "report", None)
            finished = set() if report is None else {o.path for o in report.files}
            again = [f for f in batch if f.path not in finished]
            for f in batch:
                if f.path in finished:
                    queued.discard(f.path)
            if report is not None:
                self._record(report, w, batch)
            if again:
                w.files[:0] = again
                w.since = time.monotonic() - self.config.inference.max_batch_latency_ms / 1e3
            raise
        except ModelLoadError:
            for f in batch:
                queued.discard(f.path)
            raise  # a person is needed (see _run)
        except Exception as exc:  # keep serving whatever happens
            self.log.exception("batch_crashed", error=repr(exc))
            for f in batch:
                queued.discard(f.path)
            self._released(self._watches, queued, requeue=False)
            # The batch may be left between claim and commit: settle it now as after a crash.
            self._reconcile()
            return
        # Per frame processed: files skipped as done (or already held) cost next to nothing,
        # and counting them would make the estimate far too short.
        processed = {o.path for o in report.files if o.state == "done"}
        frames_processed = sum(max(1, getattr(f.info, "n_pages", 1))
                               for f in batch if f.path in processed)
        if frames_processed:
            w.seconds_per_frame = (time.monotonic() - t0) / frames_processed
        for f in batch:
            queued.discard(f.path)
        # done: no longer in flight on the page (the loop's update may be a second away)
        self._publish_queue(queued)
        self._record(report, w, batch)

    def _record(self, report: BatchReport, w: Watch, batch: list) -> None:
        """Count and log the outcomes of ``report`` (of the files ``batch``, as queued); its
        done files whose rows are still held are marked, to be un-counted should their rows
        be released."""
        self._warn_other_layouts(report, w, batch)
        self.tally.record(report, self.log, self.ledger.queries)
        counted = {o.batch_id for o in report.files if o.state == "done"}
        for held in w.engine.buffer.batches:
            held.tallied |= held.batch_id in counted
        self._queue_exports([o.path for o in report.files if o.state == "quarantined"], w)

    def _warn_other_layouts(self, report: BatchReport, w: Watch, batch: list) -> None:
        """``input_layout_of_other_kind`` for each file of ``report`` processed (done) whose
        pages declare the other kind's layout: processed as the watch's kind, as replay
        does. Only then: a file skipped as done once hashed (touched, renamed, copied) was
        not processed, and warning at every such look would be noise."""
        infos = {getattr(f, "path", f): getattr(f, "info", None) for f in batch}
        for o in report.files:
            info = infos.get(o.path)
            if o.state != "done" or info is None:
                continue
            layout = layout_of_other_kind(w.config.kind, info)
            if layout is not None:
                self.log.warning("input_layout_of_other_kind", source=str(o.path),
                                 kind=w.config.kind, pages=info.n_pages, axes=info.axes,
                                 declares=layout, note=LAYOUT_NOTES[layout])

    def _queue_exports(self, quarantined: list[Path], w: Watch) -> None:
        """Queue the TIFF exports beside originals just quarantined: left out while the
        original might be read, they are now the frames to read (a refusal may say to
        export them). One ``export_queued`` line each, naming both files."""
        for original in quarantined:
            for export in exports_beside(original, w.config):
                if export in self._queued or w.left_out_as_export(export):
                    continue  # (another original of its stem may still be read)
                try:
                    st = export.stat()
                except OSError:
                    continue
                if w.engine.ledger.is_finished(path_key(export), FileVersion.of(st),
                                               w.engine.segmenter.model_sha256,
                                               w.engine.measurement_version):
                    continue
                self.log.info("export_queued", source=source_name(export),
                              original=source_name(original),
                              reason="its original is quarantined: the TIFF export is read "
                                     "in its place")
                self.tracker.touch(export, w.index, w.config.settle_seconds)

    def _quarantine_bad(self, bad, watches: list[Watch]) -> None:
        for w in watches:
            mine = [b for b in bad if b.watch == w.index]
            quarantine_inputs(w.engine, [
                BadInput(b.path, b.error, b.size if b.size >= 0 else None,
                         b.mtime_ns if b.mtime_ns >= 0 else None) for b in mine], self.log)
            self.tally.quarantined_on_inspection([b.path for b in mine])
            self._queue_exports([b.path for b in mine], w)

    def _status_text(self, watches: list[Watch]) -> str:
        paused = self.pause.status_text()
        if paused is not None:
            return paused
        return self.tally.status_text(sum(len(w.files) for w in watches) + len(self.tracker))
