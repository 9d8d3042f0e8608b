"""A file's path as text, for any name the file system allows.

Linux file names are bytes; Python keeps a byte that is not valid UTF-8 as a lone surrogate,
which Parquet, SQLite, JSON and TOML refuse to encode. Shown or stored as text, such a byte
is written ``\\xNN``. Standard library only, below every layer: the service's ``source``
column and mask names, ``nwwatch measure``'s rows and the path checks of model files use it.
"""

from __future__ import annotations

import os


def path_text(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """``path`` as text (not made absolute): bytes that are not valid UTF-8 as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
