"""Watch acquisition folders with watchdog: inotify on local disks, polling on network shares.

inotify sees nothing that another machine writes to an NFS/SMB share, so the observer type is
chosen from the file system type in ``/proc/mounts`` (or forced by ``polling``). Nothing here
writes to an acquisition folder: it only lists and stats.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import functools
import itertools
import os
import re
import stat
import statistics
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingEmitter

from nwwatch.io.dm import DM_SUFFIXES
from nwwatch.io.emd import EMD_SUFFIXES
from nwwatch.io.mdoc import is_mdoc
from nwwatch.io.ser import SER_SUFFIXES
from nwwatch.io.tiff import TIFF_SUFFIXES
from nwwatch.service.config import WatchConfig, other_kind_reading

#: File system types on which inotify misses remote writes.
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs",
    "lustre", "gpfs", "beegfs", "davfs", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph",
    "fuse.cephfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.beegfs", "fuse.davfs2",
})
#: Seconds between the snapshots of a PollingObserver (at least).
POLL_INTERVAL_S = 1.0
#: A polling observer waits this many times as long as its polls take (at least
#: POLL_INTERVAL_S, at most POLL_MAX_WAIT_S); the median of the last POLL_PACE_POLLS polls
#: counts.
POLL_PACE = 4.0
POLL_PACE_POLLS = 3
POLL_MAX_WAIT_S = 60.0
#: Seconds between a polling observer's polls from which the service logs ``polling_slow``.
SLOW_POLL_INTERVAL_S = 5.0
#: Seconds a stopping observer is waited for (watchdog joins its own threads without a limit).
OBSERVER_STOP_WAIT_S = 5.0
_STOP_FAILED_ACTION = ("going on without it (its threads are left to end with the process); "
                       "the files it would have reported are found by the rescans")


def mount_fstype(path: Path, mounts_file: str = "/proc/mounts") -> str | None:
    """File system type of the mount holding ``path`` (longest matching mount point)."""
    target = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, fstype = point, parts[2]
    except OSError:
        return None
    return fstype


def use_polling(watch: WatchConfig, mounts_file: str = "/proc/mounts") -> bool:
    """Whether ``watch`` needs a PollingObserver (``polling`` forced, or a network mount)."""
    if watch.polling != "auto":
        return watch.polling == "true"
    return (mount_fstype(watch.path, mounts_file) or "") in NETWORK_FS


def matches(name: str, watch: WatchConfig) -> bool:
    """True when a file *name* is an input of ``watch`` (patterns, minus ignore patterns).
    SerialEM's ``.mdoc`` never is, whatever the patterns: the metadata of the MRC file of its
    name, read with it (:mod:`nwwatch.io.mdoc`)."""
    if is_mdoc(name) or _matcher(tuple(watch.ignore_patterns))(name) is not None:
        return False
    return _matcher(tuple(watch.patterns))(name) is not None


@functools.lru_cache(maxsize=256)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match | None]:
    """One compiled regular expression for any of ``patterns`` (``fnmatch.fnmatchcase``
    rules): a rescan asks it of every name in the folder, a pattern at a time cost 7 calls
    of ``fnmatchcase`` a file with the default patterns."""
    if not patterns:
        return lambda name: None
    return re.compile("|".join(fnmatch.translate(pat) for pat in patterns)).match


def scan(watch: WatchConfig, unread: list[Path] | None = None,
         unlisted: Callable[[OSError], None] | None = None,
         linked: Callable[[Path], None] | None = None,
         refused: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Every input file currently in the folder (hidden folders skipped), in sorted order.

    ``unread``, when given, collects the files the patterns leave out that are of a
    microscope format nwwatch does not read (tilt series, videos:
    :func:`nwwatch.io.conversion_hint`), MRC, DigitalMicrograph, Velox EMD or TIA series
    files (:func:`unread_hint`; hidden names skipped) and have no input file of the same
    stem beside them (a video saved with its TIFF export is left out on purpose), and the
    TIFFs left out as exports of an original beside them (:func:`original_beside`) or under a
    suffix no pattern may take (:func:`_may_take`; ignore patterns left out). ``unlisted``:
    called with the error of each folder that cannot be listed (no permission: a run folder
    of another user with mode 0700), whose files are then not yielded; None: such an error is
    raised. ``linked``: called with each symbolic link to a folder met by a recursive scan
    (not followed). ``refused``: called with each original that has a TIFF export beside it
    (and with no other file); True: the original is refused (quarantined at its present
    version), so its exports are inputs, yielded, not left out, once every original of
    their stem is refused."""
    if not watch.path.is_dir():
        return

    def failed(exc: OSError) -> None:
        if unlisted is None:
            raise exc
        unlisted(exc)

    if not watch.recursive:
        try:
            entries = sorted(os.scandir(watch.path), key=lambda e: e.name)
        except OSError as exc:
            failed(exc)
            return
        yield from _folder(watch.path, [e.name for e in entries if e.is_file()], watch, unread,
                           refused)
        return
    # os.walk's default skips a folder it cannot list in silence (its files were lost)
    for root, dirs, files in os.walk(watch.path, onerror=failed):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if linked is not None:  # os.walk lists links to folders here and enters none
            for d in dirs:
                if os.path.islink(os.path.join(root, d)):
                    linked(Path(root) / d)
        yield from _folder(Path(root), sorted(files), watch, unread, refused)


