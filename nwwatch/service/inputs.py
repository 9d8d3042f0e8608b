"""What the service agrees to open: regular files inside the watched folder.

Opening a FIFO blocks until someone writes to it, a device may block or have side effects, and
a symbolic link can point anywhere the service's user may read (``shadow.tif -> /etc/shadow``).
So before any input is opened, :func:`check_input` looks at what the name refers to without
opening it, refuses links that leave the watched folder (unless the watch allows them), and
:func:`nwwatch.io.check_regular` opens non-blocking and confirms with ``fstat`` that what was
opened is still a regular file (it may have been swapped in between).
"""

from __future__ import annotations

import os
from pathlib import Path

from nwwatch.io import InputError, NotARegularFileError, check_regular
from nwwatch.io.layout import (
    T_DECLARATIONS,
    Z_DECLARATIONS,
    declares_time_frames,
    declares_z_slices,
)

__all__ = ["ExternalSymlinkError", "NotARegularFileError", "check_input", "check_regular",
           "declares_time_frames", "declares_z_slices", "layout_of_other_kind", "LAYOUT_NOTES",
           "T_DECLARATIONS", "Z_DECLARATIONS"]


class ExternalSymlinkError(InputError):
    """A symbolic link to a file outside the watched folder (not followed by default)."""


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
        # realpath, not Path.resolve (nwwatch.paths): a symbolic link loop is check_regular's
        # error to report, not a RuntimeError
        if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
            raise ExternalSymlinkError(path, link_reason)
    return check_regular(path)


#: What the service's ``input_layout_of_other_kind`` warning says of each layout.
LAYOUT_NOTES = {
    "z_slices": "its pages are declared Z slices, as a tomogram's are; segmented as in-situ "
                "frames, one row a slice (a tomogram belongs in a [[watch]] with kind = "
                "\"tomogram\")",
    "time_frames": "its pages are declared time frames (an MRC stack of images, .mrcs, "
                   "included), as an in-situ series' are; segmented "
                   "as one tomogram (a series belongs in a [[watch]] with kind = \"insitu\")",
}


def layout_of_other_kind(kind: str, info) -> str | None:
    """What the pages of a file of a ``kind`` watch or replay declare when that is the other
    kind's layout (Z slices in an in-situ folder, time frames in a tomogram folder), or None.
    Such a file is processed all the same (a stack saved with Fiji's defaults declares Z);
    the caller says so."""
    if kind == "insitu" and declares_z_slices(info):
        return "z_slices"
    if kind == "tomogram" and declares_time_frames(info):
        return "time_frames"
    return None
