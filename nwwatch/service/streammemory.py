"""How many streams ``[inference] streams = "auto"`` may run for a call of the frame stage,
given the memory each stream holds for frames of that size (docs/service.md, "Memory with
streams").

Each stream beyond the first holds its own group of frames (raw and normalised), one network
batch's activations and float32 probabilities (``batch_size`` x classes x H x W x 4 B), and
in ``nwwatch replay`` the raw frames of its share of the call. The estimate is affine in the
size of one batch's probabilities P, fitted to the measured replays (batch_size 8, 3 classes):
+194 MB per extra stream at 512² (P = 24 MB; 187 MB with one session for all streams) and
about +840 MB at 2048² (P = 384 MB), so 1.8 P + 152 MB (MB = 2^20 bytes here); the factor
alone (840 / 384 = 2.2) would put 512² at 52 MB, a quarter of what was measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nwwatch.resources import Limit, available_memory

#: Bytes an extra stream holds whatever the frame size (fit to the measured replays) ...
STREAM_FIXED_BYTES = 152 * 2**20
#: ... plus this many times one network batch's float32 probabilities.
STREAM_PROBABILITY_FACTOR = 1.8
#: ``"auto"`` gives the streams beyond the first at most this share of the memory available
#: when the engine was built; the rest stays for the first stream, the acquisition software
#: and the page cache.
AUTO_MEMORY_SHARE = 0.5


def stream_bytes(frame_pixels: int, batch_size: int, classes: int) -> int:
    """Estimated memory (bytes) one stream beyond the first holds for frames of
    ``frame_pixels`` pixels (H x W), ``batch_size`` frames per network call and a model of
    ``classes`` classes."""
    probabilities = frame_pixels * batch_size * classes * 4
    return int(STREAM_FIXED_BYTES + STREAM_PROBABILITY_FACTOR * probabilities)


def auto_stream_budget() -> Limit | None:
    """Bytes the extra streams of ``"auto"`` may take: ``AUTO_MEMORY_SHARE`` of the memory
    available now (:func:`nwwatch.resources.available_memory`, which the systemd
    unit's ``MemoryMax`` / ``MemoryHigh`` or a container's limit may lower), with the source
    of that figure; None: unknown, no bound."""
    available = available_memory()
    if available is None:
        return None
    return Limit(int(available.value * AUTO_MEMORY_SHARE), available.source)


def memory_streams(streams: int, budget_bytes: int | None, frame_pixels: int,
                   batch_size: int, classes: int) -> int:
    """``streams``, or fewer so that the streams beyond the first fit in ``budget_bytes``
    (None: no bound); at least 1."""
    if budget_bytes is None or streams <= 1 or frame_pixels <= 0:
        return max(1, streams)
    extra = budget_bytes // stream_bytes(frame_pixels, batch_size, classes)
    return max(1, min(streams, 1 + extra))


def largest_frame_pixels(infos: Sequence[object]) -> int:
    """Pixels of the largest page among the structural checks ``infos``
    (:class:`nwwatch.io.TiffInfo`; entries without one, such as None, are skipped): decoded
    samples per page, so a colour page counts each sample. 0 when none is known."""
    largest = 0
    for info in infos:
        declared = getattr(info, "declared_bytes", None)
        if declared is None:
            continue
        itemsize = np.dtype(info.dtype).itemsize
        largest = max(largest, int(declared) // (itemsize * max(1, int(info.n_pages))))
    return largest


def call_streams(engine, infos: Sequence[object]) -> int:
    """Streams a call of ``engine``'s frame stage runs for files of the structural checks
    ``infos``: ``engine.streams``, bounded by ``engine.stream_memory_bytes`` (``"auto"``)
    for the largest of their pages (no bound when no page size is known)."""
    return memory_streams(engine.streams, engine.stream_memory_bytes,
                          largest_frame_pixels(infos), engine.batch_size,
                          len(engine.segmenter.metadata.class_names))
