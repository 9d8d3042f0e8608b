"""Ctrl-C and ``replay --dask local:N``: its worker processes start with SIGINT blocked, and
the driver holds a Ctrl-C (or SIGTERM, SIGHUP) back while it waits in a Dask client call."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Start the LocalCluster's worker processes with SIGINT blocked: Ctrl-C in a terminal
    reaches the whole foreground process group, and each worker would print a
    KeyboardInterrupt traceback; the driver alone stops, closing them. A thread's signal
    mask is inherited by the threads it starts and through fork and exec (Python's own
    ``multiprocessing.resource_tracker`` starts its process so), so the workers, and those
    their nannies restart later from the event-loop thread started here, never see it. A
    Ctrl-C during these seconds reaches the driver's handler, which holds it until the
    block ends and then stops the driver (:func:`ctrl_c_after_the_call`): ignoring it would
    let the replay run on. A hang-up (SIGHUP: the terminal closed) reaches the whole group
    too, and is blocked alike: the resource tracker, which ignores SIGINT and SIGTERM by
    itself, would die of it and be relaunched with a warning and a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set there; a caller's thread keeps its own
        return
    from multiprocessing import resource_tracker

    # Started here first: the thread that starts it leaves with SIGINT unblocked (CPython's
    # resource_tracker unblocks it after spawning), which would be the cluster's event loop.
    # SIGHUP it leaves as it found it: blocked, so the tracker inherits that.
    hup_blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, hup_blocked)
    with ctrl_c_after_the_call():
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGHUP})
        try:
            yield
        finally:  # one that waited for this thread is delivered now, to the holding handler
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@contextmanager
def ctrl_c_after_the_call() -> Iterator[None]:
    """Hold a Ctrl-C that arrives during the block back until the block ends, then raise it
    (``KeyboardInterrupt``, or whatever the SIGINT handler in place does); a second Ctrl-C
    during the block acts at once. A SIGTERM or SIGHUP is held alike when a Python handler
    takes it (``nwwatch replay``'s, :func:`nwwatch.options.sigterm_as_interrupt`); with the
    default one it ends the process as ever.

    For a blocking Dask client call of the driver (``Future.result``, ``Client.close``):
    distributed runs it on its event-loop thread and, interrupted, cancels it from there;
    when the interrupt comes before the call has started, that cancel fails and the loop
    thread logs a traceback (``distributed/utils.py``: ``sync``), and a result fetch left
    running makes the scheduler log ``Couldn't gather keys`` once the driver lets go of the
    task. The calls held back are short: the result of a finished task, a close."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    sigint = signal.getsignal(signal.SIGINT)
    if sigint not in (signal.SIG_IGN, None):  # Ctrl-C ignored here, or not set from Python
        previous[signal.SIGINT] = sigint
    for other in (signal.SIGTERM, signal.SIGHUP):
        handler = signal.getsignal(other)
        if callable(handler):
            previous[other] = handler
    held: list[int] = []

    def act(signum: int, frame) -> None:
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        else:  # SIG_DFL would end the process at once; here the driver still closes
            raise KeyboardInterrupt

    def hold(signum: int, frame) -> None:
        if held:
            act(signum, frame)
        held.append(signum)

    for signum in previous:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            act(held[0], None)
