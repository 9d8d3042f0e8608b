"""``python -m nwwatch ARGS``: the ``nwwatch`` command."""

from nwwatch.cli import main

if __name__ == "__main__":  # imported (a walk over the package's modules), it runs nothing
    main()
