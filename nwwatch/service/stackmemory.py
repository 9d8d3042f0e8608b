"""How much of an in-situ file the frame stage holds at once, and the check that refuses a
file read whole that cannot fit (docs/service.md, "Processing").

A stack (TIFF, MRC, DigitalMicrograph 3-D image, Velox EMD or TIA series) of more pages than
:func:`chunk_pages` is read, normalised, segmented and measured a chunk of pages at a time
(:func:`nwwatch.io.read_frame_chunks`), so it holds a few chunks whatever its length. A
file of no more pages than a chunk, and a TIFF whose pages share one IFD but not one
contiguous block of pixels, are read whole, and hold all their frames twice: in the file's
pixel type and normalised to float32. One too large for what the process may allocate
(large frames in a small memory), read unchecked, would be killed by the kernel's OOM killer
(the unit's ``MemoryMax``) at every attempt, and after ``max_attempts`` kills quarantined
with the generic reason of a file that kills the process. Checked from its header first, it
is refused at once, saying what it needs, what there is and what to do, and tried again at
the next start when the memory allows it (:func:`retry_stacks_that_fit`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nwwatch.io import InputError, TiffInfo, inspect_tiff
from nwwatch.resources import V2_KILL_LIMITS, Limit, available_memory
from nwwatch.service.names import source_name

#: Bytes in a GiB, the unit of the figures the check reports.
GIB = 2**30
#: A chunk of a stack holds at most this many bytes of frames (raw and float32), unless one
#: network batch needs more.
STACK_CHUNK_BYTES = 256 * 2**20
#: ... and at most this many network batches.
STACK_CHUNK_BATCHES = 4
#: Files whose frames take less than this are read without asking for the memory available
#: (the check reads /proc and the cgroup's files; a single frame never needs it).
CHECKED_FROM_BYTES = 64 * 2**20


class StackTooLargeError(InputError):
    """An in-situ file read whole (one of no more pages than a chunk, or a TIFF that cannot
    be read by page) whose frames need more memory than this process may allocate (the
    reason names both figures, in GiB, and what to do). Refused from its header, before any
    pixel is read."""


def frame_bytes(info: TiffInfo) -> int:
    """Bytes one frame of the file of ``info`` holds while it is processed: its pixels in the
    file's type and normalised to float32."""
    return math.prod(info.page_shape) * (np.dtype(info.dtype).itemsize + 4)


def whole_bytes(info: TiffInfo) -> int:
    """Bytes the frames of the file of ``info`` hold when it is read whole."""
    return max(1, info.n_pages) * frame_bytes(info)


def chunk_pages(info: TiffInfo, batch_size: int) -> int:
    """Pages of a stack read at a time: a whole number of network batches (so that the
    network sees the same batches as for the whole stack), at most
    :data:`STACK_CHUNK_BATCHES` of them and :data:`STACK_CHUNK_BYTES`, at least one."""
    batch_bytes = max(1, batch_size * frame_bytes(info))
    return batch_size * max(1, min(STACK_CHUNK_BATCHES, STACK_CHUNK_BYTES // batch_bytes))


def check_whole_read(info: TiffInfo, available: Limit | None = None, *,
                     not_by_page: bool = False) -> None:
    """Raise :class:`StackTooLargeError` when the frames of the file of ``info``, read whole,
    need more than ``available`` (None: what this process may allocate now before it is
    killed, :func:`nwwatch.resources.available_memory`; unknown: never refused).
    ``not_by_page``: a stack read whole as its layout, found when it was opened, does not
    allow reading it by page (for the reason: a TIFF whose pages share one IFD and not one
    contiguous block of pixels, an EMD series whose frames are not stored apart)."""
    need = whole_bytes(info)
    if need < CHECKED_FROM_BYTES:
        return
    if available is None:
        available = available_memory(V2_KILL_LIMITS)
    if available is None or need <= available.value:
        return
    where = f" ({available.source})" if available.source else ""
    # A control group's file (the unit's MemoryMax, a container's --memory) can be raised;
    # the machine's memory (/proc/meminfo) cannot.
    more = ("raise that limit (the service's MemoryMax: systemctl edit nwwatch)"
            if "/memory." in available.source else "use a machine with more memory")
    if not_by_page and info.layout == "emd":
        why = ("a Velox EMD file whose frames are not stored apart (a contiguous dataset, or "
               "HDF5 chunks many frames deep), read whole,")
        fix = ("save the series with an HDF5 chunk a frame, as Velox writes it, or as TIFF or "
               "MRC (processed a few frames at a time)")
    elif not_by_page:
        why = ("a TIFF whose pages share one IFD and not one block of pixels (compressed or "
               "scattered), read whole,")
        fix = ("save the stack as a BigTIFF of one IFD per page or as MRC (processed a few "
               "pages at a time)")
    else:
        why = "one file"
        fix = "bin the frames (2 x 2: 4 times fewer pixels) or save fewer per file"
    raise StackTooLargeError(
        info.path, f"{info.n_pages} frame{'s' if info.n_pages != 1 else ''} of "
        f"{' x '.join(map(str, info.page_shape))} {np.dtype(info.dtype)} in {why} need at "
        f"least {need / GIB:.1f} GiB of memory (in the file's pixel type and normalised to "
        f"float32), and {available.value / GIB:.1f} GiB are available{where}: {more}, or "
        f"{fix}; it is tried again when the service or a replay next starts with that "
        "memory (docs/service.md, \"Processing\")")


def retry_stacks_that_fit(ledger, log, check_memory: bool = True) -> int:
    """Take off the quarantine list every file refused as too large for the memory
    (:class:`StackTooLargeError`) that now fits (its header read again): the limit was raised
    or the machine has more memory. Its file is then tried again at the next scan; one that
    still cannot fit stays listed, unread. Run when the service or a replay starts.
    ``check_memory`` False: every one whose file is unchanged is tried again, unread (a Dask
    replay: the workers' memory decides). Logs ``stack_retried`` per file; returns their
    number."""
    from nwwatch.service.config import WatchConfig
    from nwwatch.service.names import path_key
    from nwwatch.service.watcher import exports_beside

    def fits(path: Path) -> TiffInfo | None:
        if any(ledger.holds_rows_of(path_key(export)) for export in
               exports_beside(path, WatchConfig(path=path.parent, kind="insitu"))):
            # its TIFF export was read in its place (the refusal's own advice): read now,
            # its frames would get rows twice
            return None
        try:
            info = inspect_tiff(path)
            if check_memory:
                check_whole_read(info)
        except (OSError, InputError):  # still too large, or no longer readable
            return None
        return info

    retried = ledger.retry_quarantined_that_fit(StackTooLargeError.__name__, fits)
    for path, info in retried:
        log.info("stack_retried", source=source_name(path),
                 needs_gib=round(whole_bytes(info) / GIB, 2))
    return len(retried)
