"""Which result rows describe the input files as they are now.

A file is its content (docs/service.md): a stack its writer grows page by page, closing it
after each page, is processed again with every version, and its first pages get a row each
time. Every version's rows stay in the Parquet files (they are results of the file as it was);
the *newest* version's rows describe the file as it is, and those of earlier versions are
*superseded*. The dashboard, ``nwwatch report`` and ``nwwatch status`` all pick the rows with
:func:`newest_version_mask`, so they agree.

Rows of another model or measurement version (a folder processed again after a model
change) are a series of their own (:func:`series_key`), never an earlier version: each
series keeps the newest version of each of its files.

A file put back to content already processed (v1 -> v2 -> v1 under one name) is not
processed again (the ledger is keyed by content), so no row says that v1 is current again:
the service records it in ``RESULTS/reverted.parquet`` (:data:`REVERTED_FILE`, one row per
file and series: the content it holds and when it was found back), and the rule reads that
time as a processing time of that content (:func:`newest_version_mask`). A quarantined
file is read the same way: since it was quarantined it holds the content it was quarantined
for, which a broken file's overwrite has no rows of.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: The columns :func:`newest_version_mask` reads (those a table lacks are treated as null).
VERSION_COLUMNS: tuple[str, ...] = ("source", "source_sha256", "processed_at", "model_sha256",
                                    "measurement_version")


def epoch_s(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps -> float64 seconds since the epoch, shape (n,) (NaN for null)."""
    us, valid = int_values(column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()))
    seconds = us.astype(np.float64) / 1e6
    return seconds if valid is None else np.where(valid, seconds, np.nan)


# pyarrow's to_numpy() with a copy, pa.scalar, pa.array and Acero's group_by each import
# pandas, 0.2-0.4 s of every `nwwatch status` (which needs none of it): integers and masks
# cross between Arrow and numpy through their buffers instead.
def int_values(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """An integer column as (int64 values, shape (n,); bool validity, shape (n,), or None
    when no value is null). Values under a null are undefined."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n, offset = len(array), array.offset
    width = array.type.bit_width // 8
    dtype = np.dtype(f"<i{width}") if pa.types.is_signed_integer(array.type) \
        else np.dtype(f"<u{width}")
    values = np.frombuffer(array.buffers()[1], dtype=dtype, count=offset + n)[offset:]
    bitmap = array.buffers()[0]
    if array.null_count == 0 or bitmap is None:
        return values.astype(np.int64), None
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return values.astype(np.int64), bits[offset:offset + n].astype(bool)


def bool_mask(keep: np.ndarray) -> pa.BooleanArray:
    """A numpy bool array, shape (n,), as an Arrow mask for ``Table.filter``."""
    packed = np.packbits(np.asarray(keep, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(keep), [None, pa.py_buffer(packed)])


def codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """(int64 code per row, shape (n,), equal values equal codes, -1 for null; the values,
    indexed by code)."""
    if pa.types.is_null(column.type):  # a column with no value at all
        return np.full(len(column), -1, dtype=np.int64), []
    if pa.types.is_dictionary(column.type):  # chunks of dictionaries of their own
        column = pa.chunked_array([c.dictionary_decode() for c in column.chunks],
                                  column.type.value_type)
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    values, valid = int_values(encoded.indices)
    if valid is not None:
        values = np.where(valid, values, -1)
    return values, encoded.dictionary.to_pylist()


def row_groups(table: pa.Table, names: Iterable[str]) -> np.ndarray:
    """Per row of ``table``, the number of its group, 0 .. groups-1: rows equal in each of the
    columns ``names`` that ``table`` has (null equal to null) share one; numbered in the order
    of the columns' values (:func:`codes`). int64, shape (n,); all 0 without such a column."""
    group = np.zeros(table.num_rows, dtype=np.int64)
    size = 1  # group < size
    for name in names:
        if name not in table.column_names:
            continue
        code, values = codes(table[name])
        radix = len(values) + 1
        if size * radix >= 1 << 62:  # renumber before the product could overflow int64
            group = np.unique(group, return_inverse=True)[1].reshape(-1)
            size = int(group.max()) + 1
        group, size = group * radix + (code + 1), size * radix
    return np.unique(group, return_inverse=True)[1].reshape(-1)


def newest_of_groups(group: np.ndarray, when_s: np.ndarray) -> np.ndarray:
    """Per group of :func:`row_groups`, the index of its row with the latest ``when_s`` (epoch s,
    shape (n,); NaN before any time; of rows at one time the last). int64, ascending group."""
    if group.size == 0:
        return np.zeros(0, dtype=np.int64)
    when_s = np.where(np.isnan(when_s), -np.inf, when_s)
    order = np.lexsort((when_s, group))  # by group, then by time (stable: then by row)
    return order[np.r_[group[order][1:] != group[order][:-1], True]]


def series_key(table: pa.Table) -> np.ndarray:
    """Per row, ``model_sha256`` and ``measurement_version`` joined by "/" (object array,
    shape (n,); "" where the results have neither column, e.g. rows of another writer)."""
    parts = [table[c].cast(pa.string()).fill_null("")
             for c in ("model_sha256", "measurement_version") if c in table.column_names]
    if not parts:
        return np.full(table.num_rows, "", dtype=object)
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "/")
    return joined.to_numpy(zero_copy_only=False).astype(object)


