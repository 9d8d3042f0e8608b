"""``nwwatch replay``: process an existing folder or file through the service's own code path.

Files are checked with the same structural check as the live watcher, batched by frame count
and handed to :func:`nwwatch.service.pipeline.process` with the same ledger protocol, so the
rows are the ones the live service would write and an interrupted replay resumes where it
stopped (files already done for this model are skipped without being read again).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from nwwatch.options import results_dataset_of
from nwwatch.paths import default_ledger, lies_inside
from nwwatch.service.config import (
    KINDS,
    OVERLAY_MODES,
    ConfigError,
    OverlaySettings,
    ServiceConfig,
    TomogramSettings,
    WatchConfig,
    load_config,
)
from nwwatch.service.inference import InferenceConfig
from nwwatch.service.inputs import layout_of_other_kind
from nwwatch.service.ledgerdb import FileVersion, ledger_path_problem, mark_stopped
from nwwatch.service.lock import (
    LedgerBusyError,
    LedgerElsewhereError,
    LedgerLock,
    LedgerOfAnotherFolderError,
    another_folders_ledger,
    ledger_kept_elsewhere,
)
from nwwatch.service.names import path_key
from nwwatch.service.readiness import ReadyFile
from nwwatch.service.rebuild import open_ledger
from nwwatch.service.replaymodel import replay_model, watch_holding
from nwwatch.service.replaysummary import (
    Progress,
    ReplaySummary,
    tally,
)
from nwwatch.service.startundo import CreatedPaths, ledger_files
from nwwatch.service.streammemory import call_streams
from nwwatch.service.watcher import matches, original_beside, scan
from nwwatch.stopsignals import raise_lost_interrupt

#: A replay hands ``REPLAY_CHUNKS * streams * batch_size`` frames to each ``process`` call
#: (``streams`` as the frame stage runs them, :func:`nwwatch.service.streammemory.call_streams`):
#: one ledger batch per call; measurement of one network batch overlaps inference of the
#: next, and with several streams each gets ``REPLAY_CHUNKS`` groups of a call (the call's
#: raw frames are held until it ends, part of the memory per stream in docs/service.md).
REPLAY_CHUNKS = 4
#: Rows per results file written by a replay (a file is also written every minute).
REPLAY_FLUSH_ROWS = 20_000


def list_inputs(path: Path, kind: str, unlisted: Callable[[OSError], None] | None = None,
                unread: list[Path] | None = None,
                watch: WatchConfig | None = None) -> list[Path]:
    """Input files under ``path`` (recursively, default patterns), or ``[path]`` for a file.
    ``unlisted``: called with the error of each folder that cannot be listed (default: raised).
    ``unread``: collects the files of a folder that the kind's names leave out and that nwwatch
    can say what to do with (:func:`nwwatch.service.watcher.scan`). ``watch``: the
    configuration's [[watch]] that holds the folder ``path``, whose ``patterns`` and
    ``ignore_patterns`` then take the place of the defaults, as the service lists that
    folder."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    top = os.path.realpath(path)

    def linked(link: Path) -> None:
        # a link to a folder out of the tree: its files would be refused one by one, and
        # os.walk never lists them; named, as a folder not listed (a link inside the tree
        # needs nothing: its files are listed where they lie)
        target = os.path.realpath(link)
        if target != top and not target.startswith(top.rstrip(os.sep) + os.sep):
            error = OSError(None, f"symbolic link to {target}, outside the replayed folder: "
                                  "not followed; name it, `nwwatch replay TARGET`, to replay "
                                  "it", str(link))
            if unlisted is None:
                raise error
            unlisted(error)

    names = {} if watch is None else {"patterns": watch.patterns,
                                      "ignore_patterns": watch.ignore_patterns}
    if watch is not None and _below_unwatched(path, watch):
        return []  # a folder below a watch without its sub-folders: the service reads none
    recursive = watch is None or watch.recursive
    return list(scan(WatchConfig(path=path, kind=kind, recursive=recursive, **names), unread,
                     unlisted=unlisted, linked=linked))


