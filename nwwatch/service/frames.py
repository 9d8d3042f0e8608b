"""In-situ frames: read -> :func:`normalize_image` -> :class:`Segmenter` (frames of all files
of a batch together, ``batch_size`` at a time) -> :func:`measure_contact_angle` -> one row per
page, held by :func:`nwwatch.service.pipeline.process` and written with other batches of the
acquisition to ``RESULTS/frames/acquisition=<key>/`` (:mod:`nwwatch.service.flush`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import cv2
import numpy as np

from nwwatch.classes import DROPLET
from nwwatch.io import (
    FrameReader,
    InputError,
    inspect_tiff,
    read_frame_chunks,
    read_frames,
)
from nwwatch.measure import (
    MEASUREMENT_FIELDS,
    MEASUREMENT_VERSION,
    draw_overlay,
    measure_contact_angle,
)
from nwwatch.normalize import normalize_image
from nwwatch.results import label_queue
from nwwatch.results.pictures import picture_stem, write_frame_pictures
from nwwatch.results.schema import frame_schema
from nwwatch.segment.confidence import frame_confidence
from nwwatch.service.batch import (
    BatchReport,
    Engine,
    Item,
    fail_item,
    provenance,
)
from nwwatch.service.jobs import Job
from nwwatch.service.ledger import Failure
from nwwatch.service.names import source_name
from nwwatch.service.stackmemory import check_whole_read, chunk_pages
from nwwatch.service.streammemory import call_streams


def group_frames(items: list[Item], batch_size: int, streams: int = 1) -> int:
    """The most frames a group of :func:`frame_groups` holds (a file with more pages is a
    group of its own): ``batch_size``, or fewer with several ``streams`` when the items hold
    fewer than ``streams * batch_size`` frames, so that every stream gets a share."""
    total = sum(max(1, it.pages) for it in items)
    return max(1, min(batch_size, math.ceil(total / max(1, streams))))


def frame_groups(items: list[Item], batch_size: int, streams: int = 1) -> list[list[Item]]:
    """``items`` in order, cut into groups of whole files of at most
    :func:`group_frames` frames each (a file with more pages is a group of its own; page
    counts from the structural check)."""
    size = group_frames(items, batch_size, streams)
    groups: list[list[Item]] = [[]]
    frames_in_group = 0
    for it in items:
        pages = max(1, it.pages)
        if groups[-1] and frames_in_group + pages > size:
            groups.append([])
            frames_in_group = 0
        groups[-1].append(it)
        frames_in_group += pages
    return groups


def concurrent_groups(items: list[Item], groups: list[list[Item]], batch_size: int,
                      streams: int) -> list[bool]:
    """Per group of :func:`frame_groups`: processed by one of several concurrent streams
    (True), or alone on the one-stream path (False). Alone: every group with one stream;
    a stack (one file of more pages than :func:`group_frames`), which fills network calls
    by itself and gains from the one-stream path's overlap of its stages and from all the
    session's threads; and the only group left to share the streams."""
    if streams <= 1:
        return [False] * len(groups)
    size = group_frames(items, batch_size, streams)
    shared = [not (len(g) == 1 and max(1, g[0].pages) > size) for g in groups]
    return shared if sum(shared) > 1 else [False] * len(groups)


