"""Rebuild a lost or damaged ledger from the results it describes.

Every result row carries ``source_sha256``, ``model_sha256``, ``measurement_version`` and
``batch_id``: each Parquet batch file under ``frames/`` and ``volumes/`` becomes a committed
batch again and each (content, model, measurement version) in it a ``done`` item, so nothing
already in the results is processed a second time. An item's processing time is the latest
``processed_at`` of its rows, a batch's commit time the latest of the file's rows (the file's
mtime for rows without one). The quarantine list is read back from ``quarantine.parquet``
(:func:`_restore_quarantine`; where that file does not read, those files are tried again and
quarantined again). Not recovered: the hash cache (files are hashed again once).

- The service does it by itself at start when the ledger is missing or empty next to existing
  results and every results file reads (:func:`open_ledger`); otherwise it refuses to start
  (exit 78) and names the command.
- ``nwwatch ledger rebuild RESULTS`` does it on demand: an existing ledger (e.g. a damaged
  one) is moved aside first, never deleted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nwwatch.paths import default_ledger
from nwwatch.results.versions import epoch_s
from nwwatch.service.ledger import ItemKey, Ledger
from nwwatch.service.ledgerdb import rebuild_command
from nwwatch.service.lock import (
    LedgerElsewhereError,
    LedgerLock,
    LedgerOfAnotherFolderError,
    another_folders_ledger,
    ledger_kept_elsewhere,
)

#: Result folders and the kind of their rows.
RESULT_FOLDERS = {"frames": "insitu", "volumes": "tomogram"}
_COLUMNS = ["source", "source_sha256", "model_sha256", "measurement_version", "batch_id"]


class LedgerMissingError(RuntimeError):
    """Results exist but their ledger is missing or empty and cannot be rebuilt by itself."""


class ResultsNotHeldError(LedgerMissingError):
    """The ledger names results files and the results folder holds none of them: a share
    not mounted, a new or emptied results folder beside a ledger kept elsewhere, or another
    folder's ledger."""


@dataclass
class RebuildReport:
    files: int = 0
    batches: int = 0
    items: int = 0
    rows: int = 0
    unreadable: list[str] = field(default_factory=list)
    moved_aside: list[str] = field(default_factory=list)
    quarantined: int = 0  # entries of quarantine.parquet put back in the list


def batch_files(results_dir: str | os.PathLike[str]) -> list[Path]:
    """The Parquet batch files of a results folder (hidden temporaries excluded)."""
    from nwwatch.results.parquet import dataset_files

    return [p for sub in RESULT_FOLDERS for p in dataset_files(Path(results_dir) / sub)]


def _folder(file: Path) -> str:
    """``frames`` or ``volumes``: the dataset folder of a file (in a partition or not)."""
    return file.parent.name if file.parent.name in RESULT_FOLDERS else file.parent.parent.name


