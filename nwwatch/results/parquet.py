"""Crash-safe Parquet files, never a half-written footer under a final name, laid out in hive
partitions (``frames/acquisition=<key>/frames-*.parquet``) that pandas, pyarrow, polars and
DuckDB read as one dataset with an ``acquisition`` column.

A ``ParquetWriter`` writes its footer only on close, so a crash mid-write leaves a corrupt file.
Each batch is therefore written to a hidden temporary name (pyarrow datasets and DuckDB globs
skip names starting with '.'), fsynced, renamed into place, and the folder is fsynced so the
rename itself survives a power cut. Only then may a caller record the batch as done.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nwwatch.atomic import atomic_write
from nwwatch.paths import acquisition_of

#: The hive partition key of the result folders: one directory per acquisition
#: (:func:`nwwatch.paths.acquisition_of`: the folder the input files lie in),
#: ``acquisition=<folder name>-<8 hex of its path>``.
PARTITION_KEY = "acquisition"


def results_file_name(prefix: str, token: str | None = None) -> str:
    """The name of a new results file, ``{prefix}-{UTC time}-{token}.parquet``: names sort by
    creation time; ``token`` (default: 16 random hex digits) keeps names of the same
    microsecond apart and may say what wrote the file (a compaction's id)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}-{stamp}-{token or uuid.uuid4().hex[:16]}.parquet"


def acquisition_partition(source: str) -> str:
    """The partition directory name (``acquisition=<value>``) of a row whose input file is
    ``source`` (the row's ``source`` column, an absolute path). The value keeps the folder's
    name readable (characters other than letters, digits, ``-_.`` become ``_``) and adds a
    hash of the whole folder path, so that two folders of the same name never share a
    partition; it needs no escaping in a path or a hive reader."""
    parent = acquisition_of(source)
    name = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_"
                   for ch in os.path.basename(parent))[:60]
    digest = hashlib.sha1(parent.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{PARTITION_KEY}={name or 'root'}-{digest}"


def dataset_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files of one dataset folder (``frames`` or ``volumes``): those in its
    partition directories and any at its top (folders written before partitioning), hidden
    temporaries excluded; sorted."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*.parquet") if not p.name.startswith(".")) + sorted(
        p for p in root.glob(f"{PARTITION_KEY}=*/*.parquet") if not p.name.startswith("."))


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path`` atomically (temporary name, fsync, rename, fsync folder).

    Returns the final path. An existing file at ``path`` is replaced whole.
    """
    final = Path(path)
    with atomic_write(final) as handle:
        pq.write_table(table, handle, compression="zstd")
    return final


def warm_up_arrow() -> None:
    """Make the one-off imports of a first :func:`rows_to_table` now.

    pyarrow imports pandas on its first ``Table.from_pylist`` (0.15 s on an idle core,
    0.3-0.6 s on a busy one): the service and replay call this at start-up, so that their first
    batch's write, and replay's frames per second, do not carry it.
    """
    pa.Table.from_pylist([], schema=pa.schema([("warm_up", pa.float64())]))


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its text columns as ``string``: a results file written back by pandas
    (3 and later) holds ``large_string``, or ``dictionary`` for a categorical, and neither
    Arrow's string functions, a concatenation nor a schema union take two types of text."""
    def plain(type_: pa.DataType) -> pa.DataType:
        if pa.types.is_dictionary(type_):
            type_ = type_.value_type
        return pa.string() if pa.types.is_large_string(type_) else type_

    return pa.schema([field_.with_type(plain(field_.type)) for field_ in schema],
                     metadata=schema.metadata)


def plain_strings(table: pa.Table) -> pa.Table:
    """``table`` with its text columns as ``string`` (:func:`plain_schema`; the report, the
    dashboard and ``nwwatch compact`` stopped with Arrow's traceback on other text types)."""
    schema = plain_schema(table.schema)
    return table if schema.equals(table.schema) else table.cast(schema)