class _StackReader:
    """The chunks of pages of one stack (:func:`nwwatch.io.read_frame_chunks`), taken one per
    group of :func:`stack_groups` in group order (by the one worker that reads them)."""

    def __init__(self, it: Item, pages: int) -> None:
        self.chunks = read_frame_chunks(
            it.path, pages, whole=lambda info: check_whole_read(info, not_by_page=True))
        #: the stack, read again for the queue images of candidates not held
        self.pages = PageSource(it.path, it.size, it.mtime_ns)
        #: (queue order, group, index in its candidates) of the candidates holding an image.
        self.held: list[tuple[tuple, _Group, int]] = []

    def offer(self, group: _Group, it: Item, candidate: label_queue.Candidate) -> None:
        """Add ``candidate`` to ``group``'s label-queue candidates, holding its image only
        while it is among the queue's capacity of least confident frames of the stack so far
        (no other can enter the queue): the others get a function that would read their
        page again, so the stack's frames are not all held until the stack is done."""
        image = candidate.image
        if isinstance(image, np.ndarray) and image.base is not None \
                and image.base.nbytes > image.nbytes:
            # a frame of a chunk read as one array (MRC, DM, EMD, TIA) would keep the whole
            # chunk alive while it is held: up to the queue's capacity of chunks
            candidate = replace(candidate, image=image.copy())
        group.candidates.append((it, candidate))
        e = candidate.entry
        self.held.append(((e.confidence, e.source, e.frame), group, len(group.candidates) - 1))
        if len(self.held) > label_queue.DEFAULT_CAPACITY:
            self.held.sort(key=lambda held: held[0])
            _, worst, index = self.held.pop()
            owner, dropped = worst.candidates[index]
            worst.candidates[index] = (owner, replace(
                dropped, image=self.pages.page(dropped.entry.frame)))

    def next_chunk(self) -> list:
        """The next chunk's frames; [] when every page has been read."""
        return next(self.chunks, [])

    def close(self) -> None:
        self.chunks.close()  # the file closed, also when the stack is left part read


@dataclass
class _Group:
    """One group's files and what processing them left: failures and label-queue candidates
    in the order they arose, and the time spent per stage (ms). Kept per group and merged in
    group order, so the outcome does not depend on which stream finished first. ``stack``:
    the group is one chunk of pages of its only file, read from there."""

    items: list[Item]
    stack: _StackReader | None = None
    #: the last chunk of its stack: after it the stack must have no page left
    last: bool = False
    failures: list[Failure] = field(default_factory=list)
    candidates: list[tuple[Item, label_queue.Candidate]] = field(default_factory=list)
    spent: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("read", "segment", "measure"), 0.0))


def stack_groups(group: list[Item], batch_size: int) -> list[_Group]:
    """``group`` (of :func:`frame_groups`) as one :class:`_Group`, or, for a stack of more
    pages than :func:`nwwatch.service.stackmemory.chunk_pages` (of any format), as one group
    per chunk of its pages (:func:`nwwatch.io.read_frame_chunks`), all reading from
    one :class:`_StackReader`: rows, their order and the network's batches are those of the
    whole stack, and only a few chunks are in memory at a time."""
    info = getattr(group[0].entry, "info", None) if len(group) == 1 else None
    if info is None:
        return [_Group(group)]
    pages = chunk_pages(info, batch_size)
    if info.n_pages <= pages:
        return [_Group(group)]
    reader = _StackReader(group[0], pages)
    count = math.ceil(info.n_pages / pages)
    return [_Group(group, reader, last=k == count - 1) for k in range(count)]


