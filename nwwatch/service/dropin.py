"""``python -m nwwatch.service.dropin CONFIG``: validate a service configuration and print the
systemd drop-in for it (used by ``deploy/install.sh``); exit 78 naming the problem if invalid."""

from __future__ import annotations

import sys

from nwwatch.service.config import ConfigError, load_config, unit_dropin


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nwwatch.service.dropin /etc/nwwatch/nwwatch.toml", file=sys.stderr)
        return 2
    try:
        print(unit_dropin(load_config(args[0])), end="")
    except ConfigError as exc:
        print(f"nwwatch: {exc}", file=sys.stderr)
        return 78
    return 0


if __name__ == "__main__":
    sys.exit(main())
