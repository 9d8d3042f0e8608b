"""How a command stopped by Ctrl-C, SIGTERM or SIGHUP stops and exits: the stop signals caught
from a command's first step, turned into exceptions (:class:`Terminated`, :class:`HungUp`)
where a command wants them, held off around a call that must not be cut, and the exit status
each gives. Standard library only, below every layer."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it):
#: ``nwwatch replay``, ``nwwatch measure`` and ``nwwatch train``.
EXIT_INTERRUPTED = 130
#: Exit status of ``nwwatch replay``, ``measure`` and ``train`` stopped by SIGTERM (128 + 15,
#: what a shell reports for a process the signal killed).
EXIT_TERMINATED = 128 + signal.SIGTERM
#: Exit status of ``nwwatch replay`` and ``measure`` ended by a hang-up (SIGHUP: its terminal
#: closed, an ssh session dropped), 128 + 1.
EXIT_HUNG_UP = 128 + signal.SIGHUP


class StopEvent:
    """A stop request that a signal handler may set: :class:`threading.Event`'s ``set``,
    ``is_set`` and ``wait``, but ``set`` takes no lock. A handler runs in the main thread
    between two of its bytecodes, also inside ``Event.wait`` or ``Event.set`` while they
    hold the event's lock; ``Event.set`` called there waits for that lock forever, and a
    service stopped that way ended by its stop deadline with status 1. Here ``set`` is a
    flag and a byte written to a pipe that every ``wait`` selects on (never drained: every
    waiter wakes, at once or later)."""

    def __init__(self) -> None:
        self._flag = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)

    def set(self) -> None:
        self._flag = True
        with contextlib.suppress(OSError):  # the pipe full: it is readable already
            os.write(self._write_fd, b"\0")

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False when ``timeout`` seconds passed first."""

        if not self._flag:
            poller = select.poll()  # not select(): any fd number, however many files are open
            poller.register(self._read_fd, select.POLLIN)
            # retried after a signal with the time left (PEP 475)
            poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))
        return self._flag

    def __del__(self) -> None:
        # Only once unreachable: a handler that may still set it holds a reference.
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises KeyboardInterrupt, so that a
    command stopped either way unwinds alike (what was computed written, temporary folders
    removed, the same message) by the handlers it has for Ctrl-C."""


class HungUp(Terminated):
    """SIGHUP (the terminal closed, an ssh session dropped), unwound as SIGTERM is."""


#: The signals that stop a long-running command (``run``, ``replay``, ``measure``, ``label``,
#: ``dashboard``) cleanly: Ctrl-C, ``kill``/systemd, a hang-up.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: {signal: its handler before :func:`catch_stop_signals_early`} while the recorder is in
#: place for it.
_early_handlers: dict[int, object] = {}
#: Stop signals that came while the recorder was in place, in order.
_early_received: list[int] = []


def _record_early(signum: int, frame: object) -> None:
    # Only recorded: raised inside a module's import (a native library's initialisation) an
    # interrupt can leave that library half initialised.
    _early_received.append(signum)


def catch_stop_signals_early(signals: Sequence[int] = STOP_SIGNALS) -> None:
    """Record ``signals`` (default SIGINT, SIGTERM and SIGHUP) instead of acting on them, from
    now until the command installs its own handlers (:func:`take_stop_handler`) and asks what came
    (:func:`early_stop_signal`): one that comes while the command's modules are still being
    imported then ends it as a later one does (its line, its exit status), not by the
    default action (killed without a word by SIGTERM, a traceback or ``Aborted!`` for
    Ctrl-C). A signal that is ignored (``nohup``'s SIGHUP, SIGINT of a shell's background
    job) stays ignored. Main thread only (signal's rule); elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in signals:
        current = signal.getsignal(signum)
        if signum in _early_handlers or current in (signal.SIG_IGN, None):
            continue
        _early_handlers[signum] = signal.signal(signum, _record_early)


def stop_handler_before(signum: int) -> object:
    """The handler of ``signum`` as :func:`signal.getsignal` gives it, or, while
    :func:`catch_stop_signals_early` records it, the one it replaced."""
    current = signal.getsignal(signum)
    return _early_handlers.get(signum, current) if current is _record_early else current


def take_stop_handler(signum: int, handler: object) -> object:
    """``signal.signal(signum, handler)``, returning the handler replaced: the one before
    :func:`catch_stop_signals_early` when its recorder was in place (no moment without a
    handler between the two)."""
    previous = signal.signal(signum, handler)
    if previous is _record_early:
        previous = _early_handlers.pop(signum, signal.SIG_DFL)
    return previous


def early_stop_signal() -> int | None:
    """The first stop signal that came while :func:`catch_stop_signals_early` recorded them
    (None: none), forgotten once returned; the handlers it replaced that the command did not
    take are put back. Called once the command's own handlers are in place, so that no
    signal falls between the two."""
    if threading.current_thread() is not threading.main_thread():
        return None
    for signum, original in list(_early_handlers.items()):
        if signal.getsignal(signum) is _record_early:
            signal.signal(signum, original)
        del _early_handlers[signum]
    first = _early_received[0] if _early_received else None
    _early_received.clear()
    return first


def interrupt_of(signum: int) -> KeyboardInterrupt:
    """The interrupt a stop signal raises: KeyboardInterrupt (SIGINT), :class:`Terminated`
    (SIGTERM), :class:`HungUp` (SIGHUP)."""
    return {signal.SIGTERM: Terminated, signal.SIGHUP: HungUp}.get(signum, KeyboardInterrupt)()


#: An interrupt (Ctrl-C's KeyboardInterrupt, SIGTERM's Terminated) raised within
#: :func:`sigterm_as_interrupt` and lost, for :func:`raise_lost_interrupt`.
_lost: list[KeyboardInterrupt] = []
#: One entry per :func:`sigterm_as_interrupt` block open (they nest).
_depth: list[None] = []


def _raise_terminated(signum: int, frame: object) -> None:
    # Once: a second SIGTERM while the first one unwinds must not cut its clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def _raise_hung_up(signum: int, frame: object) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # once, as for SIGTERM
    raise HungUp


def raise_lost_interrupt() -> None:
    """Raise again an interrupt (:class:`Terminated` or KeyboardInterrupt) that came within
    :func:`sigterm_as_interrupt` and was lost: a signal handler's exception raised inside a
    callback that Python runs with exceptions ignored (distributed's garbage-collector
    callback, a ``__del__``) goes to ``sys.unraisablehook`` and is dropped. Called where a
    command can stop cleanly, and when the block ends."""
    if _lost:
        raise _lost[0]


@contextlib.contextmanager
def sigterm_as_interrupt(hangup: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main
    thread, and an interrupt that a callback dropped is kept for :func:`raise_lost_interrupt`;
    the handler in place before is restored when the block ends. With ``hangup``, SIGHUP
    raises :class:`HungUp` alike, unless it is ignored (``nohup``), which it stays. Elsewhere
    than in the main thread (where Python allows no handler) the block runs unchanged."""
    installed = threading.current_thread() is threading.main_thread()  # signal's rule
    outermost = not _depth
    if outermost:  # within another block (a command's, then its run's) one lost is kept
        _lost.clear()
    _depth.append(None)
    previous = take_stop_handler(signal.SIGTERM, _raise_terminated) if installed else None
    # the default would end the process at once, the rows held in memory unwritten
    hup = installed and hangup and stop_handler_before(signal.SIGHUP) is signal.SIG_DFL
    if hup:
        take_stop_handler(signal.SIGHUP, _raise_hung_up)
    # one that came while the command's modules were imported: acted on here, at once
    early = early_stop_signal() if installed else None
    previous_hook = sys.unraisablehook

    def keep_lost_interrupts(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # acted on at the next check, without the "Exception ignored" traceback: a
            # command stopped by Ctrl-C or SIGTERM says so in one line
            _lost.append(unraisable.exc_value)
        else:
            previous_hook(unraisable)

    if installed:
        sys.unraisablehook = keep_lost_interrupts
    try:
        if early is not None:
            raise interrupt_of(early)
        yield
        raise_lost_interrupt()
    finally:
        if installed:  # None: a handler not set from Python, i.e. the default
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            sys.unraisablehook = previous_hook
        if hup:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
        _depth.pop()
        if outermost:
            _lost.clear()  # outside the block no command stops for it


@contextlib.contextmanager
def ctrl_c_after_the_call() -> Iterator[None]:
    """Hold a Ctrl-C that arrives during the block back until the block ends, then raise it
    (``KeyboardInterrupt``, or whatever the SIGINT handler in place does); a second Ctrl-C
    during the block acts at once. A SIGTERM or SIGHUP is held alike when a Python handler
    takes it (``nwwatch replay``'s, :func:`nwwatch.stopsignals.sigterm_as_interrupt`); with the
    default one it ends the process as ever.

    For a native library's import (``nwwatch train --volume``'s candidates: an interrupt
    raised inside one left it half initialised, and the process died of SIGSEGV), and for a
    blocking Dask client call of the driver (``Future.result``, ``Client.close``):
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
    restoring = False

    def act(signum: int, frame) -> None:
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        else:  # SIG_DFL would end the process at once; here the driver still closes
            raise KeyboardInterrupt

    def hold(signum: int, frame) -> None:
        if held and not restoring:
            act(signum, frame)
        held.append(signum)

    def swap(handlers: dict[int, object]) -> None:
        # Every handler is put in place before a signal's exception goes on: one arriving
        # halfway must not leave ``hold`` installed for the rest of the command. Blocked in
        # this thread meanwhile; a signal another thread takes (ONNX Runtime's, Dask's) still
        # runs its handler here between two calls: its exception waits for the others.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, handlers)
        first: BaseException | None = None
        try:
            for signum, handler in handlers.items():
                while signal.getsignal(signum) is not handler:
                    try:
                        signal.signal(signum, handler)
                    except BaseException as exc:  # noqa: BLE001 - raised below, once
                        first = first or exc
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if first is not None:
            raise first

    try:
        swap(dict.fromkeys(previous, hold))
        yield
    finally:
        restoring = True  # a signal held now waits for the handlers it belongs to
        swap(previous)
        if held:
            act(held[0], None)


def stop_signal_name(signum: int) -> str:
    """"Ctrl-C" for SIGINT, else the signal's name ("SIGTERM", "SIGHUP"): for the last line of
    a command a stop signal ended."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def interrupt_name(stop: KeyboardInterrupt) -> str:
    """"SIGHUP" for :class:`HungUp`, "SIGTERM" for :class:`Terminated`, else "Ctrl-C": for
    the message of a stopped command."""
    if isinstance(stop, HungUp):
        return "SIGHUP"
    return "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"


def interrupt_exit_status(stop: KeyboardInterrupt) -> int:
    """:data:`EXIT_HUNG_UP` for :class:`HungUp`, :data:`EXIT_TERMINATED` for
    :class:`Terminated`, else :data:`EXIT_INTERRUPTED`."""
    if isinstance(stop, HungUp):
        return EXIT_HUNG_UP
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