def rebuild(ledger: Ledger, strict: bool = True) -> RebuildReport:
    """Record every batch file of ``ledger.results_dir`` in ``ledger`` (meant to be empty).

    ``strict``: when a file cannot be read as a service results file, record nothing and
    return the report with ``unreadable`` set; otherwise skip such files.
    """
    import pyarrow.parquet as pq

    report = RebuildReport()
    tables = []
    for file in batch_files(ledger.results_dir):
        try:
            names = pq.read_schema(os.path.abspath(file)).names
            table = pq.read_table(os.path.abspath(file), columns=_COLUMNS
                                  + (["mask_path"] if _folder(file) == "volumes" else [])
                                  + (["processed_at"] if "processed_at" in names else []))
        except Exception as exc:  # any damage: the file is not usable as a record
            report.unreadable.append(f"{file} ({type(exc).__name__})")
            continue
        tables.append((file, table))
    if report.unreadable and strict:
        return report
    for file, table in tables:
        kind = RESULT_FOLDERS[_folder(file)]
        columns = {c: table.column(c).to_pylist() for c in table.column_names
                   if c != "processed_at"}
        # When each content was processed, as its rows say (the file's time is that of its
        # last write: a compaction's), so that the ledger tells which content of a file was
        # processed last as the results do (nwwatch.service.ledgerreverts).
        when = (epoch_s(table["processed_at"]).tolist() if "processed_at" in table.column_names
                else [math.nan] * table.num_rows)
        processed: dict[ItemKey, float] = {}
        items: dict[ItemKey, tuple[str | bytes, int]] = {}
        for i in range(table.num_rows):
            key = ItemKey(columns["source_sha256"][i], columns["model_sha256"][i],
                          columns["measurement_version"][i])
            if None in (key.sha256, key.model_sha256, key.measurement_version):
                continue
            # The display form (a non-UTF-8 name's bytes are not recoverable from it); the
            # ledger only shows it.
            source, n = items.get(key, (columns["source"][i], 0))
            items[key] = (source, n + 1)
            if math.isfinite(when[i]):
                processed[key] = max(processed.get(key, when[i]), when[i])
        batch_ids = {b for b in columns["batch_id"] if b}
        batch_id = batch_ids.pop() if len(batch_ids) == 1 else f"rebuilt-{file.stem}"
        aux = [ledger.results_dir / m for m in columns.get("mask_path", []) if m]
        # The rows say when they were processed; the file's mtime only when it was last
        # written, which a copied or restored results folder (the usual reason to rebuild)
        # sets to the copy's time: `nwwatch status` then showed that as the last file's
        # processing time.
        known = [t for t in when if math.isfinite(t)]
        committed_at = max(known) if known else file.stat().st_mtime
        report.items += ledger.record_results_file(batch_id, kind, file, aux, items,
                                                   committed_at, processed)
        report.files += 1
        report.batches += 1
        report.rows += table.num_rows
    report.quarantined = _restore_quarantine(ledger)
    return report


def _restore_quarantine(ledger: Ledger) -> int:
    """The quarantine list read back from ``quarantine.parquet`` (a copy of the list the old
    ledger held), when it reads; 0 otherwise (the files are then tried again)."""
    import pyarrow.parquet as pq

    from nwwatch.results.quarantine import QUARANTINE_FILE, write_quarantine

    try:
        rows = pq.read_table(os.path.abspath(ledger.results_dir / QUARANTINE_FILE)).to_pylist()
    except (OSError, ValueError):  # missing or damaged (pyarrow's errors are ValueErrors)
        return 0
    restored = ledger.restore_quarantine(rows)
    try:  # the copy equals the list again (files gone or changed since are not in it)
        write_quarantine(ledger.queries.quarantined(), ledger.results_dir)
        ledger.quarantine_changed = False
    except OSError:  # rewritten with the list's next change
        pass
    return restored


def open_ledger(path: str | os.PathLike[str], results_dir: str | os.PathLike[str],
                log, lock: LedgerLock | None = None) -> Ledger:
    """Open the ledger of a service or replay; rebuild it from the results first when it is
    missing or empty next to existing results (logged as ``ledger_rebuilt``). ``lock``: the
    ledger's lock, already held by the caller, who releases it (:class:`Ledger`).

    Raises
    ------
    LedgerMissingError : that is needed but some results file cannot be read.
    LedgerCorruptError, LedgerBusyError : from :class:`Ledger`.
    """
    ledger = Ledger(path, results_dir, lock=lock)
    if ledger.is_empty() and batch_files(results_dir):
        report = rebuild(ledger, strict=True)
        if report.unreadable:
            ledger.close()
            raise LedgerMissingError(
                f"{path}: the ledger is missing or empty but {results_dir} holds results, and "
                f"{len(report.unreadable)} of its files cannot be read "
                f"({', '.join(report.unreadable[:3])}); move them out of the results folder "
                f"and run `{rebuild_command(path, results_dir)}` "
                "(docs/service.md, Faults and recovery)"
            )
        log.warning("ledger_rebuilt", ledger=str(path), results=str(results_dir),
                    n_files=report.files, items=report.items, rows=report.rows,
                    note="the ledger was missing or empty; rebuilt from the results")
        return ledger
    named = ledger.queries.committed_parquets()
    missing = [rel for rel in named if not (Path(results_dir) / rel).exists()]
    if named and len(missing) == len(named):
        # A ledger kept outside the results folder (/var/lib/nwwatch) outlives it: with a
        # new or emptied results folder its files stayed done and never got rows there.
        ledger.close()
        raise ResultsNotHeldError(
            f"{path}: the ledger names {len(named)} results file(s) and {results_dir} holds "
            f"none of them (e.g. {missing[0]}): its share not mounted (yet), the folder "
            f"emptied or replaced, or the ledger another results folder's; the files it "
            f"lists as done would get no rows here. Mount the share, or point [output] "
            f"results (or --out) at the folder that holds them; only to process every file "
            f"into {results_dir} again, move the ledger aside (a new one is started) "
            f"(docs/service.md, Faults and recovery)")
    if missing:
        log.warning("results_files_missing", ledger=str(path), results=str(results_dir),
                    missing=len(missing), of=len(named), first=missing[0],
                    note="their input files stay done and get no rows again; "
                         f"`{rebuild_command(path, results_dir)}` with the service stopped "
                         "lets them be processed again")
    return ledger


