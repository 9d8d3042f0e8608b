"""A TOML file read into a dict: the one reader of the service's configuration and of a
training folder's ``dataset.toml``, so both take the same files (a byte-order mark, no
dependence on the system's locale) and refuse others alike."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any


class TomlFileError(ValueError):
    """A TOML file that cannot be read. ``.path``; ``.part``: ``"(file)"`` (missing,
    unreadable, a folder) or ``"(syntax)"`` (not UTF-8, not TOML); ``.reason``."""

    def __init__(self, path: Path, part: str, reason: str) -> None:
        self.path, self.part, self.reason = path, part, reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # else unpickling calls __init__(message) and fails
        return (type(self), (self.path, self.part, self.reason))


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML document of the file at ``path``; :class:`TomlFileError` when it is missing,
    unreadable, a folder, not UTF-8 or not valid TOML."""
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            data = handle.read()
        # a byte-order mark (Windows editors save UTF-8 with one) is no TOML statement
        return tomllib.loads(data.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except FileNotFoundError:
        raise TomlFileError(file, "(file)", "does not exist") from None
    except PermissionError:
        raise TomlFileError(file, "(file)", "cannot be read (permission denied)") from None
    except IsADirectoryError:
        raise TomlFileError(file, "(file)", "is a folder, not a TOML file") from None
    except OSError as exc:
        raise TomlFileError(file, "(file)", f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (an editor's Latin-1 "é", say)
        raise TomlFileError(file, "(syntax)", f"not UTF-8 text: byte "
                                              f"{exc.object[exc.start]:#04x} at offset "
                                              f"{exc.start}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TomlFileError(file, "(syntax)", f"not valid TOML: {exc}") from None
