"""``RESULTS/quarantine.parquet``: every quarantined input file with its reason.

The service's ledger is the record; this file is a copy for people and notebooks, rewritten
whole (atomically) whenever the list changes, so it always equals the ledger's list.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from nwwatch.results.parquet import write_table_atomic

QUARANTINE_FILE = "quarantine.parquet"


def quarantine_schema() -> pa.Schema:
    """path (display form of the file name), sha256 (null when never hashed), reason (never
    file contents), error_type, attempts, quarantined_at (UTC)."""
    return pa.schema([
        pa.field("path", pa.string()), pa.field("sha256", pa.string()),
        pa.field("reason", pa.string()), pa.field("error_type", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("quarantined_at", pa.timestamp("us", tz="UTC")),
    ])


def write_quarantine(rows: list[dict], results_dir: str | os.PathLike[str]) -> Path:
    """Replace ``results_dir/quarantine.parquet`` by ``rows`` (dicts with the schema's names;
    ``quarantined_at`` in epoch seconds). Returns the file's path."""
    table = pa.Table.from_pylist(
        [dict(row, quarantined_at=datetime.fromtimestamp(row["quarantined_at"], UTC))
         for row in rows],
        schema=quarantine_schema(),
    )
    return write_table_atomic(table, Path(results_dir) / QUARANTINE_FILE)


def superseding_table(entries: list[dict]) -> pa.Table | None:
    """``path``, ``sha256`` and ``quarantined_at`` of the quarantined files ``entries`` (dicts
    of :func:`quarantine_schema`'s names, ``quarantined_at`` a UTC datetime) as
    :func:`nwwatch.results.versions.newest_version_mask` takes them; None when none has a
    time (a list of another writer may lack it: such an entry supersedes nothing)."""
    timed = [q for q in entries if q.get("quarantined_at") is not None]
    if not timed:
        return None
    return pa.table({"path": pa.array([str(q["path"]) for q in timed], pa.string()),
                     "sha256": pa.array([q.get("sha256") for q in timed], pa.string()),
                     "quarantined_at": pa.array([q["quarantined_at"] for q in timed],
                                                pa.timestamp("us", tz="UTC"))})


def read_quarantined(results_dir: str | os.PathLike[str]) -> pa.Table | None:
    """``path``, ``sha256`` and ``quarantined_at`` of ``RESULTS/quarantine.parquet`` as
    :func:`nwwatch.results.versions.newest_versions` takes them (beside
    :func:`nwwatch.results.versions.read_reverted`); None when there is no such file (a
    replay that quarantined nothing writes none), when it lists no file with a time, or
    when it cannot be read (damaged): then no file's rows are superseded by a quarantine."""
    import pyarrow.parquet as pq  # here: the writers of the list need none of it

    path = Path(results_dir) / QUARANTINE_FILE
    if not path.is_file():
        return None
    try:
        # a file object: a path string is read as a URI where it can ("run:1/…")
        with open(path, "rb") as handle, pq.ParquetFile(handle) as parquet:
            entries = parquet.read().to_pylist()
    except (OSError, pa.ArrowInvalid):
        return None
    return superseding_table(entries)
