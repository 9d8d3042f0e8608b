"""Stable input shapes on a GPU provider: the batch padded to a power of two, and a session
of its own for each padded input shape that recurs.

ONNX Runtime's CUDA convolution kernels keep their cuDNN set-up for the last input shape
they ran only, so one session fed alternating shapes (full batches, single-frame second
passes of the working scale, partial batches) redoes that set-up on every call; the
repeated call is many times cheaper (docs/models.md, "Input shapes on a GPU"). Two
measures keep the shapes each session sees fixed:

- The batch of a call is padded with zero frames to the next power of two and the padding's
  results cut off: the network treats frames independently, so the real frames' outputs do
  not depend on it, and a service's partial batches (1..batch_size frames) meet at most
  log2(batch_size) + 1 shapes per frame size, for at most twice the frames' work.
- A shape gets a session of its own the second time it is seen: the model's first session
  if no shape holds it yet, else a new one. Creating a session costs far more than one
  re-set-up, so a shape seen once (such as a rare up-scaled pass) runs on the first session
  as before. At most ``GPU_SESSIONS`` shapes hold a session, the least recently used dropped
  first: each session holds its own GPU memory.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

#: Input shapes that hold a session of their own (each session its own GPU memory arena).
GPU_SESSIONS = 6
#: Input shapes remembered as seen once (the oldest forgotten first).
SEEN_SHAPES = 64


def stable_batch(count: int) -> int:
    """The batch size a GPU call of ``count`` >= 1 frames runs at: the next power of two."""
    if count < 1:
        raise ValueError(f"a batch needs at least one frame, got {count}")
    return 1 << (count - 1).bit_length()


def pad_batch(feed: np.ndarray, size: int) -> np.ndarray:
    """``feed`` (N, ...) with zero items appended up to ``size`` >= N along axis 0."""
    if feed.shape[0] == size:
        return feed
    zeros = np.zeros((size - feed.shape[0], *feed.shape[1:]), dtype=feed.dtype)
    return np.concatenate([feed, zeros])


class ShapeSessions:
    """Sessions of one model keyed by input shape; safe to use from several threads.

    ``shared`` (the model's first session) runs every shape without a session of its own and
    is the own session of the first shape admitted while no shape holds it; ``make()``
    creates another session like it. A new session whose provider differs from ``shared``'s,
    or whose creation fails, is not used, and no more are made (shapes without one run on
    ``shared``).
    """

    def __init__(self, make: Callable[[], ort.InferenceSession],
                 shared: ort.InferenceSession, capacity: int = GPU_SESSIONS,
                 remember: int = SEEN_SHAPES) -> None:
        self._make: Callable[[], ort.InferenceSession] | None = make
        self._shared = shared
        self._provider = shared.get_providers()[0]
        self._capacity = capacity
        self._remember = remember
        self._own: OrderedDict[tuple[int, ...], ort.InferenceSession] = OrderedDict()
        self._seen: OrderedDict[tuple[int, ...], None] = OrderedDict()
        self._shared_key: tuple[int, ...] | None = None  # the shape holding ``shared``
        # Held while a session is created (once per recurring shape): a second thread asking
        # for the same shape then finds it instead of creating another.
        self._lock = threading.Lock()

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The input shapes that have a session of their own, least recently used first."""
        with self._lock:
            return list(self._own)

    def session_for(self, shape: tuple[int, ...]) -> ort.InferenceSession:
        """The session to run an input of ``shape`` on."""
        key = tuple(int(d) for d in shape)
        with self._lock:
            own = self._own.get(key)
            if own is not None:
                self._own.move_to_end(key)
                return own
            if key not in self._seen or self._capacity < 1:
                self._seen[key] = None
                self._seen.move_to_end(key)
                while len(self._seen) > self._remember:
                    self._seen.popitem(last=False)
                return self._shared
            if self._shared_key is None:
                session = self._shared
                self._shared_key = key
            else:
                session = self._new_session(key)
                if session is None:
                    self._make = None  # not tried again
                    return self._shared
            del self._seen[key]
            self._own[key] = session
            while len(self._own) > self._capacity:
                dropped, _ = self._own.popitem(last=False)
                if dropped == self._shared_key:
                    self._shared_key = None
            return session

    def _new_session(self, key: tuple[int, ...]) -> ort.InferenceSession | None:
        if self._make is None:
            return None
        try:
            session = self._make()
        except Exception as exc:  # ORT raises its own types (e.g. out of GPU memory)
            log.warning("no session of its own for input shape %s (%s); running every "
                        "other shape on the first session", key, exc)
            return None
        obtained = session.get_providers()[0]
        if obtained != self._provider:
            log.warning("a session for input shape %s got %s, not %s; running every other "
                        "shape on the first session", key, obtained, self._provider)
            return None
        return session