def replay(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    kind: str = "insitu",
    model: str | os.PathLike[str] | None = None,
    force: bool = False,
    config: str | os.PathLike[str] | None = None,
    progress: bool = False,
    log=None,
    triplanar: bool = False,
    flips: bool = False,
    overlays: str | os.PathLike[str] | None = None,
    overlay_frames: str | None = None,
    save_labels: bool = False,
    dask: str | None = None,
) -> ReplaySummary:
    """Process every input file under ``path`` into ``out_dir`` exactly as the service would.

    Parameters
    ----------
    path : a folder (searched recursively for the files the service reads: TIFF, MRC,
        DigitalMicrograph, Velox EMD, TIA series) or one such file, or a sequence of them
        (what a shell glob gives); a file named twice, or also found in a named folder, is
        processed once; a named file that is none of these by extension, nor a TIFF by its
        header, is skipped (``ReplaySummary.not_tiff``), not quarantined; SerialEM's
        ``NAME.mdoc`` is read with its MRC file ``NAME``: named with it, it is passed over,
        named without it, skipped (``ReplaySummary.mdocs``).
    out_dir : results folder (``frames/``, ``volumes/``, ``masks/``, ``quarantine.parquet``,
        ``ledger.sqlite``).
    kind : "insitu" or "tomogram".
    model : ONNX model; default: with ``config``, the model of its ``[[watch]]`` folders that
        hold ``path`` (the service's), else the shipped default model of ``kind``
        (:mod:`nwwatch.service.replaymodel`).
    force : process files again even when the ledger says they are done; their earlier
        rows (same file content, model and measurement version) are replaced, not duplicated.
    config : a service TOML whose ``[inference]``, ``[retry]``, ``[tomogram]`` and
        ``[output] overlays`` settings are used; its ledger too when its results folder is
        ``out_dir``; a path that one of its ``[[watch]]`` folders of ``kind`` holds is
        listed with that watch's ``patterns`` and ``ignore_patterns`` (the files they leave
        out: ``ReplaySummary.not_in_patterns``).
    progress : show a progress bar with frames per second on stderr.
    log : the structlog logger of the replay's events (default: ``nwwatch.replay``'s). Called
        from a script, they are printed as structlog is configured there; the ``nwwatch``
        commands configure it with :func:`nwwatch.logsetup.configure_logging`, which a
        script may call too (e.g. ``configure_logging("warning")``).
    triplanar, flips : switch tri-planar fusion / flip averaging on for tomograms (see
        :func:`nwwatch.volume.segment_volume`), on top of the configuration's ``[tomogram]``
        table (or :class:`~nwwatch.volume.segment.VolumeOptions` defaults); False leaves the
        configuration's setting as it is. In-situ frames ignore them.
    overlays : a folder for QA pictures of in-situ frames (the measurement overlay, PNG)
        inside ``out_dir``: named from the current directory or absolutely, else relative
        to ``out_dir``; None: the configuration's ``[output] overlays``
        (in ``out_dir/overlays``), else none. Rows get their ``overlay_path``.
    overlay_frames : "all" or "flagged" (frames whose status is not "ok"); with
        ``overlays`` (None: "all"), or replacing the configuration's ``[output] overlays``
        choice when that writes pictures (an error otherwise: nothing would be pictured).
    save_labels : also write each pictured frame's label image (``*-labels.png``); needs
        ``overlays`` (or the configuration's setting).
    dask : process on a Dask distributed cluster instead of in this process: a scheduler
        address (``tcp://host:8786``) or ``local:N`` (a LocalCluster of N worker processes);
        see :mod:`nwwatch.service.cluster`. A tomogram is a task of its own; QA pictures are
        written by the workers into ``out_dir`` (shared with them). A replay that fails to
        start (no scheduler answering, a model refused) creates nothing.

    Returns
    -------
    ReplaySummary
    """
    from nwwatch.logsetup import get_logger
    from nwwatch.service.engines import EngineSpec, build_engines  # ORT: once a replay runs
    from nwwatch.service.flush import FlushPolicy, held_rows_written_at_end
    from nwwatch.service.pipeline import process, refresh_quarantine

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    # Options of the other kind would be ignored without a word.
    if kind == "tomogram" and (overlays is not None or save_labels):
        raise ConfigError(None, "--overlays", "pictures in-situ frames; a tomogram's picture "
                                              "is its mask (RESULTS/masks/)")
    if kind == "insitu" and (triplanar or flips):
        raise ConfigError(None, "--triplanar/--flips", "fuse the segmentations of a tomogram: "
                                                       "give --kind tomogram")
    out = Path(out_dir)
    inference, max_attempts, ledger_path = InferenceConfig(), 3, default_ledger(out)
    tomogram = TomogramSettings()
    if config is not None:
        cfg = load_config(config)
        inference, max_attempts, tomogram = cfg.inference, cfg.max_attempts, cfg.tomogram
        if cfg.results.resolve() == out.resolve():
            ledger_path = cfg.ledger
    pictures = cfg.overlays if config is not None else OverlaySettings()
    if overlays is not None:
        pictures = _overlay_settings(out, Path(overlays), overlay_frames or "all", save_labels)
    elif save_labels or overlay_frames is not None:
        if pictures.mode == "none":
            option = "--save-labels" if save_labels else "--overlay-frames"
            raise ConfigError(None, option, "needs --overlays (which frames, where)")
        mode = pictures.mode if overlay_frames is None else _overlay_mode(overlay_frames)
        pictures = OverlaySettings(mode, pictures.folder, save_labels or pictures.save_labels)
    if dask is not None:
        from nwwatch.service.clusterconnect import check_cluster_request

        check_cluster_request(dask, kind)
    roots = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
    if not roots:
        raise ValueError("replay needs at least one folder or file")
    model_path = replay_model(kind, model, cfg if config is not None else None, roots)
    log = log or get_logger("nwwatch.replay")
    if (problem := ledger_path_problem(ledger_path)) is not None:  # before any file is made
        raise ConfigError(None, "--out", f"{ledger_path}: {problem}")
    for root in roots:
        _outside_input(root, out, "--out")
        _outside_input(root, ledger_path, "ledger")
        if lies_inside(root, out):  # its own masks back as new tomograms
            raise ConfigError(None, "PATH", f"{root} lies inside the results folder {out}; "
                                            "a replay never reads its own outputs")
    # A failed start leaves the results folder as it was: a scheduler is reached before
    # anything is created, and what was created on the way is removed (startundo).
    connection = None
    if dask is not None:
        from nwwatch.service.clusterconnect import close_connection, connect, local_workers

        if local_workers(dask) is None:
            connection = connect(dask)
    created = CreatedPaths([out, ledger_path.parent], ledger_files(ledger_path, out))
    lock = ledger = None
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # below a file, no permission: name it, no traceback
            raise ConfigError(None, "--out", f"cannot create the folder {out}: "
                                             f"{exc.strerror or exc}") from None
        # before the lock: a service keeping another ledger of these results holds their
        # lock too, which read as this ledger (a file that need not exist) being in use
        other = ledger_kept_elsewhere(out, ledger_path)
        if other is not None:
            raise LedgerElsewhereError(out, ledger_path, other)
        owner = another_folders_ledger(out, ledger_path)  # (its service holds that lock)
        if owner is not None:
            raise LedgerOfAnotherFolderError(out, ledger_path, owner)
        try:
            # released after a failed start's clean-up (undo)
            lock = LedgerLock(ledger_path, results_dir=out)
        except OSError as exc:  # a read-only results folder (another user's, a ro mount)
            raise ConfigError(None, "--out", f"cannot write {exc.filename or ledger_path}: "
                                             f"{exc.strerror or exc}") from None
        ledger = open_ledger(ledger_path, out, log, lock=lock)
        # True switches a fusion on over the configuration; False leaves it as configured.
        # a replay's kind is its --kind (insitu when not given), not a folder's setting
        spec = EngineSpec(kind, model_path, "--model" if model is not None else "model",
                          "--kind")
        (engine,) = build_engines([spec], ledger, out,
                                  inference=inference, max_attempts=max_attempts,
                                  tomogram=tomogram, log=log,
                                  overlays=pictures,
                                  overlays_from=(None, "--overlays") if overlays is not None
                                  else (Path(config) if config is not None else None,
                                        "output.overlays"),
                                  # files of up to REPLAY_FLUSH_ROWS rows (or a minute's worth)
                                  flush=FlushPolicy(max_rows=REPLAY_FLUSH_ROWS, max_seconds=60.0),
                                  triplanar=triplanar or None, flips=flips or None,
                                  # on Dask the workers' memory decides what fits
                                  memory_checked_here=dask is None)
    except BaseException as exc:
        if ledger is not None:
            ledger.close()
        if connection is not None:
            close_connection(connection)
        created.undo(exc, lock)
        raise
    bars: list[Progress] = []  # the progress bar, once drawn
    stopped = False  # by the operator: the batch in flight is theirs, not its files' fault
    try:
        summary = ReplaySummary(results_dir=out, model_name=engine.segmenter.name,
                                provider=engine.segmenter.provider,
                                input_path=roots[0] if len(roots) == 1 else None,
                                pictures_folder=(pictures.folder if kind == "insitu"
                                                 and pictures.mode != "none" else None),
                                kind=kind)
        ledger.reconcile(max_attempts).log_to(log)
        # an adopted batch (or build_engines' retry of tomograms) may have taken files off it
        refresh_quarantine(ledger, out, log)
        files = _inputs_of(roots, kind, summary, cfg if config is not None else None)
        summary.files = len(files)
        if not files and created.made(out):
            # Nothing to process: the results folder this run made goes again (with its empty
            # ledger), so a mistyped input leaves nothing behind.
            ledger.close()
            ledger = None
            created.undo(None, lock)
            return summary
        t0 = time.perf_counter()
        bar = Progress(len(files), enabled=progress, opened=bars)
        todo = _to_process(files, engine, force, summary, bar, log, kind)
        exports = _exports_left_out(files, summary)

        def exports_todo() -> Iterator[tuple[Path, object]]:
            """The exports of originals refused by now (every file before processed)."""
            again = _exports_of_refused(exports, engine, summary, bar, log)
            return _to_process(again, engine, force, summary, bar, log, kind)
        if dask is not None:
            from nwwatch.service.cluster import run_on_cluster
            from nwwatch.service.clusterconnect import ClusterStartError

            try:
                summary.cluster = run_on_cluster(
                    todo, dask, engine, summary, bar, inference=inference, force=force,
                    log=log, chunk_frames=REPLAY_CHUNKS * engine.batch_size,
                    connection=connection, then=exports_todo if exports else None)
            except ClusterStartError as exc:  # before any file was processed
                if created.made(out):  # the folder this run made goes, as on a failed start
                    from nwwatch.results.quarantine import QUARANTINE_FILE

                    ledger.close()
                    ledger = None
                    (out / QUARANTINE_FILE).unlink(missing_ok=True)  # (files refused by type)
                    created.undo(exc, lock)
                raise
            summary.seconds = time.perf_counter() - t0
            bar.close()
            # A backfill leaves one small batch file per task: compact them, as
            # `nwwatch compact` would (it takes the ledger's lock itself).
            from nwwatch.service.compaction import compact

            ledger.close()
            ledger = None  # every batch committed: a stop from here on leaves none in flight
            lock.close()
            t_compact = time.perf_counter()
            try:
                summary.compaction = compact(out, ledger_path, max_attempts=max_attempts)
            except LedgerBusyError as exc:
                # Every row is committed: another process (`nwwatch compact`, a replay)
                # took the ledger in between; the files stay as written, readable as they are.
                summary.not_compacted = str(exc)
            summary.compaction_seconds = time.perf_counter() - t_compact
            return summary
        batch: list = []
        frames = 0

        def flush() -> None:
            nonlocal batch, frames
            raise_lost_interrupt()  # a SIGTERM whose exception a callback swallowed
            if batch:
                tally(summary, process(batch, engine, force=force), bar, log)
            batch, frames = [], 0

        with held_rows_written_at_end(engine, summary.parquet_files):
            # the exports left out last: an original refused at read is known once every
            # batch before has been processed
            for part in [lambda: todo] + ([exports_todo] if exports else []):
                for file, info in part():
                    pages = max(1, info.n_pages)
                    # streams as the frame stage will run them for this file's frame size
                    streams = call_streams(engine, [info])
                    if batch and frames + pages > REPLAY_CHUNKS * streams * engine.batch_size:
                        flush()
                    batch.append(ReadyFile(file, 0, info.size_bytes, 0, info,
                                           detected_at=None))
                    frames += pages
                    summary.seconds = time.perf_counter() - t0
                flush()
        summary.seconds = time.perf_counter() - t0
        bar.close()
        # what an interrupted replay on Dask staged: this run processed those files itself
        from nwwatch.service.cluster import STAGING_DIR, clear_staging

        clear_staging(out / STAGING_DIR)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP (nwwatch.stopsignals.Terminated)
        stopped = ledger is not None
        raise
    finally:
        for drawn in bars:  # stopped (Ctrl-C, an error): the cursor shown, the next line free
            drawn.close()
        if ledger is not None:
            ledger.close()
            if stopped:
                _record_stop(ledger_path, log)
        lock.close()
        if connection is not None:
            close_connection(connection)
    return summary


