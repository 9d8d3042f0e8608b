"""The test hooks of the crash drills: a process that kills itself at a named step of the
ledger protocol, or on a named input. Unset in production (the environment variables below);
its own module so every step that has a crash point can import it without the engine."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

#: Test hooks, unset in production. ``NWWATCH_CRASH_AT="after_claim:N"`` or
#: ``"after_write:N"`` makes the process SIGKILL itself the N-th time it reaches that point
#: (crash recovery in the exact window between two steps of the ledger protocol);
#: ``"in_batch:N"`` hangs there for good instead (a worker stuck in a read); a third field
#: ``":raise"`` raises a RuntimeError there instead (an unexpected error the process survives).
#: ``NWWATCH_CRASH_ON_SOURCE=TEXT`` kills the process whenever a batch holding a file whose
#: name contains TEXT is about to be segmented (a frame that crashes the runtime).
_CRASH_ENV = "NWWATCH_CRASH_AT"
_CRASH_SOURCE_ENV = "NWWATCH_CRASH_ON_SOURCE"
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process (or hang, or raise) at the ``NWWATCH_CRASH_AT`` point ``name``."""
    spec = os.environ.get(_CRASH_ENV)
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point != name:
        return
    nth, _, action = rest.partition(":")
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(nth or 1):
        if action == "raise":
            raise RuntimeError(f"{_CRASH_ENV}: error at {name}")
        if name == "in_batch":
            threading.Event().wait()
        os.kill(os.getpid(), signal.SIGKILL)


def crash_on_source(items: Sequence[Any]) -> None:
    """SIGKILL this process when ``NWWATCH_CRASH_ON_SOURCE`` is in the name of one of
    ``items``' paths (their ``.path``)."""
    text = os.environ.get(_CRASH_SOURCE_ENV)
    if text and any(text in it.path.name for it in items):
        os.kill(os.getpid(), signal.SIGKILL)
