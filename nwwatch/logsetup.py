"""structlog configured to write one JSON object per line (journald and ``jq`` read it)."""

from __future__ import annotations

import logging
import sys

import structlog
import structlog.tracebacks

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure_logging(level: str = "info", stream=None) -> None:
    """JSON lines on ``stream`` (stderr by default) at ``level`` and above.

    Exceptions logged with ``log.exception`` carry a structured ``exception`` field (the
    traceback as a list of frames) so an unexpected error is diagnosable from the journal.
    """
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Frames without local variables: those can hold whole images and paths.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "nwwatch"):
    return structlog.get_logger(name)