def _record_stop(ledger_path: Path, log) -> None:
    """Mark the batch a stop request cut short (``writing``, not held) as stopped, as the
    service does when its stop deadline passes: the next run releases its files without
    charging them an attempt, where a crash charges one (three stops would quarantine a
    file that only ever took longer than the operator waited)."""
    try:
        mark_stopped(ledger_path)
    except (OSError, sqlite3.Error) as exc:  # still a clean exit; the next run counts a crash
        log.warning("stop_not_recorded", error=str(exc))


def _inputs_of(roots: list[Path], kind: str, summary: ReplaySummary,
               cfg: ServiceConfig | None = None) -> list[tuple[Path, Path]]:
    """(input file, the folder its symbolic links must stay in) of every path in ``roots``,
    each once (by absolute path), in order; a named file that is not a TIFF (:func:`_named_input`)
    goes to ``summary.not_tiff``, a SerialEM ``.mdoc`` named without its MRC file to
    ``summary.mdocs`` (named with it, it is passed over: read with the MRC file), the error
    of a folder that cannot be listed to ``summary.unlisted``, a folder's files its kind
    leaves out (MRC files of the other kind's names, tilt series, ...) to
    ``summary.left_out``. A root that a [[watch]] of ``kind`` in ``cfg`` holds is listed with
    that watch's patterns and ignore patterns (the files the service processes there); the
    files they leave out that the default names take go to ``summary.not_in_patterns``."""
    from nwwatch.io.mdoc import is_mdoc, mdoc_stack

    seen, out, named, mdocs = set(), [], [], []
    for root in roots:
        folder = root if root.is_dir() else root.parent
        held = None if cfg is None else watch_holding(root, cfg, kind)
        watch = None if held is None else held[1]
        inputs = list_inputs(root, kind, summary.unlisted.append, summary.left_out, watch)
        if held is not None:
            _note_patterns(root, kind, held, inputs, summary)
        for file in inputs:
            key = os.path.abspath(file)
            if key in seen:
                continue
            seen.add(key)
            if not root.is_dir() and is_mdoc(file):
                mdocs.append(file)
            elif not root.is_dir() and watch is not None and _named_input(file) and (
                    not matches(file.name, watch) or _below_unwatched(file.parent, watch)):
                # named (a shell glob), but a name the service leaves out of that folder
                summary.not_in_patterns.append(file)
            elif root.is_dir() or _named_input(file):
                out.append((file, folder))
                if not root.is_dir():
                    named.append(file)
            else:
                summary.not_tiff.append(file)
    # SerialEM's metadata named with its stack (a shell glob) is read with it: nothing to say
    summary.mdocs += [file for file in mdocs if os.path.abspath(mdoc_stack(file)) not in seen]
    # a shell glob names an original and its TIFF export: the frame once, as a folder gives it
    # (a TIFF named without its original is read: it was asked for)
    exports = {os.path.abspath(file) for file in named if _export_of_named(file, kind, seen)}
    if exports:
        summary.left_out.extend(file for file, _ in out if os.path.abspath(file) in exports)
        out = [(file, folder) for file, folder in out if os.path.abspath(file) not in exports]
    # each once, as the inputs: folders named twice, or one inside another, walk it again
    summary.left_out[:] = list({os.path.abspath(p): p for p in summary.left_out}.values())
    # each once, and none that another named root (outside every watch) replayed
    replayed = {os.path.abspath(file) for file, _ in out}
    summary.not_in_patterns[:] = list({os.path.abspath(p): p for p in summary.not_in_patterns
                                       if os.path.abspath(p) not in replayed}.values())
    return out