def frame_rows(items: list[Item], engine: Engine, batch_id: str, failures: list[Failure],
               report: BatchReport) -> None:
    """Read, segment and measure the frames of ``items``, appending one row per frame to
    each item's ``rows`` (the frame stage of ``process``, without its ledger steps: cluster
    tasks run it through :data:`FRAME_JOB`, with ``engine.ledger`` None).

    The files are cut into groups of about ``batch_size`` frames (:func:`frame_groups`);
    frames of equal shape within a group go through the network together. With
    ``engine.streams`` = 1, three stages overlap: while ONNX Runtime (which releases the GIL)
    segments one group, a worker thread reads and normalises the next group and measures the
    previous one, with ``engine.segmenter`` (all its intra-op threads). With N > 1 streams
    (``engine.streams``, for ``"auto"`` bounded by memory for the call's frame size:
    :func:`nwwatch.service.streammemory.call_streams`), N groups are processed at once, each
    read -> segment -> measure in its own thread with ``engine.stream_segmenter`` (on the
    CPU one intra-op thread: frames are independent, and the intra-op pool of a session is
    shared by its concurrent calls). Groups that run alone (:func:`concurrent_groups`:
    stacks, or the only group of a call) take the one-stream path with ``engine.segmenter``
    after the concurrent ones: nothing runs beside them, and that path overlaps their stages
    and uses every thread. Rows, their order,
    failures, label-queue candidates and pictures are the same whatever the number of
    streams; ``report.timings_ms`` sums the stages' times over the streams.

    OpenCV is set to one thread for the process: these threads already fill the cores, and
    OpenCV's own pool on top only contends with them (the same results; on two busy cores a
    droplet's connected components took three times as long with two OpenCV threads as with
    one).
    """
    cv2.setNumThreads(1)
    # "auto" runs fewer streams when this call's frames would need more memory than it has.
    streams = call_streams(engine, [getattr(it.entry, "info", None) for it in items])
    groups = [g for files in frame_groups(items, engine.batch_size, streams)
              for g in stack_groups(files, engine.batch_size)]
    processed_at = datetime.now(UTC)
    beat_lock = threading.Lock()

    def beat() -> None:
        with beat_lock:  # the daemon's watchdog ping keeps its own clock
            engine.beat()

    def read_group(group: _Group) -> tuple[list[tuple[Item, object, np.ndarray]],
                                           dict[tuple, np.ndarray]]:
        """The group's frames read and normalised: queue entries (item, frame, normalised
        frame) in file order, and per frame shape one (n, *shape) float32 array holding
        those frames in queue order (the network's batches are slices of it, not copies)."""
        t_group = time.perf_counter()
        read = []
        for it in group.items:
            t = time.perf_counter()
            if group.stack is not None and it.failed:  # an earlier chunk failed or changed
                group.stack.close()
                continue
            try:
                if group.stack is not None:
                    it.frames = group.stack.next_chunk()
                    if group.last and group.stack.next_chunk():
                        # more pages than its structural check counted: a version grown
                        # since, whose pages beyond would get no row under this content's
                        # key: released, processed again as the new version
                        it.failed = it.gone = it.changed = True
                        it.frames = []
                        group.stack.close()
                        continue
                else:
                    info = getattr(it.entry, "info", None)
                    check_whole_read(info if info is not None else inspect_tiff(it.path))
                    it.frames = read_frames(it.path)
            except FileNotFoundError:
                it.failed, it.gone = True, True  # vanished: released, no attempt counted
                continue
            except Exception as exc:
                if not it.changed_since_hashed():  # else released: a new version now
                    fail_item(it, exc, group.failures, engine)
                continue
            if it.changed_since_hashed():  # these pixels are not the content hashed
                it.frames = []
                continue
            it.read_ms = (time.perf_counter() - t) * 1e3
            read.append(it)
        counts = Counter(f.image.shape for it in read for f in it.frames)
        arrays = {shape: np.empty((n, *shape), np.float32) for shape, n in counts.items()}
        used = dict.fromkeys(counts, 0)
        queue = []
        for it in read:
            t = time.perf_counter()
            before = dict(used)
            try:
                normalised = []
                for f in it.frames:
                    slot = arrays[f.image.shape][used[f.image.shape]]
                    normalised.append(normalize_image(f.image, out=slot))
                    used[f.image.shape] += 1
            except Exception as exc:
                used = before  # its slots go to the next file
                fail_item(it, exc, group.failures, engine)
                continue
            it.read_ms = (it.read_ms + (time.perf_counter() - t) * 1e3) / max(1, len(it.frames))
            queue.extend((it, f, x) for f, x in zip(it.frames, normalised, strict=True))
        group.spent["read"] += (time.perf_counter() - t_group) * 1e3
        return queue, arrays

    def network_batches(queue, arrays):
        """(chunk of queue indices, its slice of the normalised frames) per network call."""
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, (_, _, x) in enumerate(queue):
            by_shape.setdefault(x.shape, []).append(i)
        for shape, indices in by_shape.items():
            for start in range(0, len(indices), engine.batch_size):
                chunk = indices[start:start + engine.batch_size]
                yield chunk, arrays[shape][start:start + len(chunk)]

    def segment(segmenter, group: _Group, images: np.ndarray, n: int):
        beat()
        t = time.perf_counter()
        out = segmenter.segment(images)
        elapsed_ms = (time.perf_counter() - t) * 1e3
        group.spent["segment"] += elapsed_ms
        return out, elapsed_ms / n

    def measure_chunk(group: _Group, queue, chunk: list[int], out, per_frame_ms: float) -> None:
        t_chunk = time.perf_counter()
        for j, i in enumerate(chunk):
            it, frame, _ = queue[i]
            if it.failed:
                continue
            t = time.perf_counter()
            try:
                # The raw frame, not the normalised one (which clips the darkest pixels):
                # the facet line is placed on its intensity step where that is clear.
                result = measure_contact_angle(out.labels[j], out.probabilities[j, DROPLET],
                                               frame.pixel_size_nm, image=frame.image)
                t_confidence = time.perf_counter()
                row = result.as_row()
                row["confidence"] = frame_confidence(out.probabilities[j], out.labels[j],
                                                     result.angle_valid)
                t_end = time.perf_counter()
            except Exception as exc:
                fail_item(it, exc, group.failures, engine)
                continue
            row.update(
                source=source_name(it.path),
                frame=int(frame.index),
                acquired_at=frame.acquired_at,
                acquired_at_source=frame.acquired_at_source,
                processed_at=processed_at,
                read_ms=it.read_ms,
                segment_ms=per_frame_ms,
                measure_ms=(t_confidence - t) * 1e3,
                confidence_ms=(t_end - t_confidence) * 1e3,
                **provenance(engine, it, batch_id),
            )
            if engine.overlays.wanted(row["status"]):  # QA pictures ([output] overlays)
                row["overlay_path"] = write_pictures(engine, it, frame, out.labels[j], result)
            it.rows.append(row)
            if engine.label_queue:
                candidate = label_queue.Candidate(label_queue.QueueEntry(
                    row["source"], row["frame"], it.key.sha256, row["confidence"],
                    row["status"], row["contact_angle_deg"], it.key.model_sha256,
                    it.key.measurement_version), frame.image)
                if group.stack is None:
                    group.candidates.append((it, candidate))
                else:  # a stack read in chunks: not every frame's image held to the end
                    group.stack.offer(group, it, candidate)
        group.spent["measure"] += (time.perf_counter() - t_chunk) * 1e3

    def one_stream(alone: list[_Group]) -> None:
        """One worker, first in first out: read(g+1) is queued before measure(g), so the
        next group is ready when the network is free again; the session of all threads."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nwwatch-worker") as pool:
            next_read = pool.submit(read_group, alone[0])
            measured = []
            for g, group in enumerate(alone):
                queue, arrays = next_read.result()
                if g + 1 < len(alone):
                    next_read = pool.submit(read_group, alone[g + 1])
                for chunk, images in network_batches(queue, arrays):
                    out, per_frame_ms = segment(engine.segmenter, group, images, len(chunk))
                    measured.append(pool.submit(measure_chunk, group, queue, chunk, out,
                                                per_frame_ms))
            for future in measured:
                future.result()

    def several_streams(shared: list[_Group]) -> None:
        """At most ``streams`` groups at a time, each in its own thread, on the session of
        one intra-op thread."""
        segmenter = engine.stream_segmenter or engine.segmenter
        # Set by the first group that fails: the whole batch is then released and retried
        # file by file, so groups that have not started yet are skipped, whichever group is
        # still running (the main thread waits for the groups in submission order).
        failed = threading.Event()

        def run_group(group: _Group) -> None:
            if failed.is_set():
                return
            try:
                queue, arrays = read_group(group)
                for chunk, images in network_batches(queue, arrays):
                    out, per_frame_ms = segment(segmenter, group, images, len(chunk))
                    measure_chunk(group, queue, chunk, out, per_frame_ms)
            except BaseException:
                failed.set()
                raise

        # Groups start in order (first in first out); each item belongs to one group, so
        # its rows are appended by one thread, in page order.
        with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="nwwatch-stream") \
                as pool:
            futures = [pool.submit(run_group, group) for group in shared]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                failed.set()  # also on KeyboardInterrupt in the main thread
                for future in futures:
                    future.cancel()
                raise

    # The concurrent groups first, then those that run alone (stacks): each on its own,
    # so neither takes the cores from the other. Items are not shared between groups, and
    # what groups leave is merged in group order below, so the order of the two does not
    # change rows, failures or the queue.
    flags = concurrent_groups(items, [g.items for g in groups], engine.batch_size, streams)
    # A stack's chunks are read in group order from one reader (a generator): one worker only.
    flags = [flag and g.stack is None for g, flag in zip(groups, flags, strict=True)]
    shared = [g for g, flag in zip(groups, flags, strict=True) if flag]
    alone = [g for g, flag in zip(groups, flags, strict=True) if not flag]
    try:
        if shared:
            several_streams(shared)
        if alone:
            one_stream(alone)
    finally:
        for group in groups:
            if group.stack is not None:
                group.stack.close()
    spent = dict.fromkeys(("read", "segment", "measure"), 0.0)
    queue_candidates = []
    for group in groups:  # in group order: as one stream would have left them
        failures.extend(group.failures)
        queue_candidates.extend(group.candidates)
        for stage, ms in group.spent.items():
            spent[stage] += ms
    offer_to_label_queue(engine, [c for it, c in queue_candidates if not it.failed],
                         {id(g.stack): g.stack.pages for g in groups if g.stack}.values())
    report.timings_ms.update(spent)


def offer_to_label_queue(engine: Engine, candidates: list[label_queue.Candidate],
                         sources: Iterable[PageSource] = ()) -> None:
    """Offer processed frames to ``engine``'s labelling queue; the queue is a by-product, so
    a failure to write it is logged (``label_queue_failed``) and never fails the frames.
    ``sources``: the files the candidates' images are read from, closed afterwards."""
    try:
        if candidates:
            label_queue.offer(engine.results_dir, candidates)
    except Exception as exc:
        engine.log.error("label_queue_failed", error=repr(exc), exc_info=exc)
    finally:
        for source in sources:
            source.close()


