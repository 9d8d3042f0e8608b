"""One watched folder of the resident service: its observer kept alive (restarted when it
dies or its folder is replaced, retried while the folder is missing), rescans for files the
events missed, and the ready files waiting for a batch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from nwwatch.service.batch import Engine, quarantined_now
from nwwatch.service.config import WatchConfig
from nwwatch.service.ledgerdb import FileVersion
from nwwatch.service.names import file_identity, path_key
from nwwatch.service.readiness import ReadyFile, Tracker
from nwwatch.service.watcher import (
    SLOW_POLL_INTERVAL_S,
    FolderWatcher,
    originals_beside,
    paced_wait_seconds,
    scan,
)


@dataclass
class Watch:
    """Everything the loop keeps for one [[watch]] folder."""

    index: int
    config: WatchConfig
    engine: Engine
    watcher: FolderWatcher
    started: bool = False
    folder_id: tuple[int, int] | None = None  # device and inode the observer watches
    next_rescan: float = 0.0
    files: list[ReadyFile] = field(default_factory=list)
    since: float | None = None  # monotonic time the oldest waiting file became ready
    unread: set[Path] = field(default_factory=set)  # MRC files and such, warned about once
    #: Folders the last rescans could not list (logged once each, until listed again).
    unlisted: set[str] = field(default_factory=set)
    #: ``polling_slow`` was logged (once per service run and folder).
    slow_poll_logged: bool = False
    #: Seconds a frame (a page) took in this watch's last batch that processed any: the
    #: batch's time over the frames of its files done (not those skipped as done); None
    #: before one.
    seconds_per_frame: float | None = None

    def original_refused(self, original: Path) -> bool:
        """Whether ``original`` is quarantined at its present version under this watch's
        engine (:func:`nwwatch.service.batch.quarantined_now`): a TIFF export beside it is
        then read in its place. A version replaced since (a readable file saved over it)
        is not refused: its export is left out again."""
        return quarantined_now(self.engine, original)

    def left_out_as_export(self, path: Path) -> bool:
        """Whether ``path`` is a TIFF export of an original beside it that may be read
        (:func:`nwwatch.service.watcher.original_beside`): left out, the original read.
        The export of originals all refused (:meth:`original_refused`) is read."""
        originals = originals_beside(path, self.config)
        return bool(originals) and not all(map(self.original_refused, originals))

    def _refused_check(self):
        """:func:`scan`'s ``refused`` for one rescan: the quarantine list is read once, at
        the first original with an export beside it, and only the originals it names are
        stat'ed and checked by version (a folder of thousands of frames saved in both forms
        costs one query a rescan)."""
        listed: set | None = None

        def refused(original: Path) -> bool:
            nonlocal listed
            if listed is None:
                listed = self.engine.ledger.quarantined_paths()
            return path_key(original) in listed and self.original_refused(original)

        return refused

    def frames(self) -> int:
        return sum(max(1, getattr(f.info, "n_pages", 1)) for f in self.files)

    def start(self, log, errors: dict[Path, float]) -> None:
        """Start the observer; a failure is logged once a minute at most (``errors``: when
        each folder's last failure was logged) and tried again by :meth:`supervise`."""
        try:
            self.watcher.start()
        except OSError as exc:
            # Once per minute at most: a share that stays away must not flood the journal.
            now = time.monotonic()
            last = errors.get(self.config.path)
            if last is None or now - last >= 60:
                errors[self.config.path] = now
                log.error("watch_failed", path=str(self.config.path), error=repr(exc),
                          action="retrying every second")
            self.started = False
            return
        errors.pop(self.config.path, None)
        self.started, self.folder_id = True, file_identity(self.config.path)
        self._log_watching(log)

    def _log_watching(self, log) -> None:
        """The ``watching`` line: a warning with the reason where inotify was chosen and the
        folder is polled for want of inotify watches or instances."""
        fields = {"path": str(self.config.path), "mode": self.watcher.mode,
                  "kind": self.config.kind, "recursive": self.config.recursive}
        if self.watcher.fallback is not None:
            log.warning("watching", **fields, reason=self.watcher.fallback)
        else:
            log.info("watching", **fields)

    def supervise(self, tracker: Tracker, queued: set[Path], log,
                  errors: dict[Path, float]) -> None:
        """Start an observer that is not running, restart a dead one or one whose folder was
        replaced; each followed by a rescan. A polling observer whose polls come
        :data:`SLOW_POLL_INTERVAL_S` or more apart (a large tree) is named once."""
        self._check_poll_interval(log)
        if not self.started:
            self.start(log, errors)
            if self.started:
                self.rescan(tracker, queued, log)
            return
        now_id = file_identity(self.config.path)
        if now_id != self.folder_id:
            # Renamed away, deleted or replaced: the observer still watches the old inode
            # (inotify follows it) or nothing. Watch whatever is at the path now.
            log.warning("watch_folder_replaced" if now_id else "watch_folder_gone",
                        path=str(self.config.path), action="restarting the observer")
            self._start_again(tracker, queued, log, errors)
        elif self.watcher.exhausted is not None:
            # a sub-folder inotify could not watch (watches ran out): poll the whole folder
            log.warning("inotify_exhausted", path=str(self.config.path),
                        error=repr(self.watcher.exhausted), action="polling the folder")
            self._start_again(tracker, queued, log, errors)
        elif not self.watcher.alive():
            log.error("observer_died", path=str(self.config.path), mode=self.watcher.mode,
                      restarts=self.watcher.restarts + 1)
            self.watcher.stop(log)
            self.start(log, errors)
            self.watcher.restarts += 1
            self.rescan(tracker, queued, log)

    def _start_again(self, tracker: Tracker, queued: set[Path], log,
                     errors: dict[Path, float]) -> None:
        """A new observer for the folder, then a rescan for what the gap may have missed."""
        self.watcher.stop(log)
        self.watcher.restarts += 1
        self.start(log, errors)
        if self.started:
            self.rescan(tracker, queued, log)

    def _check_poll_interval(self, log) -> None:
        if self.slow_poll_logged:
            return
        poll_s = self.watcher.poll_seconds(typical=True)
        if poll_s is None:
            return
        interval_s = paced_wait_seconds(poll_s) + poll_s  # one poll's start to the next's
        if interval_s < SLOW_POLL_INTERVAL_S:
            return
        self.slow_poll_logged = True
        log.warning("polling_slow", path=str(self.config.path), poll_seconds=round(poll_s, 2),
                    interval_seconds=round(interval_s, 1),
                    action="each poll lists and stats every file of the folder; polls are "
                           "spaced by four times their cost, so a new file is seen up to "
                           "interval_seconds after it is written. Watch the "
                           "folder the acquisition writes to, not its whole archive "
                           "(docs/service.md)")

    def rescan(self, tracker: Tracker, queued: set[Path], log) -> int:
        """Hand the tracker the files of the folder that are neither queued, tracked nor
        finished under this engine (known from the ledger by path, size, mtime and ctime)."""
        found, unread = 0, []
        errors: list[OSError] = []
        # Per rescan, not per file (at the first input file: a folder without any needs
        # neither): a rescan of a large folder holds the processing loop (docs/service.md,
        # Rescans). A file tracked after this copy is touched again, which only makes the
        # tracker check it sooner.
        tracked = None
        try:
            for path in scan(self.config, unread, errors.append,
                             refused=self._refused_check()):
                if tracked is None:
                    tracked = tracker.paths()
                    ledger = self.engine.ledger
                    model_sha256 = self.engine.segmenter.model_sha256
                    version = self.engine.measurement_version
                if path in queued or path in tracked:
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue
                if ledger.is_finished(path_key(path), FileVersion.of(st), model_sha256,
                                      version):
                    continue
                tracker.touch(path, self.index, self.config.settle_seconds)
                found += 1
        except OSError as exc:  # share gone mid-walk: the next rescan tries again
            log.error("rescan_failed", path=str(self.config.path), error=repr(exc))
        self._warn_unread(unread, log)
        now = {str(e.filename): e for e in errors}
        for folder in sorted(set(now) - self.unlisted):
            log.warning("folder_unlisted", path=folder, error=now[folder].strerror or
                        repr(now[folder]), action="its files are processed once the service "
                        "user can list it (permissions: docs/service.md); checked at every "
                        "rescan")
        listed_again = sorted(f for f in self.unlisted - set(now) if Path(f).is_dir())
        self.unlisted = set(now)
        if listed_again and self.started and not self.watcher.polling:
            # inotify cannot watch a folder the process may not read, and watchdog skips it
            # without an error: the observer is started again to watch it now, else its
            # later files would wait for a rescan each. A rescan covers the restart's gap.
            log.info("folder_listed", paths=listed_again[:10], count=len(listed_again),
                     action="restarting the observer")
            try:
                self.watcher.restart(log)
            except OSError:  # gone meanwhile: supervise() logs and starts it again
                return found
            if self.watcher.polling:  # out of inotify as it started again: say why
                self._log_watching(log)
            found += self.rescan(tracker, queued, log)
        return found

    def _warn_unread(self, unread: list[Path], log) -> None:
        """Warn once about each new file the patterns leave out that is of a format nwwatch
        does not read, or MRC under a name of the other kind (a folder of tilt series, or of
        reconstructions in an in-situ watch, was watched without a word), with what to do
        with it."""
        from nwwatch.service.watcher import unread_hint

        new = [p for p in unread if p not in self.unread]
        self.unread = set(unread)  # the folder's as it is now: deleted files are let go
        if new:
            kind = self.config.kind
            log.warning("unread_format", path=str(self.config.path), count=len(new),
                        files=[str(p) for p in new[:10]],
                        reason="; ".join(dict.fromkeys(unread_hint(p, kind) for p in new)),
                        action="not processed")

    def take(self) -> list[ReadyFile]:
        """The next batch: waiting files up to ``batch_size`` frames (at least one file)."""
        batch = self.files[:self._next_batch_files()]
        del self.files[:len(batch)]
        self.since = time.monotonic() if self.files else None
        return batch

    def next_batch_frames(self) -> int:
        """The frames (pages) of the batch :meth:`take` would take now."""
        return sum(max(1, f.info.n_pages) for f in self.files[:self._next_batch_files()])

    def _next_batch_files(self) -> int:
        n, frames = 0, 0
        while n < len(self.files) and (
                n == 0 or frames + self.files[n].info.n_pages <= self.engine.batch_size):
            frames += max(1, self.files[n].info.n_pages)
            n += 1
        return n