def _below_unwatched(folder: Path, watch: WatchConfig) -> bool:
    """Whether ``folder`` is a sub-folder of ``watch``'s folder that it does not watch
    (``recursive = false``): the service reads none of its files."""
    return not watch.recursive and os.path.realpath(folder) != os.path.realpath(watch.path)


def _note_patterns(root: Path, kind: str, held: tuple[int, WatchConfig], inputs: list[Path],
                   summary: ReplaySummary) -> None:
    """Record in ``summary`` the files under ``root`` that the default names of ``kind``
    take and the patterns of the [[watch]] ``held`` leave out (``inputs``: its listing), and
    which watch's patterns the replay of ``root`` used."""
    index, watch = held
    summary.patterns_of.setdefault(
        f"watch[{index}]", (tuple(watch.patterns), tuple(watch.ignore_patterns)))
    if not watch.recursive:
        summary.not_recursive.add(f"watch[{index}]")
    if root.is_dir():
        # walked again with the default names: only a replay with --config of a watched
        # folder pays for it; folders it cannot list are already in summary.unlisted
        taken = {os.path.abspath(p) for p in inputs}
        left = [p for p in list_inputs(root, kind, lambda exc: None)
                if os.path.abspath(p) not in taken]
        summary.not_in_patterns += left
        # named once, as what the service leaves out there (the watch's narrower patterns
        # also put them among the files the kind leaves out, with no advice that fits)
        gone = {os.path.abspath(p) for p in left}
        summary.left_out[:] = [p for p in summary.left_out if os.path.abspath(p) not in gone]


