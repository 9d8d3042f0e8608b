"""Click commands ``nwwatch run``, ``replay``, ``status`` and ``ledger rebuild``."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

import click

from nwwatch.options import model_file, refuse_inside_results, say, stream_dropped
from nwwatch.service.config import KINDS, ConfigError
from nwwatch.stopsignals import (
    StopEvent,
    early_stop_signal,
    interrupt_exit_status,
    interrupt_name,
    sigterm_as_interrupt,
    take_stop_handler,
)

#: Where ``deploy/install.sh`` puts the configuration; ``run`` and ``status`` default to it.
DEFAULT_CONFIG = Path("/etc/nwwatch/nwwatch.toml")


@click.command("run")
# no dir_okay=False nor click's readable check: a folder or a file the service user may not
# read is a ConfigError (exit 78, which the unit does not restart), not a usage error (2)
@click.option("--config", "config_path", type=click.Path(path_type=Path, readable=False),
              default=DEFAULT_CONFIG, show_default=True,
              help="Service configuration (TOML).")
def run(config_path: Path) -> None:
    """Run the resident watching service (systemd Type=notify).

    Exit status: 0 after SIGTERM, SIGINT or SIGHUP (1 when the stop cut a batch short: the
    batch in flight outlived stop_timeout_seconds, or its held rows were not written by
    then or 3 s after it; a slow wind-down with every row written still exits 0);
    78 (EX_CONFIG, not restarted by the unit) when a person is needed: invalid configuration
    (the message names file and key), results or ledger folders the service may not write,
    no GPU with require_gpu, a model that does not load or
    cannot process its folder's files, a busy, damaged or lost ledger (docs/service.md).
    """
    import signal

    # Catch SIGTERM from the first moment: loading the model takes a while, and a stop
    # requested meanwhile must still end in a clean exit 0. SIGHUP (a foreground run's
    # terminal closed) too: its default kills the process mid-batch, which charged the file
    # in flight an attempt as if it had crashed the process.
    # One that came while this module was imported (nwwatch.cli records them): the same.
    stop = StopEvent()  # set from the handlers: never a threading.Event (its lock)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        take_stop_handler(sig, lambda *_: stop.set())
    if early_stop_signal() is not None:
        stop.set()
    from nwwatch.logsetup import configure_logging, get_logger
    from nwwatch.segment.session import GpuUnavailableError, ModelLoadError
    from nwwatch.service.config import load_config
    from nwwatch.service.daemon import Daemon
    from nwwatch.service.ledger import LedgerBusyError, LedgerCorruptError, LedgerLostError
    from nwwatch.service.rebuild import LedgerMissingError

    configure_logging("info")
    log = get_logger("nwwatch.service")
    daemon = None
    try:
        # under systemd (INVOCATION_ID: the unit's TasksMax bounds its threads)
        config = load_config(config_path, unit=bool(os.environ.get("INVOCATION_ID")))
        configure_logging(config.log_level)
        daemon = Daemon(config, stop_event=stop)
        code = daemon.run()
    except (ConfigError, GpuUnavailableError, ModelLoadError, LedgerBusyError,
            LedgerCorruptError, LedgerMissingError, LedgerLostError) as exc:
        # Not helped by a restart (configuration, model, a ledger that needs a person): exit
        # 78 (EX_CONFIG), which the unit lists in RestartPreventExitStatus.
        running = isinstance(exc, LedgerLostError) or (daemon is not None and daemon.started)
        event = "stopped" if running else "startup_failed"
        said = str(exc)
        if isinstance(exc, ConfigError) and exc.key == "(file)" and not exc.file.exists():
            # `nwwatch run` typed to try it: the default /etc/nwwatch/nwwatch.toml
            said += (" (give one with --config FILE; deploy/install.sh installs one, and "
                     "docs/service.md starts from the example deploy/nwwatch.example.toml)")
        log.error(event, error=said, error_type=type(exc).__name__, exit_status=78)
        _tell_a_person(said)
        sys.exit(78)
    except OSError as exc:
        if daemon is None or daemon.started:
            raise
        ledger = daemon.config.ledger
        refused = _unwritable(exc, config_path, daemon.config)
        if refused is not None:  # no permission, a read-only mount: restarts cannot help
            log.error("startup_failed", error=refused, error_type="ConfigError",
                      exit_status=78, ledger=str(ledger))
            _tell_a_person(refused)
            sys.exit(78)
        # Before the loop runs, a full disk (or a file size limit) is met when the lock or
        # the ledger is written: one structured line, not a traceback, and status 1, so
        # that systemd tries again (the unit's Restart=on-failure).
        if exc.errno in (errno.EMFILE, errno.ENFILE):  # the process's limit, not the disk
            action = ("out of file descriptors: raise the limit (LimitNOFILE= in the unit, "
                      "ulimit -n); systemd starts the service again")
        else:
            action = ("cannot write the results or ledger folder (disk full?); systemd "
                      "starts the service again")
        log.error("startup_failed", error=str(exc), error_type=type(exc).__name__,
                  exit_status=1, ledger=str(ledger), action=action)
        _tell_a_person(f"{ledger}: {exc}")
        sys.exit(1)
    # Stopped, everything written: the interpreter's teardown (its threads, ONNX Runtime's)
    # takes a moment, and Python puts its handlers back to the default first, so a second
    # stop signal then ended the process by that default (130, -15) instead of this status.
    # Ignored handlers stay ignored through the teardown.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)


def _tell_a_person(text: str) -> None:
    """``nwwatch: text`` on stderr when it is a terminal (a person who typed ``nwwatch run``);
    elsewhere (the journal) the JSON line just logged says it, and a plain line among the
    JSON ones would stop ``journalctl -o cat | jq`` there."""
    if sys.stderr.isatty():
        click.echo(f"nwwatch: {text}", err=True)


def _unwritable(exc: OSError, config_path: Path, config) -> str | None:
    """The configuration fault behind an OSError met writing the lock or the ledger at start
    — no permission, or a read-only file system (under the unit: a folder outside the
    drop-in's ReadWritePaths=) — naming the key and the fix, or None (a full disk: the start
    is tried again)."""
    import errno
    import pwd
    import shlex
    import stat

    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return None
    where = Path(exc.filename) if exc.filename else config.ledger
    key = "output.results" if where.is_relative_to(config.results) else "state.ledger"
    folder = config.results if key == "output.results" else config.ledger.parent
    if exc.errno == errno.EROFS:
        fix = ("a read-only file system; under systemd a folder outside the unit's "
               "ReadWritePaths=: `sudo deploy/install.sh --reconfigure` opens the configured "
               "results and ledger folders to it")
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
        target = folder
        with contextlib.suppress(OSError):  # a folder it may not search: exists() raises
            target = where if where.exists() else folder
        try:
            mine = target.stat().st_uid == os.geteuid()
        except OSError:
            mine = False
        if mine:  # a chown would change nothing: the mode is what refuses
            fix = (f"{target} belongs to {user} already, but its mode "
                   f"({stat.filemode(target.stat().st_mode)}) does not let it write, e.g. "
                   f"`chmod u+w{'x' if target.is_dir() else ''} "
                   f"{shlex.quote(str(target))}`")
        else:
            fix = (f"the user {user} must be able to write it, e.g. "
                   f"`sudo chown -R {user}: {shlex.quote(str(folder))}`")
    return f"{config_path}: {key}: cannot write {where}: {exc.strerror}; {fix}"


#: Replay options whose ConfigError is a wrong command line (exit 2), not a replay that
#: could not run (exit 1: a model, a ledger, results inside the input).
_OPTION_KEYS = ("--overlays", "--overlay-frames", "--save-labels", "--triplanar/--flips")


@click.command("replay")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...",
                type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Results folder.")
@click.option("--kind", type=click.Choice(KINDS), default="insitu", show_default=True,
              help="insitu: TEM frames, one row each; tomogram: 3D TIFF or MRC volumes, a mask "
                   "and one row each (docs/tomography.md).")
@click.option("--model", callback=model_file, metavar="MODEL",
              default=None, help="ONNX model (default: with --config, the model of the "
                                 "[[watch]] holding PATH; else for insitu the shipped model; "
                                 "tomograms: required, a model of `nwwatch train --volume`).")
@click.option("--force", is_flag=True, help="Process files the ledger lists as done again.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Use this service configuration's [inference], [retry], "
                                 "[tomogram] and [output] overlays settings, the model, "
                                 "patterns and ignore_patterns of the [[watch]] holding PATH "
                                 "(files they leave out are not replayed), and its [state] "
                                 "ledger when its results folder is --out.")
@click.option("--triplanar", is_flag=True,
              help="Tomograms: also segment along Y and X and average (3x the work); adds to "
                   "the --config [tomogram] table.")
@click.option("--flips", is_flag=True,
              help="Tomograms: average over the four flips of every slice (4x the work); adds "
                   "to the --config [tomogram] table.")
@click.option("--overlays", "overlays", type=click.Path(file_okay=False, path_type=Path),
              default=None,
              help="Write the measurement overlay (PNG) of each in-situ frame into this folder "
                   "inside --out: a path relative to --out (qa: --out/qa), or one that names a "
                   "folder inside it from here or absolutely (default with --config: its "
                   "[output] overlays setting, else none).")
@click.option("--overlay-frames", type=click.Choice(["all", "flagged"]), default=None,
              help="With --overlays (or --config's [output] overlays): every frame, or "
                   "frames whose status is not ok.  [default: all]")
@click.option("--save-labels", is_flag=True,
              help="With --overlays: also write each pictured frame's label image.")
@click.option("--dask", "dask_address", default=None, metavar="ADDRESS",
              help="Process on a Dask cluster (tomograms: one a task): a scheduler "
                   "address (tcp://host:8786) or local:N (N worker processes on this machine). "
                   "Needs the 'cluster' extra.")
def replay(paths: tuple[Path, ...], out_dir: Path, kind: str, model: Path | None, force: bool,
           config_path: Path | None, triplanar: bool, flips: bool, overlays: Path | None,
           overlay_frames: str | None, save_labels: bool, dask_address: str | None) -> None:
    """Process existing folders or files (PATH..., e.g. a shell glob) through the service's
    code path; a file named twice is processed once.

    Exit status: 0 every file processed (or already done); 1 the replay could not run
    (configuration, model, ledger, a results folder inside PATH or PATH inside it) or could
    not write its results (a full disk: the one line names the file); 2 wrong
    command line; 3 it ran, but some files failed, are quarantined or changed while read (the
    last line says how many);
    130 interrupted (Ctrl-C), 143 stopped by SIGTERM, 129 by a hang-up (SIGHUP: the terminal
    closed): the rows of the files processed are written; run it again to resume.
    """
    from nwwatch.logsetup import configure_logging
    from nwwatch.segment.session import GpuUnavailableError, ModelLoadError
    from nwwatch.service.clusterconnect import (
        ClusterRequestError,
        ClusterUnavailableError,
        ClusterUnreachableError,
        SchedulerLostError,
    )
    from nwwatch.service.flush import ResultsWriteError
    from nwwatch.service.ledger import LedgerBusyError, LedgerCorruptError, LedgerLostError
    from nwwatch.service.rebuild import LedgerMissingError
    from nwwatch.service.replay import replay as run_replay

    if dask_address is not None and dask_address.strip().lower().startswith("inproc://"):
        # a scheduler inside this very process (a script's LocalCluster(processes=False)):
        # never one a command line reaches; without this, "no scheduler reachable ... within
        # 5 s" at once, exit 1
        raise click.UsageError(f"--dask {dask_address!r}: expected a scheduler address "
                               "(tcp://host:port) or local:N (inproc:// reaches a scheduler "
                               "inside the same process only: a Python script's)")
    # per-file lines would fight with the progress bar; plain warnings at a terminal
    configure_logging("warning", plain=sys.stderr.isatty())
    s = None
    try:
        # SIGTERM and a hang-up unwind as Ctrl-C: held rows are written
        with sigterm_as_interrupt(hangup=True):
            s = run_replay(list(paths), out_dir, kind=kind, model=model, force=force,
                           config=config_path, progress=sys.stderr.isatty(), triplanar=triplanar,
                           flips=flips, overlays=overlays, overlay_frames=overlay_frames,
                           save_labels=save_labels, dask=dask_address)
            # within the block: a hang-up now (SIG_DFL again after it) ended the process
            # with every row written, as if it had been cut short
            for line in s.lines():  # to a reader that has gone: dropped (options.say)
                say(line)
    except (ConfigError, GpuUnavailableError, ModelLoadError, FileNotFoundError,
            LedgerBusyError, LedgerCorruptError, LedgerMissingError, LedgerLostError,
            ClusterUnavailableError, ClusterUnreachableError, ResultsWriteError,
            KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):
            # Stopped, and what is kept is written: a second stop signal now would only end
            # the process by its default action before its status (143 read as 129, -15)
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(signum, signal.SIG_IGN)
        if isinstance(exc, KeyboardInterrupt) and s is not None:
            # the replay had finished: only its last lines are lost, its status stands
            try:
                sys.stdout.flush()
            except OSError:  # its reader gone: what is buffered goes nowhere at the exit
                stream_dropped()
            sys.exit(s.exit_status)
        if isinstance(exc, KeyboardInterrupt):
            with contextlib.suppress(OSError):  # a terminal hung up takes no more lines
                click.echo(f"replay interrupted ({interrupt_name(exc)}): "
                           f"{_what_an_interrupt_kept(out_dir)}", err=True)
            sys.exit(interrupt_exit_status(exc))
        if isinstance(exc, ClusterRequestError) or (
                isinstance(exc, ConfigError) and exc.file is None and exc.key in _OPTION_KEYS):
            # an option that does not fit the others: a wrong command line, exit 2
            raise click.UsageError(str(exc)) from None
        if isinstance(exc, SchedulerLostError):
            # lost mid-run: the rows of the tasks committed before stay (each once)
            raise click.ClickException(f"{exc}; {_what_an_interrupt_kept(out_dir)}") from None
        raise click.ClickException(str(exc)) from None
    # all is written and said: nothing to stop, also while the interpreter tears down (which
    # puts Python's handlers back to the default first: a stop signal would end it by that)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(s.exit_status)


def _what_an_interrupt_kept(out_dir: Path) -> str:
    """What an interrupted replay tells of ``out_dir``: nothing written when it is missing or
    empty (stopped while a scheduler was awaited or the model loaded: a failed start removes
    what it made, startundo); else the rows already processed are there (service.flush) and a
    batch claimed is settled by the next run, which skips what is done."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return f"nothing was written to {out_dir}; run the same command again to start"
    return (f"what was written is kept; run the same command again to resume "
            f"(nwwatch status --out {out_dir})")


