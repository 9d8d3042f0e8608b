"""Read what the service has committed, grouped per acquisition, for the dashboard and report.

An acquisition is the folder that holds the input files (a watched folder or a sub-folder of
it): rows are grouped by the parent folder of their ``source``, and within a folder by the
model and measurement version that made them (a folder processed again after a model change
holds one row per frame of each; mixed, every frame would count twice and its angles read as
one series). A file processed in several versions (a stack grown page by page) counts with
its newest version's rows only (:func:`nwwatch.results.versions.newest_versions`, which
``nwwatch status`` counts with too; a file put back to content processed before counts with
that content's rows, ``reverted.parquet``). Only committed data is read:
Parquet files under their final names (written by atomic rename; hidden temporaries are
skipped), ``quarantine.parquet`` and ``reverted.parquet`` (rewritten atomically) and,
read-only, the ledger. A file
that vanishes or is replaced while it is read is simply read again at the next refresh.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nwwatch.dashboard.stats import (
    angle_statistics,
    reason_codes,
    rolling_median,
    trend_frames,
)
from nwwatch.paths import acquisition_of, default_ledger
from nwwatch.pathtext import path_of_text
from nwwatch.results.parquet import plain_strings
from nwwatch.results.quarantine import superseding_table
from nwwatch.results.versions import (
    REVERTED_FILE,
    epoch_s,
    newest_versions,
    read_reverted,
    series_key,
    without_repeated_rows,
)

FRAME_COLUMNS = ("source", "frame", "status", "reason", "reason_code", "angle_valid",
                 "contact_angle_deg", "contact_angle_uncertainty_deg", "acquired_at",
                 "processed_at", "read_ms", "segment_ms", "measure_ms", "confidence_ms",
                 "model_name", "model_sha256", "measurement_version", "provider",
                 "overlay_path", "source_sha256",
                 # what the report says of its times and scale (dashboard/report.py)
                 "acquired_at_source", "pixel_size_nm")
VOLUME_COLUMNS = ("source", "status", "reason", "reason_code", "mask_path", "solid_fraction",
                  "porosity_envelope", "surface_area_nm2", "surface_area_px2", "pore_count",
                  "pore_diameter_median_nm", "pore_diameter_median_px", "uncertain_fraction",
                  "threshold_agreement", "acquired_at", "processed_at", "model_name",
                  "model_sha256", "measurement_version", "provider", "source_sha256")
#: Read with the volume rows for the processing time per volume; not sent to the page.
VOLUME_TIMING_COLUMNS = ("read_ms", "segment_ms", "measure_ms", "confidence_ms")
#: The column of the kept rows that numbers the results file they came from.
FILE_COLUMN = "__nwwatch_results_file"
#: The column, while rows are joined and sorted, of the refresh that first brought each row
#: (:attr:`Acquisition.arrivals`); never left in an acquisition's table.
ARRIVAL_COLUMN = "__nwwatch_arrival"

_STRING, _INTEGER, _NUMBER, _BOOL, _TIME = "string", "integer", "number", "bool", "timestamp"
#: The kind of value of each column read (docs/service.md, "Results: Parquet schema"): a
#: Parquet file under frames/ or volumes/ whose column holds another kind, or that has no
#: ``source``, is no nwwatch result (another program's, put there) and is not read.
_COLUMN_KINDS = {
    **dict.fromkeys(("source", "status", "reason", "reason_code", "model_name", "model_sha256",
                     "measurement_version", "provider", "overlay_path", "source_sha256",
                     "mask_path", "acquired_at_source"), _STRING),
    "frame": _INTEGER, "pore_count": _INTEGER, "angle_valid": _BOOL,
    **dict.fromkeys(("acquired_at", "processed_at"), _TIME),
}


def _kind_of(type_: pa.DataType) -> str | None:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return _STRING
    if pa.types.is_integer(type_):
        return _INTEGER
    if pa.types.is_floating(type_):
        return _NUMBER
    if pa.types.is_boolean(type_):
        return _BOOL
    if pa.types.is_timestamp(type_):
        return _TIME
    return None


def _entries(quarantined: list[dict]) -> set[tuple[str, Any, Any]]:
    """A quarantine list's entries as (path, sha256, quarantined_at): an entry replaced for
    other content of its file (a broken overwrite after another model's quarantine) changes
    which rows are current as much as a new path does."""
    return {(str(q["path"]), q.get("sha256"), q.get("quarantined_at")) for q in quarantined}


def _row_keys(table: pa.Table) -> pa.ChunkedArray:
    """Each row as one string of its source, frame, content and processing time."""
    parts = [table[c].cast(pa.string()).fill_null("")
             for c in ("source", "frame", "source_sha256") if c in table.column_names]
    if "processed_at" in table.column_names:
        parts.append(table["processed_at"].cast(pa.int64()).cast(pa.string()).fill_null(""))
    return pc.binary_join_element_wise(*parts, "\0")


def _carried_arrivals(old: Acquisition, new: Acquisition) -> tuple[bool, np.ndarray | None]:
    """Whether every row of ``old`` is in ``new`` (by source, frame, content and processing
    time), and if so ``new.arrivals`` with each row that ``old`` holds given back its refresh
    number there: a compaction that rewrote the rows does not send them to an open page
    again, which needs only the others (:meth:`ResultsStore._carry_generations`). One look-up
    of each old row among the new answers both (each table's row keys built once)."""
    if old.table is None or old.table.num_rows == 0:
        return True, new.arrivals
    if old.table is new.table:
        return True, np.array(old.arrivals, dtype=np.int64)
    if new.table is None or new.table.num_rows < old.table.num_rows:
        return False, new.arrivals
    at = pc.index_in(_row_keys(old.table), value_set=_row_keys(new.table))
    if at.null_count:
        return False, new.arrivals
    arrivals = np.array(new.arrivals, dtype=np.int64)
    arrivals[at.to_numpy()] = old.arrivals
    return True, arrivals


def _not_results(table: pa.Table) -> bool:
    """Whether ``table`` (the columns read from a file) is not nwwatch's rows: no ``source``,
    or a column of another kind of value than the results' (all-null columns fit any)."""
    if "source" not in table.column_names:
        return True
    for field_ in table.schema:
        if pa.types.is_null(field_.type):
            continue
        want = _COLUMN_KINDS.get(field_.name, _NUMBER)
        got = _kind_of(field_.type)
        if got != want and not (want == _NUMBER and got == _INTEGER):
            return True
    return False


def acquisition_id(folder: str, series: str = "") -> str:
    """A short stable id for an acquisition folder and the ``series`` of its rows (model and
    measurement version, :func:`series_key`), used in URLs instead of the path."""
    key = folder if not series else f"{folder}\0{series}"
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _split_by_series(table: pa.Table) -> dict[tuple[str, str], pa.Table]:
    """Rows grouped by (acquisition of ``source``, :func:`nwwatch.paths.acquisition_of`;
    :func:`series_key`)."""
    sources = pc.unique(table["source"])
    parents = np.array([acquisition_of(s) for s in sources.to_pylist()], dtype=object)
    folder_of_row = parents[pc.index_in(table["source"], sources).to_numpy()]
    series_of_row = series_key(table)
    groups = sorted(set(zip(folder_of_row, series_of_row, strict=True)))
    return {(str(f), str(k)): table.filter(pa.array((folder_of_row == f) & (series_of_row == k)))
            for f, k in groups}


@dataclass
class Acquisition:
    """The rows of one folder, sorted by acquisition time (frames) or by processing time."""

    id: str
    folder: str
    kind: str  # "insitu", "tomogram", or "unknown" (only quarantined files: no row tells)
    table: pa.Table | None = None
    quarantined: list[dict] = field(default_factory=list)
    #: frame_series, computed once per snapshot (the table never changes after _build)
    series_cache: dict | None = field(default=None, repr=False)
    #: The distinct ``processed_at`` (epoch s) of every commit of the folder's rows, earlier
    #: versions of its files included: a stack grown page by page keeps only its newest
    #: version's rows in ``table``, one commit, yet it was receiving frames.
    commits_s: np.ndarray | None = field(default=None, repr=False)
    #: Per commit in ``commits_s``, the frames (source, frame) it was the first to commit.
    new_frames: np.ndarray | None = field(default=None, repr=False)
    #: Bumps when rows of this folder were removed or replaced (a stack's newer version, a
    #: ``replay --force``): a page following it starts again from scratch. Its own, not the
    #: store's: a stack growing in one folder made every folder's page fetch all its rows.
    generation: int = 0
    #: Per row of ``table`` (its order), the number of the store's refresh that first brought
    #: it (increasing): a page's cursor. Not ``processed_at``, a wall-clock time: after the
    #: clock was set back (an NTP step), rows committed later carried older times and an
    #: open page, asking for rows newer than the newest it had, never got them.
    arrivals: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return 0 if self.table is None else self.table.num_rows


class ResultsStore:
    """The committed results of one RESULTS folder, re-read incrementally by :meth:`refresh`.

    Thread-safe: :meth:`refresh` swaps in a new snapshot under a lock; readers take
    :attr:`snapshot` (a dict id -> :class:`Acquisition`) and never see half of a refresh.
    """

    def __init__(self, results: str | Path, ledger: str | Path | None = None) -> None:
        self.results = Path(results)
        self.ledger = Path(ledger) if ledger is not None else default_ledger(self.results)
        #: Per folder, the results files read: path -> (inode, the file's number in _rows).
        self._files: dict[str, dict[str, tuple[int, int]]] = {"frames": {}, "volumes": {}}
        #: Per folder, the rows of every file read, as one table with the file's number in
        #: column FILE_COLUMN: a table per file costs tens of KB of its own (buffers, schema)
        #: whatever its rows, and a long run writes thousands of one-batch files.
        self._rows: dict[str, pa.Table | None] = {"frames": None, "volumes": None}
        self._file_numbers = itertools.count()
        self._quarantine_key: tuple[int, int] | None = None
        self._quarantine: list[dict] = []
        #: The last quarantine list read whole: the newest-version rule's (a damaged file,
        #: listed as unreadable, does not bring the rows its entries superseded back)
        self._superseding: list[dict] = []
        self._reverted_key: tuple[int, int, int] | None = None
        self._reverted: pa.Table | None = None  # files put back to earlier content
        #: Per folder, the results files that could not be read at the last refresh
        #: (damaged, or replaced while being read); never cached, so tried at every refresh.
        self._unreadable: dict[str, frozenset[str]] = {"frames": frozenset(),
                                                        "volumes": frozenset(),
                                                        "quarantine": frozenset()}
        #: Per folder, files listed at the last refresh but gone when read (a compaction or
        #: ``replay --force`` replaced them): not damaged; the next refresh sees their rows.
        self._vanished: dict[str, frozenset[str]] = {"frames": frozenset(),
                                                      "volumes": frozenset()}
        self._lock = threading.Lock()
        self.snapshot: dict[str, Acquisition] = {}
        self.version = 0  # bumps whenever the snapshot changes
        #: Each acquisition id's last generation (Acquisition.generation), kept when an
        #: acquisition leaves the snapshot: one that comes back does not reuse a number.
        self._generations: dict[str, int] = {}
        #: Numbers the refreshes (:attr:`Acquisition.arrivals`).
        self._refresh_numbers = itertools.count(1)
        self.refreshed_at = 0.0

    # --- reading ------------------------------------------------------------------------

    def _scan(self, kind: str, columns: tuple[str, ...]) -> tuple[list[pa.Table], bool]:
        """Read the files of ``RESULTS/kind`` that are new; return (their tables, whether a
        file known before was rewritten or removed).

        Result files are written once and only ever replaced by a rename, which gives the name
        a new inode: the directory listing's inode numbers tell what changed without a stat
        of every file (a long run has thousands).
        """
        cache = self._files[kind]
        bad: set[str] = set()
        vanished: set[str] = set()
        added: list[pa.Table] = []
        numbered: list[pa.Table] = []
        new_files: dict[str, tuple[int, int]] = {}
        kept = self._rows[kind]
        schema = kept.schema.remove(kept.schema.get_field_index(FILE_COLUMN)) if kept else None
        lost = False
        present = set()
        folders = [str(self.results / kind)]
        while folders:
            try:
                entries = list(os.scandir(folders.pop()))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue  # a writer's hidden temporary
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                    continue
                if not entry.name.endswith(".parquet"):
                    continue
                path = entry.path
                present.add(path)
                if path in cache and cache[path][0] == entry.inode():
                    continue
                try:
                    schema_names = pq.read_schema(os.path.abspath(path)).names
                    table = pq.read_table(os.path.abspath(path), columns=[c for c in columns
                                                         if c in schema_names])
                except FileNotFoundError:
                    present.discard(path)  # removed meanwhile: its rows are elsewhere now
                    vanished.add(path)
                    continue
                except (OSError, pa.ArrowInvalid):
                    present.discard(path)  # damaged, or replaced meanwhile: next refresh
                    bad.add(path)
                    continue
                if _not_results(table):  # another program's file: its rows would not fit
                    present.discard(path)
                    bad.add(path)
                    continue
                table = plain_strings(table)
                try:  # rows that cannot join the others (a column of another type)
                    schema = pa.unify_schemas([table.schema] if schema is None
                                              else [schema, table.schema],
                                              promote_options="permissive")
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    present.discard(path)
                    bad.add(path)
                    continue
                lost = lost or path in cache  # rewritten (rows replaced)
                number = next(self._file_numbers)
                new_files[path] = (entry.inode(), number)
                added.append(table)
                numbered.append(table.append_column(
                    FILE_COLUMN, pa.array(np.full(table.num_rows, number, np.int64))))
        for gone in set(cache) - present:
            del cache[gone]
            lost = True
        # Recorded as read once their rows are kept: a file whose rows were not would be
        # skipped by every later refresh.
        self._keep_rows(kind, numbered, [n for _, n in {**cache, **new_files}.values()]
                        if lost else None)
        cache.update(new_files)
        self._unreadable[kind] = frozenset(bad)  # swapped whole: readers in other threads
        self._vanished[kind] = frozenset(vanished)
        return added, lost

    def _keep_rows(self, kind: str, numbered: list[pa.Table],
                   keep_numbers: list[int] | None) -> None:
        """Add the tables ``numbered`` (new files' rows with their FILE_COLUMN) to the rows
        kept of ``kind``; ``keep_numbers``: first drop the rows of every other file (files
        removed, or rewritten under a new number); None: drop none."""
        rows = self._rows[kind]
        if keep_numbers is not None and rows is not None:
            current = pa.array(sorted(keep_numbers), pa.int64())
            rows = rows.filter(pc.is_in(rows[FILE_COLUMN], value_set=current))
        if numbered:
            # permissive: int32 and int64, float32 and float64 of different writers; one
            # chunk, so the buffers of the files read are not each kept
            rows = pa.concat_tables(([rows] if rows is not None else []) + numbered,
                                    promote_options="permissive").combine_chunks()
        self._rows[kind] = rows

    def _kept_rows(self, kind: str) -> list[pa.Table]:
        """The rows kept of ``kind`` (every file read), without FILE_COLUMN."""
        rows = self._rows[kind]
        return [] if rows is None else [rows.drop_columns([FILE_COLUMN])]

    @property
    def vanished(self) -> frozenset[str]:
        """Results files removed between the listing and the reading of the last refresh
        (replaced by a compaction, say): the rows read may be incomplete; read again."""
        return self._vanished["frames"] | self._vanished["volumes"]

    @property
    def unreadable(self) -> frozenset[str]:
        """Results files that could not be read at the last refresh (``quarantine.parquet``
        among them); their rows are missing."""
        return (self._unreadable["frames"] | self._unreadable["volumes"]
                | self._unreadable["quarantine"])

    def _read_quarantine(self) -> bool:
        path = self.results / "quarantine.parquet"
        try:
            st = path.stat()
        except FileNotFoundError:
            changed = bool(self._quarantine) or bool(self._unreadable["quarantine"])
            self._quarantine_key, self._quarantine = None, []
            self._superseding = []
            self._unreadable["quarantine"] = frozenset()
            return changed
        key = (st.st_ino, st.st_size, st.st_mtime_ns)  # replaced atomically: a new inode
        if key == self._quarantine_key:
            return False
        try:
            self._quarantine = pq.read_table(os.path.abspath(path)).to_pylist()
            self._superseding = self._quarantine
        except (OSError, pa.ArrowInvalid):
            # damaged: named as unreadable (an empty list would read as "none quarantined"),
            # tried again at every refresh
            changed = not self._unreadable["quarantine"]
            self._unreadable["quarantine"] = frozenset([str(path)])
            self._quarantine_key, self._quarantine = None, []
            return changed
        self._unreadable["quarantine"] = frozenset()
        self._quarantine_key = key
        return True

    def _have_rows(self, sources: set[str]) -> bool:
        """Whether any row read names one of ``sources``."""
        if not sources:
            return False
        wanted = pa.array(sorted(sources), pa.string())
        return any(rows is not None and pc.any(pc.is_in(rows["source"].cast(pa.string()),
                                                       value_set=wanted)).as_py()
                   for rows in self._rows.values())

    def _read_reverted(self) -> bool:
        """Read ``reverted.parquet`` again when it changed; True when it did."""
        try:
            st = (self.results / REVERTED_FILE).stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            key = None
        if key == self._reverted_key:
            return False
        self._reverted_key, self._reverted = key, read_reverted(self.results)
        return True

    def refresh(self) -> bool:
        """Read new or changed files; return True when the snapshot changed.

        New files extend the acquisitions they belong to (the others keep their objects and
        cached series); a rewritten or removed file rebuilds everything, and each acquisition
        whose rows were replaced gets a new :attr:`Acquisition.generation`.
        """
        with self._lock:
            added = {kind: self._scan(kind, cols)
                     for kind, cols in (("frames", FRAME_COLUMNS),
                                        ("volumes", VOLUME_COLUMNS + VOLUME_TIMING_COLUMNS))}
            listed_before = _entries(self._superseding)
            quarantine_changed = self._read_quarantine()
            # a file found back at earlier content: rows dropped as superseded return
            reverted_changed = self._read_reverted()
            # a file with rows quarantined (its rows superseded), or released (they return)
            versions_changed = quarantine_changed and self._have_rows(
                {path for path, _, _ in listed_before ^ _entries(self._superseding)})
            self.refreshed_at = time.time()
            arrival = next(self._refresh_numbers)
            if (self.version == 0 or reverted_changed or versions_changed
                    or any(lost for _, lost in added.values())):
                tables = {kind: self._kept_rows(kind) for kind in added}
                previous, self.snapshot = self.snapshot, self._apply({}, tables, arrival)
                self._carry_generations(previous)
            elif any(new for new, _ in added.values()) or quarantine_changed:
                self.snapshot = self._apply(self.snapshot,
                                            {k: new for k, (new, _) in added.items()},
                                            arrival)
            else:
                return False
            self._generations.update((i, a.generation) for i, a in self.snapshot.items())
            self.version += 1
            return True

    def _carry_generations(self, previous: dict[str, Acquisition]) -> None:
        """After a snapshot built anew: each acquisition keeps its generation when every row
        it had is still there (a compaction rewrote its files), and those rows their refresh
        numbers (the others have this refresh's), else the next generation."""
        for acq_id, acq in self.snapshot.items():
            old = previous.get(acq_id)
            if old is not None:
                kept, acq.arrivals = _carried_arrivals(old, acq)
                acq.generation = old.generation + (not kept)
            elif acq_id in self._generations:  # gone from the snapshot, and back
                acq.generation = self._generations[acq_id] + 1

    def _apply(self, base: dict[str, Acquisition], tables: dict[str, list[pa.Table]],
               arrival: int) -> dict[str, Acquisition]:
        """A new snapshot: ``base`` with ``tables`` appended to their acquisitions, their
        rows brought by refresh number ``arrival``."""
        acqs = dict(base)
        quarantined = superseding_table(self._superseding)
        for kind, sort_key in (("frames", "acquired_at"), ("volumes", "processed_at")):
            parts = [t for t in tables.get(kind, []) if t.num_rows]
            if not parts:
                continue
            # permissive: int32 and int64, float32 and float64 of different writers
            for (folder, series), part in _split_by_series(pa.concat_tables(
                    parts, promote_options="permissive")).items():
                acq_id = acquisition_id(folder, series)
                old = acqs.get(acq_id)
                commits_s = new_frames = None
                if "processed_at" in part.column_names:
                    commits_s, new_frames = _new_frames_per_commit(
                        None if old is None else old.table, part)
                    if old is not None and old.commits_s is not None:
                        commits_s, at = np.unique(np.concatenate([old.commits_s, commits_s]),
                                                  return_inverse=True)
                        new_frames = np.bincount(at, np.concatenate(
                            [old.new_frames, new_frames])).astype(np.int64)
                added = part.num_rows
                if old is not None:
                    generation = old.generation
                else:  # new, or gone from the snapshot and back: a number not used before
                    generation = self._generations.get(acq_id, -1) + 1
                # each row's refresh number rides along through the joining and sorting
                part = part.append_column(ARRIVAL_COLUMN,
                                          pa.array(np.full(added, arrival, np.int64)))
                if old is not None and old.table is not None:
                    part = pa.concat_tables([old.table.append_column(
                        ARRIVAL_COLUMN, pa.array(old.arrivals, pa.int64())), part],
                        promote_options="permissive")
                part = newest_versions(without_repeated_rows(part), self._reverted,
                                       quarantined)
                if old is not None and part.num_rows < len(old) + added:
                    generation += 1  # an older version of a file gave way
                order = [(sort_key, "ascending"), ("source", "ascending")]
                if "frame" in part.column_names:
                    order.append(("frame", "ascending"))
                part = part.sort_by(order)
                acqs[acq_id] = Acquisition(acq_id, folder,
                                           "tomogram" if kind == "volumes" else "insitu",
                                           part.drop_columns([ARRIVAL_COLUMN]),
                                           [] if old is None else old.quarantined,
                                           commits_s=commits_s, new_frames=new_frames,
                                           generation=generation,
                                           arrivals=part[ARRIVAL_COLUMN].to_numpy())
        # Every snapshot (new rows may be a folder's first, or a new model's series): a
        # folder's quarantined files go with each series of its rows; a folder with
        # quarantined files only gets an entry of its own, dropped once it has rows.
        by_folder: dict[str, list[dict]] = {}
        for q in self._quarantine:
            by_folder.setdefault(acquisition_of(str(q["path"])), []).append(q)
        with_rows = {a.folder for a in acqs.values() if a.table is not None}
        for acq_id, acq in list(acqs.items()):
            listed = by_folder.get(acq.folder, [])
            if acq.table is None and (not listed or acq.folder in with_rows):
                del acqs[acq_id]
            elif listed != acq.quarantined:
                acqs[acq_id] = Acquisition(acq.id, acq.folder, acq.kind, acq.table, listed,
                                           acq.series_cache, acq.commits_s, acq.new_frames,
                                           acq.generation, acq.arrivals)
        for folder, listed in by_folder.items():
            if folder not in with_rows:
                # quarantine.parquet does not record the folder's kind
                acqs[acquisition_id(folder)] = Acquisition(acquisition_id(folder), folder,
                                                           "unknown", None, listed)
        return acqs

    def pending_files(self) -> int | None:
        """Files claimed by a batch that is being processed (ledger, read-only); None when the
        ledger cannot be read."""
        from nwwatch.service.reporting import open_readonly

        try:
            queries = open_readonly(self.ledger)
        except (FileNotFoundError, sqlite3.Error):
            return None
        try:
            return int(queries.counts()["pending"])
        except sqlite3.Error:
            return None
        finally:
            queries.close()


def quarantined_gone(entry: dict) -> bool:
    """Whether the file of a quarantine entry (its ``path``, text as quarantine.parquet holds
    it) is no longer there: deleted since, nothing to do, as ``nwwatch status`` says. A name
    that is not UTF-8 is looked up by its own bytes (its ``\\xNN`` text names no file)."""
    return not os.path.lexists(path_of_text(str(entry.get("path"))))


def frame_series(acq: Acquisition) -> dict[str, np.ndarray | list]:
    """Columns of an in-situ acquisition as arrays, in acquisition-time order (rows with a
    null ``acquired_at`` last, by source and frame).

    Keys: ``t`` (acquired_at, epoch s; NaN where null), ``processed`` (epoch s), ``angle``
    (deg, NaN where not measured), ``unc`` (deg), ``valid`` (bool), ``code`` (reason codes,
    "ok" when valid),
    ``trend`` (causal rolling median of the rows ``in_trend``, deg; NaN elsewhere),
    ``time_source`` (``acquired_at_source``: "metadata", "mtime", None where not recorded),
    ``in_trend`` (bool: the rows the trend is of, :func:`trend_frames`: where the
    acquisition mixes times declared in metadata with files' modification times, not the
    latter), ``source`` (the file's path in the acquisition
    folder: its name, or ``Hour_00/Minute_00/Second_07/f.tif`` in a time tree), ``frame``,
    ``proc_ms`` (read + segment + measure per frame); all numpy arrays of length N.
    """
    if acq.series_cache is not None:
        return acq.series_cache
    t = acq.table
    n = t.num_rows

    def floats(name: str) -> np.ndarray:
        if name not in t.column_names:
            return np.full(n, np.nan)
        return t[name].to_numpy(zero_copy_only=False).astype(np.float64)

    angle = floats("contact_angle_deg")
    valid_col = (t["angle_valid"].fill_null(False).to_numpy(zero_copy_only=False)
                 if "angle_valid" in t.column_names else np.isfinite(angle))
    valid = np.asarray(valid_col, dtype=bool) & np.isfinite(angle)
    status = (t["status"].to_numpy(zero_copy_only=False) if "status" in t.column_names
              else [None] * n)
    codes = reason_codes(status, t["reason_code"].to_numpy(zero_copy_only=False)
                         if "reason_code" in t.column_names else None, valid)
    when = epoch_s(t["acquired_at"])
    time_source = (t["acquired_at_source"].to_numpy(zero_copy_only=False).astype(object)
                   if "acquired_at_source" in t.column_names else np.full(n, None, object))
    in_trend = trend_frames(time_source, np.isfinite(when))
    acq.series_cache = {
        "t": when,
        "processed": epoch_s(t["processed_at"]),
        "angle": angle,
        "unc": floats("contact_angle_uncertainty_deg"),
        "valid": valid,
        "code": codes,
        "trend": rolling_median(angle, valid & in_trend),
        "time_source": time_source,
        "in_trend": in_trend,
        "source": _names_in(acq.folder, t["source"]),
        "frame": t["frame"].to_numpy(zero_copy_only=False),
        "proc_ms": _processing_ms(t),
    }
    return acq.series_cache


def _names_in(folder: str, sources: pa.ChunkedArray) -> np.ndarray:
    """Each row's file as a path relative to its acquisition ``folder``: the names files of
    a time tree (Gatan's ``Hour_00/Minute_00/Second_07/``) share stay apart, where the
    file name alone made the page key their rows alike and draw one of them."""
    prefix = folder.rstrip("/") + "/"
    if pc.all(pc.starts_with(sources, prefix)).as_py() is not False:
        return pc.utf8_slice_codeunits(sources, len(prefix)).to_numpy(zero_copy_only=False)
    return pc.replace_substring_regex(sources, pattern="^.*/", replacement=""
                                      ).to_numpy(zero_copy_only=False)


def _frame_keys(t: pa.Table) -> np.ndarray:
    """``source`` and ``frame`` (0 for volumes) of each row as one string."""
    # typed: an empty list alone is of Arrow's null type, whose fill_null("0") raised (the
    # earlier rows of a tomogram folder, none of the new volume's source)
    frame = (pc.cast(t["frame"], pa.string()) if "frame" in t.column_names
             else pa.array(["0"] * t.num_rows, pa.string()))
    return pc.binary_join_element_wise(pc.fill_null(t["source"], ""),
                                       pc.fill_null(frame, "0"), "\x00").to_numpy(
                                           zero_copy_only=False)


def _new_frames_per_commit(old: pa.Table | None,
                           new: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The commits of ``new`` (distinct ``processed_at``, epoch s) and, per commit, the
    frames it committed first: not in ``old`` nor in an earlier commit of ``new`` (every
    version of a stack grown page by page commits its first pages again)."""
    when = epoch_s(new["processed_at"])
    order = np.argsort(when, kind="stable")
    keys = _frame_keys(new)[order]
    if old is not None and old.num_rows and "source" in old.column_names:
        old = old.filter(pc.is_in(old["source"], value_set=pc.unique(new["source"])))
        keys = np.concatenate([_frame_keys(old), keys])
        n_old = old.num_rows
    else:
        n_old = 0
    _, first = np.unique(keys, return_index=True)
    first = first[first >= n_old] - n_old
    commits = np.unique(when)
    counts = np.zeros(len(commits), np.int64)
    np.add.at(counts, np.searchsorted(commits, when[order][first]), 1)
    return commits, counts


def _processing_ms(t: pa.Table) -> np.ndarray:
    """read + segment + measure (+ confidence, null in older rows) per row, ms; NaN where a
    stage's time is missing."""
    def floats(name: str) -> np.ndarray:
        if name not in t.column_names:
            return np.full(t.num_rows, np.nan)
        return t[name].to_numpy(zero_copy_only=False).astype(np.float64)

    return (floats("read_ms") + floats("segment_ms") + floats("measure_ms")
            + np.nan_to_num(floats("confidence_ms")))


def newest_first(summaries: list[dict]) -> list[dict]:
    """:func:`acquisition_summary` dicts in the side bar's order, newest first: by the newest
    row, and for the newest series of each folder (its current model) the newer of that and
    the folder's newest quarantined file (a new folder whose files are all quarantined has
    no row, and would be listed last). The quarantine list is the folder's, shared by each
    of its series: counted for each, it would lift an older model's series above the
    current one, and the page opens the first."""
    current: dict[str, dict] = {}
    for s in summaries:
        best = current.get(s["folder"])
        if best is None or (s["last_processed"] or 0) > (best["last_processed"] or 0):
            current[s["folder"]] = s

    def key(s: dict) -> tuple[float, float]:
        processed = s["last_processed"] or 0
        quarantined = (s["last_quarantined"] or 0) if current[s["folder"]] is s else 0
        return -max(processed, quarantined), -processed

    return sorted(summaries, key=key)


def acquisition_summary(acq: Acquisition, now: float, stale_after_s: float | None,
                        rows_held_s: float = 0.0, active_since: float | None = None) -> dict:
    """What the page header shows: counts, angle statistics, rate, model, stale warning.

    ``stale_after_s`` None (finished results) never warns. Otherwise the acquisition is stale
    when its newest row is older than ``stale_after_s`` although at least two rows arrived
    within ``stale_after_s`` before it (it was receiving frames, then stopped). Rows are
    written up to ``rows_held_s`` (``[output] flush_seconds``) after their ``processed_at``:
    the newest row may be that much older without the frames having stopped. With
    ``active_since`` (epoch s: when the serving process started) only an acquisition whose
    newest row was processed since can be stale: one that had stopped before a restart is a
    finished acquisition, not one that went quiet.

    ``frames_per_s``: rows committed after the first commit of a minute over the time since
    that commit, each frame once, at the commit that first brought it; the minute before
    ``now`` when live (0.0 once no row came in it), the minute before the newest row for
    finished results.

    In-situ: ``stats`` (:func:`angle_statistics`), ``timed_by_mtime`` (rows whose
    acquisition time is their file's modification time) and ``trend_leaves_out_mtime``
    (True where the trend leaves those out: others declare their time, :func:`trend_frames`).
    """
    # the newest quarantine of the folder's files (epoch s): a file that arrived, and failed
    last_quarantined = max((q["quarantined_at"].timestamp() for q in acq.quarantined
                            if q.get("quarantined_at") is not None), default=None)
    out: dict = {"id": acq.id, "folder": acq.folder, "kind": acq.kind, "n": len(acq),
                 "quarantined": len(acq.quarantined), "last_processed": None,
                 "last_quarantined": last_quarantined,
                 "frames_per_s": None, "proc_ms_median": None, "stale": False,
                 "model": None, "model_sha256": None, "provider": None,
                 "measurement_version": None}
    if not len(acq):
        return out
    t = acq.table
    processed = np.sort(epoch_s(t["processed_at"]))
    last = float(processed[-1])
    out["last_processed"] = last
    # Live (``stale_after_s`` given): the minute before now, so that the rate falls to 0 when
    # the files stop (it showed the last minute of rows' rate for hours); finished results:
    # the acquisition's last minute.
    end = now if stale_after_s is not None else last
    # Frames new to the acquisition, at the commit that brought them: a grown stack's
    # pages count once, not with every version, nor never (its older versions are gone).
    firsts = (processed if acq.new_frames is None
              else np.repeat(acq.commits_s, acq.new_frames))
    recent = firsts[firsts >= end - 60.0]
    if stale_after_s is not None and len(recent) and end > recent[0]:
        out["frames_per_s"] = float((recent > recent[0]).sum() / (end - recent[0]))
    elif stale_after_s is not None:
        out["frames_per_s"] = 0.0
    elif len(recent) >= 2 and recent[-1] > recent[0]:
        # Rows committed after the window's first commit over the time since it (the rows
        # of one batch share their processed_at).
        out["frames_per_s"] = float((recent > recent[0]).sum() / (recent[-1] - recent[0]))
    if (stale_after_s is not None and now - last > stale_after_s + rows_held_s
            and (active_since is None or last >= active_since)):
        # Two commits (not two rows of one multi-page file) make an acquisition "active";
        # those of a file's earlier versions count (a stack growing page by page).
        commits = np.unique(processed) if acq.commits_s is None else acq.commits_s
        # A file quarantined since is a file that arrived: files still come, they fail
        # (the warning asked whether the microscope was still writing while it was).
        arrived = -math.inf if last_quarantined is None else last_quarantined
        out["stale"] = bool((commits >= last - stale_after_s).sum() >= 2
                            and now - arrived > stale_after_s + rows_held_s)
    out["model"] = t["model_name"][-1].as_py() if "model_name" in t.column_names else None
    # the name is the file's stem: a model retrained into the same path keeps it
    out["model_sha256"] = (t["model_sha256"][-1].as_py() if "model_sha256" in t.column_names
                           else None)
    out["provider"] = t["provider"][-1].as_py() if "provider" in t.column_names else None
    # a series run partly on a GPU, partly on the CPU (a service restarted without its GPU):
    # rows of each, most first, so that a page names both
    counts = (pc.value_counts(t["provider"]).to_pylist()
              if "provider" in t.column_names else [])
    out["providers"] = {c["values"]: int(c["counts"]) for c in sorted(
        counts, key=lambda c: (-c["counts"], str(c["values"]))) if c["values"] is not None}
    # one series per model and measurement version: two versions of one model (an update
    # that measures again) are told apart by it
    out["measurement_version"] = (t["measurement_version"][-1].as_py()
                                  if "measurement_version" in t.column_names else None)
    if acq.kind == "insitu":
        s = frame_series(acq)
        out["stats"] = angle_statistics(s["angle"], s["valid"], s["code"])
        # the rows the time axis places by their file's modification time, and whether the
        # trend leaves them out (their acquisition mixes them with declared times)
        mtime = (s["time_source"] == "mtime") & np.isfinite(s["t"])
        out["timed_by_mtime"] = int(np.count_nonzero(mtime))
        out["trend_leaves_out_mtime"] = bool((mtime & ~s["in_trend"]).any())
        tail = s["proc_ms"][-50:]
    else:  # volumes: their rows time the same stages ("—" on the page for every tomogram)
        tail = _processing_ms(t)[-50:]
    if np.isfinite(tail).any():
        out["proc_ms_median"] = float(np.nanmedian(tail))
    return out
