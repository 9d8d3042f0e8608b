"""``nwwatch label FRAMES... --out DATA``: correct the model's labels in the browser, save DATA."""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import webbrowser
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import click

from nwwatch.dashboard.settings import is_loopback, url_host
from nwwatch.options import InputFile, model_file
from nwwatch.paths import acquisition_of, lies_inside

#: Not the dashboard's 8765 (``nwwatch.dashboard.settings.DashboardConfig``): the page is
#: used on the acquisition PC, where the service's dashboard listens by default.
DEFAULT_PORT = 8766


def queued_frames(results: Path) -> tuple[list[Path], list[int], list[dict], list[str]]:
    """(paths, pages, infos, warnings) of the label queue of RESULTS, least confident first
    (series by series where several models or measurement versions ranked it:
    :func:`nwwatch.results.label_queue.read_queue`, and a warning naming them); entries whose
    source file is gone, or was rewritten since (its SHA-256 is not the queued one: the
    confidence and the recorded source were another frame's), become warnings."""
    from nwwatch.filehash import file_sha256
    from nwwatch.io.errors import NotARegularFileError
    from nwwatch.io.regular import check_regular
    from nwwatch.pathtext import path_of_text
    from nwwatch.results.label_queue import read_queue

    paths, pages, infos, warnings = [], [], [], []
    hashes: dict[Path, str] = {}
    listed: Counter[tuple[str, str]] = Counter()  # frames listed per series, in order
    for entry in read_queue(results):
        shown = entry.source  # text: a name that is not UTF-8 as \xNN
        source = Path(path_of_text(shown))
        try:
            check_regular(source)
        except FileNotFoundError:
            warnings.append(f"{shown}: queued frame {entry.frame} is no longer there; skipped")
            continue
        except (NotARegularFileError, OSError) as exc:  # replaced by a FIFO, unreadable, ...
            reason = exc.reason if isinstance(exc, NotARegularFileError) else (
                exc.strerror or str(exc))
            warnings.append(f"{shown}: queued frame {entry.frame} cannot be opened ({reason});"
                            " skipped")
            continue
        if source not in hashes:
            hashes[source] = file_sha256(source)
        if entry.source_sha256 and hashes[source] != entry.source_sha256:
            warnings.append(f"{shown}: rewritten since frame {entry.frame} was queued (its "
                            "SHA-256 differs); skipped")
            continue
        paths.append(source)
        pages.append(entry.frame)
        infos.append({"confidence": entry.confidence, "status": entry.status,
                      "source_sha256": entry.source_sha256,
                      "model_sha256": entry.model_sha256})
        listed[entry.series] += 1
    if len(listed) > 1:
        series = ", then ".join(
            f"{n} of the model {sha[:12] or '(not recorded)'} measurement "
            f"{version or '(version not recorded: before 2.2.3)'}"
            for (sha, version), n in listed.items())
        warnings.append(f"the queued frames were ranked by {len(listed)} models or measurement "
                        "versions, whose confidences are on different scales: listed one "
                        f"after the other, each least confident first: {series}")
    return paths, pages, infos, warnings


def _labelled_queue_last(refs: list, data_dir: Path) -> tuple[list, str]:
    """``refs`` with the queued frames already labelled in ``data_dir`` (a geometry saved)
    after the other queued ones, and a note saying how many ("" when none): after a
    fine-tune on them they come back while their angle is refused, and would lead the list.
    Each queued frame's ``info`` gets its ``queue_rank`` (1: least confident), which the page
    shows wherever the frame is listed."""
    queued = [ref for ref in refs if "confidence" in ref.info]
    for rank, ref in enumerate(queued, start=1):  # the page names it, wherever listed
        ref.info["queue_rank"] = rank
    done = [ref for ref in queued if (data_dir / "geometry" / f"{ref.stem}.json").is_file()]
    if not done:
        return refs, ""
    rest = [ref for ref in refs if "confidence" not in ref.info]
    todo = [ref for ref in queued if ref not in done]
    return todo + done + rest, (
        f"{len(done)} of the {len(queued)} queued frames are labelled in {data_dir} already: "
        "listed after the other queued frames")


