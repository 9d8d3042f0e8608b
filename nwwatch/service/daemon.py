"""The resident service: watch folders, batch ready files, :func:`process` them, tell systemd.

One processing loop in the main thread does everything that touches the ledger and the
model; watchdog's threads only record file activity in the :class:`Tracker`. The loop:

1. pings the systemd watchdog (so a hung loop, not just a live process, is detected);
2. restarts a dead observer thread (logged) and retries folders that were missing;
3. rescans each folder every ``rescan_seconds`` (and once at start) for files the events
   missed — files already done for this model are recognised from the ledger by
   (path, size, mtime) without being read;
4. polls the tracker for ready files, quarantines bad ones, and processes a batch when
   ``batch_size`` frames are waiting or the oldest has waited ``max_batch_latency_ms``.

SIGTERM/SIGINT: stop watching, finish the batch in flight (already committed when the loop
sees the flag), exit 0.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from nwwatch.dashboard import metrics as _metrics
from nwwatch.io import InputError
from nwwatch.segment.session import Segmenter
from nwwatch.service.config import ConfigError, ServiceConfig, WatchConfig
from nwwatch.service.ledger import Failure, Ledger
from nwwatch.service.logsetup import get_logger
from nwwatch.service.notify import Notifier
from nwwatch.service.pipeline import (
    Engine,
    ResultsWriteError,
    _rewrite_quarantine,
    process,
    source_name,
)
from nwwatch.service.readiness import ReadyFile, Tracker
from nwwatch.service.watcher import FolderWatcher, scan

#: Seconds between checks that observer threads are alive / folders exist.
SUPERVISE_S = 1.0
#: Seconds between STATUS updates to systemd.
STATUS_S = 1.0
#: Back-off after the results folder could not be written.
WRITE_BACKOFF_S = 5.0
#: Idle sleep of the loop (bounds the reaction time to events and to SIGTERM).
TICK_S = 0.05


def build_engines(config: ServiceConfig, ledger: Ledger, log) -> list[Engine]:
    """One :class:`Engine` per [[watch]] (sharing segmenters of the same model file).

    Raises :class:`ConfigError` when a model's kind does not match its watch, and
    ``GpuUnavailableError`` when ``require_gpu`` is set and ONNX Runtime obtained no GPU.
    """
    inf = config.inference
    segmenters: dict[Path, Segmenter] = {}
    engines: list[Engine] = []
    for i, watch in enumerate(config.watches):
        model = Path(watch.model).resolve()
        if model not in segmenters:
            segmenters[model] = Segmenter(model, providers=inf.providers,
                                          require_gpu=inf.require_gpu, threads=inf.threads)
            seg = segmenters[model]
            log.info("model_loaded", model=str(model), model_sha256=seg.model_sha256,
                     provider=seg.provider, kind=seg.metadata.kind)
        seg = segmenters[model]
        if seg.metadata.kind != watch.kind:
            raise ConfigError(config.source, f"watch[{i}].model",
                              f"{model.name} is a {seg.metadata.kind!r} model but the folder's "
                              f"kind is {watch.kind!r}")
        engines.append(Engine(kind=watch.kind, segmenter=seg, ledger=ledger,
                              results_dir=config.results, batch_size=inf.batch_size,
                              max_attempts=config.max_attempts, log=log,
                              volume_options=config.tomogram))
    return engines


@dataclass
class _Queue:
    files: list[ReadyFile] = field(default_factory=list)
    since: float | None = None  # monotonic time the oldest waiting file became ready

    def frames(self) -> int:
        return sum(max(1, getattr(f.info, "n_pages", 1)) for f in self.files)


def _start_dashboard(config: ServiceConfig, log):
    """The dashboard's supervised thread (``[dashboard]``), or None when not configured."""
    if config.dashboard is None:
        return None
    from nwwatch.dashboard.server import DashboardThread

    thread = DashboardThread(config.results, config.ledger, config.dashboard, log, live=True)
    thread.start()
    return thread