class PageSource:
    """The file frames were processed from, read again for their labelling-queue images: one
    :class:`nwwatch.io.FrameReader` for all its pages (a long stack's metadata read once, not
    once a page), opened at the first page asked, until :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str], size: int | None,
                 mtime_ns: int | None) -> None:
        self.path, self.size, self.mtime_ns = path, size, mtime_ns
        self._reader: FrameReader | None = None

    def page(self, index: int) -> Callable[[], np.ndarray | None]:
        """A function that reads frame ``index`` of the file again, that page alone (its
        image, or None when the file is no longer the version processed, of ``size`` bytes
        modified at ``mtime_ns``, or cannot be read)."""
        def read() -> np.ndarray | None:
            try:
                st = os.stat(self.path)
                if (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns):
                    return None
                if self._reader is None or self._reader.changed():
                    self.close()
                    self._reader = FrameReader(self.path)
                return self._reader.frame(index).image
            except (OSError, InputError):
                return None
        return read

    def close(self) -> None:
        """Close the file, if it was opened."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def write_pictures(engine: Engine, it: Item, frame, labels, result) -> str | None:
    """The frame's QA pictures (:mod:`nwwatch.results.pictures`); their path relative to the
    results folder, or None when they could not be written (a by-product: the frame's row is
    kept, the failure logged)."""
    stem = picture_stem(it.path, it.key.sha256, engine.segmenter.model_sha256, int(frame.index),
                        it.key.measurement_version)
    try:
        return write_frame_pictures(engine.results_dir, engine.overlays.folder, stem,
                                    draw_overlay(frame.image, labels, result),
                                    labels if engine.overlays.save_labels else None)
    except (OSError, ValueError) as exc:
        engine.log.error("overlay_write_failed", source=source_name(it.path),
                         frame=int(frame.index),
                         picture=str(engine.results_dir / engine.overlays.folder
                                     / f"{stem}.png"),
                         error=f"{type(exc).__name__}: {exc}")
        return None


#: The in-situ job of :func:`nwwatch.service.pipeline.process` (cluster tasks run it too).
FRAME_JOB = Job(kind="insitu", folder="frames",
                schema=lambda: frame_schema(MEASUREMENT_FIELDS),
                measurement_version=lambda engine: MEASUREMENT_VERSION, run=frame_rows)
