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
"""

from __future__ import annotations

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
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    values, valid = int_values(encoded.indices)
    if valid is not None:
        values = np.where(valid, values, -1)
    return values, encoded.dictionary.to_pylist()


def series_key(table: pa.Table) -> np.ndarray:
    """Per row, ``model_sha256`` and ``measurement_version`` joined by "/" (object array,
    shape (n,); "" where the results have neither column, e.g. rows of another writer)."""
    parts = [table[c].cast(pa.string()).fill_null("")
             for c in ("model_sha256", "measurement_version") if c in table.column_names]
    if not parts:
        return np.full(table.num_rows, "", dtype=object)
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "/")
    return joined.to_numpy(zero_copy_only=False).astype(object)


def newest_version_mask(table: pa.Table) -> np.ndarray:
    """True for the rows of ``table`` that belong to the newest version of their file: per
    ``source`` and series (:func:`series_key`), the rows of the ``source_sha256`` its latest
    ``processed_at`` belongs to. Boolean array, shape (n,).

    Rows with a null ``source_sha256`` are kept, and so is every row of a table without the
    ``source``, ``source_sha256`` or ``processed_at`` column (nothing tells versions apart).
    """
    n = table.num_rows
    names = set(table.column_names)
    if n == 0 or not {"source", "source_sha256", "processed_at"} <= names:
        return np.ones(n, dtype=bool)
    group = codes(table["source"])[0]
    for name in ("model_sha256", "measurement_version"):
        if name in names:
            code = codes(table[name])[0] + 1
            group = group * (int(code.max()) + 1) + code
    group = np.unique(group, return_inverse=True)[1].reshape(-1)  # 0 .. files-1
    sha = codes(table["source_sha256"])[0]
    pairs = group * (int(sha.max()) + 2) + (sha + 1)
    if np.unique(pairs).size == int(group.max()) + 1:
        return np.ones(n, dtype=bool)  # one version per file: the usual case
    when = epoch_s(table["processed_at"])
    when = np.where(np.isnan(when), -np.inf, when)
    order = np.lexsort((when, group))  # by file, then by processing time
    last = order[np.r_[group[order][1:] != group[order][:-1], True]]
    newest = np.full(int(group.max()) + 1, -1, dtype=np.int64)
    newest[group[last]] = sha[last]
    return (sha == newest[group]) | (sha < 0)


def newest_versions(table: pa.Table) -> pa.Table:
    """``table`` without the rows of earlier versions of its files
    (:func:`newest_version_mask`)."""
    keep = newest_version_mask(table)
    return table if keep.all() else table.filter(bool_mask(keep))