def newest_version_mask(table: pa.Table, reverted: pa.Table | None = None,
                        quarantined: pa.Table | None = None) -> np.ndarray:
    """True for the rows of ``table`` that belong to the newest version of their file: per
    ``source`` and series (:func:`series_key`), the rows of the ``source_sha256`` its latest
    ``processed_at`` belongs to. Boolean array, shape (n,).

    ``reverted``: the rows of ``RESULTS/reverted.parquet`` (:func:`read_reverted`): a file
    found holding content processed before counts that content as processed at
    ``reverted_at``. A record of content without rows of that file and series in ``table``
    changes nothing.

    ``quarantined``: the quarantined files (``path``, ``quarantined_at``, optionally
    ``sha256``; the rows of ``RESULTS/quarantine.parquet``): the file holds, since
    ``quarantined_at``, the content it was quarantined for. Content without rows of that
    series (a file overwritten with a broken one, whose earlier rows were still counted
    beside its quarantine; a null ``sha256``: never hashed) makes its earlier rows an
    earlier version's; content with rows there (quarantined by another model only) keeps
    them current.

    Rows with a null ``source_sha256`` are kept, and so is every row of a table without the
    ``source``, ``source_sha256`` or ``processed_at`` column (nothing tells versions apart).
    """
    n = table.num_rows
    names = set(table.column_names)
    if n == 0 or not {"source", "source_sha256", "processed_at"} <= names:
        return np.ones(n, dtype=bool)
    columns = [c for c in VERSION_COLUMNS if c in names]
    gone = _quarantine_records(table, quarantined)
    if gone is not None:
        reverted = gone if reverted is None else pa.concat_tables(
            [reverted.select(gone.column_names).cast(gone.schema), gone])
    records = 0 if reverted is None else reverted.num_rows
    if records:  # the records as rows of their content, processed when found back
        both = {c: pa.chunked_array(
            table[c].chunks + reverted[c if c != "processed_at" else "reverted_at"]
            .cast(table[c].type).chunks, table[c].type) for c in columns}
    else:
        both = {c: table[c] for c in columns}
    group = row_groups(pa.table(both), ("source", "model_sha256", "measurement_version"))
    sha = codes(both["source_sha256"])[0]
    pairs = group * (int(sha.max()) + 2) + (sha + 1)
    quarantine = np.zeros(len(group) - n, dtype=bool)
    if gone is not None:
        quarantine[records - gone.num_rows:] = True
    if np.unique(pairs[:n]).size == np.unique(group[:n]).size and not quarantine.any():
        return np.ones(n, dtype=bool)  # one version per file: the usual case
    # records count only for a (file, content) that has rows; a quarantine, for a file that
    # has rows
    use = np.r_[np.ones(n, dtype=bool),
                (np.isin(pairs[n:], pairs[:n]) & (sha[n:] >= 0)) | quarantine]
    group, sha = group[use], sha[use]
    last = newest_of_groups(group, epoch_s(both["processed_at"])[use])
    newest = np.full(int(group.max()) + 1, -1, dtype=np.int64)
    newest[group[last]] = sha[last]
    return (sha[:n] == newest[group[:n]]) | (sha[:n] < 0)


#: The content a quarantine record stands for (:func:`newest_version_mask`): no row has it.
QUARANTINED_CONTENT = "quarantined"


