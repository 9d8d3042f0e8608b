"""A results folder's rows as one table, for notebooks and scripts outside nwwatch.

pandas, pyarrow and DuckDB take a dataset's schema from its first file, and file names sort
by the time they were written, so in a folder that also holds files of an earlier nwwatch
version the columns added since are dropped, for every row (polars refuses the folder).
:func:`read_results` reads every file with the union of their columns instead (rows of a
file that lacks a column read null) and, by default, keeps each input file's newest version
as ``nwwatch status``, the dashboard and the report count it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from nwwatch.results.parquet import (
    PARTITION_KEY,
    acquisition_partition,
    dataset_files,
    merged_schema,
    plain_schema,
)
from nwwatch.results.quarantine import read_quarantined
from nwwatch.results.versions import newest_versions, read_reverted, without_repeated_rows

#: The datasets of a results folder :func:`read_results` reads.
KINDS: tuple[str, ...] = ("frames", "volumes")
#: What the rows of each dataset are, for messages.
ROWS_OF: dict[str, str] = {"frames": "frame rows (in-situ)", "volumes": "tomogram rows"}


class ResultsReadError(ValueError):
    """A results folder or one of its files that cannot be read; ``str`` names the path."""


class OtherKindWarning(UserWarning):
    """The kind asked for has no file in a results folder whose other kind has some (one
    ``[output] results`` serves an in-situ and a tomogram ``[[watch]]``, or the wrong ``kind``
    given); ``str`` names the folder, the other kind's file count and the ``kind=`` to give."""


