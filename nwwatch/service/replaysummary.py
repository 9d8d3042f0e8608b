"""What ``nwwatch replay`` reports: its counts, the lines it prints, its exit status and its
progress bar (:mod:`nwwatch.service.replay` runs it; :mod:`nwwatch.service.cluster` counts into
the same summary on a cluster)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nwwatch.results.outcome import format_counts
from nwwatch.service.inputs import T_DECLARATIONS, Z_DECLARATIONS

if TYPE_CHECKING:
    from nwwatch.service.batch import BatchReport

#: Exit statuses of ``nwwatch replay``: every file done (or already done); the replay could
#: not run (configuration, model, ledger, results folder inside the input); wrong command
#: line (click's own); it ran, but some files failed or are quarantined.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


@dataclass
class ReplaySummary:
    """Counts of one replay. ``frames``: rows written; ``frames_per_s`` over ``seconds``.

    Files: ``done`` (rows written now), ``skipped`` (already done earlier), ``failed`` (an
    unexpected error; tried again next time), ``quarantined`` (now, or in an earlier run and
    unchanged since: ``still_quarantined`` of them), ``vanished``
    (deleted before they were read). ``rows``: the rows written now by
    (status, reason_code).
    """

    results_dir: Path
    files: int = 0
    done: int = 0
    skipped: int = 0
    #: of ``skipped``, the files whose own path was done in an earlier run (the others are
    #: copies of content this run or an earlier one processed under another name, whose rows
    #: and QA pictures carry that name)
    skipped_earlier: int = 0
    failed: int = 0
    quarantined: int = 0
    still_quarantined: int = 0
    #: Files listed but gone before they were read (deleted meanwhile): not processed, and
    #: no longer part of the folder.
    vanished: int = 0
    #: Files that changed while they were read (a stack still being written, a file
    #: replaced): their rows would be of no one content, so none were written; the replay
    #: is not complete (run it again once the acquisition is finished).
    changed: list[Path] = field(default_factory=list)
    rows: Counter = field(default_factory=Counter)
    frames: int = 0
    seconds: float = 0.0
    parquet_files: list[Path] = field(default_factory=list)
    model_name: str = ""
    provider: str = ""
    #: :class:`nwwatch.service.cluster.ClusterStats` and the final
    #: :class:`nwwatch.service.compaction.CompactReport` of a ``dask`` replay.
    cluster: object = None
    compaction: object = None
    compaction_seconds: float = 0.0
    #: Why a ``dask`` replay's final compaction did not run (the ledger busy), else "".
    not_compacted: str = ""
    #: The folder or file replayed (named when it held no input file).
    input_path: Path | None = None
    #: In-situ inputs whose pages the file declares as Z slices
    #: (:func:`nwwatch.service.inputs.declares_z_slices`): replayed one row a slice as
    #: asked, but most likely tomograms. Only files whose rows this run wrote: one skipped
    #: as done (found so by its content's hash) was not replayed.
    volume_like: list[Path] = field(default_factory=list)
    #: Tomogram inputs whose pages the file declares as time frames, segmented as one
    #: volume as asked (files whose rows this run wrote, as :attr:`volume_like`).
    series_like: list[Path] = field(default_factory=list)
    #: Inputs whose structural check found the other kind's layout, by absolute path:
    #: (listing order, the path as listed, "z_slices" or "time_frames", pages, axes). Named
    #: in :attr:`volume_like` or :attr:`series_like` by :meth:`note_replayed` once their
    #: rows are written (whether they will be is known only after their content is hashed).
    other_layout: dict[str, tuple[int, Path, str, int, str]] = field(default_factory=dict,
                                                                   repr=False)
    #: Files named on the command line that are TIFF neither by extension nor by header, nor
    #: MRC, DigitalMicrograph, Velox EMD or TIA series by extension (``truth.parquet`` beside
    #: the frames of ``acq/*``): skipped, not counted in ``files``.
    not_tiff: list[Path] = field(default_factory=list)
    #: SerialEM ``.mdoc`` files named on the command line without their MRC file: metadata
    #: read with the MRC file, skipped, not counted in ``files``.
    mdocs: list[Path] = field(default_factory=list)
    #: Files the replayed folders' walk left out that nwwatch can say what to do with
    #: (:func:`nwwatch.service.watcher.scan`'s ``unread``): :attr:`other_formats` and
    #: :attr:`of_other_names`.
    left_out: list[Path] = field(default_factory=list)
    #: Folders that could not be listed (no permission): their files were not processed.
    unlisted: list[OSError] = field(default_factory=list)
    #: Where the QA pictures go (relative to ``results_dir``), None when they were not asked
    #: for (``--overlays`` or the configuration's setting): files already done are not
    #: processed again, so they get none.
    pictures_folder: Path | None = None
    #: What was replayed ("insitu" or "tomogram"): which names a folder is searched for.
    kind: str = "insitu"
    #: Files skipped as done whose content was done under a name whose file no longer holds
    #: it (renamed after it was processed): (file, the name its rows keep).
    renamed: list[tuple[Path, str]] = field(default_factory=list)
    #: With a configuration: the [[watch]] (e.g. "watch[0]") whose (patterns, ignore
    #: patterns) listed the replayed paths it holds, as the service lists that folder.
    patterns_of: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict)
    #: Files in those paths that the kind's default names take but that watch's patterns
    #: leave out (or its ignore patterns take): not replayed, as the service never processes
    #: them; not counted in ``files``.
    not_in_patterns: list[Path] = field(default_factory=list)
    #: Of those watches, the ones without their sub-folders (``recursive = false``): the
    #: files there are left out by that, not by the patterns.
    not_recursive: set[str] = field(default_factory=set)
    #: TIFF exports left out beside their originals (listed in :attr:`left_out` at first)
    #: and read after all, as those originals were quarantined (in this run or an earlier
    #: one, and unchanged since): counted in ``files``.
    exports_read: list[Path] = field(default_factory=list)
    #: Files a ``--force`` run skipped as copies of a file that holds the same bytes and
    #: whose rows hold them: (file, that file's name).
    copies: list[tuple[Path, str]] = field(default_factory=list)

    def note_other_layout(self, path: Path, layout: str, pages: int, axes: str) -> None:
        """``path`` (about to be processed) declares its pages as the other kind's
        (``layout``: "z_slices" or "time_frames", from
        :func:`nwwatch.service.inputs.layout_of_other_kind`); noted once it is replayed."""
        self.other_layout.setdefault(os.path.abspath(path), (len(self.other_layout), path,
                                                             layout, pages, axes))

    def note_replayed(self, path: str | os.PathLike[str], log: Any) -> None:
        """``path``'s rows were written by this run: when its pages are declared as the
        other kind's, it goes into :attr:`volume_like` or :attr:`series_like` (in listing
        order) and ``log`` warns ``replay.volume_like_input`` or
        ``replay.series_like_input``."""
        noted = self.other_layout.get(os.path.abspath(path))
        if noted is None:
            return
        _, listed, layout, pages, axes = noted
        files, event = ((self.volume_like, "replay.volume_like_input") if layout == "z_slices"
                        else (self.series_like, "replay.series_like_input"))
        if listed in files:
            return
        files.append(listed)
        # a cluster's tasks come back in any order; the note's "first" is the listing's
        files.sort(key=lambda p: self.other_layout[os.path.abspath(p)][0])
        if log is not None:
            log.warning(event, path=str(listed), pages=pages, axes=axes)

    @property
    def kind_suffixes(self) -> str:
        """The suffixes a folder is searched for, e.g. ".tif, .tiff, .mrc or .rec"."""
        from nwwatch.service.config import DEFAULT_SUFFIXES

        names = DEFAULT_SUFFIXES[self.kind]
        return ", ".join(names[:-1]) + " or " + names[-1]

    @property
    def other_formats(self) -> list[Path]:
        """Files of a microscope format nwwatch does not read (tilt series, videos: by
        suffix) in the replayed folders."""
        exports = set(self.exports)  # once: a folder may hold thousands of exports
        return [p for p in self.left_out if not self._read_by_nwwatch(p)
                and p not in exports]

    @property
    def exports(self) -> list[Path]:
        """TIFFs left out as exports of a DigitalMicrograph, Velox EMD or TIA file of the
        same stem beside them (:func:`nwwatch.service.watcher.original_beside`), which is
        read instead."""
        from nwwatch.io.tiff import TIFF_SUFFIXES

        return [p for p in self.left_out if p.suffix.lower() in TIFF_SUFFIXES]

    @property
    def of_other_names(self) -> list[Path]:
        """Files nwwatch reads (by suffix) in the replayed folders whose names this kind does
        not look for: those the other kind's default names take (a reconstruction, .rec, in an
        in-situ replay; a stack of images, .mrcs, in a tomogram replay), and MRC files that
        no kind looks for (a map, .map)."""
        return [p for p in self.left_out if self._read_by_nwwatch(p)]

    def _read_by_nwwatch(self, path: Path) -> bool:
        from nwwatch.io.mrc import is_mrc
        from nwwatch.service.config import other_kind_reading

        return is_mrc(path) or other_kind_reading(path.suffix, self.kind) is not None

    def _left_out_clauses(self) -> list[str]:
        """What :attr:`left_out` holds, with what to do: one clause per group ("2 files of a
        format nwwatch does not read (a.st, b.ali): a tilt series? …")."""
        clauses = []
        if self.other_formats:
            n = len(self.other_formats)
            names = _first(p.name for p in self.other_formats)
            clauses.append(f"{n} file{'s' if n > 1 else ''} of a format replay does not read "
                           f"({names}){_hint_of(self.other_formats)}")
        if self.of_other_names:
            clauses.append(self._other_names())
        if self.exports:
            n = len(self.exports)
            many = n > 1
            names = _first(p.name for p in self.exports)
            clauses.append(f"{n} TIFF export{'s' if many else ''} of the "
                           f"file{'s' if many else ''} of the same name beside "
                           f"{'them' if many else 'it'} ({names}): the "
                           f"original{'s are' if many else ' is'} read, with "
                           f"{'their' if many else 'its'} metadata")
        return clauses

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        """True when no file failed, none is quarantined or changed while read and every
        folder could be listed."""
        return (self.failed == 0 and self.quarantined == 0 and not self.unlisted
                and not self.changed)

    @property
    def exit_status(self) -> int:
        """:data:`EXIT_OK` or :data:`EXIT_INCOMPLETE`."""
        return EXIT_OK if self.complete else EXIT_INCOMPLETE

    def _other_names(self) -> str:
        """The clause on :attr:`of_other_names`: how many, which, what to do."""
        from nwwatch.io.mrc import is_mrc

        files = self.of_other_names
        n = len(files)
        names = _first(p.name for p in files)
        replay = "an in-situ replay" if self.kind == "insitu" else "a tomogram replay"
        advice = _what_to_do_with({p.suffix.lower() for p in files}, self.kind)
        mrc = "MRC " if all(is_mrc(p) for p in files) else ""
        return (f"{n} {mrc}file{'s' if n > 1 else ''} whose name{'s' if n > 1 else ''} "
                f"{replay} does not look for ({names}): {advice}")

    def _patterns_text(self) -> str:
        """The names the configuration's watches gave the replay ("--config's watch[0]
        patterns run_*.tif (ignore_patterns .*, *_gain.tif)")."""
        return "; ".join(
            f"--config's {watch} patterns {', '.join(patterns)} (ignore_patterns "
            f"{', '.join(ignored) or 'none'})"
            + (", and its sub-folders, which it does not watch (recursive = false)"
               if watch in self.not_recursive else "")
            for watch, (patterns, ignored) in self.patterns_of.items())

    def _not_in_patterns(self) -> str:
        """The clause on :attr:`not_in_patterns`: how many, which, and why."""
        n = len(self.not_in_patterns)
        return (f"{n} file{'s' if n > 1 else ''} not replayed, as the service never processes "
                f"{'them' if n > 1 else 'it'}: left out by the "
                f"{self._patterns_text()} ({_first(p.name for p in self.not_in_patterns)}); "
                "replay without --config to process "
                f"{'them' if n > 1 else 'it'} anyway")

    def lines(self) -> list[str]:
        """The text ``nwwatch replay`` prints; the last line says whether every file was
        processed."""
        earlier = f" ({self.still_quarantined} in an earlier run)" if self.still_quarantined \
            else ""
        were = "it was" if self.vanished == 1 else "they were"
        gone = f", {self.vanished} vanished before {were} read" if self.vanished else ""
        if self.changed:
            gone += f", {len(self.changed)} changed while read"
        out = [
            f"{self.files} file{'' if self.files == 1 else 's'}: {self.done} done, "
            f"{self.skipped} skipped (already done), "
            f"{self.failed} failed, {self.quarantined} quarantined{earlier}{gone}",
            f"{self.frames} row{'' if self.frames == 1 else 's'}: {format_counts(self.rows)}; "
            f"in {self.seconds:.1f} s "
            f"({self.frames_per_s:.1f} rows/s) with {self.model_name} on {self.provider}; "
            + (f"results in {self.results_dir}"
               + (f", QA pictures in {self.results_dir / self.pictures_folder}"
                  if self.pictures_folder is not None else "")
               if self.files else f"nothing written to {self.results_dir}"),
        ]
        if self.volume_like:
            out.append(f"note: {_declare(self.volume_like)} as Z slices ({Z_DECLARATIONS}), "
                       "as a tomogram does; replayed as in-situ frames, one "
                       "row a slice. For a tomogram, replay with --kind tomogram --model MODEL "
                       "(docs/tomography.md)")
        if self.series_like:
            out.append(f"note: {_declare(self.series_like)} as time frames ({T_DECLARATIONS}"
                       "), as an in-situ series does; segmented as a "
                       "tomogram, one volume row a file. For contact angles, one row a "
                       "frame, replay with --kind insitu (docs/service.md)")
        if self.pictures_folder is not None and self.skipped_earlier:
            n = self.skipped_earlier
            out.append(f"note: {n} file{'s' if n > 1 else ''} already done "
                       f"{'was' if n == 1 else 'were'} not processed again, so no QA picture "
                       f"was drawn for {'it' if n == 1 else 'them'}; replay with --force to "
                       "draw them (their rows are made again and replace the earlier ones)")
        if self.renamed:
            n = len(self.renamed)
            out.append(f"note: {n} file{'s' if n > 1 else ''} already done under a name whose "
                       "file no longer holds it (renamed after processing, or a copy of an "
                       "earlier version; the rows keep that name): "
                       + _first(f"{p.name} (done as {done_as})" for p, done_as in self.renamed))
        if self.changed:
            n = len(self.changed)
            out.append(f"{n} file{'s' if n > 1 else ''} changed while "
                       f"{'it was' if n == 1 else 'they were'} read (still being written, or "
                       "replaced), no rows written: run the replay again once the "
                       "acquisition is complete: " + _first(p.name for p in self.changed))
        if self.copies:
            n = len(self.copies)
            held = "it was: it holds" if n == 1 else "they were: each holds"
            out.append(f"note: --force left {n} file{'s' if n > 1 else ''} as {held} the "
                       "same bytes as a file whose rows hold that content (one row per "
                       "content; force "
                       "that file to measure it again): "
                       + _first(f"{p.name} (a copy of {of})" for p, of in self.copies))
        if self.files and self.left_out:
            # the service logs these as unread_format; a replay that found other files
            # still leaves them out
            out.append(f"note: left out of this replay: {'; '.join(self._left_out_clauses())}")
        if self.exports_read:
            n = len(self.exports_read)
            many = n > 1
            # (read now, or counted as done when an earlier replay read it)
            out.append(f"note: {n} TIFF export{'s' if many else ''} "
                       f"stand{'' if many else 's'} in for "
                       f"{'their' if many else 'its'} original{'s' if many else ''}, "
                       f"quarantined ({_first(p.name for p in self.exports_read)}; the "
                       f"reason{'s' if many else ''}: nwwatch status --out "
                       f"{self.results_dir})")
        if self.not_in_patterns and (self.files or self.input_path is None):
            out.append(f"note: {self._not_in_patterns()}")
        if self.not_tiff:
            n = len(self.not_tiff)
            out.append(f"{n} named file{'s' if n > 1 else ''} skipped, neither TIFF (by "
                       f"extension or header) nor MRC, DigitalMicrograph, Velox EMD or TIA "
                       f"series (by extension): "
                       f"{_first(p.name for p in self.not_tiff)}"
                       f"{_hint_of(self.not_tiff)}")
        if self.mdocs:
            from nwwatch.io.mdoc import mdoc_reason

            out += [f"named file skipped: {p}: {mdoc_reason(p)}" for p in self.mdocs[:3]]
            if len(self.mdocs) > 3:
                out.append(f"and {len(self.mdocs) - 3} more .mdoc files without their MRC file")
        if self.unlisted:
            n = len(self.unlisted)
            names = _first(f"{e.filename} ({e.strerror or repr(e)})" for e in self.unlisted)
            out.append(f"{n} folder{' could' if n == 1 else 's could'} not be listed, "
                       f"{'its' if n == 1 else 'their'} files not processed: {names}")
        if self.not_compacted:
            out.append(f"not compacted ({self.not_compacted}): the rows are all written; "
                       f"compact later with: nwwatch compact {self.results_dir}")
        if self.complete and self.files == 0 and self.input_path is not None \
                and self.input_path in self.mdocs:
            out.append(f"replay found no input files: {self.input_path} is SerialEM "
                       "metadata, not an image (above)")
        elif self.complete and self.files == 0 and self.input_path is not None \
                and self.input_path in self.not_tiff:
            # one FILE named: "no input files in FILE (patterns …, searched recursively)"
            # described a folder
            out.append(f"replay found no input files: {self.input_path} is neither a TIFF "
                       "(by extension or header) nor an MRC, DigitalMicrograph, Velox EMD "
                       "or TIA series file (by extension)")
        elif self.complete and self.files == 0 and self.patterns_of and \
                self.input_path is not None:
            # the names were the --config watch's, not the defaults the line below describes
            left = f"; {self._not_in_patterns()}" if self.not_in_patterns else ""
            out.append(f"replay found no input files in {self.input_path} under the "
                       f"{self._patterns_text()}{left}")
        elif self.complete and self.files == 0:
            where = f" in {self.input_path}" if self.input_path is not None else ""
            other = "".join(f"; it holds {clause}" for clause in self._left_out_clauses())
            out.append(f"replay found no input files{where} ({self.kind_suffixes} in any "
                       f"case, searched recursively; hidden and temporary names skipped)"
                       f"{other}")
        elif self.complete:
            gone = f" ({self.vanished} vanished)" if self.vanished else ""
            n = self.files - self.vanished
            # "all 26 files processed" read as work done when every one was done earlier,
            # and "processed, none of them new" as a contradiction
            k = self.skipped_earlier
            # skipped, not done before under their own name: copies of content done (now or
            # earlier) under another name, or files renamed since: the rows carry that name
            copies = self.skipped - k
            files = f"{'the' if n == 1 else 'all'} {n} file{'' if n == 1 else 's'}"
            other_names = "another name" if copies == 1 else "other names"
            # complete: none failed, quarantined or changed; nothing done now: every file
            # left was skipped
            if n and self.done == 0 and self.skipped == n:
                if copies == 0:
                    out.append(f"replay complete: nothing to do: {files}{gone} "
                               f"{'was' if n == 1 else 'were'} done before")
                elif k == 0:
                    out.append(f"replay complete: nothing to do: {files}{gone} "
                               f"hold{'s' if n == 1 else ''} content done under {other_names}")
                else:
                    out.append(f"replay complete: nothing to do: {k} file{'s' if k > 1 else ''}"
                               f" done before, {copies} holding content done under "
                               f"{other_names}{gone}")
            else:
                clauses = ([f"{k} done before"] if k else []) + (
                    [f"{copies} holding content done under {other_names}"] if copies else [])
                of_them = (f", {clauses[0].replace(' ', ' of them ', 1)}"
                           + "".join(f", {c}" for c in clauses[1:])) if clauses else ""
                out.append(f"replay complete: {files} processed{gone}{of_them}")
        else:
            unlisted = f", {len(self.unlisted)} folder(s) not listed" if self.unlisted else ""
            if self.changed:
                unlisted += f", {len(self.changed)} changed while read"
            # status lists failed and quarantined files; folders not listed are named above
            where = (f"reasons: nwwatch status --out {self.results_dir}"
                     if self.failed or self.quarantined else "named above")
            out.append(
                f"replay INCOMPLETE: {self.failed} file(s) failed, {self.quarantined} "
                f"quarantined{unlisted} ({where}); exit status {EXIT_INCOMPLETE}")
        return out


#: What a file that a kind's default names take is, and how a replay takes it ({suffixes}:
#: those found, e.g. ".rec").
_REPLAY_AS = {"tomogram": "a reconstruction ({suffixes}) is a tomogram: replay with --kind "
                          "tomogram --model MODEL",
              "insitu": "in-situ frames ({suffixes}): replay without --kind tomogram"}


def _what_to_do_with(suffixes: set[str], kind: str) -> str:
    """What to do with files of ``suffixes`` (lower case) that nwwatch reads and a replay of
    ``kind`` does not look for: those of the other kind's default names
    (:func:`nwwatch.service.config.other_kind_reading`), and maps (.map)."""
    from nwwatch.service.config import other_kind_reading

    by_kind: dict[str, list[str]] = {}
    for suffix in sorted(suffixes):
        other = other_kind_reading(suffix, kind)
        if other is not None:
            by_kind.setdefault(other, []).append(suffix)
    advice = [_REPLAY_AS[other].format(suffixes=", ".join(found))
              for other, found in by_kind.items()]
    if ".map" in suffixes:
        advice.append("a map (.map) is read when named: give the file itself")
    return "; ".join(advice)


def _first(names: Iterable[str], shown: int = 3) -> str:
    """The first ``shown`` of ``names``, comma-separated, and ", …" when there are more."""
    names = list(names)
    return ", ".join(names[:shown]) + (", …" if len(names) > shown else "")


def _declare(files: list[Path]) -> str:
    """The subject of a note on files whose pages declare an axis of the other kind."""
    if len(files) == 1:
        return f"{files[0]} declares its pages"
    return f"{len(files)} files (first {files[0]}) declare their pages"


def _hint_of(paths: list[Path]) -> str:
    """``": <what to do>"`` for each format among ``paths`` that nwwatch knows how to get
    converted (:func:`nwwatch.io.conversion_hint`; several joined by "; "), else ""."""
    from nwwatch.io import conversion_hint

    hints = list(dict.fromkeys(h for h in map(conversion_hint, paths) if h))
    return f": {'; '.join(hints)}" if hints else ""


def tally(summary: ReplaySummary, report: BatchReport, bar: Progress, log: Any = None) -> None:
    """Add one ``process`` call's :class:`~nwwatch.service.batch.BatchReport` to
    ``summary`` and advance ``bar``; ``log`` warns of a done file whose pages are declared
    as the other kind's (:meth:`ReplaySummary.note_replayed`)."""
    for f in report.files:
        if f.state == "done":
            summary.done += 1
            summary.rows.update(f.row_counts())
            summary.note_replayed(f.path, log)
        elif f.state == "skipped" and f.reason == "already quarantined":
            summary.quarantined += 1
            summary.still_quarantined += 1
        elif f.state == "skipped":
            summary.skipped += 1
            summary.skipped_earlier += f.earlier
            if f.done_as:
                summary.renamed.append((f.path, f.done_as))
            if f.copy_of:
                summary.copies.append((f.path, f.copy_of))
        elif f.state == "quarantined":
            summary.quarantined += 1
        elif f.state == "failed":
            summary.failed += 1
        elif f.state == "gone" and f.reason.startswith("changed") \
                and os.path.lexists(f.path):  # (deleted after it was read: vanished)
            summary.changed.append(f.path)
        elif f.state == "gone":
            summary.vanished += 1
    summary.frames += report.n_rows
    summary.parquet_files.extend(report.parquets)
    bar.advance(len(report.files), report.n_rows)


class Progress:
    """A progress bar over files that shows frames and frames per second."""

    def __init__(self, total: int, enabled: bool, opened: list[Progress] | None = None) -> None:
        """``opened``: this bar is added to it before it is drawn, so that a Ctrl-C while it
        draws leaves the caller a bar to :meth:`close`."""
        self.enabled = enabled
        self.frames = 0
        self._lock = threading.Lock()  # a note from another thread does not cut a redraw
        self.t0 = time.perf_counter()
        self._bar = None
        if opened is not None:
            opened.append(self)
        if enabled:
            import click

            # stderr: stdout holds only the summary lines (click's default is stdout, where
            # on a pipe the bar's label alone came before them).
            self._bar = click.progressbar(
                length=total, label="replay", file=sys.stderr, show_pos=True,
                item_show_func=lambda _: self._text(),
            )
            self._bar.__enter__()

    def _text(self) -> str:
        dt = time.perf_counter() - self.t0
        rate = self.frames / dt if dt > 0 else 0.0
        return f"{self.frames} rows, {rate:.1f} rows/s"  # a tomogram is one row, not a frame

    def advance(self, files: int, frames: int) -> None:
        with self._lock:
            self.frames += frames
            if self._bar is not None:
                try:
                    self._bar.update(files, current_item=True)
                except (OSError, ValueError):
                    self._gone()

    def _gone(self) -> None:
        # The terminal hung up (EIO) or the stream closed: drawing stops. Raised, the error
        # ended the replay with its held rows unwritten, before the SIGHUP that was on its
        # way could stop it as one.
        self._bar = None
        self.enabled = False

    def note(self, text: str) -> None:
        """``text`` on a line of its own above the bar (stderr), the bar drawn again below;
        safe from another thread (the cluster's worker watch). A terminal that is gone
        takes no line, and that is no error."""
        import click

        with self._lock:
            try:
                if self._bar is None:
                    click.echo(text, err=True)
                    return
                # over the bar's line, then the bar below it (click draws only a line that
                # changed: at 0 rows, waiting for a worker, the bar stayed away)
                click.echo("\r\033[K" + text, file=sys.stderr)
                self._bar._last_line = None
                self._bar.render_progress()
            except (OSError, ValueError):  # EIO from a hung-up terminal; a closed stream
                if self._bar is not None:
                    self._gone()

    def extend(self, files: int) -> None:
        """``files`` more to process than the bar was made for."""
        with self._lock:
            if self._bar is not None:
                self._bar.length += files

    def close(self) -> None:
        """Finish the bar (the terminal's cursor shown again, a new line); once."""
        with self._lock:
            if self._bar is not None:
                try:
                    self._bar.__exit__(None, None, None)
                except (OSError, ValueError):
                    pass
                self._gone()  # later notes are plain lines