def _quarantine_records(table: pa.Table, quarantined: pa.Table | None) -> pa.Table | None:
    """Records in the form of :func:`reverted_schema` for each series of each file of
    ``table`` that ``quarantined`` lists: its quarantined content (``sha256``, else
    :data:`QUARANTINED_CONTENT`), at ``quarantined_at``. None when no quarantined file has
    rows in ``table``."""
    if quarantined is None or quarantined.num_rows == 0:
        return None
    listed = pc.is_in(table["source"], value_set=quarantined["path"].cast(pa.string()))
    if not pc.any(listed).as_py():
        return None
    series = ["source"] + [c for c in ("model_sha256", "measurement_version")
                           if c in table.column_names]
    rows = table.filter(listed).select(series)
    first = np.unique(row_groups(rows, series), return_index=True)[1]
    rows = rows.take(pa.array(first))
    shas = (quarantined["sha256"].to_pylist() if "sha256" in quarantined.column_names
            else [None] * quarantined.num_rows)
    at = {path: (when, sha or QUARANTINED_CONTENT)
          for path, when, sha in zip(quarantined["path"].to_pylist(),
                                     quarantined["quarantined_at"].to_pylist(), shas,
                                     strict=True)}
    n = rows.num_rows
    none = pa.nulls(n, pa.string())
    sources = rows["source"].to_pylist()
    return pa.table({
        "source": rows["source"].cast(pa.string()),
        "source_sha256": pa.array([at[s][1] for s in sources], pa.string()),
        "model_sha256": rows["model_sha256"].cast(pa.string())
        if "model_sha256" in rows.column_names else none,
        "measurement_version": rows["measurement_version"].cast(pa.string())
        if "measurement_version" in rows.column_names else none,
        "reverted_at": pa.array([at[s][0] for s in sources], pa.timestamp("us", tz="UTC")),
    })


def newest_versions(table: pa.Table, reverted: pa.Table | None = None,
                    quarantined: pa.Table | None = None) -> pa.Table:
    """``table`` without the rows of earlier versions of its files
    (:func:`newest_version_mask`)."""
    keep = newest_version_mask(table, reverted, quarantined)
    return table if keep.all() else table.filter(bool_mask(keep))


#: The columns that make a result row unique in a results folder: a content is processed once
#: per model and measurement version (the ledger's key), one row per page of it.
ROW_KEY_COLUMNS: tuple[str, ...] = ("source_sha256", "frame", "model_sha256",
                                    "measurement_version")


def without_repeated_rows(table: pa.Table) -> pa.Table:
    """``table`` with each row of one content, page, model and measurement version
    (:data:`ROW_KEY_COLUMNS`, those the table has) kept once, the newest by ``processed_at``.

    A results folder holds such a row twice only for a moment a folder cannot avoid (a
    compaction between the rename of its file and the deletion of the files it replaces, or
    cut short there until the next start; ``replay --force`` before it rewrites the earlier
    files), or when someone copied a results file inside it. Rows with a null
    ``source_sha256`` are kept, and so is a table without that column."""
    n = table.num_rows
    if n < 2 or "source_sha256" not in table.column_names:
        return table
    group = row_groups(table, ROW_KEY_COLUMNS)
    if int(group.max()) + 1 == n:
        return table  # the usual case
    when = (epoch_s(table["processed_at"]) if "processed_at" in table.column_names
            else np.zeros(n))
    last = np.zeros(n, dtype=bool)
    last[newest_of_groups(group, when)] = True
    return table.filter(bool_mask(last | (codes(table["source_sha256"])[0] < 0)))


#: Files found holding content processed before, in a results folder (module docstring).
REVERTED_FILE = "reverted.parquet"


def reverted_schema() -> pa.Schema:
    """source (display form, as in the rows), source_sha256, model_sha256,
    measurement_version (the series), reverted_at (UTC): one row per file and series."""
    return pa.schema([pa.field("source", pa.string()), pa.field("source_sha256", pa.string()),
                      pa.field("model_sha256", pa.string()),
                      pa.field("measurement_version", pa.string()),
                      pa.field("reverted_at", pa.timestamp("us", tz="UTC"))])


def read_reverted(results_dir: str | os.PathLike[str]) -> pa.Table | None:
    """``RESULTS/reverted.parquet``, or None when there is none (no file was ever put back)
    or it cannot be read (damaged: then the rows' own times decide)."""
    import pyarrow.parquet as pq

    path = Path(results_dir) / REVERTED_FILE
    if not path.is_file():
        return None
    try:  # ParquetFile: pq.read_table imports pandas, which `nwwatch status` spares
        # a file object: a path string is read as a URI where it can ("run:1/…")
        with open(path, "rb") as handle, pq.ParquetFile(handle) as parquet:
            return parquet.read(use_threads=False).cast(reverted_schema())
    except (OSError, ValueError):  # damaged (pyarrow's errors are ValueErrors)
        return None


def write_reverted(table: pa.Table, results_dir: str | os.PathLike[str]) -> Path:
    """Replace ``RESULTS/reverted.parquet`` by ``table`` (:func:`reverted_schema`),
    atomically. Returns its path."""
    from nwwatch.results.parquet import write_table_atomic

    return write_table_atomic(table.cast(reverted_schema()), Path(results_dir) / REVERTED_FILE)