def _other_ranking_model(refs: list, model_sha256: str, model_name: str) -> str:
    """Why the proposals of ``model_name`` (hash ``model_sha256``) are not the labels that
    ranked the queued frames of ``refs`` (their ``model_sha256``: a fine-tuned model's replay),
    or ""."""
    queued = [ref.info["model_sha256"] for ref in refs if ref.info.get("model_sha256")]
    others = [sha for sha in queued if sha != model_sha256]
    if not others:
        return ""
    ranked_by = sorted(set(others))
    # the queue of several acquisitions may be ranked by the proposals' model in part
    which = "the queue was" if len(others) == len(queued) else (
        f"{len(others)} of the {len(queued)} queued frames were")
    return (f"{which} ranked by the model{'s' if len(ranked_by) > 1 else ''} "
            f"{', '.join(s[:12] for s in ranked_by)} (the rows' model_sha256), the proposals "
            f"come from {model_name} {model_sha256[:12]}: give that model's file as --model "
            "to start from its labels")


def _tomogram_notes(frames: Sequence[Path]) -> list[str]:
    """One note per FRAMES file whose pages are declared Z slices, as a tomogram's are: the
    page would draw wire and droplet on each slice, which a tomogram's labels (0 pore, 1 solid)
    never hold. A warning, not a refusal: a stack saved with Fiji's defaults declares Z too."""
    from nwwatch.io import InputError, inspect_tiff
    from nwwatch.io.layout import Z_DECLARATIONS, declares_z_slices

    notes = []
    for path in dict.fromkeys(frames):
        if path.suffix.lower() == ".png":
            continue
        try:
            info = inspect_tiff(path)
        except (InputError, OSError):  # frame_refs has read it: refused there, not here
            continue
        if declares_z_slices(info):
            notes.append(f"{path} declares its {info.n_pages} pages as Z slices "
                         f"({Z_DECLARATIONS}), as a tomogram does: each opens as an in-situ "
                         "frame (wire, droplet); a tomogram's slice is labelled 0 pore, 1 "
                         "solid, 255 unlabeled with another tool (docs/tomography.md, "
                         "'Drawing them')")
    return notes


@click.command("label")
@click.argument("frames", nargs=-1, type=InputFile())
@click.option("--out", "data_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="DATA folder to write (images/, labels/, geometry/, truth.parquet); "
                   "frames already saved there open with their saved shapes.")
@click.option("--model", callback=model_file, metavar="MODEL",
              default=None, help="ONNX model whose labels are the starting point  "
                                 "[default: the shipped insitu-default].")
@click.option("--queue", "queue_dir", type=click.Path(exists=True, file_okay=False,
                                                      path_type=Path),
              default=None, help="RESULTS folder of the service or replay: its least "
                                 "confident frames open first.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this computer only; any other, such as "
                   "0.0.0.0, needs --allow-remote).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a HOST other than the loopback: anyone who can reach it can read "
                   "the frames and save labels into DATA (there is no login).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; print the address.")
def label(frames: tuple[Path, ...], data_dir: Path, model: Path | None, queue_dir: Path | None,
          host: str, allow_remote: bool, port: int, no_browser: bool) -> None:
    """Label FRAMES (TIFF, MRC, DigitalMicrograph, Velox EMD or TIA series frames or stacks,
    PNG images) in a local browser page.

    Each frame starts from the model's prediction as a droplet circle, a wire polygon and a
    facet line; drag them, paint what is not a circle, save. Saved frames are a DATA folder
    for `nwwatch train DATA --init insitu-default --out mine.onnx`. Stop with Ctrl+C: a save
    on its way is written first, the last line says how many label images DATA holds, and
    the exit status is 130 (143 after SIGTERM, 129 after a hang-up, SIGHUP).
    """
    from nwwatch.dashboard.settings import remote_refusal

    host = host.removeprefix("[").removesuffix("]")  # "[::1]": as make_server takes it
    refusal = None if allow_remote else remote_refusal(
        host, "the labelling page, which saves into DATA,", "--allow-remote")
    if refusal is not None:  # before anything is read or created, as the dashboard refuses it
        raise click.BadParameter(refusal, param_hint="'--host'")
    stop = _StopSignals()
    cut_short = False
    try:
        _label(frames, data_dir, model, queue_dir, host, port, no_browser, stop)
    except KeyboardInterrupt:  # a second signal: a save on its way is not waited for
        cut_short = stop.session is not None and stop.session.saves_in_flight() > 0
        stop.signum = stop.signum or signal.SIGINT
    finally:
        stop.restore()
    if stop.signum is None:  # the server's thread ended by itself
        return
    line = _what_was_saved(data_dir, stop.signum)
    if cut_short:
        line += ("; a save on its way was cut short: the next start on the same DATA "
                 "repairs it")
    with contextlib.suppress(OSError):  # a terminal that hung up takes no more lines
        click.echo(line, err=True)
    sys.exit(128 + stop.signum)


