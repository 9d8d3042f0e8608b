"""Open only regular files: the one check every reader of an input file goes through.

Opening a FIFO blocks until someone writes to it and a device may block or have side effects,
so :func:`open_regular` looks at what the name refers to before opening it, never opens a
device or socket, opens a FIFO (or a file swapped in since) non-blocking, and confirms with
``fstat`` on the opened descriptor that it is a regular file.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from nwwatch.io.errors import NotARegularFileError, UnreadableFileError

_TYPES = [(stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a folder")]
# O_NONBLOCK: a FIFO opens at once (no writer waited for); no effect on a regular file's reads.
_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
          | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def _not_regular(path: str | os.PathLike[str], mode: int) -> NotARegularFileError:
    what = next((name for test, name in _TYPES if test(mode)), "something else")
    return NotARegularFileError(path, f"not a regular file: {what}; only regular files are read")


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file.

    Raises :class:`NotARegularFileError` (a FIFO, socket, device or folder; nothing but a
    regular file or a FIFO is ever opened); FileNotFoundError and PermissionError as
    ``os.stat``/``os.open`` raise them.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode) and not stat.S_ISFIFO(mode):
        raise _not_regular(path, mode)  # devices and sockets are never opened
    fd = os.open(path, _FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # a FIFO, or swapped for something else since the stat
            raise _not_regular(path, mode)
    except BaseException:
        os.close(fd)
        raise
    # Outside the try: a signal (Ctrl-C, SIGTERM as KeyboardInterrupt) raised once fdopen's
    # file object owns the descriptor would close it twice, the second time with EBADF in
    # place of the interrupt.
    return os.fdopen(fd, "rb")


def open_input(path: str | os.PathLike[str]) -> BinaryIO:
    """:func:`open_regular` for a reader of input files: a file the process may not read is
    bad input (:class:`UnreadableFileError` naming it), not an OS error."""
    try:
        return open_regular(path)
    except PermissionError as exc:
        raise UnreadableFileError(path, f"permission denied ({exc.strerror})") from exc


def check_regular(path: str | os.PathLike[str]) -> os.stat_result:
    """Stat of ``path`` if it is a regular file, checked on the opened file descriptor as
    :func:`open_regular` checks it (same errors)."""
    with open_regular(path) as handle:
        return os.fstat(handle.fileno())