def _exports_left_out(files: list[tuple[Path, Path]], summary: ReplaySummary
                      ) -> list[tuple[Path, Path, list[Path]]]:
    """The TIFF exports the listing left out beside their originals (in
    ``summary.left_out``), each with the folder its links must stay in and its originals
    among ``files``: read after all, should those originals be refused
    (:func:`_exports_of_refused`)."""
    from nwwatch.service.watcher import ORIGINAL_SUFFIXES

    by_stem: dict[str, list[tuple[Path, Path]]] = {}
    for file, folder in files:
        stem, suffix = os.path.splitext(os.path.abspath(file))
        if suffix.lower() in ORIGINAL_SUFFIXES:
            by_stem.setdefault(stem, []).append((file, folder))
    if not by_stem:  # (a folder of TIFF frames only: nothing to look up)
        return []
    out = []
    for export in summary.exports:
        originals = by_stem.get(os.path.splitext(os.path.abspath(export))[0])
        if originals:
            out.append((export, originals[0][1], [file for file, _ in originals]))
    return out


def _exports_of_refused(exports: list[tuple[Path, Path, list[Path]]], engine,
                        summary: ReplaySummary, bar: Progress, log) -> list[tuple[Path, Path]]:
    """(export, its folder) of each of ``exports`` (:func:`_exports_left_out`) whose
    originals the ledger now lists as quarantined at their present version, in this run or
    an earlier one: the export is read in their place (a refusal may say to export the
    frames as TIFF). Taken off ``summary.left_out`` (whose note says the original is read)
    onto ``summary.exports_read``, counted in ``summary.files`` and ``bar``; one
    ``replay.export_read`` line each, naming both files."""
    from nwwatch.service.batch import quarantined_now
    from nwwatch.service.names import source_name

    again = [(export, folder, originals) for export, folder, originals in exports
             if all(quarantined_now(engine, original) for original in originals)]
    if not again:
        return []
    for export, _, originals in again:
        log.info("replay.export_read", source=source_name(export),
                 original=source_name(originals[0]),
                 reason="its original is quarantined: the TIFF export is read in its place")
    read = {os.path.abspath(export) for export, _, _ in again}
    summary.left_out[:] = [p for p in summary.left_out if os.path.abspath(p) not in read]
    summary.exports_read += [export for export, _, _ in again]
    summary.files += len(again)
    bar.extend(len(again))
    return [(export, folder) for export, folder, _ in again]