class _StopSignals:
    """SIGTERM, SIGINT and SIGHUP (a hang-up; left ignored under ``nohup``) taken over, as the
    command's first step, from :func:`nwwatch.stopsignals.catch_stop_signals_early`, which
    recorded those that came while the modules were imported: the first one sets ``event``
    (and ``signum``); a second one raises KeyboardInterrupt (no waiting for a save any longer).
    SIGINT is taken also where a shell left it ignored (a background job)."""

    def __init__(self) -> None:
        from nwwatch.stopsignals import (
            StopEvent,
            early_stop_signal,
            stop_handler_before,
            take_stop_handler,
        )

        self.event = StopEvent()  # set by the signal handler: no lock
        self.signum: int | None = None
        self.session = None  # the LabelSession, once its page is served
        self._previous: dict[int, object] = {}
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            if signum == signal.SIGHUP and stop_handler_before(signum) is signal.SIG_IGN:
                continue
            self._previous[signum] = take_stop_handler(signum, self._on_signal)
        early = early_stop_signal()
        if early is not None:
            self._on_signal(early, None)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()

    def restore(self) -> None:
        """The handlers as they were before (the command is over)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _page_url(address: str, port: int) -> tuple[str, bool]:
    """The page's URL for a browser on this computer, and whether the server listens on every
    interface (``address`` 0.0.0.0 or ::, which no browser can be sent to: the loopback of
    its family is, as every interface includes it)."""
    import ipaddress

    try:
        everywhere = ipaddress.ip_address(address).is_unspecified
    except ValueError:  # a host name
        everywhere = False
    if everywhere:
        address = "::1" if ":" in address else "127.0.0.1"
    return f"http://{url_host(address)}:{port}/", everywhere


def _what_was_saved(data_dir: Path, signum: int) -> str:
    """The last line of a session stopped by ``signum``: how many label images DATA holds."""
    from nwwatch.io.dataset import list_images
    from nwwatch.stopsignals import stop_signal_name

    how = stop_signal_name(signum)
    labels = data_dir / "labels"
    try:
        count = len(list_images(labels)) if labels.is_dir() else 0
    except OSError as exc:
        return f"label stopped ({how}); {labels} cannot be listed ({exc.strerror or exc})"
    if count == 0:
        return f"label stopped ({how}): nothing was saved to {data_dir}"
    images = "1 label image" if count == 1 else f"{count} label images"
    return (f"label stopped ({how}): {data_dir} holds {images} (labels/); run the same "
            "command again to go on")


def _label(frames: tuple[Path, ...], data_dir: Path, model: Path | None,
           queue_dir: Path | None, host: str, port: int, no_browser: bool,
           stop: _StopSignals) -> None:
    """The command until ``stop.event`` is set (set before the page is served: returns
    without touching DATA)."""
    from nwwatch.io import InputError
    from nwwatch.io.dataset import DatasetLayoutError
    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import DEFAULT_MODEL, LabelSession, make_server, serve_in_thread
    from nwwatch.label.store import data_lock, foreign_data_reason, repair_interrupted_save
    from nwwatch.options import refuse_inside_results, require_writable
    from nwwatch.results.label_queue import QUEUE_DIR
    from nwwatch.segment.session import ModelLoadError

    paths: list[Path] = []
    pages: list[int | None] = []
    infos: list[dict] = []
    if queue_dir is not None:
        # Checked with FRAMES given too: a wrong --queue (the frames/ or label-queue/ folder
        # of RESULTS) was otherwise ignored without a word, the queue's frames never listed.
        if not (queue_dir / QUEUE_DIR).is_dir():
            tomograms = (queue_dir / "volumes").is_dir() and not (queue_dir / "frames").is_dir()
            above = next((p for p in queue_dir.parents if (p / QUEUE_DIR).is_dir()), None)
            raise click.BadParameter(
                f"{queue_dir} has no {QUEUE_DIR}/ folder: " + (
                    "these are results of tomograms, and the queue holds in-situ frames only "
                    "(label a tomogram's slice as docs/tomography.md says)" if tomograms else
                    f"give the RESULTS folder that holds it, {above}" if above else
                    "give the RESULTS folder of 'nwwatch run' or 'nwwatch replay --out'"),
                param_hint="'--queue'")
        q_paths, q_pages, q_infos, warnings = queued_frames(queue_dir)
        for line in warnings:
            click.echo(f"warning: {line}", err=True)
        paths, pages, infos = q_paths, list(q_pages), q_infos
    paths += list(frames)
    pages += [None] * len(frames)
    infos += [{} for _ in frames]
    if not paths:
        raise click.UsageError("no frames: give FRAMES, or --queue RESULTS with queued frames")
    refuse_inside_results(data_dir, "'--out'", folder_example="DATA")
    foreign = foreign_data_reason(data_dir)
    if foreign is not None:  # before any save could mix into it or rewrite its truth table
        raise click.BadParameter(f"{data_dir}: {foreign}", param_hint="'--out'")
    try:
        refs = frame_refs(paths, infos, pages, data_dir)
    except (InputError, DatasetLayoutError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in _tomogram_notes(frames):
        click.echo(f"warning: {line}", err=True)
    if queue_dir is not None:
        refs, note = _labelled_queue_last(refs, data_dir)
        if note:
            click.echo(f"note: {note}", err=True)
    # DATA inside an acquisition folder: the service (recursive by default) and replay would
    # take every saved images/<stem>.tif, a copy of a frame, for a new frame of their own. A
    # Gatan In-Situ recording's folder holds its frames a few levels down (Hour_NN/...).
    folders = {Path(acquisition_of(str(ref.path.resolve()))) for ref in refs}
    inside = next((folder for folder in sorted(folders) if lies_inside(data_dir, folder)), None)
    if inside is not None:
        click.echo(f"warning: {data_dir} is in {inside}, a folder of the frames: a service "
                   "or `nwwatch replay` watching it would process the copies saved in "
                   "images/ as new frames; label into a folder outside it", err=True)
    # Checked before the page opens, not at the first proposal or the first save; the model
    # first, so that a refused command leaves no new DATA folder behind.
    session = LabelSession(refs, data_dir, model or DEFAULT_MODEL)
    if stop.event.is_set():  # stopped while the frames were read: DATA not touched
        return
    try:
        session.segmenter().require_kind("insitu", "labelling frames")
    except ModelLoadError as exc:
        raise click.BadParameter(str(exc), param_hint="'--model'") from None
    other = _other_ranking_model(refs, session.segmenter().model_sha256,
                                 (model or DEFAULT_MODEL).name)
    if other:
        click.echo(f"warning: {other}", err=True)
    if stop.event.is_set():  # stopped while the model loaded
        return
    try:  # before --out is created: a port in use left a new, empty DATA folder behind
        server = make_server(session, host, port)
    except OSError as exc:
        hint = "; try --port 0" if exc.errno == errno.EADDRINUSE else ""
        raise click.ClickException(f"cannot listen on {url_host(host)}:{port} ({exc}){hint}"
                                   ) from None
    try:
        require_writable(data_dir, "'--out'", folder=True)
    except click.BadParameter:
        server.server_close()
        raise
    # A save stopped midway by a kill or a crash of an earlier session: made consistent
    # before any frame opens (a session still saving is waited for).
    with data_lock(data_dir):
        repaired = repair_interrupted_save(data_dir)
    if repaired:
        click.echo(f"warning: {repaired}", err=True)
    url, everywhere = _page_url(server.server_address[0], server.server_address[1])
    if not is_loopback(host):
        bound = url_host(server.server_address[0])
        where, reach = (("all interfaces", "any address of this computer") if everywhere
                        else (bound, bound))
        click.echo(f"warning: --allow-remote: the labelling page listens on {where} (port "
                   f"{server.server_address[1]}) with no login: anyone who can reach {reach} "
                   f"can read the frames and write labels into {data_dir}", err=True)
    frames = "1 frame" if len(refs) == 1 else f"{len(refs)} frames"
    also = (f" (listening on all interfaces: from another computer, this one's name or "
            f"address, port {server.server_address[1]})" if everywhere else "")
    click.echo(f"labelling {frames} into {data_dir} at {url}{also}  (Ctrl+C to stop)")
    stop.session = session
    thread = serve_in_thread(server)
    if not no_browser:
        webbrowser.open(url)
    try:
        while thread.is_alive() and not stop.event.wait(0.5):
            pass
        if session.saves_in_flight():
            with contextlib.suppress(OSError):  # a terminal that hung up
                click.echo("waiting for the save on its way to be written...", err=True)
        session.stop_saving()  # (a second Ctrl+C still ends the process at once)
    finally:
        session.stop_saving(timeout=0)  # refuse saves: the server's threads die with us
        server.shutdown()
        server.server_close()
        session.close()
