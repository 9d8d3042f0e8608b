"""Ctrl-C and ``replay --dask local:N``: its worker processes start with SIGINT ignored, and
the driver holds a Ctrl-C back while it waits in a Dask client call."""

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


@contextmanager
def ctrl_c_after_the_call() -> Iterator[None]:
    """Hold a Ctrl-C that arrives during the block back until the block ends, then raise it
    (``KeyboardInterrupt``, or whatever the SIGINT handler in place does); a second Ctrl-C
    during the block acts at once.

    For a blocking Dask client call of the driver (``Future.result``, ``Client.close``):
    distributed runs it on its event-loop thread and, interrupted, cancels it from there;
    when the interrupt comes before the call has started, that cancel fails and the loop
    thread logs a traceback (``distributed/utils.py``: ``sync``), and a result fetch left
    running makes the scheduler log ``Couldn't gather keys`` once the driver lets go of the
    task. The calls held back are short: the result of a finished task, a close."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):  # Ctrl-C ignored here, or not set from Python
        yield
        return
    held: list[int] = []

    def act(signum: int, frame) -> None:
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL would end the process at once; here the driver still closes
            raise KeyboardInterrupt

    def hold(signum: int, frame) -> None:
        if held:
            act(signum, frame)
        held.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            act(held[0], None)
