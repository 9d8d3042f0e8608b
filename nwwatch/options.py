"""Command-line parameter types and checks shared by the ``nwwatch`` commands, and how a
command stopped by Ctrl-C or SIGTERM exits.

In the lowest layer (it needs only click and :mod:`nwwatch.atomic`) so that every command
module, whatever its layer, checks its arguments the same way.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from nwwatch.pathtext import path_text

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
        import select

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
    takes it (``nwwatch replay``'s, :func:`nwwatch.options.sigterm_as_interrupt`); with the
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


#: ``--seed`` of the commands that draw (synth, demo, train): what NumPy's SeedSequence and
#: an int64 column take; checked with the options, before any file is written.
SEED = click.IntRange(0, 2**63 - 1)


class FiniteFloatRange(click.FloatRange):
    """:class:`click.FloatRange` that also refuses ``nan`` and ``inf``: click parses both,
    and a NaN passes every bound (each comparison with it is false)."""

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):  # before the bounds: inf is named as such
            self.fail(f"{number} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class InputFile(click.Path):
    """An existing file (``click.Path(exists=True, dir_okay=False)``, as a Path) whose error
    for a name with ``*``, ``?`` or ``[`` says it is most likely a shell pattern that matched
    nothing (the shell then passes the pattern itself), and for a folder, how to give its
    files."""

    def __init__(self, *, dangling_links: bool = False) -> None:
        super().__init__(exists=True, dir_okay=False, path_type=Path)
        #: a symbolic link whose target is gone is passed on (the command refuses it and
        #: goes on with the other files) rather than stopping the command before it starts
        self.dangling_links = dangling_links

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            if os.path.islink(value) and not os.path.exists(value):
                if self.dangling_links:
                    return Path(os.fsdecode(value))
                self.fail(f"{exc.message.rstrip('.')}: it is a symbolic link to "
                          f"{os.fsdecode(os.readlink(value))!r}, which does not exist.",
                          param, ctx)
            if any(c in str(value) for c in "*?[") and not Path(value).exists():
                self.fail(f"{exc.message.rstrip('.')} (a shell pattern that matched no "
                          "file?).", param, ctx)
            if Path(value).is_dir():  # a folder is not read: its files are given one by one
                folder = os.fsdecode(value).rstrip("/" + os.sep) or os.sep
                self.fail(f"{exc.message.rstrip('.')}: give the files in it, e.g. "
                          f"{folder}/*.png or {folder}/*.tif.", param, ctx)
            raise


class OutputFile(click.Path):
    """A file to write (``click.Path(dir_okay=False)``, as a Path) that refuses a name ending
    in a path separator: ``--out results/`` means a folder, and :class:`~pathlib.Path` drops
    the separator, so a file named ``results`` was written where a folder was meant."""

    def __init__(self, example: str) -> None:
        super().__init__(dir_okay=False, path_type=Path)
        self.example = example

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
        seps = "/" + os.sep
        last = text.rstrip(seps)
        for sep in seps:
            last = last.rsplit(sep, 1)[-1]
        # 'out/.' too: Path drops the '.' as it drops the '/', and writes a file 'out'
        if text.endswith(tuple(seps)) or (last in (".", "..") and text.strip(seps)):
            ends = ("/" if text.endswith(tuple(seps))
                    else f"/{last}" if any(sep in text for sep in seps) else last)
            self.fail(f"{text} names a folder (it ends in '{ends}'); give the file to write "
                      f"in it, e.g. {Path(text.rstrip(seps)).as_posix().rstrip('/')}/"
                      f"{self.example}", param, ctx)
        stream = stream_problem(text)
        if stream:
            self.fail(f"{text} {stream}, not a file: the output is written beside it and "
                      f"renamed into place (it would replace it); give a file, e.g. "
                      f"{self.example}", param, ctx)
        return super().convert(value, param, ctx)


def stream_problem(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it is no file an output may be renamed over: a device or stream
    (under /dev or /proc, as named or as its links lead: /dev/null, /dev/stdout, which leads
    to /proc/self/fd/1), or a FIFO or socket; None for anything else."""
    for where in (os.path.abspath(path), os.path.realpath(path)):
        top = Path(where).parts[1:2]
        if top in (("dev",), ("proc",)):
            return f"lies in /{top[0]} (a device or a stream)"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, a FIFO or a socket"
    return None


def results_mark(folder: Path) -> str | None:
    """The name of the file that makes ``folder`` a results folder (its ledger, or the record
    of a ledger kept elsewhere, or the lock), else None."""
    return next((name for name in _RESULTS_MARKS if (folder / name).exists()), None)


def results_dataset_of(path: Path, results: Path | None = None,
                       folder: bool = False) -> Path | None:
    """The ``frames/`` or ``volumes/`` folder of a results folder (``results``, or any with
    a ledger or the record of one kept elsewhere) that ``path`` would lie in (with
    ``folder``, ``path`` a folder to write into, or be), else None: every file there is read
    as the service's results, and a file written there replaces or adds to them, or breaks
    their readers (a page or a JSON file is no Parquet)."""
    top = None if results is None else results.resolve()
    resolved = path.resolve()
    for above in (resolved, *resolved.parents) if folder else resolved.parents:
        if above.name in ("frames", "volumes") and (
                above.parent == top or results_mark(above.parent) is not None):
            return above
    return None


#: What a results folder holds beside its datasets: its ledger, or, when the ledger is kept
#: elsewhere ([state] ledger, ``ledger rebuild --ledger``), the record of where and the lock.
_RESULTS_MARKS = ("ledger.sqlite", "ledger.sqlite.elsewhere", "ledger.sqlite.lock")


def refuse_inside_results(path: Path, param_hint: str, results: Path | None = None,
                          folder_example: str | None = None) -> None:
    """Raise :class:`click.BadParameter` when the output ``path`` would lie in a results
    folder's ``frames/`` or ``volumes/`` (:func:`results_dataset_of`), naming a place beside
    them. With ``folder_example`` (a name for the example given), ``path`` is a folder the
    command writes files into: refused too when it is such a folder, or a results folder
    itself (a reader of the whole folder, ``pandas.read_parquet(RESULTS)``, takes every
    Parquet file in it for results, and the files written mix with the service's own)."""
    option = param_hint.strip("'")
    if folder_example is not None:
        mark = results_mark(path)
        if mark is not None:
            raise click.BadParameter(
                f"{path} is a results folder of the service or replay (it holds {mark}): "
                f"what is written there would mix with its results; write into a folder of "
                f"its own, e.g. {option} "
                f"{path.resolve().parent / folder_example}", param_hint=param_hint)
    dataset = results_dataset_of(path, results, folder=folder_example is not None)
    if dataset is not None:
        where = (f"is the {dataset.name}/ folder of the results {dataset.parent}"
                 if path.resolve() == dataset else f"is inside {dataset}")
        # a folder of the command's own goes beside the results folder, not in it
        beside = (dataset.parent / path.name if folder_example is None
                  else dataset.parent.parent / folder_example)
        raise click.BadParameter(
            f"{path} {where}, where the service, status and every reader of the results "
            f"(pandas, pyarrow, polars, DuckDB) take each file for results; write it "
            f"elsewhere, e.g. {option} {beside}", param_hint=param_hint)


def require_writable(path: Path, param_hint: str, folder: bool = False) -> None:
    """Raise :class:`click.BadParameter` naming ``path`` when the output file ``path`` (the
    folder ``path`` when ``folder``) cannot be written; its folder is created if missing.
    Called before a command's work, so an unwritable output is not found after hours of it."""
    from nwwatch.atomic import probe_writable

    target = path if folder else path.parent
    try:
        probe_writable(target)
    except OSError as exc:
        raise click.BadParameter(f"{path}: cannot write to {target} "
                                 f"({exc.strerror or exc})", param_hint=param_hint) from None


def mask_warning(label_path: Path, class_names: Sequence[str]) -> str:
    """The warning line of ``train`` and ``evaluate`` for a label image holding only 0 and
    255 (:func:`nwwatch.io.dataset.mask_like_labels`), naming the class ids of its DATA
    folder (``class_names``: a tomogram's are 0 pore, 1 solid)."""
    ids = ", ".join(f"{i} {name}" for i, name in enumerate(class_names))
    return (f"warning: {label_path}: only 0 and 255 (unlabeled); a 0/255 mask? Its 255 pixels "
            f"are left out; label images hold class ids ({ids})")


def shipped_models() -> dict[str, Path]:
    """{name: path} of the ONNX models shipped with nwwatch (``insitu-default``)."""
    from nwwatch import DEFAULT_INSITU_MODEL

    return {path.stem: path for path in sorted(DEFAULT_INSITU_MODEL.parent.glob("*.onnx"))}


def model_name_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with a model file's path that is not UTF-8 text, for the user (None when
    it is): the results name their model by its path as text (Parquet, JSON, SQLite), and
    ONNX Runtime and the service's configuration (TOML) take no other. One check for every
    command's model (``--model``, ``evaluate MODEL``, a ``[[watch]]``'s ``model``)."""
    raw = os.fsencode(os.path.abspath(path))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"{path_text(raw)}: the model's path is not UTF-8 text (byte "
                f"{raw[exc.start]:#04x}); the results name the model by its path as text, and "
                f"ONNX Runtime and the service's configuration take no other: rename the file "
                f"(or its folder) to UTF-8 characters")
    return None


def unreadable_checkpoint(path: str | os.PathLike[str], why: str) -> str:
    """That ``path`` is not a checkpoint ``nwwatch train`` wrote, and ``why``: the one way
    ``nwwatch train`` (``--init``, ``--resume``) and the commands that take a model say it."""
    return f"{path_text(path)}: not a readable checkpoint ({why})"


#: The first bytes of a file :func:`torch.save` writes: a zip archive (what ``nwwatch train``
#: writes), or a pickle (torch's legacy format).
_TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")


def written_by_torch(path: Path) -> bool:
    """Whether ``path`` starts as a file :func:`torch.save` writes (True when it cannot be
    read: the model's loader then says why)."""
    try:
        with path.open("rb") as handle:
            return handle.read(4).startswith(_TORCH_FILE_STARTS)
    except OSError:
        return True


def model_file(ctx: click.Context | None, param: click.Parameter | None,
               value: str | None) -> Path | None:
    """Click callback of a model argument or ``--model``: an ONNX file, or the name of a
    shipped model (``insitu-default``); None stays None. A MODEL.pt checkpoint is a usage error
    naming the MODEL.onnx ``nwwatch train`` wrote beside it (ONNX Runtime would say only
    "Protobuf parsing failed"), a ``.pt`` file that is no torch file one that says it is no
    checkpoint (:func:`unreadable_checkpoint`), and so are the model's card MODEL.json beside
    its MODEL.onnx, a folder, a missing file and a path that is not UTF-8 text
    (:func:`model_name_problem`)."""

    if value is None:
        return None
    path, shipped = Path(value), shipped_models()
    if path.is_file():
        problem = model_name_problem(path)
        if problem:
            raise click.BadParameter(problem, ctx, param)
        if path.suffix.lower() == ".pt" and not written_by_torch(path):
            # e.g. a text file: no training checkpoint, whatever its name
            raise click.BadParameter(
                f"{unreadable_checkpoint(path, 'not a file torch.save writes')}: not the "
                f"MODEL.pt that nwwatch train wrote; give an ONNX model, or the name of a "
                f"shipped one ({', '.join(shipped)})", ctx, param)
        if path.suffix.lower() == ".pt":
            exported = path.with_suffix(".onnx")
            if not exported.exists() and path.stem in shipped:
                # training/pretrained/<name>.pt: the shipped model is nwwatch/models/<name>.onnx
                hint = (f"give the shipped model by its name, {path.stem} "
                        f"({shipped[path.stem]})")
            else:
                hint = f"give the model `nwwatch train` exported with it, {exported}"
                if not exported.exists():  # moved or renamed: the name alone would mislead
                    hint += (" (not there: find the .onnx file the run wrote beside its "
                             f"{path.name})")
            raise click.BadParameter(f"{path} is a training checkpoint, not an ONNX model: "
                                     f"{hint}", ctx, param)
        if path.suffix.lower() == ".json" and path.with_suffix(".onnx").is_file():
            # MODEL.json, the card `nwwatch train` writes beside the model
            raise click.BadParameter(f"{path} is the model's card, not the model: give "
                                     f"{path.with_suffix('.onnx')}", ctx, param)
        return path
    if value in shipped and not path.exists():
        return shipped[value]
    what = "a folder, not an ONNX model file" if path.is_dir() else "no such file"
    raise click.BadParameter(f"{value}: {what}; give an ONNX model, or the name of a shipped "
                             f"one ({', '.join(shipped)})", ctx, param)


def listed(names: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` of ``names``, comma-separated, then "and N more" for the rest:
    how a message names a list of files or images."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def say(text: str = "", err: bool = False) -> None:
    """``click.echo(text, err=err)`` for a command whose products are files: when the reader
    has gone (a closed pipe, ``nwwatch measure ... | head -1``: EPIPE; a terminal hung up:
    EIO) this line and the later ones of that stream are dropped and the work goes on,
    where the error would end the command with its rows unwritten."""
    try:
        click.echo(text, err=err)
    except OSError as exc:
        # A reader gone is no fault. Another error (a full disk: > report.txt) is kept and
        # said when the command ends (nwwatch.cli), which then exits 1; the work goes on:
        # its files may lie on another disk.
        if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EIO and not _unwritten:
            name = "standard error" if err else "standard output"
            _unwritten.append(f"{name} could not be written ({exc.strerror or exc}): the "
                              "lines from then on were dropped; the rest of the work was done")
        stream_dropped(err)


#: Why a command's lines could not be written (:func:`say`), for its end to say: the first.
_unwritten: list[str] = []


def unwritten_output() -> str | None:
    """Why lines of the command could not be written (not a reader gone), once; then None."""
    return _unwritten.pop() if _unwritten else None


def stream_dropped(err: bool = False) -> None:
    """Point stdout (stderr with ``err``) at the null device, once its reader has gone: the
    text still buffered for it then does not fail again as the process exits (Python would
    print "Exception ignored" and exit 120)."""
    stream = sys.stderr if err else sys.stdout
    with contextlib.suppress(OSError, ValueError):  # no descriptor (a test's capture)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)