def _export_of_named(file: Path, kind: str, inputs: set[str]) -> bool:
    """Whether a TIFF named on the command line is the export of an original beside it that
    is among the replay's ``inputs`` (absolute paths)."""
    original = original_beside(file, WatchConfig(path=file.parent, kind=kind))
    return original is not None and os.path.abspath(original) in inputs


def _named_input(file: Path) -> bool:
    """Whether a file named on the command line is an input: a TIFF, MRC, DigitalMicrograph,
    Velox EMD or TIA series file by extension or, under any other name, a TIFF by its header.
    What a shell glob adds beside the frames (``truth.parquet``, a ``.json``) is not, and is
    left out as a folder replay leaves it out, instead of being quarantined as a bad frame. A file
    that may not or cannot be opened (a link out of the folder, a FIFO, no permission) counts
    as an input: the input checks quarantine it with their reason."""
    from nwwatch.io import InputError, has_tiff_header
    from nwwatch.io.dm import is_dm
    from nwwatch.io.emd import is_emd
    from nwwatch.io.mrc import is_mrc
    from nwwatch.io.ser import is_ser
    from nwwatch.io.tiff import TIFF_SUFFIXES
    from nwwatch.service.inputs import REPLAY_LINK_REASON, check_input

    if (file.suffix.lower() in TIFF_SUFFIXES or is_mrc(file) or is_dm(file)
            or is_emd(file) or is_ser(file)):
        return True
    try:
        check_input(file, file.parent, link_reason=REPLAY_LINK_REASON)
        return has_tiff_header(file)
    except (InputError, OSError):
        return True


