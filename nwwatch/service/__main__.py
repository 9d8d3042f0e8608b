"""``python -m nwwatch.service run|replay|status|ledger|compact`` (the same commands as
``nwwatch ...``)."""

import click

from nwwatch.service.cli import compact, ledger, replay, run, status


@click.group()
def _main() -> None:
    """nwwatch service commands."""


_main.add_command(run)
_main.add_command(replay)
_main.add_command(status)
_main.add_command(ledger)
_main.add_command(compact)

if __name__ == "__main__":
    _main()
