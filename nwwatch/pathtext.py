"""A file's path as text, for any name the file system allows.

Linux file names are bytes; Python keeps a byte that is not valid UTF-8 as a lone surrogate,
which Parquet, SQLite, JSON and TOML refuse to encode. Shown or stored as text, such a byte
is written ``\\xNN``. Standard library only, below every layer: the service's ``source``
column and mask names, ``nwwatch measure``'s rows and the path checks of model files use it.
"""

from __future__ import annotations

import os
import re


def path_text(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """``path`` as text (not made absolute): bytes that are not valid UTF-8 as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def line_text(text: str) -> str:
    """``text`` for one line of a listing: control characters (a newline or a tab in a file
    name) escaped (``\\n``, ``\\t``, ``\\xNN``), so that a name cannot add lines of its own."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


_ESCAPED_BYTE = re.compile(rb"\\x([89a-f][0-9a-f])")


def path_of_text(text: str) -> str:
    """The file that ``text`` (a :func:`path_text` form, e.g. a ``source`` column or a label
    queue entry) names: ``text`` itself when something is there, else, when it holds
    ``\\xNN`` escapes of bytes 0x80-0xFF, the name with those bytes (a name that is not
    UTF-8), when something is there. ``text`` when neither exists."""
    if os.path.lexists(text) or "\\x" not in text:
        return text
    # os.fsencode: a part given as undecodable bytes already (a folder the text was joined
    # to) is taken as it is
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), os.fsencode(text))
    name = os.fsdecode(raw)
    return name if os.path.lexists(name) else text
