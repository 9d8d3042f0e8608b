"""Is a file complete? Track candidate files until they can be processed.

A file becomes *ready* in two steps:

1. A hint that writing has finished: an inotify close-after-write (watchdog
   ``FileClosedEvent``) or a rename into place (``FileMovedEvent``) with the size and mtime
   unchanged since, or size and mtime unchanged for ``settle_seconds`` as observed by this
   process, or (files found by a scan) an mtime already ``settle_seconds`` old.
2. A structural check of the TIFF (:func:`nwwatch.io.inspect_tiff`, headers only).

A file that fails the structural check is only a *bad* file once its size and mtime have been
observed unchanged for ``settle_seconds``; before that it may still be being written (a slow
writer that closes between chunks looks truncated), so it stays a candidate — it is never
failed for being incomplete.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nwwatch.io import InputError, UnreadableFileError
from nwwatch.paths import acquisition_of
from nwwatch.service.names import source_name

#: How often an unsettled candidate is looked at again (seconds).
RECHECK_S = 0.25


def acquisition_key(path: Path) -> str:
    """The acquisition of input file ``path`` as the dashboard names it: the
    :func:`~nwwatch.paths.acquisition_of` of its rows' ``source``."""
    return acquisition_of(source_name(path))


class QueuedFiles(set):
    """The paths of the files queued for a batch or in the batch being processed, counted per
    acquisition as they come and go (:meth:`by_acquisition`): the dashboard tells an
    acquisition whose files wait behind a backlog from one whose microscope stopped, without
    going through every queued path."""

    def __init__(self) -> None:
        super().__init__()
        self._per_acquisition: Counter[str] = Counter()

    def add(self, path: Path) -> None:
        if path not in self:
            super().add(path)
            self._per_acquisition[acquisition_key(path)] += 1

    def discard(self, path: Path) -> None:
        if path in self:
            super().discard(path)
            _uncount(self._per_acquisition, acquisition_key(path))

    def by_acquisition(self) -> Counter[str]:
        """Files queued or in flight, per acquisition folder (a copy)."""
        return Counter(self._per_acquisition)


