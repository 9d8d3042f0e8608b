"""File names as the service stores and shows them, for any name the file system allows, and
the identity of a file or folder behind a name.

Linux file names are bytes. Python decodes the ones that are not valid UTF-8 with surrogate
escapes, which SQLite, Parquet and JSON refuse to encode. Two forms therefore exist:

- :func:`source_name` — text for people, logs and the Parquet ``source`` column: the absolute
  path, with every byte that is not valid UTF-8 written ``\\xNN``
  (:func:`nwwatch.pathtext.path_text`);
- :func:`path_key` — the ledger's key, lossless: that same text when the name is valid UTF-8
  (so existing ledgers keep their keys), else the raw bytes (an SQLite BLOB, which never equals
  a TEXT value, so no name can collide with another's display form).
"""

from __future__ import annotations

import os

from nwwatch.pathtext import path_text


def source_name(path: str | os.PathLike[str]) -> str:
    """The ``source`` column: the absolute path, without resolving symlinks (live watching and
    replay of the same folder write the same string); non-UTF-8 bytes as ``\\xNN``."""
    return path_text(os.path.abspath(path))


def path_key(path: str | os.PathLike[str]) -> str | bytes:
    """The lossless ledger key of ``path`` (see the module docstring)."""
    raw = os.fsencode(os.path.abspath(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def display(key: str | bytes) -> str:
    """The text form of a ledger key (:func:`path_key`)."""
    return key if isinstance(key, str) else path_text(key)


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(device, inode) of what is at ``path`` now, or None when nothing can be reached there
    (removed, or a share gone away): a name that now leads to another file or folder."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