class Daemon:
    """The service. ``run()`` blocks until SIGTERM/SIGINT (or :meth:`stop`) and returns 0."""

    def __init__(self, config: ServiceConfig, notifier: Notifier | None = None,
                 stop_event: threading.Event | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.log = get_logger("nwwatch.service")
        self.tracker = Tracker()
        # May already be set by a SIGTERM that arrived while the process was starting.
        self._stop = stop_event or threading.Event()
        self._watch_errors: dict[Path, float] = {}
        self.processed_files = 0
        self.processed_rows = 0
        self.failed_files = 0
        self.quarantined_files = 0

    def stop(self, *_args) -> None:
        self._stop.set()

    # --- set-up -------------------------------------------------------------------------

    def _on_change(self, index: int):
        settle = self.config.watches[index].settle_seconds

        def callback(path: Path, closed: bool) -> None:
            self.tracker.touch(path, index, settle, closed=closed)

        return callback

    def _start_watcher(self, watcher: FolderWatcher) -> bool:
        try:
            watcher.start()
        except OSError as exc:
            # Once per minute at most: a share that stays away must not flood the journal.
            now = time.monotonic()
            last = self._watch_errors.get(watcher.watch.path)
            if last is None or now - last >= 60:
                self._watch_errors[watcher.watch.path] = now
                self.log.error("watch_failed", path=str(watcher.watch.path), error=repr(exc),
                               action="retrying every second")
            return False
        self._watch_errors.pop(watcher.watch.path, None)
        self.log.info("watching", path=str(watcher.watch.path), mode=watcher.mode,
                      kind=watcher.watch.kind, recursive=watcher.watch.recursive)
        return True

    def _rescan(self, index: int, engine: Engine, queued: set[Path]) -> int:
        watch: WatchConfig = self.config.watches[index]
        found = 0
        try:
            for path in scan(watch):
                if path in queued or path in self.tracker:
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue
                if engine.ledger.is_finished(source_name(path), st.st_size, st.st_mtime_ns,
                                             engine.segmenter.model_sha256,
                                             engine.measurement_version):
                    continue
                self.tracker.touch(path, index, watch.settle_seconds)
                found += 1
        except OSError as exc:  # share gone mid-walk: the next rescan tries again
            self.log.error("rescan_failed", path=str(watch.path), error=repr(exc))
        return found

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.config
        from nwwatch.io import inspect_tiff

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)
        cfg.results.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(cfg.ledger, cfg.results)
        dashboard = None
        try:
            report = ledger.reconcile(cfg.max_attempts)
            if report.adopted or report.removed:
                self.log.warning("reconciled_after_crash", adopted=report.adopted,
                                 removed=report.removed)
            engines = build_engines(cfg, ledger, self.log)
            for engine in engines:
                engine.heartbeat = self.notifier.watchdog
            _rewrite_quarantine(engines[0])
            for e in engines:  # /metrics: nwwatch_model_info
                _metrics.set_model(e.segmenter.name, e.segmenter.model_sha256,
                                   e.segmenter.provider, e.kind)
            watchers = [FolderWatcher(w, self._on_change(i), self.tracker.forget)
                        for i, w in enumerate(cfg.watches)]
            started = [self._start_watcher(w) for w in watchers]
            queues = [_Queue() for _ in cfg.watches]
            queued: set[Path] = set()
            for i, engine in enumerate(engines):
                n = self._rescan(i, engine, queued)
                self.log.info("initial_scan", path=str(cfg.watches[i].path), candidates=n)
            now = time.monotonic()
            next_rescan = [now + w.rescan_seconds for w in cfg.watches]
            next_supervise = next_status = now
            self.notifier.ready(self._status_text(queues))
            self.log.info("ready", watches=len(watchers), results=str(cfg.results),
                          ledger=str(cfg.ledger))
            dashboard = _start_dashboard(cfg, self.log)  # [dashboard]: None when not configured
            while not self._stop.is_set():
                now = time.monotonic()
                self.notifier.watchdog(now)
                if now >= next_supervise:
                    next_supervise = now + SUPERVISE_S
                    for i, w in enumerate(watchers):
                        if not started[i]:
                            started[i] = self._start_watcher(w)
                            if started[i]:
                                self._rescan(i, engines[i], queued)
                        elif not w.alive():
                            self.log.error("observer_died", path=str(w.watch.path),
                                           mode=w.mode, restarts=w.restarts + 1)
                            w.stop()
                            started[i] = self._start_watcher(w)
                            w.restarts += 1
                            self._rescan(i, engines[i], queued)
                for i, engine in enumerate(engines):
                    if now >= next_rescan[i]:
                        next_rescan[i] = now + cfg.watches[i].rescan_seconds
                        self._rescan(i, engine, queued)
                ready, bad = self.tracker.poll(inspect_tiff, now)
                if bad:
                    self._quarantine_bad(bad, engines)
                for item in ready:
                    if item.path in queued:
                        continue
                    q = queues[item.watch]
                    q.files.append(item)
                    q.since = q.since if q.since is not None else now
                    queued.add(item.path)
                did_work = False
                for i, engine in enumerate(engines):
                    q = queues[i]
                    if not q.files:
                        continue
                    waited_ms = (now - q.since) * 1e3
                    if (q.frames() >= engine.batch_size
                            or waited_ms >= cfg.inference.max_batch_latency_ms):
                        self._run_batch(engine, q, queued)
                        did_work = True
                        if self._stop.is_set():
                            break
                if now >= next_status:
                    next_status = now + STATUS_S
                    _metrics.set_queue(sum(len(q.files) for q in queues) + len(self.tracker))
                    self.notifier.status(self._status_text(queues))
                if not did_work:
                    self._stop.wait(TICK_S)
            self.notifier.stopping()
            self.log.info("stopping", processed_files=self.processed_files,
                          processed_rows=self.processed_rows, queued=len(queued),
                          note="queued files are picked up by the next start's scan")
            for w in watchers:
                w.stop()
        finally:
            if dashboard is not None:
                dashboard.stop()
            ledger.close()
            self.notifier.close()
        self.log.info("stopped")
        return 0

    def _take(self, engine: Engine, q: _Queue) -> list[ReadyFile]:
        batch, frames = [], 0
        while q.files and (not batch or frames + q.files[0].info.n_pages <= engine.batch_size):
            f = q.files.pop(0)
            batch.append(f)
            frames += max(1, f.info.n_pages)
        q.since = time.monotonic() if q.files else None
        return batch

    def _run_batch(self, engine: Engine, q: _Queue, queued: set[Path]) -> None:
        batch = self._take(engine, q)
        try:
            with _metrics.in_flight(sum(max(1, getattr(f.info, "n_pages", 1)) for f in batch)):
                report = process(batch, engine)
        except ResultsWriteError as exc:
            self.log.error("results_write_failed", error=str(exc), backoff_s=WRITE_BACKOFF_S)
            for f in batch:
                queued.discard(f.path)
            self._stop.wait(WRITE_BACKOFF_S)
            return
        except Exception as exc:  # keep serving whatever happens
            self.log.exception("batch_crashed", error=repr(exc))
            for f in batch:
                queued.discard(f.path)
            # The batch may be left between claim and commit: settle it now as after a crash.
            try:
                engine.ledger.reconcile(self.config.max_attempts)
            except Exception as again:
                self.log.exception("reconcile_failed", error=repr(again))
            return
        for f in batch:
            queued.discard(f.path)
        _metrics.observe_outcomes([(o.state, o.detected_at) for o in report.files],
                                  report.committed_at)
        for outcome in report.files:
            fields = dict(source=source_name(outcome.path), state=outcome.state,
                          rows=outcome.n_rows, batch_id=report.batch_id)
            if outcome.state == "done":
                self.processed_files += 1
                self.processed_rows += outcome.n_rows
                if outcome.detected_at is not None and report.committed_at is not None:
                    fields["latency_ms"] = round(
                        (report.committed_at - outcome.detected_at) * 1e3, 1)
                fields.update({f"{k}_ms": round(v, 1) for k, v in report.timings_ms.items()})
                self.log.info("file_processed", **fields)
            elif outcome.state in ("failed", "quarantined"):
                self.failed_files += 1
                self.quarantined_files += outcome.state == "quarantined"
                self.log.warning(f"file_{outcome.state}", reason=outcome.reason, **fields)
            else:  # skipped (same content already done) or gone (deleted meanwhile)
                self.log.info(f"file_{outcome.state}", reason=outcome.reason, **fields)

    def _quarantine_bad(self, bad, engines: list[Engine]) -> None:
        failures = []
        for b in bad:
            err: InputError = b.error
            failures.append(Failure(None, source_name(b.path), err.reason, type(err).__name__,
                                    True, b.size if b.size >= 0 else None,
                                    b.mtime_ns if b.mtime_ns >= 0 else None))
            self.log.warning("file_quarantined", source=source_name(b.path), reason=err.reason,
                             error=type(err).__name__)
        engines[0].ledger.record_failures(failures, self.config.max_attempts)
        self.failed_files += len(failures)
        self.quarantined_files += len(failures)
        _metrics.observe_outcomes([], None, quarantined_files=len(failures))
        _rewrite_quarantine(engines[0])

    def _status_text(self, queues: list[_Queue]) -> str:
        waiting = sum(len(q.files) for q in queues) + len(self.tracker)
        return (f"queue {waiting} files; processed {self.processed_files} files "
                f"({self.processed_rows} rows); failed {self.failed_files} "
                f"(quarantined {self.quarantined_files})")
