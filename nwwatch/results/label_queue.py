"""The labelling queue: the least confident frames of each acquisition, kept in RESULTS.

Layout, one folder per acquisition (:func:`nwwatch.paths.acquisition_of`: the folder that
holds the frame files, or the recording folder of Gatan's In-Situ time tree)::

    RESULTS/label-queue/<folder name>-<hash of its path>/queue.json
    RESULTS/label-queue/<folder name>-<hash of its path>/thumbs/<sha12>-<frame>.png

``queue.json`` lists at most ``capacity`` entries, least confident first: the frame's
reference (``source`` absolute path, ``frame`` page, ``source_sha256``), its ``confidence``
(:mod:`nwwatch.segment.confidence`), ``status`` and ``contact_angle_deg`` of the measurement,
``model_sha256``, the ``measurement_version`` the confidence was computed under, and the
thumbnail (8-bit PNG, longest side at most ``THUMB_PX``). Nothing is
ever written into the acquisition folder. ``nwwatch label --queue RESULTS`` opens the queued
frames first (from their references; the thumbnails are for browsing the queue).

Crash safety: thumbnails are written first, then ``queue.json`` (both through
:func:`nwwatch.atomic.atomic_write`; thumbnails without fsync), then thumbnails no entry
references are removed; a crash of the process leaves at most unreferenced thumbnails, removed
by the next update. A power cut may also lose thumbnails that ``queue.json`` lists (they are
for browsing only; ``queue.json`` itself is fsynced). A frame offered again
(processed again, e.g. by ``replay --force``) replaces its entry, so replays after a crash do not
duplicate entries; so does a new content of the same page of the same path (a stack grown
and closed page by page is a new file at each page). Confidences of another measurement
version are on another scale (2.2.3 changed what ``confidence`` is), and another model's
on another model's: entries of a model or version other than the offered frames' are
dropped at the next update, and their frames come back when the new model or version
processes them (the ledger keys on both); the queue of an acquisition not processed since
keeps them, and :func:`read_queue` lists each series apart. A file put back to
content processed before (v1 -> v2 -> v1, ``RESULTS/reverted.parquet``) is not processed
again, so nothing is offered: :func:`forget_other_contents` drops the entries of its other
contents (v2's), which name frames no longer there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from nwwatch.atomic import atomic_write, atomic_write_json
from nwwatch.paths import acquisition_of
from nwwatch.pathtext import path_of_text

log = logging.getLogger(__name__)

QUEUE_DIR = "label-queue"
QUEUE_FILE = "queue.json"
THUMBS_DIR = "thumbs"
QUEUE_FORMAT = "nwwatch-label-queue"
#: Entries kept per acquisition.
DEFAULT_CAPACITY = 16
#: Longest side of a thumbnail (px).
THUMB_PX = 256
_LOCK = threading.Lock()


@dataclass(frozen=True)
class QueueEntry:
    """One queued frame (see the module docstring); ``thumbnail`` is relative to its queue
    folder, ``folder`` is that queue folder (set when read)."""

    source: str
    frame: int
    source_sha256: str
    confidence: float
    status: str = ""
    contact_angle_deg: float | None = None
    model_sha256: str = ""
    #: "" for entries written before the field existed.
    measurement_version: str = ""
    thumbnail: str = ""
    added_at: str = ""
    folder: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return self.source_sha256, self.frame

    @property
    def series(self) -> tuple[str, str]:
        """(``model_sha256``, ``measurement_version``): the scale of its ``confidence``."""
        return self.model_sha256, self.measurement_version


@dataclass(frozen=True)
class Candidate:
    """A processed frame offered to the queue: its entry fields and its image (H, W), or a
    function that reads the image, called only when the frame enters the queue (a cluster's
    driver holds rows, not images); it returns None when the frame is no longer what was
    processed, which is then not queued."""

    entry: QueueEntry
    image: np.ndarray | Callable[[], np.ndarray | None]


#: The longest file or folder name most file systems take (Linux NAME_MAX), in bytes.
NAME_MAX_BYTES = 255


def acquisition_folder(results_dir: str | os.PathLike[str], source: str | os.PathLike[str]
                       ) -> Path:
    """The queue folder of the acquisition ``source`` belongs to
    (:func:`nwwatch.paths.acquisition_of`)."""
    parent = acquisition_of(os.path.abspath(source))
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in os.path.basename(parent))
    # a folder name is at most NAME_MAX_BYTES bytes: a long one is cut (the hash keeps it apart)
    name = name.encode()[:NAME_MAX_BYTES - 9].decode(errors="ignore")
    digest = hashlib.sha1(parent.encode()).hexdigest()[:8]
    return Path(results_dir) / QUEUE_DIR / f"{name or 'root'}-{digest}"


def thumbnail(image: np.ndarray, max_px: int = THUMB_PX) -> np.ndarray:
    """8-bit display copy of a frame (H, W), longest side <= max_px: area-averaged down to
    that size, then stretched from the frame's robust intensity range
    (:func:`nwwatch.normalize.intensity_range`, 0.5-99.5 percentiles) to 0-255. Scaling
    first makes it ~10x cheaper on a 512x512 frame than stretching every pixel."""
    from nwwatch.normalize import intensity_range, stretch_to_uint8

    img = np.asarray(image)
    value_range = intensity_range(img)
    factor = max_px / max(img.shape)
    if factor < 1:
        size = (max(1, round(img.shape[1] * factor)), max(1, round(img.shape[0] * factor)))
        if img.dtype not in (np.uint8, np.uint16, np.float32):  # what cv2.resize takes
            img = img.astype(np.float32)
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return stretch_to_uint8(img, value_range)


def _read(folder: Path) -> list[QueueEntry]:
    path = folder / QUEUE_FILE
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text())
        return [QueueEntry(**{**e, "folder": str(folder)}) for e in doc["entries"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # The queue is a convenience: a damaged one is started afresh, never a failure.
        log.warning("label queue %s unreadable (%s); starting it afresh", path, exc)
        return []


def offer(results_dir: str | os.PathLike[str], candidates: Iterable[Candidate],
          capacity: int = DEFAULT_CAPACITY) -> int:
    """Add processed frames to their acquisitions' queues, keeping the ``capacity`` least
    confident of each. Returns how many of ``candidates`` are now queued."""
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    by_folder: dict[Path, list[Candidate]] = {}
    for cand in candidates:
        by_folder.setdefault(acquisition_folder(results_dir, cand.entry.source), []).append(cand)
    kept = 0
    with _LOCK:
        for folder, cands in by_folder.items():
            kept += _update(folder, cands, capacity)
    return kept


def _update(folder: Path, cands: list[Candidate], capacity: int) -> int:
    current = {e.key: e for e in _read(folder)}
    old_keys = set(current)
    series = {c.entry.series for c in cands}
    stale = [k for k, e in current.items() if e.series not in series]
    if stale:
        # Ranked with the offered frames, their confidences would mix two scales (another
        # measurement version) or two models' doubts; a frame the offering model has not
        # processed (its file removed before a model change) would stay queued for ever.
        log.info("label queue %s: %d entries of another model or measurement version "
                 "dropped", folder, len(stale))
        for key in stale:
            del current[key]
    # A frame whose file is gone (removed, or never recorded: offered before a kill, then
    # deleted) would hold its place for ever; `nwwatch label --queue` could not open it.
    for key in [k for k, e in current.items() if _gone(e.source)]:
        del current[key]
    images = {}
    now = datetime.now(UTC).isoformat()
    for cand in cands:
        e = cand.entry
        # The page of this path now holds the offered content: an entry of the path's former
        # content (a stack grown and closed page by page, a file rewritten) names a frame
        # that is no longer there, which `nwwatch label --queue` would skip.
        for key in [k for k, old in current.items()
                    if (old.source, old.frame) == (e.source, e.frame) and k != e.key]:
            del current[key]
            images.pop(key, None)
        name = f"{THUMBS_DIR}/{e.source_sha256[:12]}-{e.frame}.png"
        current[e.key] = QueueEntry(**{**asdict(e), "thumbnail": name, "added_at": now,
                                       "folder": ""})
        images[e.key] = cand.image
    entries: list[QueueEntry] = []
    thumbs: dict[tuple[str, int], np.ndarray] = {}
    for e in sorted(current.values(), key=lambda e: (e.confidence, e.source, e.frame)):
        if len(entries) == capacity:
            break
        if e.key in images:
            image = images[e.key]() if callable(images[e.key]) else images[e.key]
            if image is None:
                continue
            thumbs[e.key] = image
        entries.append(e)
    new = [e for e in entries if e.key in thumbs]
    if not new and {e.key for e in entries} == old_keys:
        return 0  # nothing changes: none of the offered frames is among the least confident
    for e in new:
        ok, data = cv2.imencode(".png", thumbnail(thumbs[e.key]))
        if ok:
            # Not fsynced (~10 ms each): a thumbnail is for browsing the queue, and a power
            # cut may cost one that queue.json lists; a process crash cannot.
            with atomic_write(folder / e.thumbnail, durable=False) as handle:
                handle.write(data.tobytes())
    _write(folder, entries, capacity, cands[0].entry.source)
    return len(new)


def _gone(source: str) -> bool:
    """Whether the file of the entry ``source`` (its text) no longer exists: only a missing
    file, not one that cannot be looked at now (a network share's stale handle, I/O error,
    permission): its entry would be lost for good, the frame being done."""
    try:
        os.lstat(path_of_text(source))
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _write(folder: Path, entries: list[QueueEntry], capacity: int, source: str) -> None:
    """``queue.json`` of ``folder`` (``source``: a frame of its acquisition), then the
    thumbnails no entry references removed."""
    doc = {"format": QUEUE_FORMAT, "version": 1, "capacity": capacity,
           "acquisition": acquisition_of(os.path.abspath(source)),
           "entries": [{k: v for k, v in asdict(e).items() if k != "folder"} for e in entries]}
    atomic_write_json(folder / QUEUE_FILE, doc)
    wanted = {folder / e.thumbnail for e in entries}
    for path in (folder / THUMBS_DIR).glob("*.png"):
        if path not in wanted:
            path.unlink(missing_ok=True)


def forget_other_contents(results_dir: str | os.PathLike[str], source: str,
                          sha256: str) -> int:
    """Drop the queued frames of the file ``source`` (the ``source`` column's form) made of
    content other than ``sha256``, the content it holds again (put back to content processed
    before, which is not processed again: module docstring). Returns how many were dropped."""
    folder = acquisition_folder(results_dir, source)
    with _LOCK:
        entries = _read(folder)
        kept = [e for e in entries if e.source != source or e.source_sha256 == sha256]
        if len(kept) == len(entries):
            return 0
        try:
            capacity = int(json.loads((folder / QUEUE_FILE).read_text())["capacity"])
        except (OSError, ValueError, KeyError, TypeError):
            capacity = DEFAULT_CAPACITY
        _write(folder, kept, capacity, source)
    return len(entries) - len(kept)


def read_queue(results_dir: str | os.PathLike[str]) -> list[QueueEntry]:
    """Every queued frame of every acquisition under RESULTS, series by series
    (:attr:`QueueEntry.series`), each least confident first. Each acquisition's queue holds
    one series, but two acquisitions may hold two (one not processed since the service's
    model or measurement version changed), whose confidences are on two scales: ranked
    together, one series' frames would all go ahead of the other's. The series of the newest
    measurement version comes first, of one version the one queued last."""
    root = Path(results_dir) / QUEUE_DIR
    if not root.is_dir():
        return []
    entries = [e for folder in sorted(p for p in root.iterdir() if p.is_dir())
               for e in _read(folder)]
    newest: dict[tuple[str, str], tuple[tuple[int, ...], str]] = {}
    for e in entries:
        stamp = (_version_key(e.measurement_version), e.added_at)  # ISO UTC: sort as text
        newest[e.series] = max(newest.get(e.series, stamp), stamp)
    order = {s: i for i, s in enumerate(sorted(newest, key=lambda s: (newest[s], s),
                                               reverse=True))}
    return sorted(entries, key=lambda e: (order[e.series], e.confidence, e.source, e.frame))


def _version_key(version: str) -> tuple[int, ...]:
    """The version as numbers (:func:`measurement_version_tuple`); () for an entry written
    before the field existed (or a version that is not numbers): older than any."""
    # here, not at the top: the measurement's package is heavy for the paths that read queues
    from nwwatch.measure.result import measurement_version_tuple

    return measurement_version_tuple(version)
