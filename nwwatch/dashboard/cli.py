"""``nwwatch dashboard RESULTS`` (browse a results folder) and ``nwwatch report RESULTS``."""

from __future__ import annotations

import contextlib
import errno
import sys
from pathlib import Path

import click


@click.command("dashboard")
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--listen", default="127.0.0.1:8765", show_default=True,
              help="HOST:PORT to serve on (port 0: any free port).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a HOST other than the loopback (exposes the results to the network).")
@click.option("--ledger", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="The ledger, when not RESULTS/ledger.sqlite (opened read-only).")
def dashboard(results: Path, listen: str, allow_remote: bool, ledger: Path | None) -> None:
    """Serve the dashboard of a results folder (a replay's, a finished run's; read-only, so
    also beside a running service, without its live figures).

    Stop with Ctrl-C: exit 130 (143 after SIGTERM, 129 after a hang-up, SIGHUP)."""
    from nwwatch.dashboard.settings import parse_listen

    try:
        host, port = parse_listen(listen, allow_remote)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    from nwwatch.service.rebuild import require_results_folder

    try:  # an acquisition folder would serve an empty page, as if nothing were committed yet
        require_results_folder(results, ledger, "give the results folder (the service's "
                                                "[output] results, replay's --out)")
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    if ledger is None:
        from nwwatch.service.lock import ledger_to_read

        kept, note = ledger_to_read(results)
        if note is not None:
            click.echo(note, err=True)
            ledger = kept
    from nwwatch.dashboard.server import ListenError, serve

    try:
        signum = serve(results, ledger, host, port)
    except ListenError as exc:  # a setting to change: no "[Errno 98]" before it
        hint = (f"; another program listens there: try --listen {host}:0 (any free port)"
                if exc.errno == errno.EADDRINUSE else "")
        raise click.ClickException(f"{exc.strerror}{hint}") from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if signum is not None:
        from nwwatch.stopsignals import stop_signal_name

        with contextlib.suppress(OSError):  # a terminal that hung up takes no more lines
            click.echo(f"dashboard stopped ({stop_signal_name(signum)}): it only reads "
                       f"{results}", err=True)
        sys.exit(128 + signum)
