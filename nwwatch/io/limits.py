"""Limits and accepted pixel types of the TIFF layer, in one place so docs and tests agree."""

from __future__ import annotations

import os

import numpy as np

from nwwatch.io.errors import ImageTooLargeError

#: Pixel types read and written. uint32/int32/float64/complex/bool and others are refused:
#: no detector writes them for TEM frames, and they would need a lossy or silent conversion.
SUPPORTED_DTYPES: tuple[np.dtype, ...] = (
    np.dtype(np.uint8),
    np.dtype(np.uint16),
    np.dtype(np.int16),
    np.dtype(np.float32),
)

#: Most pixels one frame (page) may declare: 2**28 = 16384 x 16384. Checked from the header,
#: before any pixel memory is allocated.
MAX_FRAME_PIXELS = 2**28

#: Most decoded bytes a file read whole (all its frames or slices in memory at once: a
#: tomogram, any stack given to ``read_frames``) may declare: 2**33 = 8 GiB. A stack read a
#: page or a chunk of pages at a time (every in-situ format) has no such limit.
MAX_FILE_BYTES = 2**33

#: A pixel size above 10 um is not a microscope calibration but a desktop default
#: (72/96/300 dpi = 353/265/85 um): it is ignored (read as None) with a warning.
MAX_PLAUSIBLE_PIXEL_SIZE_NM = 1.0e4

#: A pixel size below 1 pm is no electron microscope's either (an atomic-resolution STEM
#: image has some 5 pm): most likely metres or a unit left out (5e-10 read as micrometres).
#: It is ignored (read as None) with a warning.
MIN_PLAUSIBLE_PIXEL_SIZE_NM = 1.0e-3

#: x and y pixel sizes within this relative difference count as square (rational tags
#: round); a larger difference makes a frame unreadable (AnisotropicPixelsError).
ANISOTROPY_TOLERANCE = 1.0e-3

#: An MRC header whose sections lie more than this many times the pixel size apart (a stack
#: of 2 nm images whose z cell spans the whole stack: hundreds) most likely holds no depth
#: calibration, and reading it says so with a warning.
MAX_PLAUSIBLE_IMPLIED_DEPTH_RATIO = 20.0

#: Acquisition times a reader takes from a file's own tags lie in these years (the first
#: included, the last not); others are an unset, zeroed or corrupt tag, and the file's mtime
#: is used with a warning.
PLAUSIBLE_ACQUISITION_YEARS = (1990, 2200)


def check_whole_read_bytes(path: str | os.PathLike[str], declared_bytes: int,
                           shape: tuple[int, ...]) -> None:
    """Raise :class:`ImageTooLargeError` (naming ``path``) when a file about to be read whole
    declares more than :data:`MAX_FILE_BYTES` of decoded pixels (``shape``, for the reason):
    checked before anything is allocated."""
    if declared_bytes > MAX_FILE_BYTES:
        raise ImageTooLargeError(
            # "once read": a signed 8-bit MRC is widened to 16 bits, twice its file's bytes
            path, f"declares {declared_bytes} bytes of pixels once read (shape {shape}), more "
                  f"than the limit of {MAX_FILE_BYTES} ({MAX_FILE_BYTES / 2**30:g} GiB) for a "
                  "file read whole")