def read_results(results_dir: str | os.PathLike[str], kind: str = "frames",
                 current: bool = True) -> pa.Table:
    """Every row of ``results_dir/frames`` (``kind="frames"``) or ``results_dir/volumes``
    (``"volumes"``) as one pyarrow table with the ``acquisition`` column of its partitions
    (rows of files outside them, written before results were partitioned: the acquisition
    their partition would name); ``.to_pandas()`` for a DataFrame.

    Columns are the union of those of every file (a column added by a later version reads
    null in rows of files written before it). ``current`` (default): a row written twice (a
    batch file copied, a compaction cut short) once, and only the rows of each input file's
    newest version, with ``RESULTS/reverted.parquet`` (files put back to
    earlier content) and ``RESULTS/quarantine.parquet`` (a file overwritten with a broken
    one supersedes its earlier rows) applied as ``nwwatch status`` applies them;
    ``current=False``: every row as the files hold them, every version's, and a row
    written twice (a compaction cut short, until the next one finishes it) twice. Rows of
    several models or measurement versions
    are all kept: select one series (``model_sha256``, ``measurement_version``) before
    counting or averaging.

    Raises :class:`ResultsReadError` naming the folder when it is no results folder (it
    holds neither ``frames`` nor ``volumes``), or naming the file that cannot be read; a
    ``kind`` that is not one of :data:`KINDS` raises ValueError listing them. A file removed
    between listing and reading (a compaction, the service replacing its files) makes the
    folder be listed again. A ``kind`` of which the folder holds no file yet gives a table of
    no rows with the columns nwwatch writes for that kind and ``acquisition``; where the
    other kind's folder holds files (a service with an in-situ and a tomogram watch before
    its first tomogram, or the wrong ``kind``) it also warns (:class:`OtherKindWarning`)
    naming their count and the ``kind`` to give."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    root = Path(results_dir)
    if not root.is_dir():
        raise ResultsReadError(f"{root}: no such results folder")
    if not any((root / name).is_dir() for name in KINDS):
        raise ResultsReadError(f"{root}: not a results folder (it holds no frames/ or "
                               "volumes/ folder)")
    folder = root / kind
    other = next(name for name in KINDS if name != kind)
    if not dataset_files(folder):
        # not an error: one results folder serves every [[watch]], and a tomogram watch's
        # volumes/ stays empty until its first tomogram is done
        n_other = len(dataset_files(root / other))
        if n_other:
            warnings.warn(f"{root}: no {ROWS_OF[kind]} yet ({kind}/ holds no file); "
                          f"{other}/ holds {n_other} file{'s' if n_other > 1 else ''} of "
                          f"{ROWS_OF[other]}: read them with "
                          f"read_results(..., kind={other!r})", OtherKindWarning,
                          stacklevel=2)
        return _empty_table(kind)
    for attempt in range(READ_ATTEMPTS):
        try:
            table = _read_dataset(folder)
            break
        except FileNotFoundError:  # a file replaced by a compaction meanwhile: list again
            if attempt == READ_ATTEMPTS - 1:
                raise ResultsReadError(f"{folder}: its files kept changing while they were "
                                       "read (a compaction or the service writing); read "
                                       "again") from None
    if table.num_columns == 0:  # its files removed since it was listed
        return _empty_table(kind)
    if not current or table.num_rows == 0 or "source" not in table.column_names:
        return table
    # as the dashboard counts: a row written twice (a copied batch file, a compaction cut
    # short) once, then each file's newest version
    return newest_versions(without_repeated_rows(table), read_reverted(root),
                           read_quarantined(root))


#: How often :func:`read_results` lists and reads a folder whose files are replaced meanwhile.
READ_ATTEMPTS = 5


def _empty_table(kind: str) -> pa.Table:
    """A table of no rows with the columns nwwatch writes for ``kind`` and ``acquisition``:
    code that selects a column (``frames.angle_valid``) runs on a folder without such rows
    yet, as on one with them."""
    # the writers' column lists, imported here (not at the top): the results layer takes
    # them from its producers, and only this reader of an empty kind needs them
    if kind == "frames":
        from nwwatch.measure.result import MEASUREMENT_FIELDS
        from nwwatch.results.schema import frame_schema

        schema = frame_schema(MEASUREMENT_FIELDS)
    else:
        from nwwatch.results.schema import volume_schema
        from nwwatch.volume.metrics import VOLUME_METRIC_FIELDS

        schema = volume_schema(VOLUME_METRIC_FIELDS)
    return schema.append(pa.field(PARTITION_KEY, pa.string())).empty_table()


def _read_dataset(folder: Path) -> pa.Table:
    """Every file of ``folder`` with the union of their columns and the partition column;
    FileNotFoundError when a file listed is gone before it is read."""
    files = dataset_files(folder)
    if not files:
        return pa.table({})
    schemas = []
    for path in files:
        try:
            # through a file object: pyarrow reads a path string as a URI where it can ("run:1/
            # frames/…" as the scheme "run"), and refuses a name that is not UTF-8
            with open(path, "rb") as handle:
                schemas.append(plain_schema(pq.read_schema(handle)))
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowInvalid) as error:
            raise ResultsReadError(f"{path}: not a readable Parquet file ({error})") from error
    # a partition column a file also holds inside (none of nwwatch's) would clash
    try:
        # a not-null column some files lack (reason_code, added in measurement 2.0.0) is
        # nullable: their rows read null there
        schema = merged_schema([s.remove(s.get_field_index(PARTITION_KEY))
                                if PARTITION_KEY in s.names else s for s in schemas],
                               promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ResultsReadError(f"{folder}: its files' columns do not fit together (a file "
                               f"written by another tool?): {error}") from error
    partition = pa.field(PARTITION_KEY, pa.string())
    try:
        # absolute paths on the local file system: never read as URIs (see above)
        dataset = ds.dataset([os.path.abspath(p) for p in files],
                             schema=schema.append(partition), format="parquet",
                             filesystem=pafs.LocalFileSystem(),
                             partition_base_dir=os.path.abspath(folder),
                             partitioning=ds.partitioning(pa.schema([partition]),
                                                          flavor="hive"))
    except UnicodeEncodeError:
        raise ResultsReadError(
            f"{os.path.abspath(folder)!r}: pyarrow's datasets take paths in UTF-8 only, and "
            "this one is not: rename the folder, or read it through a symbolic link whose "
            "name is UTF-8") from None
    try:
        return _with_acquisitions(dataset.to_table())
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ResultsReadError(f"{folder}: {error}") from error


def _with_acquisitions(table: pa.Table) -> pa.Table:
    """``table`` with the ``acquisition`` of rows outside partitions (files at the top of
    ``frames/``, written before results were partitioned, some holding rows of several
    acquisitions) taken from their ``source``, as their partition would name it: a
    ``groupby("acquisition")`` left those rows out."""
    column = table.column(PARTITION_KEY)
    if column.null_count == 0 or "source" not in table.column_names:
        return table
    # only where the partition is null, once a distinct source (a stack's frames share it),
    # the partition's hash once a folder (the acquisition is the file's folder's)
    missing = pc.is_null(column)
    sources = pc.unique(pc.filter(table.column("source"), missing)).drop_null()
    by_folder: dict[str, str] = {}
    named = pa.array([by_folder.get(folder) or by_folder.setdefault(
                          folder, acquisition_partition(source).split("=", 1)[1])
                      for source in sources.to_pylist()
                      for folder in (os.path.dirname(source),)], pa.string())
    found = pc.take(named, pc.index_in(table.column("source"), value_set=sources))
    filled = pc.if_else(missing, found, column)
    return table.set_column(table.schema.get_field_index(PARTITION_KEY), PARTITION_KEY,
                            filled)