def require_results_folder(results: Path, ledger_path: Path | None, consequence: str) -> None:
    """Raise FileNotFoundError naming ``results`` when it holds neither a results folder
    (``frames/``, ``volumes/``) nor the ledger (``ledger_path``, default
    ``results/ledger.sqlite``): an acquisition folder given by mistake, say. ``consequence``
    ends the message (what the command would have done with it)."""
    ledger_path = ledger_path if ledger_path is not None else default_ledger(results)
    if not ledger_path.exists() and not any((results / sub).is_dir() for sub in RESULT_FOLDERS):
        raise FileNotFoundError(
            f"{results}: not a results folder: no {'/ or '.join(RESULT_FOLDERS)}/ folder and "
            f"no ledger {ledger_path}; {consequence}")


_LEDGER_SUFFIXES = ("", "-wal", "-shm")


def _aside_name(ledger_path: Path, stamp: str, suffix: str) -> Path:
    """``<ledger>.replaced-<stamp>`` and its ``-wal``/``-shm`` files under the names SQLite
    pairs with it: a ledger left by a killed process holds its last transactions (after a
    crash often every table) in the write-ahead log, which SQLite reads only as
    ``<database>-wal``."""
    return ledger_path.with_name(f"{ledger_path.name}.replaced-{stamp}{suffix}")


def _aside_stamp(ledger_path: Path) -> str:
    """The UTC time for ``<ledger>.replaced-<stamp>``, with ``-2``, ``-3``, ... when a ledger
    was already moved aside under it: two rebuilds within one second would otherwise replace
    the first one's copy, the original ledger, with the second's."""
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stamp, n = base, 1
    while any(_aside_name(ledger_path, stamp, suffix).exists()
              for suffix in _LEDGER_SUFFIXES):
        n += 1
        stamp = f"{base}-{n}"
    return stamp


def rebuild_ledger(results_dir: str | os.PathLike[str],
                   ledger_path: str | os.PathLike[str] | None = None) -> RebuildReport:
    """``nwwatch ledger rebuild``: move an existing ledger aside (``*.replaced-<UTC time>``)
    and build a new one from the results; unreadable results files are skipped and listed.

    Raises LedgerBusyError while a service or replay uses the ledger, and FileNotFoundError,
    creating nothing, for a folder with neither results nor a ledger (an acquisition folder,
    say).
    """
    results = Path(results_dir)
    ledger_path = Path(ledger_path) if ledger_path is not None else default_ledger(results)
    require_results_folder(results, ledger_path, "nothing to rebuild from")
    # before the lock: a service keeping that other ledger holds the results folder's lock
    # too, which read as this ledger being in use ("stop it first")
    other = ledger_kept_elsewhere(results, ledger_path)
    if other is not None:  # before anything is moved aside
        raise LedgerElsewhereError(results, ledger_path, other)
    owner = another_folders_ledger(results, ledger_path)
    if owner is not None:  # that folder's ledger would be moved aside and rebuilt from these
        raise LedgerOfAnotherFolderError(results, ledger_path, owner)
    lock = LedgerLock(ledger_path, results)
    report = RebuildReport()
    try:
        stamp = _aside_stamp(ledger_path)
        for suffix in _LEDGER_SUFFIXES:
            old = ledger_path.with_name(ledger_path.name + suffix)
            if old.exists():
                aside = _aside_name(ledger_path, stamp, suffix)
                os.replace(old, aside)
                report.moved_aside.append(str(aside))
        ledger = Ledger(ledger_path, results, lock=lock)
        try:
            built = rebuild(ledger, strict=False)
        finally:
            ledger.close()
        built.moved_aside = report.moved_aside
        return built
    finally:
        lock.close()