def _to_process(files: list[tuple[Path, Path]], engine, force: bool, summary: ReplaySummary,
                bar: Progress, log, kind: str = "insitu") -> Iterator[tuple[Path, object]]:
    """The files still to process, with their structural check: files the ledger lists as
    done (or quarantined) for this model are skipped without being read (unless ``force``),
    bad ones are quarantined; all counted in ``summary`` and ``bar``. ``files``: (file, the
    folder its links must stay in). An in-situ file whose pages are declared Z slices is
    processed all the same and, once its rows are written, named in
    ``summary.volume_like``; a tomogram whose pages are declared time frames, in
    ``summary.series_like`` (one found done by its content's hash is not processed, and
    not named)."""
    from nwwatch.io import InputError, UnreadableFileError
    from nwwatch.service.engines import BadInput, inspect_input, quarantine_inputs
    from nwwatch.service.inputs import REPLAY_LINK_REASON

    for file, folder in files:
        if not force:
            try:
                st = file.stat()
            except OSError:
                st = None
            earlier = None if st is None else _earlier_state(engine.ledger, engine, file, st)
            if earlier is not None:
                if earlier == "quarantined":
                    summary.quarantined += 1
                    summary.still_quarantined += 1
                else:
                    summary.skipped += 1
                    summary.skipped_earlier += earlier == "done"
                bar.advance(1, 0)
                continue
        try:
            info = inspect_input(file, folder, link_reason=REPLAY_LINK_REASON)
        except InputError as exc:
            summary.quarantined += quarantine_inputs(engine, [BadInput(file, exc)], log)
            bar.advance(1, 0)
            continue
        except FileNotFoundError:
            if os.path.islink(file):  # listed as a link whose target is missing: not vanished
                target = os.path.join(os.path.dirname(file), os.readlink(file))
                bad = BadInput(file, UnreadableFileError(
                    file, f"symbolic link to {os.path.abspath(target)}, which does not "
                          "exist (moved, deleted, or on a share not mounted)"))
                summary.quarantined += quarantine_inputs(engine, [bad], log)
            else:
                summary.vanished += 1
            bar.advance(1, 0)
            continue
        except OSError as exc:
            # a symbolic link loop (ELOOP), a name too long: quarantined with the service's
            # reason, not a traceback that ends the replay
            step = "open" if _stats(file) else "stat"
            bad = BadInput(file, UnreadableFileError(file, f"cannot {step}: "
                                                           f"{exc.strerror or exc}"))
            summary.quarantined += quarantine_inputs(engine, [bad], log)
            bar.advance(1, 0)
            continue
        layout = layout_of_other_kind(kind, info)
        if layout is not None:
            summary.note_other_layout(file, layout, info.n_pages, info.axes)
        yield file, info


