"""Prometheus metrics of the running service (``/metrics`` on the dashboard's port).

Importable without the web stack: the processing code calls :func:`observe_commit`,
:func:`observe_outcomes`, :func:`set_queue`, :func:`in_flight` and :func:`set_model`, which
only touch ``prometheus_client`` objects in :data:`REGISTRY` (cheap, thread-safe). Label
values are fixed words (outcomes, stages, kinds) or the model's name/hash/provider, never file
names, so the number of time series stays bounded.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Outcomes of ``nwwatch_frames_processed_total``: a row with status ok, a row refused by
#: the measurement (any other status or reason code), a file quarantined (counted once per file:
#: its frames were never read).
OUTCOMES = ("ok", "flagged", "quarantined")
#: Stages of ``nwwatch_stage_seconds``: per frame (volume) for read/segment/measure/confidence
#: (the row's ``*_ms`` columns), per batch for hash and write.
STAGES = ("hash", "read", "segment", "measure", "confidence", "write")
#: Its ``kind`` label: the watch's kind, so that a 30 s volume never shares a histogram with
#: 20 ms frames (the same words as ``nwwatch_model_info``'s ``kind``).
KINDS = ("insitu", "tomogram")
_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
              30.0, 60.0, 300.0)

REGISTRY = CollectorRegistry(auto_describe=True)
FRAMES = Counter("nwwatch_frames_processed",
                 "Rows committed (a frame or volume each) by outcome; quarantined: files",
                 ["outcome"], registry=REGISTRY)
STAGE_SECONDS = Histogram("nwwatch_stage_seconds", "Processing time per stage",
                          ["stage", "kind"], buckets=_BUCKETS_S, registry=REGISTRY)
LATENCY_SECONDS = Histogram("nwwatch_file_latency_seconds",
                            "From the file being seen complete to its rows committed",
                            buckets=_BUCKETS_S, registry=REGISTRY)
QUEUE_DEPTH = Gauge("nwwatch_queue_depth_files", "Files seen and waiting to be processed",
                    registry=REGISTRY)
IN_FLIGHT = Gauge("nwwatch_in_flight_frames", "Frames in the batch being processed",
                  registry=REGISTRY)
LAST_FRAME = Gauge("nwwatch_last_frame_processed_timestamp_seconds",
                   "Unix time of the last committed frame row", registry=REGISTRY)
STORAGE_PAUSED = Gauge("nwwatch_storage_paused",
                       "1 while results or the ledger cannot be written (processing paused)",
                       registry=REGISTRY)
MODEL_INFO = Gauge("nwwatch_model_info", "Models loaded by the service (value 1)",
                   ["name", "sha256", "provider", "kind"], registry=REGISTRY)
for _outcome in OUTCOMES:  # every series exists from the start (0, not absent)
    FRAMES.labels(outcome=_outcome)
for _stage in STAGES:
    for _kind in KINDS:
        STAGE_SECONDS.labels(stage=_stage, kind=_kind)

# Recent end-to-end latencies for the dashboard's page (Prometheus keeps only buckets).
_recent_latency_s: collections.deque[float] = collections.deque(maxlen=200)
_lock = threading.Lock()
# The storage pause under way, for the dashboard's page: {"reason", "since" (epoch s)}.
_storage_pause: dict | None = None
# Files queued for a batch, all folders; per acquisition folder, its files queued for a
# batch or in the batch in flight (set_queue).
_queued_files = 0
_queued_by_acquisition: dict[str, int] = {}


class SeenFiles(Protocol):
    """The running service's files seen and not yet queued (its
    :class:`~nwwatch.service.readiness.Tracker`): thread-safe, cheap, read live."""

    def waiting_in(self, acquisition: str) -> int: ...

    def waiting(self) -> int: ...


# (set_seen_files)
_seen_files: SeenFiles | None = None


def row_outcome(row: Mapping[str, object]) -> str:
    """``"ok"`` or ``"flagged"`` for one result row (frame or volume), from its ``status``."""
    return "ok" if row.get("status") == "ok" else "flagged"


def observe_commit(rows: Iterable[Mapping[str, object]], timings_ms: Mapping[str, float],
                   committed_at: float | None = None, *, kind: str,
                   write_ms: Iterable[float] = ()) -> None:
    """Count the committed rows of a watch of ``kind`` (one of :data:`KINDS`) and observe
    their per-stage times; ``timings_ms`` holds per-batch stages (``hash``), ``write_ms``
    the time of each results file written."""
    if kind not in KINDS:
        raise ValueError(f"metrics kind {kind!r} is not one of {', '.join(KINDS)}")
    n = 0
    for row in rows:
        n += 1
        FRAMES.labels(outcome=row_outcome(row)).inc()
        for stage in ("read", "segment", "measure", "confidence"):
            value = row.get(f"{stage}_ms")
            if isinstance(value, int | float) and value == value:
                STAGE_SECONDS.labels(stage=stage, kind=kind).observe(value / 1e3)
    if "hash" in timings_ms:
        STAGE_SECONDS.labels(stage="hash", kind=kind).observe(timings_ms["hash"] / 1e3)
    for ms in write_ms:
        STAGE_SECONDS.labels(stage="write", kind=kind).observe(ms / 1e3)
    if n:
        LAST_FRAME.set(committed_at if committed_at is not None else time.time())


def set_storage_paused(paused: bool, reason: str | None = None) -> None:
    """``nwwatch_storage_paused``: 1 from ``storage_paused`` to ``storage_resumed``.
    ``reason``: the write error the service logged, which the dashboard's page shows (the
    latest of a pause that goes on; the pause counts from its first)."""
    global _storage_pause
    STORAGE_PAUSED.set(1 if paused else 0)
    with _lock:
        if not paused:
            _storage_pause = None
        else:
            since = time.time() if _storage_pause is None else _storage_pause["since"]
            _storage_pause = {"reason": reason, "since": since}


def storage_pause() -> dict | None:
    """The storage pause under way (``reason``: text or None; ``since``: epoch s), else None."""
    with _lock:
        return None if _storage_pause is None else dict(_storage_pause)


def set_last_frame(epoch_s: float | None) -> None:
    """At start: the time of the last row the ledger records as committed (None: none yet),
    so that a restart does not reset ``nwwatch_last_frame_processed_timestamp_seconds`` to 0,
    which a staleness alert (``time() - …``) would read as no frame for decades."""
    if epoch_s is not None:
        LAST_FRAME.set(epoch_s)


def observe_outcomes(states: Iterable[tuple[str, float | None]], committed_at: float | None,
                     quarantined_files: int = 0) -> None:
    """Per file of a batch: (state, wall time in epoch seconds at which it was seen complete,
    or None); plus ``quarantined_files`` quarantined outside a batch (bad on inspection).

    Quarantined files are counted; done files give the end-to-end latency.
    """
    quarantined = quarantined_files
    for state, detected_at in states:
        if state == "quarantined":
            quarantined += 1
        elif state == "done" and detected_at is not None and committed_at is not None:
            latency = max(0.0, committed_at - detected_at)
            LATENCY_SECONDS.observe(latency)
            with _lock:
                _recent_latency_s.append(latency)
    if quarantined:
        FRAMES.labels(outcome="quarantined").inc(quarantined)


def recent_latencies_s() -> list[float]:
    """The last (up to 200) end-to-end latencies, oldest first."""
    with _lock:
        return list(_recent_latency_s)


def set_queue(queued_files: int, queued_by_acquisition: Mapping[str, int]) -> None:
    """``queued_files``: files queued for a batch (not those in the batch in flight), all
    folders; ``queued_by_acquisition``: per acquisition folder, its files queued for a batch
    or in the batch in flight (for the dashboard's page only: folders are no label values).
    With the files seen and not yet queued (:func:`set_seen_files`), read when asked, they
    make ``nwwatch_queue_depth_files``."""
    global _queued_files, _queued_by_acquisition
    with _lock:
        _queued_files = queued_files
        _queued_by_acquisition = dict(queued_by_acquisition)


def set_seen_files(seen: SeenFiles | None) -> None:
    """The running service's files seen and not yet queued, read live by
    :func:`waiting_files` and ``nwwatch_queue_depth_files`` (its tracker, which watchdog's
    threads update while a batch runs, when the loop sets no queue counts); None: none."""
    global _seen_files
    with _lock:
        _seen_files = seen


def waiting_files(acquisition: str) -> int:
    """Files of the acquisition folder ``acquisition`` seen and not yet done: those seen and
    not yet queued, counted now (:func:`set_seen_files`), plus those queued or in the batch
    in flight as last set by :func:`set_queue`."""
    # the tracker first, the queue second: the loop counts a file queued before the tracker
    # lets it go, so a read between the two counts it twice, never nowhere
    with _lock:
        seen = _seen_files
    live = 0 if seen is None else seen.waiting_in(acquisition)
    with _lock:
        queued = _queued_by_acquisition.get(acquisition, 0)
    return queued + live


def _queue_depth_files() -> float:
    """``nwwatch_queue_depth_files``: files seen and waiting, all folders — queued for a
    batch (as last set) and seen, not yet queued (now) — not those in the batch in flight."""
    with _lock:  # the tracker first, as waiting_files
        seen = _seen_files
    live = 0 if seen is None else seen.waiting()
    with _lock:
        queued = _queued_files
    return float(queued + live)


# read when scraped: files that arrive while a long batch runs count at once
QUEUE_DEPTH.set_function(_queue_depth_files)


@contextlib.contextmanager
def in_flight(frames: int) -> Iterator[None]:
    """Frames being processed while the ``with`` block runs."""
    IN_FLIGHT.set(frames)
    try:
        yield
    finally:
        IN_FLIGHT.set(0)


def set_model(name: str, sha256: str, provider: str, kind: str) -> None:
    MODEL_INFO.labels(name=name, sha256=sha256, provider=provider, kind=kind).set(1)


def models() -> list[dict[str, str]]:
    """The models announced with :func:`set_model` (for the dashboard page)."""
    out = []
    for metric in MODEL_INFO.collect():
        for sample in metric.samples:
            out.append(dict(sample.labels))
    return out


def snapshot() -> dict[str, float]:
    """Current values the dashboard page shows (counters, gauges)."""
    values = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name == "nwwatch_frames_processed_total":
                values[f"frames_{s.labels['outcome']}"] = s.value
            elif s.name in ("nwwatch_queue_depth_files", "nwwatch_in_flight_frames",
                            "nwwatch_last_frame_processed_timestamp_seconds"):
                values[s.name.removeprefix("nwwatch_")] = s.value
    return values


def exposition() -> bytes:
    """The text exposition format served at ``/metrics``."""
    return generate_latest(REGISTRY)