def merged_schema(schemas: Sequence[pa.Schema], promote_options: str = "default"
                  ) -> pa.Schema:
    """The schema of the rows of several results files together: the union of ``schemas``
    (``pa.unify_schemas`` with ``promote_options``), with every column that some of them
    lack nullable. A column added not-null by a later version (``reason_code``) holds null
    in the rows of files written before it, and a table declaring it not-null cannot be
    written (``nwwatch compact`` stopped on such a folder) nor trusted by a reader.

    Raises ``pa.ArrowInvalid`` or ``pa.ArrowTypeError`` where the columns do not fit together.
    """
    unified = pa.unify_schemas(list(schemas), promote_options=promote_options)
    absent = {name for schema in schemas for name in unified.names
              if schema.get_field_index(name) < 0}
    if not absent:
        return unified
    return pa.schema([f.with_nullable(True) if f.name in absent else f for f in unified],
                     metadata=unified.metadata)


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table from row dicts, refusing keys the schema does not know, and naive
    datetimes in a time zone's column (pyarrow takes their wall time for UTC: a local
    12:00 stored as 12:00 UTC, hours off).

    Missing keys become nulls (a non-nullable column then raises in pyarrow).
    """
    import datetime as dt

    names = set(schema.names)
    zoned = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.tz]
    for row in rows:
        unknown = set(row) - names
        if unknown:
            raise KeyError(f"row has columns not in the schema: {sorted(unknown)}")
        for name in zoned:
            value = row.get(name)
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                raise ValueError(f"{name}: {value} has no time zone; give a time-zone aware "
                                 f"datetime (e.g. datetime.now(UTC), or "
                                 f"value.astimezone(UTC) for a local time)")
    return pa.Table.from_pylist(rows, schema=schema)


def write_batch(
    rows: list[dict[str, Any]],
    schema: pa.Schema,
    folder: str | os.PathLike[str],
    prefix: str,
    name: str | None = None,
) -> Path:
    """Write ``rows`` as one new Parquet file in ``folder`` and return its path.

    File names sort by creation time: ``{prefix}-{UTC time}-{random}.parquet``; ``name``
    gives the file name instead (the service chooses it before writing, to record it in its
    ledger). An existing file of that name is an error: batches are never overwritten.
    """
    if name is None:
        name = results_file_name(prefix)
    final = Path(folder) / name
    if final.exists():
        raise FileExistsError(f"{final}: a batch file of this name already exists")
    return write_table_atomic(rows_to_table(rows, schema), final)


def drop_rows(path: str | os.PathLike[str], source_sha256: list[str],
              keep_batch_id: str | None = None, same: dict[str, str] | None = None
              ) -> pa.Table:
    """Remove the rows of the given input contents (``source_sha256``) from one batch file,
    except rows of batch ``keep_batch_id``; with ``same`` (column -> value, such as the
    ``model_sha256`` and ``measurement_version`` of the rows to replace) only rows with
    those values (a compacted file also holds the rows of the same contents made by other
    models). The file is rewritten atomically, or deleted when nothing is left. Returns the
    rows removed (none: the file is unchanged). Idempotent.
    """
    file = Path(path)
    table = pq.read_table(os.path.abspath(file))  # a relative "run:1/…" is no URI
    drop = pc.is_in(table.column("source_sha256"), pa.array(source_sha256, pa.string()))
    for column, value in (same or {}).items():
        if column in table.column_names:
            drop = pc.and_(drop, pc.equal(table.column(column), value))
    if keep_batch_id is not None and "batch_id" in table.column_names:
        other = pc.not_equal(table.column("batch_id"), keep_batch_id)
        drop = pc.and_(drop, pc.fill_null(other, True))
    drop = pc.fill_null(drop, False)
    if not pc.any(drop).as_py():
        return table.slice(0, 0)
    kept = table.filter(pc.invert(drop))
    if kept.num_rows:
        write_table_atomic(kept, file)
    else:
        file.unlink()
    return table.filter(drop)