#: What a file that a kind's default names take is most likely, and how nwwatch reads it.
READ_AS = {"tomogram": "a reconstruction? nwwatch reads it as a tomogram",
           "insitu": "a frame or a stack of frames? nwwatch reads it as in-situ frames"}


def unread_hint(name: str | os.PathLike[str], kind: str) -> str:
    """What to do with a file a watch of ``kind`` leaves out, judged by its suffix: for one
    the other kind's default names take (:func:`nwwatch.service.config.other_kind_reading`),
    that kind; for a microscope format nwwatch does not read,
    :func:`nwwatch.io.conversion_hint`; for another MRC, DigitalMicrograph, Velox EMD or TIA
    series file (read, but not under this watch's names), the pattern that takes it; "" for
    any other name (TIA's companion ``.emi`` among them: the series' metadata, not read). A
    TIFF beside an original of its stem (:func:`original_beside`): that it is an export;
    another TIFF: the pattern that takes it."""
    from nwwatch.io import conversion_hint
    from nwwatch.io.dm import is_dm
    from nwwatch.io.emd import is_emd
    from nwwatch.io.mrc import is_mrc
    from nwwatch.io.ser import is_ser

    suffix = Path(name).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _export_hint(Path(name)) or (
            f'a TIFF whose name this watch does not take: add its pattern (e.g. '
            f'"*{Path(name).suffix}") to the watch\'s patterns')
    other = other_kind_reading(suffix, kind)
    if other is not None:
        return f'{READ_AS[other]}: watch or replay it as kind "{other}"'
    what = ("an MRC file" if is_mrc(name) else "a DigitalMicrograph file" if is_dm(name)
            else "a Velox EMD file" if is_emd(name)
            else "a TIA series file" if is_ser(name) else "")
    if not what:
        return conversion_hint(name)
    return (f"{what} whose name this watch does not take: add its pattern (e.g. "
            f'"*{suffix}") to the watch\'s patterns, or name the file to nwwatch replay')


#: Files the acquisition software writes itself (DigitalMicrograph, Velox, TIA): a TIFF of the
#: same stem beside one of them is an export of the same frames ("Save Display As"), not a
#: second acquisition.
ORIGINAL_SUFFIXES = DM_SUFFIXES + EMD_SUFFIXES + SER_SUFFIXES


def _names_with(path: Path, suffixes: Iterable[str]) -> list[Path]:
    """``path``'s stem with each of ``suffixes`` in any case (``a.Dm4`` too, as :func:`scan`
    takes it)."""
    return [path.with_suffix("." + "".join(letters))
            for suffix in suffixes
            for letters in itertools.product(*((c.lower(), c.upper()) if c.isalpha() else (c,)
                                               for c in suffix.lstrip(".")))]


def _original_names(path: Path) -> list[Path]:
    """The names an original of the TIFF ``path`` may have: its stem with an
    :data:`ORIGINAL_SUFFIXES` suffix in any case."""
    return _names_with(path, ORIGINAL_SUFFIXES)


