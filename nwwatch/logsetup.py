"""structlog configured to write one JSON object per line (journald and ``jq`` read it), or,
for a person at a terminal, one plain line per event."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TextIO

import structlog
import structlog.tracebacks

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _plain_line(_logger, _name: str, event: dict) -> str:
    """``level: event (key=value, ...)``, then the traceback when there is one."""
    level = event.pop("level", "info")
    text = f"{level}: {event.pop('event', '')}"
    event.pop("timestamp", None)
    trace = event.pop("exception", None)
    if event:
        text += " (" + ", ".join(f"{key}={value}" for key, value in event.items()) + ")"
    return f"{text}\n{trace}" if trace else text


class _LineLogger(structlog.PrintLogger):
    """A PrintLogger whose line to a stream that is gone (a terminal hung up: EIO; a closed
    pipe) is dropped, as the standard library's logging drops it, instead of raised into the
    code that logged: a warning must not end a replay that is writing the rows it held."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except (OSError, ValueError):  # ValueError: the stream was closed
            pass

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


#: (event names, the list they are kept in) of the innermost :func:`held_events`
_HELD: ContextVar[tuple[frozenset[str], list[dict]] | None] = ContextVar("nwwatch_held_events",
                                                                       default=None)


@contextlib.contextmanager
def held_events(*names: str) -> Iterator[list[dict]]:
    """Within it, the log events named ``names`` (at the configured level or above) are kept
    in the list it yields, not written: for a command that tells its user about them in its
    own words (``nwwatch measure``: one line per file whose calibration was ignored). Without
    :func:`configure_logging` they are written as before, and the list stays empty."""
    held: list[dict] = []
    token = _HELD.set((frozenset(names), held))
    try:
        yield held
    finally:
        _HELD.reset(token)


def _hold(_logger, _name: str, event: dict) -> dict:
    held = _HELD.get()
    if held is not None and event.get("event") in held[0]:
        held[1].append(dict(event))
        raise structlog.DropEvent
    return event


def configure_logging(level: str = "info", stream: TextIO | None = None,
                      plain: bool = False) -> None:
    """JSON lines on ``stream`` (stderr by default) at ``level`` and above; with ``plain``,
    ``warning: event (key=value, ...)`` lines instead (a command run at a terminal).

    Exceptions logged with ``log.exception`` carry a structured ``exception`` field (the
    traceback as a list of frames) so an unexpected error is diagnosable from the journal;
    plain lines carry the traceback as Python prints it.
    """
    stream = stream or sys.stderr
    if plain:
        ending = [structlog.processors.format_exc_info, _plain_line]
        if stream.isatty():  # over a progress bar's unfinished line: clear it first
            ending.append(lambda _logger, _name, line: "\r\x1b[2K" + line)
    else:
        ending = [
            # Frames without local variables: those can hold whole images and paths.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ]
    structlog.configure(
        processors=[
            _hold,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *ending,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_args: _LineLogger(stream),
        cache_logger_on_first_use=False,
    )
    _route_library_logs()


class _LibraryToLog(logging.Handler):
    """A library's own log records (uvicorn's "Invalid HTTP request received." for a TLS
    probe at the dashboard, its traceback of a failed request) as ``library_log`` events of
    nwwatch's log: through Python's last-resort handler they were bare lines among the JSON
    lines, which a log pipeline (``jq``) stops at."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = structlog.get_logger("nwwatch.library")
            method = (log.error if record.levelno >= logging.ERROR else
                      log.warning if record.levelno >= logging.WARNING else log.info)
            fields = {"logger": record.name, "message": record.getMessage()}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            method("library_log", **fields)
        except Exception:  # a log line must never raise into the library that logged
            self.handleError(record)


def _route_library_logs() -> None:
    """Records that reach the root logger (warnings and above: its default level) go to
    nwwatch's log; installed once."""
    root = logging.getLogger()
    if not any(isinstance(h, _LibraryToLog) for h in root.handlers):
        root.addHandler(_LibraryToLog())


def get_logger(name: str = "nwwatch"):
    return structlog.get_logger(name)
