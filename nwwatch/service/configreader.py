"""The configuration file read as TOML, typed values out of its tables, and the one error type
of configuration problems: every error names the file, the key (``watch[1].kind``) and what
is wrong; unknown keys are errors too."""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any

from nwwatch import tomlfile


class ConfigError(ValueError):
    """Invalid configuration. ``.file``, ``.key`` and ``.reason``; str() names all three."""

    def __init__(self, file: str | os.PathLike[str] | None, key: str, reason: str) -> None:
        self.file = None if file is None else Path(file)
        self.key = key
        self.reason = reason
        where = f"{self.file}: " if self.file is not None else ""
        # the file as a whole ("(file)", "(syntax)"): no key to name, and "(file):" read as a
        # placeholder left in the message
        named = "" if key.startswith("(") else f"{key}: "
        super().__init__(f"{where}{named}{reason}")

    def __reduce__(self):  # else unpickling calls __init__(message) and fails
        return (type(self), (self.file, self.key, self.reason))


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML document of the file at ``path``; :class:`ConfigError` (key ``(file)`` or
    ``(syntax)``) when it is missing, unreadable, a folder, not UTF-8 or not valid TOML."""
    try:
        return tomlfile.read_toml(path)
    except tomlfile.TomlFileError as exc:
        raise ConfigError(exc.path, exc.part, exc.reason) from None


def bound_text(bound: float) -> str:
    """A bound as written in the documentation: ``3600``, ``1000000``, ``0.5``."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound}"


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               dict: "a table", list: "a list of tables"}


class TableReader:
    """Take typed values out of one TOML table, remembering which keys were used."""

    def __init__(self, file: Path | None, prefix: str, table: Any) -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(table, dict):
            raise ConfigError(file, prefix, f"must be a table, got {type(table).__name__}")
        self.table = table
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), reason)

    def get(self, name: str, kind: type, default: Any = None, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.table:
            if required:
                raise self.error(name, f"is required{self.misspelt(name)}")
            return default
        value = self.table[name]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value, ok = float(value), True
            except OverflowError:  # TOML allows 64-bit integers; tomllib reads any size
                raise self.error(name, f"must be a number, got an integer of "
                                       f"{len(str(abs(value)))} digits") from None
        if not ok:
            raise self.error(name, f"must be {_TYPE_NAMES[kind]}, got {value!r}")
        if kind is float and not math.isfinite(value):
            # TOML has nan and inf: nan passes no bound check (a settle time that never
            # passes), inf is a wait that never ends.
            raise self.error(name, f"must be a finite number, got {value!r}")
        return value

    def misspelt(self, name: str) -> str:
        """``"; found 'result': a misspelling?"`` when the table holds keys that nothing reads
        and that are close to the missing ``name`` (``[outptu]`` for ``[output]``): the error
        then names the key the user wrote, not only the one that is missing."""
        near = difflib.get_close_matches(name, [k for k in self.table if k not in self.used],
                                         n=3, cutoff=0.6)
        return f"; found {', '.join(repr(k) for k in near)}: a misspelling?" if near else ""

    def positive(self, name: str, kind: type, default: Any, allow_zero: bool = False, *,
                 at_most: float, why: str = "") -> Any:
        """A number > 0 (>= 0 with ``allow_zero``) and <= ``at_most``; ``why``: what a larger
        value would do, said in the error. Every numeric key has an upper bound: a value past
        it is a typo or a unit mistaken (ms for s) that would exhaust memory or never end."""
        value = self.get(name, kind, default)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            raise self.error(name, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")
        if value is not None and value > at_most:
            raise self.error(name, f"must be <= {bound_text(at_most)}{why}, got {value}")
        return value

    def strings(self, name: str, default: tuple[str, ...], allow_empty: bool = True,
                file_names: bool = False) -> tuple[str, ...]:
        """A list of non-empty strings (or one string); ``file_names``: patterns matched
        against file names, so none may hold a '/'."""
        self.used.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(name, f"must be a list of non-empty strings, got {value!r}")
        if not value and not allow_empty:
            raise self.error(name, "must hold at least one pattern (an empty list matches "
                                   "no file)")
        with_folder = [v for v in value if "/" in v] if file_names else []
        if with_folder:
            # matched against file names only: such a pattern never matches, and the service
            # would process nothing, silently
            raise self.error(name, f"{with_folder[0]!r} holds a '/', and patterns are "
                                   "matched against file names only (sub-folders are watched "
                                   "when recursive = true, the default): e.g. '*.tif' "
                                   "instead of '**/*.tif'")
        return tuple(value)

    def path(self, name: str, base: Path, default: Path | None = None, required: bool = False):
        value = self.get(name, str, None, required=required)
        if value is None:
            return default
        if not value.strip():
            raise self.error(name, "must not be empty")
        control = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
        if control is not None:
            # A newline split the systemd drop-in's paths (a TOML "\n", or "\t" of a
            # Windows path written with single backslashes in a basic string)
            raise self.error(name, f"{value!r} holds the control character {control!r}: "
                                   "write the path as it is (in TOML, a Windows path in "
                                   "single quotes)")
        if value.startswith("~"):
            # install.sh reads the file as root, the service as its own user: two homes
            raise self.error(name, f"{value!r}: '~' is the home of whoever reads the file "
                                   "(root for install.sh, the service user for the service): "
                                   "write the absolute path")
        path = Path(value)
        # absolute and without "." or "..": systemd's ReadOnlyPaths= and ReadWritePaths= (the
        # drop-in) refuse paths that are not normalised
        return Path(os.path.normpath(path if path.is_absolute() else base / path))

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            # a misspelt optional table or key ([inferance]) is named with the one meant
            near = difflib.get_close_matches(unknown[0], sorted(self.used), n=1, cutoff=0.6)
            meant = f"; a misspelling of {near[0]!r}?" if near else ""
            raise self.error(unknown[0], f"unknown key (known: {', '.join(sorted(self.used))})"
                                         f"{meant}")
