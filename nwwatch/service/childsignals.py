"""Ctrl-C and ``replay --dask local:N``: its worker processes start with SIGINT blocked, and
the driver holds a Ctrl-C (or SIGTERM, SIGHUP) back while it waits in a Dask client call."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from nwwatch.stopsignals import ctrl_c_after_the_call


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

__all__ = ["children_ignore_ctrl_c", "ctrl_c_after_the_call"]
