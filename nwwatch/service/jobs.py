"""The kinds of work :func:`nwwatch.service.pipeline.process` does: one :class:`Job` per
input kind (in-situ frames, tomograms), all behind the same fields, looked up by the engine's
kind.

A job turns the items of one claimed batch into result rows (appended to each item; a file's
failure recorded in ``failures``); :func:`process` does the ledger steps around it. The job
also names what the ledger and the Parquet writer need: its results folder, its row schema,
the version of its measurement and the side files (masks) a batch writes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from nwwatch.service.batch import BatchReport, Engine, Item
    from nwwatch.service.ledger import Failure


@dataclass(frozen=True)
class Job:
    """What :func:`process` needs to know of one input kind."""

    #: The input kind (``[[watch]] kind``).
    kind: str
    #: Folder under the results folder, and the prefix of its Parquet files.
    folder: str
    #: () -> the columns of this kind's rows.
    schema: Callable[[], pa.Schema]
    #: (engine) -> version of what the rows measure; part of the ledger's key.
    measurement_version: Callable[[Engine], str]
    #: (items, engine, batch_id, failures, report): read, segment and measure ``items``,
    #: appending rows to each item's ``rows``; a file's own failure goes to ``failures``
    #: (``item.failed`` set), a vanished file sets ``item.gone``. Raises ``ResultsWriteError``
    #: when a side file cannot be written; any other exception fails the batch as a whole.
    run: Callable[[list[Item], Engine, str, list[Failure], BatchReport], None]
    #: (engine, items, batch_id) -> files besides the Parquet file that the batch writes
    #: (removed when it fails).
    side_files: Callable[[Engine, list[Item], str], list[Path]] = lambda *_: []
    #: (path, batch_size) -> None, or raises the ``InputError`` by which the file's header
    #: alone refuses it (a tomogram too large for the memory): run before the file is
    #: hashed, so that such a file is quarantined without being read through. None: no
    #: such refusal. ``batch_size``: the slices of one model call.
    header_refusal: Callable[[Path, int], None] | None = None


#: Module and name of each kind's job; imported when first used (a tomogram job loads the
#: volume code, an in-situ one the measurement).
_JOBS = {
    "insitu": ("nwwatch.service.frames", "FRAME_JOB"),
    "tomogram": ("nwwatch.service.volumes", "VOLUME_JOB"),
}


def job_for(kind: str) -> Job:
    """The job of input ``kind``; KeyError naming the kinds there are."""
    if kind not in _JOBS:
        raise KeyError(f"unknown input kind {kind!r}; choose from {sorted(_JOBS)}")
    module, name = _JOBS[kind]
    return getattr(importlib.import_module(module), name)
