"""``nwwatch compact``: the many small batch files of an acquisition become one file,
sorted by (source, frame), in the acquisition's partition directory
(``frames/acquisition=<key>/``, :func:`nwwatch.results.parquet.acquisition_partition`),
without a crash ever losing or doubling a row.

An acquisition is the folder its input files lie in (:func:`nwwatch.paths.acquisition_of`).
A batch file is compacted when all its rows belong to one acquisition (files that mix
acquisitions, at the boundary of two, stay as they are). Steps, each recorded in the
ledger's ``compactions`` table so that a kill at any point is finished or undone at the
next start (``reconcile``):

1. read the acquisition's committed batch files, sort, check the row count, and write the
   result to ``RESULTS/compact-staging/`` (outside the dataset folders: readers never see it),
   atomically (:mod:`nwwatch.atomic`);
2. record the compaction (state ``staged``): new name, old batches and files;
3. rename the staged file into its partition of ``frames/`` (or ``volumes/``) and fsync both
   folders;
4. in one ledger transaction: a new committed batch for the file, the old batches' items moved
   to it, the old batches left without a file (state ``switched``);
5. delete the old files, then the record.

Recovery: a ``staged`` record whose file was not renamed yet is undone (staged file deleted);
once renamed it is rolled forward (steps 4 and 5); ``switched`` finishes step 5. Staged files
without a record are deleted.

The ledger's lock is held throughout: compaction runs while the service is stopped (or
between replays), like ``nwwatch ledger rebuild``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nwwatch.atomic import fsync_folder
from nwwatch.paths import (
    acquisition_named,
    acquisition_of,
    default_ledger,
    is_time_tree_folder,
)
from nwwatch.pathtext import path_text
from nwwatch.results.parquet import (
    PARTITION_KEY,
    acquisition_partition,
    merged_schema,
    plain_strings,
    results_file_name,
    write_table_atomic,
)
from nwwatch.service.crashpoints import crash_point
from nwwatch.service.ledger import Ledger
from nwwatch.service.lock import ledger_kept_elsewhere
from nwwatch.service.reporting import COMPACTED_BATCH_PREFIX

STAGING_DIR = "compact-staging"
#: Dataset folder -> (ledger kind, sort keys).
_FOLDERS = {"frames": ("insitu", ["source", "frame"]), "volumes": ("tomogram", ["source"])}


@dataclass
class CompactReport:
    """What ``compact`` did: acquisitions compacted, files before and after, rows moved,
    files left alone because they mix acquisitions, interrupted compactions recovered."""

    acquisitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    mixed_files: list[str] = field(default_factory=list)
    #: Files that cannot be read (damaged): left as they are.
    unreadable_files: list[str] = field(default_factory=list)
    #: Files the ledger names that no longer exist (deleted by hand).
    missing_files: list[str] = field(default_factory=list)
    recovered: int = 0
    compacted: list[str] = field(default_factory=list)
    #: Acquisitions asked for (all, or ``acquisition``) held in fewer than ``min_files``
    #: files: nothing to merge (one file already, e.g. a replay's or a compacted one).
    below_min_files: int = 0


def compact(results_dir: str | os.PathLike[str], ledger_path: str | os.PathLike[str] | None =
            None, *, acquisition: str | os.PathLike[str] | None = None, min_files: int = 2,
            max_attempts: int = 3) -> CompactReport:
    """Compact every acquisition of ``results_dir`` held in at least ``min_files`` batch files
    (only ``acquisition``, an input folder, when given). Finishes or undoes interrupted
    compactions first. Raises ``LedgerBusyError`` while a service or replay holds the ledger,
    and ``FileNotFoundError``, creating nothing, where there is no ledger (not a results
    folder: an acquisition folder, say), or when ``acquisition`` has no rows here.
    """
    results = Path(results_dir)
    ledger_file = Path(ledger_path) if ledger_path else default_ledger(results)
    if not ledger_file.is_file():
        other = ledger_kept_elsewhere(results, ledger_file)
        if other is not None:  # not a lost ledger: a rebuild here would make a second one
            raise FileNotFoundError(f"{results}: its ledger is {other} ([state] ledger of the "
                                    f"service that writes here): give --ledger {other}")
        if ledger_path:  # the ledger named is missing, not necessarily the results folder
            raise FileNotFoundError(f"--ledger {ledger_file}: no such file (the ledger of the "
                                    f"service that writes {results}: its [state] ledger)")
        raise FileNotFoundError(f"{results}: not a results folder: no ledger {ledger_file} "
                                "(nothing processed yet? a lost ledger: nwwatch ledger rebuild)")
    ledger = Ledger(ledger_file, results)
    report = CompactReport()
    try:
        report.recovered = len(recover_compactions(ledger))
        ledger.reconcile(max_attempts)
        wanted = None if acquisition is None else _acquisition_given(results, acquisition)
        seen: set[str] = set()  # every acquisition with committed rows
        # Only the wanted acquisition's partition is read (and files outside partitions,
        # whose rows may be any acquisition's): a long run has thousands of files.
        wanted_dir = None if wanted is None else _partition_dir(wanted)
        skipped: list[str] = []
        for folder, (kind, keys) in _FOLDERS.items():
            # A file may hold several batches (nwwatch.service.flush): grouped by file.
            files: dict[str, list[str]] = defaultdict(list)
            for batch_id, rel, _ in ledger.queries.committed_batches(folder):
                files[rel].append(batch_id)
            groups: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
            for rel, batch_ids in files.items():
                if wanted_dir is not None and _other_partition(Path(rel).parent.name,
                                                               wanted_dir):
                    skipped.append(rel)
                    continue
                try:
                    acqs = _acquisitions_in(results / rel)
                except (OSError, pa.ArrowInvalid):  # damaged: never rewritten or deleted here
                    missing = not (results / rel).exists()
                    (report.missing_files if missing else report.unreadable_files).append(rel)
                    continue
                seen |= acqs
                if len(acqs) != 1:
                    report.mixed_files.append(rel)
                    continue
                groups[acqs.pop()].append((rel, batch_ids))
            for acq, group in groups.items():
                if wanted is not None and acq != wanted:
                    continue
                # a file outside its partition (written before results were partitioned)
                # moves into it, alone too: the readers of the partitions miss it there
                unplaced = any(Path(rel).parent.name == folder for rel, _ in group)
                if len(group) < min_files and not unplaced:
                    report.below_min_files += 1
                    continue
                final = _compact_group(ledger, folder, kind, keys, group)
                report.acquisitions += 1
                report.files_before += len(group)
                report.files_after += 1
                report.rows += pq.ParquetFile(os.path.abspath(results / final)).metadata.num_rows
                report.compacted.append(final)
        _remove_empty_staging(results)
        if wanted is not None and wanted not in seen:
            for rel in skipped:  # named in the message: the acquisitions there are
                with contextlib.suppress(OSError, pa.ArrowInvalid):
                    seen |= _acquisitions_in(results / rel)
            # a typo must not read as "nothing left to compact"
            raise FileNotFoundError(
                f"{results}: no results of acquisition {wanted} (acquisitions here: "
                f"{', '.join(sorted(seen)) or 'none'})")
    finally:
        ledger.close()
    return report


def _acquisition_given(results: Path, folder: str | os.PathLike[str]) -> str:
    """The acquisition a person names by ``folder``: the folder itself where results of it
    are partitioned here (files directly in a folder named ``Hour_01``), else as
    :func:`nwwatch.paths.acquisition_named` reads a Gatan time-tree folder (its recording)."""
    literal = path_text(os.path.abspath(folder))
    own = _partition_dir(literal)
    if own is not None and any((results / kind / own).is_dir() for kind in _FOLDERS):
        return literal
    return acquisition_named(literal)


def _acquisitions_in(path: Path) -> set[str]:
    """The acquisitions (:func:`nwwatch.paths.acquisition_of`) of the rows of the results file
    at ``path``; OSError or ``pa.ArrowInvalid`` when it cannot be read."""
    sources = pq.read_table(os.path.abspath(path), columns=["source"]).column("source")
    return {acquisition_of(s) for s in sources.unique().to_pylist()}


def _other_partition(folder: str, wanted_dir: str) -> bool:
    """Whether the results folder ``folder`` is another acquisition's partition than
    ``wanted_dir``. A partition named after a Gatan time-tree folder (``Second_00``...) may
    hold any recording's rows: results written before a recording was one acquisition filed
    each of its seconds apart."""
    prefix = f"{PARTITION_KEY}="
    if not folder.startswith(prefix) or folder == wanted_dir:
        return False
    return not is_time_tree_folder(folder[len(prefix):].rpartition("-")[0])


def _partition_dir(acquisition: str) -> str | None:
    """The partition directory (``acquisition=...``) of the rows of ``acquisition``, or None
    where the acquisition is not a folder whose files form it (a series of sub-folders)."""
    probe = os.path.join(acquisition, "probe.tif")
    return acquisition_partition(probe) if acquisition_of(probe) == acquisition else None


def _compact_group(ledger: Ledger, folder: str, kind: str, keys: list[str],
                   files: list[tuple[str, list[str]]]) -> str:
    results = ledger.results_dir
    tables = [plain_strings(_without_partition(pq.read_table(os.path.abspath(results / rel))))
              for rel, _ in files]
    # rows of files written before a not-null column was added (measurement 1.0.0 without
    # reason_code) hold null there: the merged file declares such columns nullable
    schema = merged_schema([t.schema for t in tables])
    table = pa.concat_tables(tables, promote_options="default").cast(schema)
    if table.num_rows != sum(t.num_rows for t in tables):
        raise RuntimeError(f"compaction of {files[0][0]}…: row count changed")
    table = table.sort_by([(k, "ascending") for k in keys])
    cid = f"{COMPACTED_BATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    partition = acquisition_partition(table.column("source")[0].as_py())
    final_rel = f"{folder}/{partition}/{results_file_name(folder, cid)}"
    staged_rel = f"{STAGING_DIR}/{Path(final_rel).name}"
    write_table_atomic(table, results / staged_rel)  # step 1
    crash_point("compact_staged")
    ids = [b for _, batch_ids in files for b in batch_ids]
    aux = [a for b, _, aux_b in ledger.queries.committed_batches(folder) if b in ids
           for a in aux_b]
    record = {"id": cid, "kind": kind, "staged": staged_rel, "final": final_rel,
              "old_batches": ids, "old_files": [r for r, _ in files], "aux": aux,
              "n_rows": table.num_rows}
    with ledger.transaction() as db:  # step 2
        db.execute("INSERT INTO compactions (id, kind, state, staged, final, old_batches, "
                   "old_files, aux, n_rows, created_at) VALUES (?, ?, 'staged', ?, ?, ?, ?, ?, "
                   "?, ?)",
                   (cid, kind, staged_rel, final_rel, json.dumps(ids),
                    json.dumps(record["old_files"]), json.dumps(aux), table.num_rows,
                    time.time()))
    crash_point("compact_recorded")
    _rename(results, staged_rel, final_rel)  # step 3
    crash_point("compact_renamed")
    _switch(ledger, record)  # step 4
    crash_point("compact_switched")
    _finish(ledger, record)  # step 5
    return final_rel


def _without_partition(table: pa.Table) -> pa.Table:
    """A file read by itself has no partition column; dropped in case a reader added it."""
    if PARTITION_KEY in table.column_names:
        return table.drop_columns([PARTITION_KEY])
    return table


def _rename(results: Path, staged_rel: str, final_rel: str) -> None:
    final = results / final_rel
    if not final.parent.is_dir():  # a new partition directory, made durable first
        final.parent.mkdir(parents=True)
        fsync_folder(final.parent.parent)
    os.replace(results / staged_rel, final)
    fsync_folder(final.parent)
    fsync_folder((results / staged_rel).parent)


def _switch(ledger: Ledger, record: dict) -> None:
    ids = record["old_batches"]
    marks = ",".join("?" * len(ids))
    with ledger.transaction() as db:
        created, committed = db.execute(
            f"SELECT MIN(created_at), MAX(committed_at) FROM batches WHERE batch_id IN ({marks})",
            ids).fetchone()
        # The new batch takes the old ones' rows and times (throughput stays as it was).
        db.execute("INSERT INTO batches (batch_id, kind, state, parquet, aux, n_rows, "
                   "created_at, committed_at) VALUES (?, ?, 'committed', ?, ?, ?, ?, ?)",
                   (record["id"], record["kind"], record["final"], json.dumps(record["aux"]),
                    record["n_rows"], created, committed))
        db.execute(f"UPDATE items SET batch_id=? WHERE batch_id IN ({marks})",
                   [record["id"], *ids])
        db.execute(f"UPDATE batches SET parquet='', n_rows=0 WHERE batch_id IN ({marks})", ids)
        db.execute("UPDATE compactions SET state='switched' WHERE id=?", (record["id"],))


def _finish(ledger: Ledger, record: dict) -> None:
    results = ledger.results_dir
    folders = set()
    for rel in record["old_files"]:
        (results / rel).unlink(missing_ok=True)
        folders.add((results / rel).parent)
        crash_point("compact_deleting")
    for folder in folders:
        fsync_folder(folder)
    with ledger.transaction() as db:
        db.execute("DELETE FROM compactions WHERE id=?", (record["id"],))


def recover_compactions(ledger: Ledger) -> list[str]:
    """Finish or undo compactions a crash interrupted (see the module docstring); delete
    staged files without a record. Returns the ids of the compactions recovered."""
    results = ledger.results_dir
    records = ledger.queries.compactions()
    for rec in records:
        if rec["state"] == "staged":
            if (results / rec["final"]).is_file():  # renamed: roll forward
                _switch(ledger, rec)
            else:  # not visible to readers yet: undo
                (results / rec["staged"]).unlink(missing_ok=True)
                with ledger.transaction() as db:
                    db.execute("DELETE FROM compactions WHERE id=?", (rec["id"],))
                continue
        _finish(ledger, rec)
    staging = results / STAGING_DIR
    if staging.is_dir():
        for leftover in staging.iterdir():
            leftover.unlink(missing_ok=True)
    _remove_empty_staging(results)
    return [r["id"] for r in records]


def _remove_empty_staging(results: Path) -> None:
    """Remove ``RESULTS/compact-staging/`` once empty: a folder left in the results reads as
    unfinished work to whoever looks at them."""
    try:
        (results / STAGING_DIR).rmdir()
    except OSError:  # absent, or holds a file (of a compaction under way elsewhere): kept
        pass
