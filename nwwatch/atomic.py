"""Atomic file writes: a reader never sees a partial file under the final name.

Used for every file nwwatch produces that someone else may pick up while it is written: TIFF
outputs (a folder watcher may be looking), Parquet batches (a ``ParquetWriter`` writes its
footer only on close, so a crash mid-write would leave a corrupt file) and JSON documents.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def remove_if_present(path: str | os.PathLike[str]) -> None:
    """Delete the file ``path`` if it exists. A path below something that is not a folder
    (``RESULTS/masks`` made a file) names no file either: not an error, as a missing one is
    not, so that undoing a batch whose mask could not be written does not fail in turn."""
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike[str], durable: bool = True) -> Iterator[BinaryIO]:
    """Open a hidden temporary file beside ``path`` for binary writing.

    On a clean exit the file is flushed, fsynced, renamed to ``path`` (replacing any file
    there) and the folder is fsynced; on an exception the temporary file is removed and
    nothing appears at ``path``. The temporary name starts with '.' and ends in '.part', so
    suffix-filtering watchers, pyarrow datasets and DuckDB globs all skip it.

    ``durable=False`` skips both fsyncs, for by-products that may be lost in a power cut
    (never a partial file under ``path``, but possibly none, or an empty one, after it).
    """
    target = Path(path)
    if not target.parent.is_dir():  # e.g. a new partition folder: its entry made durable too
        target.parent.mkdir(parents=True, exist_ok=True)
        fsync_folder(target.parent.parent)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        # "x": exclusive creation, mode 0o666 minus the umask like any new file.
        with open(temporary, "xb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(target.parent)


def atomic_write_json(path: str | os.PathLike[str], doc: object, indent: int = 1,
                      **dumps: object) -> Path:
    """Write ``doc`` as JSON (``indent``; other ``json.dumps`` keywords as ``dumps``) to
    ``path`` by :func:`atomic_write`, with a final newline; returns ``path`` as a Path."""
    text = json.dumps(doc, indent=indent, **dumps) + "\n"
    with atomic_write(path) as handle:
        handle.write(text.encode())
    return Path(path)


#: Name prefix of :func:`probe_writable`'s file (suffix ``.part``).
PROBE_PREFIX = ".nwwatch-probe."


def probe_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """The files :func:`probe_writable` left in ``folder`` when a signal ended the command
    between creating and removing one."""
    try:
        return [p for p in Path(folder).iterdir()
                if p.name.startswith(PROBE_PREFIX) and p.name.endswith(".part")]
    except OSError:
        return []


def probe_writable(folder: str | os.PathLike[str], nbytes: int = 0) -> None:
    """Create ``folder`` (and its parents) if missing, then create and remove a hidden file in
    it, so that a command which will write there fails before its work instead of after it.
    ``nbytes`` > 0: the file gets that many bytes, synced to disk, before it is removed (a full
    disk may still create an empty file: the service's test for the end of a storage pause).
    The name ends ``.part``, so a kill mid-probe leaves nothing the service's start-up
    clean-up does not remove.

    Raises ``OSError`` (e.g. read-only file system, permission denied, a file in the way, no
    space left).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, suffix=".part", dir=folder)
    try:
        if nbytes > 0:
            os.write(fd, b"\0" * nbytes)
            os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(name)
