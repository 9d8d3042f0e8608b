"""``python -m nwwatch ARGS``: the ``nwwatch`` command."""

import os
import sys


def drop_current_folder_from_path() -> None:
    """`python -m` puts the current folder first on sys.path (-P would not): a user's
    training.py there shadowed the product's `training` package ("No module named
    'training.cli'; 'training' is not a package"), as any file named like a module nwwatch
    imports would. The entry is dropped, unless nwwatch itself was found there (a checkout
    run in place from its root)."""
    try:
        cwd = os.getcwd()
    except FileNotFoundError:  # the current folder was removed: nothing of it to import
        return
    here = os.path.realpath(cwd)
    package_root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    if sys.path and sys.path[0] in ("", cwd, here) and package_root != here:
        del sys.path[0]


if __name__ == "__main__":  # imported (a walk over the package's modules), it runs nothing
    drop_current_folder_from_path()  # before nwwatch.cli and its imports load
    from nwwatch.cli import main

    main()