def _uncount(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


@dataclass
class _Candidate:
    path: Path
    watch: int
    settle_s: float
    acquisition: str  # acquisition_key(path)
    size: int = -1
    mtime_ns: int = -1
    stable_since: float = 0.0  # monotonic time the current (size, mtime) was first seen
    closed_stat: tuple[int, int] | None = None  # (size, mtime) at the last close/rename event
    next_check: float = 0.0
    hinted_at: float = field(default_factory=time.time)  # wall time of the last event


@dataclass(frozen=True)
class ReadyFile:
    """A complete, structurally valid input file.

    ``info``: the :class:`nwwatch.io.TiffInfo`; ``detected_at``: wall time (epoch seconds)
    of the event or scan that last saw the file change, for latency figures.
    """

    path: Path
    watch: int
    size: int
    mtime_ns: int
    info: object
    detected_at: float


@dataclass(frozen=True)
class BadFile:
    """A file that stayed unchanged for the settle time and still fails the check."""

    path: Path
    watch: int
    size: int
    mtime_ns: int
    error: InputError


class Tracker:
    """Candidate files of all watches. ``touch``/``forget`` are thread-safe (watchdog threads);
    ``poll`` runs in the processing loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._candidates: dict[Path, _Candidate] = {}
        self._per_acquisition: Counter[str] = Counter()
        # Files :meth:`poll` returned that the loop has not yet queued and published
        # (:meth:`handed_over`), per acquisition: counted by :meth:`waiting_in` meanwhile.
        self._handed_out: Counter[str] = Counter()

    def __len__(self) -> int:
        with self._lock:
            return len(self._candidates)

    def by_acquisition(self) -> Counter[str]:
        """Candidates per acquisition folder (:func:`acquisition_key`; a copy)."""
        with self._lock:
            return Counter(self._per_acquisition)

    def waiting_in(self, acquisition: str) -> int:
        """Files of the acquisition folder ``acquisition`` seen and not yet queued: its
        candidates, and the files the last :meth:`poll` returned until :meth:`handed_over`.
        Thread-safe and cheap (the dashboard reads it live, also while a batch runs)."""
        with self._lock:
            return (self._per_acquisition.get(acquisition, 0)
                    + self._handed_out.get(acquisition, 0))

    def waiting(self) -> int:
        """Files seen and not yet queued, all folders (as :meth:`waiting_in` counts them)."""
        with self._lock:
            return len(self._candidates) + self._handed_out.total()

    def handed_over(self) -> None:
        """The files :meth:`poll` returned are queued, quarantined or left out, and the
        queue's counts published: :meth:`waiting_in` stops counting them (a file between
        the two would otherwise be counted nowhere)."""
        with self._lock:
            self._handed_out.clear()

    def _remove(self, cand: _Candidate) -> None:
        """Drop ``cand`` (the lock held)."""
        del self._candidates[cand.path]
        _uncount(self._per_acquisition, cand.acquisition)

    def paths(self) -> set[Path]:
        """The paths tracked now (a copy: watchdog's threads add to the tracker meanwhile)."""
        with self._lock:
            return set(self._candidates)

    def touch(self, path: Path, watch: int, settle_s: float, closed: bool = False) -> None:
        """Note activity on ``path``; ``closed``: the writer closed or renamed it into place."""
        path = Path(path)
        st = None
        if closed:  # outside the lock: the dashboard reads the counts under it, and a stat
            try:    # of a slow share would hold its page and /metrics
                st = os.stat(path)
            except OSError:
                pass
        with self._lock:
            cand = self._candidates.get(path)
            if cand is None:
                cand = self._candidates[path] = _Candidate(path, watch, settle_s,
                                                           acquisition_key(path))
                self._per_acquisition[cand.acquisition] += 1
            cand.next_check = 0.0
            cand.hinted_at = time.time()
            if st is not None:
                cand.closed_stat = (st.st_size, st.st_mtime_ns)

    def forget(self, path: Path) -> None:
        with self._lock:
            cand = self._candidates.get(Path(path))
            if cand is not None:
                self._remove(cand)

    def poll(self, inspect, now: float | None = None, budget_s: float | None = None
             ) -> tuple[list[ReadyFile], list[BadFile]]:
        """Check the candidates due for a look; remove and return the ready and the bad ones.

        ``inspect(path) -> TiffInfo`` raises :class:`InputError` for a bad file. ``budget_s``:
        stop looking once this much time (monotonic seconds) has passed, the candidates not
        looked at staying due for the next call (:meth:`due_left` says whether any do); a
        backlog of tens of thousands of files takes tens of seconds to look at, which in one
        call would hold the service's loop (its watchdog pings, its stop) that long. The files
        returned stay counted by :meth:`waiting_in` until :meth:`handed_over`.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            due = [c for c in self._candidates.values() if c.next_check <= now]
        ready, bad = [], []
        started = time.monotonic()
        for i, cand in enumerate(due):
            if budget_s is not None and i and time.monotonic() - started >= budget_s:
                break
            outcome = self._check(cand, inspect, now)
            if outcome is not None:
                with self._lock:
                    if self._candidates.get(cand.path) is cand:
                        self._remove(cand)
                    self._handed_out[cand.acquisition] += 1
                (ready if isinstance(outcome, ReadyFile) else bad).append(outcome)
        return ready, bad

    def due_left(self, now: float) -> bool:
        """Whether a candidate is due for a look at ``now`` (one a budgeted :meth:`poll` left)."""
        with self._lock:
            return any(c.next_check <= now for c in self._candidates.values())

    def _check(self, cand: _Candidate, inspect, now: float):
        try:
            st = os.stat(cand.path)
        except FileNotFoundError:
            self.forget(cand.path)  # deleted or renamed away before it was ready
            return None
        except OSError as exc:
            # permissions, a symbolic link loop (ELOOP), a name too long: no later look at
            # the same name can do better, and an uncaught error would end the service
            return BadFile(cand.path, cand.watch, -1, -1,
                           UnreadableFileError(cand.path, f"cannot stat: {exc.strerror}"))
        stat = (st.st_size, st.st_mtime_ns)
        if stat != (cand.size, cand.mtime_ns):
            cand.size, cand.mtime_ns = stat
            cand.stable_since = now
        observed_stable = now - cand.stable_since >= cand.settle_s
        old_mtime = time.time() - st.st_mtime_ns / 1e9 >= cand.settle_s
        hint = observed_stable or cand.closed_stat == stat or old_mtime
        if not hint or st.st_size == 0 and not observed_stable:
            cand.next_check = now + min(RECHECK_S, max(cand.settle_s, 0.01))
            return None
        try:
            info = inspect(cand.path)
        except InputError as exc:
            if observed_stable:
                return BadFile(cand.path, cand.watch, st.st_size, st.st_mtime_ns, exc)
            # Possibly still being written: look again once it has been quiet long enough.
            cand.next_check = cand.stable_since + cand.settle_s
            return None
        except FileNotFoundError:
            self.forget(cand.path)
            return None
        except OSError as exc:  # opened a moment ago: e.g. permissions changed meanwhile
            if observed_stable:
                return BadFile(cand.path, cand.watch, st.st_size, st.st_mtime_ns,
                               UnreadableFileError(cand.path, f"cannot open: {exc.strerror}"))
            cand.next_check = cand.stable_since + cand.settle_s
            return None
        return ReadyFile(cand.path, cand.watch, st.st_size, st.st_mtime_ns, info,
                         detected_at=cand.hinted_at)
