"""The kinds of work :func:`nwwatch.service.pipeline.process` does: one job type per input
kind behind one interface, looked up by the engine's kind.

A job turns the items of one claimed batch into result rows (appended to each item; a file's
failure recorded in ``failures``); :func:`process` does the ledger steps around it. The job
also names what the ledger and the Parquet writer need: its results folder, its row schema,
the version of its measurement and the side files (masks) a batch writes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from nwwatch.service.batch import BatchReport, Engine, Item
    from nwwatch.service.ledger import Failure


class Job(Protocol):
    #: The input kind (``[[watch]] kind``).
    kind: str
    #: Folder under the results folder, and the prefix of its Parquet files.
    folder: str

    def schema(self) -> pa.Schema:
        """Columns of this kind's rows."""

    def measurement_version(self, engine: Engine) -> str:
        """Version of what the rows measure; part of the ledger's key."""

    def side_files(self, engine: Engine, items: list[Item], batch_id: str) -> list[Path]:
        """Files besides the Parquet file that the batch writes (removed when it fails)."""

    def run(self, items: list[Item], engine: Engine, batch_id: str, failures: list[Failure],
            report: BatchReport) -> None:
        """Read, segment and measure ``items``, appending rows to each item's ``rows``;
        a file's own failure goes to ``failures`` (``item.failed`` set), a vanished file
        sets ``item.gone``. Raises ``ResultsWriteError`` when a side file cannot be written;
        any other exception fails the batch as a whole."""


#: Module and class of each kind's job; imported when first used (a tomogram job loads the
#: volume code, an in-situ one the measurement).
_JOBS = {
    "insitu": ("nwwatch.service.frames", "FrameJob"),
    "tomogram": ("nwwatch.service.volumes", "VolumeJob"),
}
_built: dict[str, Job] = {}


def job_for(kind: str) -> Job:
    """The job of input ``kind``; KeyError naming the kinds there are."""
    if kind not in _built:
        if kind not in _JOBS:
            raise KeyError(f"unknown input kind {kind!r}; choose from {sorted(_JOBS)}")
        module, name = _JOBS[kind]
        _built[kind] = getattr(importlib.import_module(module), name)()
    return _built[kind]