def _stats(file: Path) -> bool:
    try:
        file.stat()
    except OSError:
        return False
    return True


def _earlier_state(ledger, engine, file: Path, st: os.stat_result) -> str | None:
    """"done" or "quarantined" when the ledger knows this version of ``file`` (by name, size,
    mtime and ctime, without reading it) as such for this model, "copy" when it is done under
    another name (its rows, and QA pictures, carry that name); else None: the rescan's check
    (:meth:`~nwwatch.service.ledger.Ledger.known_state`), a file a batch of this run holds
    looked at as the batch does."""
    state = ledger.known_state(path_key(file), FileVersion.of(st),
                               engine.segmenter.model_sha256, engine.measurement_version)
    return None if state == "held" else state


def _overlay_settings(out: Path, folder: Path, frames: str, save_labels: bool
                      ) -> OverlaySettings:
    """``--overlays FOLDER``: a folder inside ``out``, named from the current directory
    (``res/qa`` with ``out`` ``res``) or absolutely, else relative to ``out`` (``qa``)."""
    frames = _overlay_mode(frames)
    real = folder.resolve()  # from the current directory; an absolute folder as it is
    if not lies_inside(real, out):
        real = (out / folder).resolve()
    if not lies_inside(real, out):
        raise ConfigError(None, "--overlays", f"{folder} is not inside the results folder "
                                              f"{out}; QA pictures go with the results")
    dataset = results_dataset_of(real, out, folder=True)
    if dataset is not None:  # PNGs there break every reader of the Parquet dataset
        raise ConfigError(None, "--overlays", f"{folder} is in {dataset}, where every file is "
                                              "read as results (pandas, pyarrow, DuckDB); "
                                              "e.g. --overlays "
                                              f"{out / 'overlays'}")
    return OverlaySettings(frames, real.relative_to(out.resolve()), save_labels)


def _overlay_mode(frames: str) -> str:
    """``--overlay-frames``: "all" or "flagged"."""
    if frames not in OVERLAY_MODES[1:]:
        raise ConfigError(None, "--overlay-frames", f"{frames!r} is not one of "
                                                    f"{', '.join(OVERLAY_MODES[1:])}")
    return frames


def _outside_input(root: Path, path: Path, what: str) -> None:
    """Refuse an output inside the input folder, or inside the folder of an input file
    (symlinks followed): the replay would read its own outputs back (masks as new tomograms)
    and write into an acquisition folder."""
    if root.is_dir():
        folder, where = root, "the input folder"
    elif root.is_file():
        folder, where = root.parent, f"the folder of the input file {root.name}:"
    else:
        return
    if lies_inside(path, folder):
        # absolute: the folder of a file named without one is "." ("…vol.tif: .")
        raise ConfigError(None, what, f"{path} lies inside {where} {os.path.abspath(folder)}; "
                                      "give a results folder outside it")
