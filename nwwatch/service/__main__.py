"""``python -m nwwatch.service run|replay|status`` (the same commands as ``nwwatch ...``)."""

import click

from nwwatch.service.cli import replay, run, status


@click.group()
def _main() -> None:
    """nwwatch service commands."""


_main.add_command(run)
_main.add_command(replay)
_main.add_command(status)

if __name__ == "__main__":
    _main()