@click.command("status")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Service configuration (its results and ledger); the "
                                 "default without --out: /etc/nwwatch/nwwatch.toml.")
@click.option("--out", "out_dir", type=click.Path(exists=True, file_okay=False,
                                                  path_type=Path),
              default=None, help="A results folder (ledger.sqlite inside), e.g. of a replay.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("results", required=False, default=None,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
def status(config_path: Path | None, out_dir: Path | None, as_json: bool,
           results: Path | None) -> None:
    """Show what the service has processed, failed and quarantined: of the configuration's
    results, or of RESULTS (the same as --out RESULTS, as report and compact take it).

    Rows are counted for the newest version of each file, as the dashboard shows them; the
    rows of earlier versions (a stack processed again as it grew) are counted apart, as
    superseded."""
    import json
    import sqlite3

    from nwwatch.service.ledgerdb import rebuild_command
    from nwwatch.service.status import format_status, service_status

    given_as = "--out"
    if results is not None:
        if out_dir is not None and os.path.abspath(out_dir) != os.path.abspath(results):
            raise click.UsageError(f"give the results folder once: RESULTS {results} or "
                                   f"--out {out_dir}, not both")
        out_dir, given_as = results, "RESULTS"
    if config_path is not None and out_dir is not None:
        raise click.UsageError(f"give either --config or {given_as}, not both")
    if config_path is None and out_dir is None:
        if not DEFAULT_CONFIG.is_file():
            # say what the default was: the help promises it, and "give one" alone read as
            # if the documented default did not exist
            raise click.UsageError(f"no --config or --out given, and the default "
                                   f"configuration {DEFAULT_CONFIG} does not exist: give "
                                   "--config FILE or --out RESULTS")
        config_path = DEFAULT_CONFIG
    if config_path is not None:
        from nwwatch.service.config import load_config

        try:
            # the models are the service's to judge: one gone missing stops it (exit 78),
            # which is when its results are looked at
            cfg = load_config(config_path, models=False)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        ledger, results = cfg.ledger, cfg.results
    else:
        from nwwatch.service.lock import ledger_to_read

        results = out_dir
        ledger, note = ledger_to_read(out_dir)  # a service's [state] ledger: that one
        if note is not None:
            click.echo(note, err=True)
    from nwwatch.service.lock import LedgerElsewhereError
    from nwwatch.service.reporting import NoLedgerYetError

    try:
        st = service_status(ledger, results)
    except NoLedgerYetError as exc:
        if config_path is None:
            raise click.ClickException(str(exc)) from None
        # the configuration names where its ledger lies: "give its --config" was given
        for folder, key in ((Path(results), "[output] results"),
                            (Path(ledger).parent, "[state] ledger's folder")):
            if not folder.is_dir():  # before the first run, or a share not mounted
                raise click.ClickException(
                    f"{folder} ({key} of {config_path}) does not exist: nothing processed "
                    "with this configuration yet, or the folder lies on a share that is not "
                    "mounted") from None
        raise click.ClickException(f"{ledger}, the ledger of {config_path}, does not exist "
                                   "yet: nothing processed yet") from None
    except (FileNotFoundError, LedgerElsewhereError) as exc:
        raise click.ClickException(str(exc)) from None
    except PermissionError as exc:
        raise click.ClickException(_not_readable(exc, results)) from None
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(
            f"{ledger}: cannot read the ledger ({exc}); if it is damaged, stop the service and "
            f"run `{rebuild_command(Path(ledger), Path(results))}`") from None
    if as_json:
        # times in ISO 8601 with a "T", as the log's timestamps
        click.echo(json.dumps(st, indent=2, default=lambda v: v.isoformat()
                              if isinstance(v, datetime) else str(v)))
    else:
        click.echo(format_status(st))


def _not_readable(exc: PermissionError, results: Path) -> str:
    """Why another user may not read the service's ledger, and who may."""
    import grp

    where = exc.filename or results
    try:
        group = grp.getgrgid(results.stat().st_gid).gr_name
    except (OSError, KeyError):
        return f"{where}: {exc.strerror}; run it as the service's user"
    return (f"{where}: {exc.strerror}; the results are readable by the group {group} only: "
            f"run it as the service's user (`sudo -u <user> ...`) or join the group "
            f"(`sudo usermod -aG {group} $USER`, effective at the next login)")


@click.group("ledger")
def ledger() -> None:
    """Maintain the exactly-once ledger of a results folder."""


@ledger.command("rebuild")
@click.argument("results", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The ledger file ([state] ledger); default RESULTS/ledger.sqlite.")
def rebuild(results: Path, ledger_path: Path | None) -> None:
    """Rebuild the ledger of RESULTS from its Parquet files (a lost or damaged ledger).

    An existing ledger is moved aside (never deleted); stop the service first.
    """
    from nwwatch.service.ledger import LedgerBusyError
    from nwwatch.service.rebuild import rebuild_ledger

    if ledger_path is not None:  # readers of frames/ would take it for results
        refuse_inside_results(ledger_path, "'--ledger'", results)
    _as_the_results_owner(results, "nwwatch ledger rebuild")
    _umask_of_the_service()
    try:
        report = rebuild_ledger(results, ledger_path)
    except LedgerBusyError as exc:
        raise click.ClickException(exc.stop_first("nwwatch ledger rebuild")) from None
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise _not_writable(exc, results, "nwwatch ledger rebuild") from None
    for old in report.moved_aside:
        say(f"moved aside: {old}")
    for bad in report.unreadable:
        say(f"skipped, unreadable: {bad}", err=True)
    say(f"rebuilt from {report.files} files: {report.items} items done, "
        f"{report.rows} rows, {report.quarantined} quarantined "
        f"{'file' if report.quarantined == 1 else 'files'} kept")


def _as_the_results_owner(results: Path, command: str) -> None:
    """Refuse ``command`` run as root on a results folder another user owns (the service's):
    the files it writes would be root's, 0640, and the service and its group could not read
    them (``status`` then called the compacted file damaged)."""
    import pwd

    if os.geteuid() != 0:
        return
    try:
        owner = results.stat().st_uid
    except OSError:
        return  # the command names the problem itself
    if owner == 0:
        return
    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    raise click.ClickException(
        f"{results} belongs to {name}: run it as that user (`sudo -u {name} {command} "
        f"{results}`); run as root, its new files would be root's and {name} could not read "
        f"them")


def _umask_of_the_service() -> None:
    """Make files with at least the unit's UMask=0027, as the service does: run through sudo
    (umask 0022) a rebuilt ledger (and the -wal/-shm files SQLite gives its mode) or a
    compacted file, every row of an acquisition, would be readable by every user."""
    os.umask(os.umask(0) | 0o027)


def _not_writable(exc: OSError, results: Path, command: str) -> BaseException:
    """The error of a maintenance ``command`` that may not write the results or ledger (run as
    a user who may only read the service's results): which file, and whose they are; any
    other OSError is raised as it is."""
    import errno
    import pwd

    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return exc
    where = f"cannot write {exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    if exc.errno == errno.EROFS:
        return click.ClickException(f"{where} (a read-only file system)")
    try:
        owner = pwd.getpwuid(results.stat().st_uid).pw_name
    except (KeyError, OSError):
        owner = "the service user"
    return click.ClickException(f"{where}; {command} writes the ledger and the results: run "
                                f"it as their owner, e.g. sudo -u {owner} {command} {results}")


@click.command("compact")
@click.argument("results", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The ledger file ([state] ledger); default RESULTS/ledger.sqlite.")
@click.option("--acquisition", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Only this input folder (default: every acquisition).")
@click.option("--min-files", type=click.IntRange(min=2), default=2, show_default=True,
              help="Compact an acquisition held in at least this many files.")
def compact(results: Path, ledger_path: Path | None, acquisition: Path | None,
            min_files: int) -> None:
    """Merge the batch files of each acquisition in RESULTS into one sorted file.

    An acquisition that gets more rows later (the service started again) is merged again by
    the next compact. Crash-safe (an interrupted compaction is finished or undone at the next
    start); stop the service first (it holds the ledger).
    """
    from nwwatch.service.compaction import compact as run_compact
    from nwwatch.service.ledger import LedgerBusyError, LedgerCorruptError

    if ledger_path is not None:
        refuse_inside_results(ledger_path, "'--ledger'", results)
    _as_the_results_owner(results, "nwwatch compact")
    _umask_of_the_service()
    try:
        report = run_compact(results, ledger_path, acquisition=acquisition,
                             min_files=min_files)
    except LedgerBusyError as exc:
        raise click.ClickException(exc.stop_first("nwwatch compact")) from None
    except (LedgerCorruptError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise _not_writable(exc, results, "nwwatch compact") from None
    if report.recovered:
        say(f"finished {report.recovered} interrupted compaction(s)")
    for rel in report.mixed_files:
        say(f"left alone (rows of several acquisitions, written before results were "
            f"partitioned; the polars and DuckDB globs of the partitions miss them, "
            f"read_results reads them): {rel}")
    for rel in report.unreadable_files:
        say(f"left alone (unreadable): {rel}", err=True)
    for rel in report.missing_files:
        say(f"missing (the ledger names it, the file is gone: deleted? its input files "
            f"stay done; nwwatch ledger rebuild lets them be processed again): {rel}",
            err=True)
    # "compacted 0" alone reads like a failure: say the others need nothing
    left = (f"; {report.below_min_files} acquisition(s) in fewer than {min_files} files "
            "left as they are" if report.below_min_files else "")
    say(f"compacted {report.acquisitions} acquisition(s): {report.files_before} files "
        f"-> {report.files_after}, {report.rows} rows{left}")
