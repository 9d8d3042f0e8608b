"""Child processes started with SIGINT ignored (the workers of ``replay --dask local:N``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Start the LocalCluster's worker processes with SIGINT ignored (inherited through
    their exec): Ctrl-C in a terminal reaches the whole foreground process group, and each
    worker would print a KeyboardInterrupt traceback; the driver alone stops, closing them.
    A Ctrl-C during these seconds of start-up is ignored by the driver too."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set there; a caller's thread keeps its own
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
