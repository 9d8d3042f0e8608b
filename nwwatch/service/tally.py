"""What the resident service has done since it started: the counts behind systemd's STATUS
and the stop line, and one log line per file (and per frame of a multi-page file) of each
batch :func:`nwwatch.service.pipeline.process` ran.

A file processed again when it changed (a stack its writer closes after every page) is one
file in several versions: ``processed_files`` counts files (paths), ``processed_versions``
the versions processed (the work done), and ``processed_rows`` the rows written, every
version's (``nwwatch status`` counts those of each file's newest version as its rows and
the others as superseded). Which files were processed before in this run is asked of the
ledger (:meth:`nwwatch.service.reporting.LedgerQueries.processed_since`), so the counts
of processed files take no memory per file; quarantined files are counted once a path by a
set of the paths quarantined in this run (few, and each a file to look at).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nwwatch.dashboard import metrics as _metrics
from nwwatch.pathtext import path_of_text
from nwwatch.results.outcome import count_table, format_counts
from nwwatch.service.batch import BatchReport, FileOutcome, outcome_log_fields
from nwwatch.service.names import path_key, source_name
from nwwatch.service.reporting import LedgerQueries

if TYPE_CHECKING:
    from nwwatch.service.flush import HeldBatch


#: What a ``folder_renamed_after_processing`` warning says (once per pair of folders).
MOVED_REASON = ("the files of this folder were processed in done_in, which no longer holds "
                "them (renamed or moved since): their rows keep those paths")
STAGING_REASON = ("files of this folder were processed in done_in before they were moved "
                  "here under their names: their rows keep those paths. If the acquisition "
                  "software writes frames into a staging folder and moves them, keep that "
                  "folder out of the watch (outside watch.path, or a hidden folder: a name "
                  "starting with '.')")
#: What a ``file_renamed_after_processing`` warning says.
RENAMED_REASON = (
    "its content was processed under the name done_as, whose file no longer holds it (renamed "
    "since, or this is a copy of an earlier version of it): its rows keep that name. If the "
    "acquisition software writes each frame under one temporary name "
    "and renames it when done, add that name to the watch's ignore_patterns, so that frames "
    "are processed under their final names (docs/service.md, 'Exactly once')")


@dataclass
class Tally:
    #: When the run began (epoch s): files processed since are files of this run.
    started_at: float = field(default_factory=time.time)
    processed_files: int = 0
    processed_versions: int = 0
    processed_rows: int = 0
    row_counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, code)
    #: unexpected errors (tried again), one per failure
    failed_files: int = 0
    #: files quarantined in this run, one per path however many of its versions were
    quarantined_files: int = 0
    _quarantined: set[str] = field(default_factory=set)
    #: (folder processed in, folder now) of files found under a renamed or moved folder
    _moved_folders: set[tuple[str, str]] = field(default_factory=set)

    def record(self, report: BatchReport, log, queries: LedgerQueries | None = None) -> None:
        """Count and log the outcomes of one batch, and feed /metrics. ``queries``: the
        ledger's, which tell a file processed before in this run (None: every version counts
        as a file)."""
        # Quarantined files here (a path once); latencies when their rows are written
        # (service.flush).
        _metrics.observe_outcomes(
            [(o.state, o.detected_at) for o in report.files
             if o.state != "quarantined" or self._first_quarantine(o.path)], None)
        for outcome in report.files:
            fields = dict(source=source_name(outcome.path), state=outcome.state,
                          rows=outcome.n_rows, batch_id=outcome.batch_id or report.batch_id)
            if outcome.state == "done":
                self.processed_versions += 1
                self.processed_files += not self._seen_before(queries, outcome.path,
                                                              outcome.sha256)
                self.processed_rows += outcome.n_rows
                if outcome.detected_at is not None and report.committed_at is not None:
                    fields["latency_ms"] = round(
                        (report.committed_at - outcome.detected_at) * 1e3, 1)
                fields.update({f"{k}_ms": round(v, 1) for k, v in report.timings_ms.items()})
                # Status, reason code and angle of each frame (outcome_log_fields).
                file_fields, frame_lines = outcome_log_fields(outcome)
                log.info("file_processed", **fields, **file_fields)
                for frame_fields in frame_lines:
                    log.info("frame_processed", source=fields["source"], **frame_fields)
                self.row_counts.update(outcome.row_counts())
            elif outcome.state in ("failed", "quarantined"):
                self.failed_files += outcome.state == "failed"
                log.warning(f"file_{outcome.state}", reason=outcome.reason, **fields)
            elif outcome.done_as:
                self._log_renamed(outcome, fields, log)
            else:  # skipped (same content already done) or gone (deleted meanwhile)
                log.info(f"file_{outcome.state}", reason=outcome.reason, **fields)

    def _log_renamed(self, outcome: FileOutcome, fields: dict, log) -> None:
        """A file whose content was processed under another name that no longer holds it:
        its rows name that file. Acquisition software that writes each frame under one name
        the patterns take and then renames it makes every frame a "version" of that name (a
        warning per file, with the advice on ignore patterns); files moved into another folder
        under their names (a folder renamed, or frames moved one at a time out of a staging
        folder) are said once per pair of folders, the others logged as skipped."""
        old, new = os.path.split(outcome.done_as), os.path.split(source_name(outcome.path))
        if old[1] != new[1]:
            log.warning("file_renamed_after_processing", done_as=outcome.done_as,
                        reason=RENAMED_REASON, **fields)
        elif (old[0], new[0]) not in self._moved_folders:
            self._moved_folders.add((old[0], new[0]))
            staging = os.path.isdir(path_of_text(old[0]))  # still there: moved out of it
            log.warning("folder_renamed_after_processing", done_in=old[0], folder=new[0],
                        reason=STAGING_REASON if staging else MOVED_REASON, **fields)
        else:
            log.info("file_skipped", reason=f"already done as {outcome.done_as}", **fields)

    def _seen_before(self, queries: LedgerQueries | None, path, sha256: str | None) -> bool:
        """Another content of ``path`` was processed in this run (None: any content)."""
        return queries is not None and queries.processed_since(
            path_key(path), self.started_at, sha256)

    def uncount(self, batch: HeldBatch, queries: LedgerQueries | None = None) -> None:
        """The file versions of ``batch``, counted as processed, whose rows were never written
        and which the ledger released: they are processed again and counted then. A file
        leaves the count of files when no version of it stays processed."""
        table = batch.table
        self.processed_versions -= len(batch.rows_per_item)
        # The files by their entries' paths: the ``source`` column cannot give a non-UTF-8
        # path's ledger key back (its bytes are written as \xNN), and a done file without
        # rows has none there.
        paths = {getattr(entry, "path", entry) for entry in batch.entries}
        self.processed_files -= sum(not self._seen_before(queries, p, None) for p in paths)
        self.processed_rows -= table.num_rows
        self.row_counts.subtract(count_table(table))
        self.row_counts = +self.row_counts  # drop counts that reached zero

    def _first_quarantine(self, path) -> bool:
        """Note ``path`` quarantined; True the first time in this run (another version of a
        file quarantined again is not another file)."""
        key = path_key(path)
        if key in self._quarantined:
            return False
        self._quarantined.add(key)
        self.quarantined_files += 1
        return True

    def quarantined_on_inspection(self, paths) -> None:
        """Files quarantined before any batch (bad on inspection)."""
        new = sum(self._first_quarantine(p) for p in paths)
        _metrics.observe_outcomes([], None, quarantined_files=new)  # /metrics

    def log_stopping(self, log, queued: int) -> None:
        """The service's ``stopping`` log line: what this run processed."""
        log.info("stopping", processed_files=self.processed_files,
                 processed_versions=self.processed_versions,
                 processed_rows=self.processed_rows,
                 # failed: an unexpected error (tried again); quarantined: not
                 failed_files=self.failed_files,
                 quarantined_files=self.quarantined_files, queued=queued,
                 rows_by_reason=format_counts(self.row_counts),
                 note="queued files are picked up by the next start's scan")

    def status_text(self, waiting: int) -> str:
        """systemd's STATUS line while processing, with ``waiting`` files queued."""
        again = ("" if self.processed_versions == self.processed_files
                 else f" in {self.processed_versions} versions")
        return (f"queue {waiting} files; processed {self.processed_files} files{again} "
                f"({self.processed_rows} rows: {format_counts(self.row_counts)}); "
                f"failed {self.failed_files + self.quarantined_files} "
                f"(quarantined {self.quarantined_files})")