def originals_beside(path: str | os.PathLike[str], watch: WatchConfig) -> list[Path]:
    """Every original that a TIFF ``path`` is an export of: the files of the same stem and
    an :data:`ORIGINAL_SUFFIXES` suffix (any case) in its folder that ``watch`` takes as
    inputs; [] for any other file."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return []
    return [o for o in _existing(_original_names(path)) if matches(o.name, watch)]


def _existing(names: list[Path]) -> list[Path]:
    """The regular files among ``names`` (spellings of one stem and suffix in every case),
    each once, under the name its folder lists: on a case-insensitive mount (a Windows
    share) every spelling opens the one file, and the ledger knows it by its listed name."""
    found: dict[tuple[int, int], list[Path]] = {}
    for name in names:
        try:
            st = name.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.setdefault((st.st_dev, st.st_ino), []).append(name)
    out = []
    for spellings in found.values():
        if len(spellings) == 1:
            out.append(spellings[0])
            continue
        folder = spellings[0].parent
        wanted = {s.name for s in spellings}
        try:
            listed = [n for n in os.listdir(folder) if n in wanted]
        except OSError:
            listed = []
        out.append(folder / listed[0] if listed else spellings[0])
    return out


def original_beside(path: str | os.PathLike[str], watch: WatchConfig) -> Path | None:
    """The original that a TIFF ``path`` is an export of (the first of
    :func:`originals_beside`); None for any other file. Such a TIFF is left out (by
    :func:`scan`, and by the service once the file is ready: looked up once a file, not at
    each of its events), so a frame saved in both forms gives one row, with the original's
    metadata, unless the original is refused (quarantined: :func:`scan`'s ``refused``),
    when the export is read in its place."""
    return next(iter(originals_beside(path, watch)), None)


def exports_beside(original: str | os.PathLike[str], watch: WatchConfig) -> list[Path]:
    """The TIFF exports of ``original`` (a file of an :data:`ORIGINAL_SUFFIXES` suffix) in
    its folder that ``watch`` takes as inputs: files of its stem and a TIFF suffix, any
    case; [] for any other file."""
    original = Path(original)
    if original.suffix.lower() not in ORIGINAL_SUFFIXES:
        return []
    return [e for e in _existing(_names_with(original, TIFF_SUFFIXES))
            if matches(e.name, watch)]


def _export_hint(path: Path) -> str:
    """What to do with a TIFF left out as the export of an original beside it ("" when no
    original of its stem lies there)."""
    found = next((o for o in _original_names(path) if o.is_file()), None)
    if found is None:
        return ""
    return (f"a TIFF export of {found.name} beside it: the original is read, with its "
            "metadata (to read the TIFFs instead, give patterns that leave the original's "
            "suffix out)")


def _folder(folder: Path, names: list[str], watch: WatchConfig,
            unread: list[Path] | None,
            refused: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """The input files among ``names`` (files of ``folder``, sorted); see :func:`scan`."""
    inputs = [name for name in names if matches(name, watch)]
    originals: dict[str, list[str]] = {}  # stem: the names of its originals
    for name in inputs:
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in ORIGINAL_SUFFIXES:
            originals.setdefault(stem, []).append(name)
    # a set: a folder of thousands of frames saved in both forms is scanned every minute
    exports = {name for name in inputs if os.path.splitext(name)[0] in originals
               and os.path.splitext(name)[1].lower() in TIFF_SUFFIXES}
    if exports and refused is not None:
        # a refused original's export is read in its place (its refusal may say to export
        # the frames as TIFF); only the originals that have an export beside them are asked
        read = {stem for stem in {os.path.splitext(name)[0] for name in exports}
                if all(refused(folder / name) for name in originals[stem])}
        exports = {name for name in exports if os.path.splitext(name)[0] not in read}
    yield from (folder / name for name in inputs if name not in exports)
    if unread is not None:
        stems = {Path(name).stem for name in inputs}
        taken = set(inputs)
        # a TIFF the patterns leave out is no export (the original beside it is not read
        # either): the exports and the TIFFs of a suffix no pattern takes are named below.
        # unread_hint last: it may look at the disk, which the inputs (every frame, at every
        # rescan) must not cost
        unread += [folder / name for name in names
                   if not name.startswith(".") and name not in taken
                   and Path(name).stem not in stems
                   and os.path.splitext(name)[1].lower() not in TIFF_SUFFIXES
                   and unread_hint(folder / name, watch.kind)]
        unread += [folder / name for name in inputs if name in exports]
        # TIFFs of a suffix no pattern ends with ("*.tiff" over .tif frames, "*.TIF" over
        # .tif): a watch that would process nothing, silently. A pattern that selects among
        # names ("frame_*.tif", "frame_*") and the ignore patterns (temporary names) leave
        # theirs out on purpose; an export beside its original is named by the original.
        ignored = _matcher(tuple(watch.ignore_patterns))
        beside = {os.path.splitext(name)[0] for name in names
                  if os.path.splitext(name)[1].lower() in ORIGINAL_SUFFIXES}
        unread += [folder / name for name in names
                   if not name.startswith(".") and name not in taken
                   and os.path.splitext(name)[1].lower() in TIFF_SUFFIXES
                   and os.path.splitext(name)[0] not in beside
                   and not any(_may_take(p, os.path.splitext(name)[1])
                               for p in watch.patterns)
                   and ignored(name) is None]


def _may_take(pattern: str, suffix: str) -> bool:
    """Whether ``pattern`` may take names ending in ``suffix`` (as written, any case classes
    included: ``*.[tT][iI][fF]`` takes ``.TIF``): it ends with ``*``, its own suffix matches
    ``suffix`` (``*_HAADF.tif``, ``frame_*[0-9].tif`` and ``run.tif`` select among the
    ``.tif`` files), or its part after the last ``*`` matches the end of a name with it
    (``frame_*tif``, ``*[.]tif``)."""
    tail = pattern[pattern.rfind("*") + 1:]
    return (pattern.endswith("*") or fnmatch.fnmatchcase(suffix, os.path.splitext(pattern)[1])
            or ("*" in pattern and fnmatch.fnmatchcase("x" + suffix, "*" + tail)))


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: WatchConfig, on_change: Callable[[Path, bool], None],
                 on_delete: Callable[[Path], None]) -> None:
        self.watch, self.on_change, self.on_delete = watch, on_change, on_delete
        #: The folder the observer was given: the watched path with symbolic links resolved.
        self.observed: str = str(watch.path)

    def _ours(self, path: str | bytes) -> Path | None:
        """The event's file under the configured path (links in it kept, as in the rows),
        or None for a file the watch does not process."""
        rel = os.path.relpath(os.fsdecode(path), self.observed)
        parts = Path(rel).parts
        if any(p.startswith(".") for p in parts[:-1]):
            return None
        if not self.watch.recursive and len(parts) > 1:
            return None
        return self.watch.path / rel if matches(parts[-1], self.watch) else None

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            # A writer's "name.tmp -> name.tif": the destination is complete.
            src = self._ours(event.src_path)
            if src is not None:
                self.on_delete(src)
            dest = self._ours(event.dest_path)
            if dest is not None:
                self.on_change(dest, True)
            return
        path = self._ours(event.src_path)
        if path is None:
            return
        if isinstance(event, FileDeletedEvent):
            self.on_delete(path)
        elif event.event_type in ("created", "modified", "closed"):
            self.on_change(path, isinstance(event, FileClosedEvent))


class _PacedPollingEmitter(PollingEmitter):
    """watchdog's polling emitter, paced by what its polls cost.

    A poll lists and stats every file of the tree (whatever the patterns) and compares the
    two listings, holding the interpreter lock for most of it, in a thread of the service's
    own process: over a large tree polled every second it took a core and slowed the
    processing loop (docs/service.md, Watching and readiness). The wait before the next poll
    is therefore :func:`paced_wait_seconds` of the last polls' durations."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: Seconds the last polls took (listing, stats and comparison), newest last; the
        #: first is the listing taken when the observer starts.
        self.poll_durations: deque[float] = deque(maxlen=POLL_PACE_POLLS)
        #: Polls made since the start (the first listing not counted).
        self.polls = 0

    @property
    def poll_seconds(self) -> float:
        """The typical poll's duration: the median of :attr:`poll_durations` (0.0 before
        the first listing), so that one stalled poll on a share does not set the pace."""
        return statistics.median(self.poll_durations) if self.poll_durations else 0.0

    def on_thread_start(self) -> None:
        start = time.monotonic()
        super().on_thread_start()  # the first listing
        self.poll_durations.append(time.monotonic() - start)

    def queue_events(self, timeout: float) -> None:
        extra = paced_wait_seconds(self.poll_seconds, timeout) - timeout
        if extra > 0 and self.stopped_event.wait(extra):
            return
        start = time.monotonic()
        super().queue_events(timeout)  # waits timeout, then polls
        if not self.stopped_event.is_set():
            self.poll_durations.append(max(0.0, time.monotonic() - start - timeout))
            self.polls += 1


def paced_wait_seconds(poll_seconds: float, interval_s: float = POLL_INTERVAL_S) -> float:
    """Seconds a polling observer waits between two polls that take ``poll_seconds``:
    :data:`POLL_PACE` times as long, at least ``interval_s`` and at most
    :data:`POLL_MAX_WAIT_S` (the poller then takes at most 1 / (1 + POLL_PACE) of a core
    while polls take under POLL_MAX_WAIT_S / POLL_PACE, 15 s)."""
    return min(POLL_MAX_WAIT_S, max(interval_s, POLL_PACE * poll_seconds))


def _poll_seconds(observer) -> float:
    """The typical poll duration of a polling observer's emitters (the longest of them)."""
    return max((e.poll_seconds for e in list(observer.emitters)), default=0.0)


class PacedPollingObserver(BaseObserver):
    """watchdog's ``PollingObserver`` with :class:`_PacedPollingEmitter`."""

    def __init__(self, *, timeout: float = POLL_INTERVAL_S) -> None:
        super().__init__(_PacedPollingEmitter, timeout=timeout)


class FolderWatcher:
    """One watchdog observer for one [[watch]] folder, restartable when its thread dies.

    ``on_change(path, closed)`` and ``on_delete(path)`` are called from watchdog's threads.
    """

    def __init__(self, watch: WatchConfig, on_change, on_delete,
                 mounts_file: str = "/proc/mounts") -> None:
        self.watch = watch
        self.polling = use_polling(watch, mounts_file)
        self._handler = _Handler(watch, on_change, on_delete)
        self._observer = None
        self.restarts = 0
        #: Why the folder is polled although inotify was chosen: inotify's watches or
        #: instances ran out (at the start, or for a sub-folder since: see :meth:`exhausted`).
        self.fallback: str | None = None
        self._exhausted: OSError | None = None

    @property
    def mode(self) -> str:
        return "polling" if self.polling else "inotify"

    @property
    def exhausted(self) -> OSError | None:
        """The error of a sub-folder inotify could not watch for want of watches or instances
        (watchdog leaves such a folder out without a word: its files would wait for the next
        rescan); None while inotify watches everything, or the folder is polled."""
        return None if self.polling else self._exhausted

    def start(self) -> None:
        """Start observing. Raises OSError when the folder is missing; out of inotify watches
        or instances (errno 28/24), the folder is polled instead (:attr:`fallback` says why)."""
        if self._exhausted is not None and not self.polling:
            self._fall_back(self._exhausted)
        # A watched path that is a symbolic link (/data/acq -> /mnt/share/acq): watchdog's
        # inotify watch does not follow it (IN_DONT_FOLLOW) and would report nothing, so the
        # folder it leads to is observed and events are mapped back to the configured path.
        self._handler.observed = os.path.realpath(self.watch.path)
        observer = None
        try:
            # watchdog's inotify observer takes an inotify instance as it is made
            observer = (PacedPollingObserver(timeout=POLL_INTERVAL_S) if self.polling
                        else self._inotify_observer())
            observer.daemon = True
            observer.schedule(self._handler, self._handler.observed,
                              recursive=self.watch.recursive)
            observer.start()
        except OSError as exc:
            if not self.polling and exc.errno in (errno.EMFILE, errno.ENOSPC):
                self._fall_back(exc)  # out of inotify watches/instances: polling still works
                if observer is not None:
                    with contextlib.suppress(Exception):  # its inotify instance, its thread
                        observer.stop()
                return self.start()
            if observer is not None:
                observer.stop()
            raise
        self._observer = observer

    def _fall_back(self, exc: OSError) -> None:
        self.polling = True
        self.fallback = (f"{exc.strerror or exc} (errno {exc.errno}): polled instead; raise "
                         f"fs.inotify.max_user_watches / max_user_instances (sysctl) to "
                         f"watch it with inotify")

    def _inotify_observer(self) -> BaseObserver:
        """watchdog's inotify observer, its failures to add a watch for want of watches or
        instances recorded (:attr:`exhausted`): watchdog skips such a sub-folder silently."""
        observer = Observer()
        inotify = getattr(observer, "_inotify_fd", None)  # watchdog 7's; else undetected
        add = getattr(inotify, "add_callback", None)
        if add is not None:
            def add_callback(*args: object, **kwargs: object) -> object:
                try:
                    return add(*args, **kwargs)
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENOSPC):
                        self._exhausted = exc
                    raise

            inotify.add_callback = add_callback
        return observer

    def alive(self) -> bool:
        """False when the observer or one of its emitter threads has died (e.g. a
        PollingObserver after an OSError on a share that went away)."""
        obs = self._observer
        if obs is None or not obs.is_alive():
            return False
        return all(emitter.is_alive() for emitter in list(obs.emitters))

    def poll_seconds(self, typical: bool = False) -> float | None:
        """The polling observer's typical poll duration (:attr:`_PacedPollingEmitter.poll_seconds`),
        0.0 before its first listing; with ``typical``, None until its last
        :data:`POLL_PACE_POLLS` durations are all polls made while the service ran (the
        listing at the start, on an idle machine, is no typical poll). None for an inotify
        observer or none running."""
        obs = self._observer
        if obs is None or not self.polling:
            return None
        if typical and not all(e.polls >= POLL_PACE_POLLS for e in list(obs.emitters)):
            return None
        return _poll_seconds(obs)

    def stop(self, log=None) -> None:
        """Stop the observer, waiting :data:`OBSERVER_STOP_WAIT_S` at most.

        watchdog's ``stop`` joins its emitter and inotify threads without a time limit (a
        polling emitter finishes the poll in flight) and may raise from its own
        bookkeeping; either would end the service's stop in the ``stop_timeout`` exit
        (status 1) or a traceback, for a thread whose only work is to report file events.
        It runs in a thread of its own; with ``log`` (a structlog logger), an observer that
        raises or does not stop in time is logged and left behind: ``observer_stop_failed``
        (a warning), or ``observer_stop_slow`` (info) for a polling observer whose polls take
        half the wait or more: its poll in flight cannot be cut short."""
        obs, self._observer = self._observer, None
        if obs is None:
            return
        failed: list[str] = []

        def stop_observer() -> None:
            try:  # _observer is set once started: join() cannot meet an unstarted thread
                obs.stop()
                obs.join()  # bounded by the wait below, not here: it tells stopped from not
            except Exception:  # noqa: BLE001 - watchdog's teardown must not end the service
                failed.append(traceback.format_exc())

        stopper = threading.Thread(target=stop_observer, name="nwwatch-observer-stop",
                                   daemon=True)
        stopper.start()
        stopper.join(OBSERVER_STOP_WAIT_S)
        if log is None:
            return
        where = {"path": str(self.watch.path), "mode": self.mode}
        if stopper.is_alive() and self.polling and 2 * _poll_seconds(obs) >= OBSERVER_STOP_WAIT_S:
            # a poll in flight explains the wait; one on a share that hangs does not
            log.info("observer_stop_slow", **where,
                     error=f"a poll in flight did not end in {OBSERVER_STOP_WAIT_S:g} s "
                           f"(polls take about {_poll_seconds(obs):.1f} s)",
                     action=_STOP_FAILED_ACTION)
        elif stopper.is_alive():
            log.warning("observer_stop_failed", **where,
                        error=f"watchdog's observer did not stop in {OBSERVER_STOP_WAIT_S:g} s",
                        action=_STOP_FAILED_ACTION)
        elif failed:
            log.warning("observer_stop_failed", **where,
                        error=failed[0].strip().splitlines()[-1], traceback=failed[0],
                        action=_STOP_FAILED_ACTION)

    def restart(self, log=None) -> None:
        self.stop(log)
        self.restarts += 1
        self.start()


def stop_watchers(watchers: Iterable[FolderWatcher], log) -> None:
    """Stop every watcher at once, :data:`OBSERVER_STOP_WAIT_S` at most in all (one after
    the other, several folders' observers that do not stop would add up their waits)."""
    threads = [threading.Thread(target=w.stop, args=(log,), name="nwwatch-watcher-stop",
                                daemon=True) for w in watchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # each ends OBSERVER_STOP_WAIT_S after its start at most
