"""Whether a path lies inside a folder, symbolic links resolved. Standard library only, below
every layer: the checks that keep outputs out of acquisition folders, inputs out of results
folders and QA pictures inside them use it."""

from __future__ import annotations

import os
from pathlib import Path


def lies_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``folder`` or lies below it, both resolved (:meth:`Path.resolve`:
    symbolic links followed in the part that exists, ``..`` taken from there; a symbolic link
    loop raises RuntimeError, the folder's first)."""
    top = Path(folder).resolve()
    return Path(path).resolve().is_relative_to(top)
