"""What the service agrees to open: regular files inside the watched folder.

Opening a FIFO blocks until someone writes to it, a device may block or have side effects, and
a symbolic link can point anywhere the service's user may read (``shadow.tif -> /etc/shadow``).
So before any input is opened, :func:`check_input` looks at what the name refers to without
opening it, refuses links that leave the watched folder (unless the watch allows them), and
:func:`check_regular` opens non-blocking and confirms with ``fstat`` that what was opened is
still a regular file (it may have been swapped in between).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nwwatch.io import InputError


class NotARegularFileError(InputError):
    """A FIFO, socket, device or folder where an input file was expected."""


class ExternalSymlinkError(InputError):
    """A symbolic link to a file outside the watched folder (not followed by default)."""


_TYPES = [(stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a folder")]


def _not_regular(path: str | os.PathLike[str], mode: int) -> NotARegularFileError:
    what = next((name for test, name in _TYPES if test(mode)), "not a regular file")
    return NotARegularFileError(path, f"not a regular file: {what}; only regular files are read")


def check_regular(path: str | os.PathLike[str]) -> os.stat_result:
    """Stat of ``path`` if it is a regular file, checked on the opened file descriptor.

    Raises :class:`NotARegularFileError` (without opening anything but a regular file or a
    FIFO, which is opened non-blocking); FileNotFoundError/PermissionError as ``os.open``.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
        raise _not_regular(path, st.st_mode)  # devices and sockets are never opened
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st.st_mode)
    return st


#: Why a link out of the tree was not followed, and what to do, per command: the service has a
#: setting for it, replay does not (it reads no [[watch]] table).
SERVICE_LINK_REASON = ("symbolic link to a file outside the watched folder: not followed "
                       "(watch.follow_symlinks = true allows it)")
REPLAY_LINK_REASON = ("symbolic link to a file outside the replayed folder: not followed "
                      "(replay follows no such link; name the file it points to, "
                      "`nwwatch replay TARGET`, to replay it)")


def check_input(path: str | os.PathLike[str], root: str | os.PathLike[str],
                follow_symlinks: bool = False, *,
                link_reason: str = SERVICE_LINK_REASON) -> os.stat_result:
    """:func:`check_regular`, after refusing a path that resolves outside ``root`` (through a
    symbolic link of the file or of a folder on the way) unless ``follow_symlinks``, with
    :class:`ExternalSymlinkError` of ``link_reason`` (the advice of the calling command)."""
    if not follow_symlinks:
        real = Path(os.path.realpath(path))
        top = Path(os.path.realpath(root))
        if real != top and top not in real.parents:
            raise ExternalSymlinkError(path, link_reason)
    return check_regular(path)
