"""Typed errors for bad input files.

Every failure caused by the *content* of an input file is an :class:`InputError`: the service
records it, quarantines the file and goes on with the next one. Each error carries the file
(``.path``) and a human readable ``.reason``; ``str(error)`` names both. A file that does not
exist raises the built-in :class:`FileNotFoundError` as usual (it is a race, not bad input).
"""

from __future__ import annotations

import os
from pathlib import Path


class InputError(Exception):
    """A file that cannot be used as input. ``.path`` (Path) and ``.reason`` (str)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep path and reason across pickling (worker processes)
        return (type(self), (self.path, self.reason))


class NotATiffError(InputError):
    """The file does not start with a TIFF/BigTIFF header."""


class EmptyFileError(InputError):
    """The file has zero bytes (often: the writer has just created it)."""


class TruncatedTiffError(InputError):
    """The header is a TIFF header (or the file is named as an MRC, DigitalMicrograph or TIA
    series file)
    but structure or pixel data are missing or corrupt: cut short while still being written,
    or damaged."""


class MultichannelError(InputError):
    """RGB, multichannel, palette or inverted-grey (MinIsWhite) image; nwwatch needs
    single-channel grey images with 0 as black."""


class ImageTooLargeError(InputError):
    """Declared dimensions exceed the limits in :mod:`nwwatch.io.limits`; nothing was allocated."""


class UnsupportedDtypeError(InputError):
    """Pixel type other than uint8, uint16, int16 or float32."""


class AnisotropicPixelsError(InputError):
    """A frame declares different x and y pixel sizes (measurements assume square pixels)."""


class UnsupportedCompressionError(InputError):
    """Compression or predictor that this installation cannot decode (most need the
    optional ``imagecodecs`` package: LZW, JPEG, JPEG 2000, ...)."""


class UnsupportedLayoutError(InputError):
    """Image series nwwatch does not read: no 2-D pages, a volume with 4 or more axes, or an
    ImageJ header declaring fewer images than the file's pages."""


class BlankImageError(InputError):
    """Pixel data without contrast: every finite value equal, or none finite (a failed
    reconstruction or export). Nothing in it can be segmented or measured."""


class UnreadableFileError(InputError):
    """The file exists but cannot be opened (permissions)."""


class NotARegularFileError(InputError):
    """A FIFO, socket, device or folder where an input file was expected."""


class PageIndexError(InputError):
    """A frame asked for by its page (section) index that the file does not hold (a stack
    rewritten with fewer pages since it was listed). ``.n_pages``: the pages it holds."""

    def __init__(self, path: str | os.PathLike[str], index: int, n_pages: int) -> None:
        self.index, self.n_pages = index, n_pages
        super().__init__(path, f"page {index} out of range (0..{n_pages - 1})")

    def __reduce__(self):
        return (type(self), (self.path, self.index, self.n_pages))


def check_page_index(path: str | os.PathLike[str], index: int, n_pages: int) -> None:
    """Raise :class:`PageIndexError` unless ``0 <= index < n_pages``."""
    if not 0 <= index < n_pages:
        raise PageIndexError(path, index, n_pages)


# Formats a TEM user is likely to hand over instead of a TIFF, MRC, DigitalMicrograph, Velox
# EMD or TIA series file: what to do with them.
_TILT_HINT = ("a tilt series? nwwatch segments reconstructed tomograms: reconstruct it first "
              "(e.g. IMOD, AreTomo) and give the reconstruction (.rec, .mrc)")
_VIDEO_HINT = ("a video? nwwatch reads frames as images (TIFF, MRC, DigitalMicrograph, Velox "
               "EMD, TIA), not videos: save the acquisition's frames so where the camera "
               "software can (a video's compression changes grey levels, "
               "and it carries no pixel size or acquisition time), or split it into grey "
               "TIFF frames, e.g. ffmpeg -i VIDEO -pix_fmt gray frame_%05d.tif")
_READ_FILES = ("the service and replay read the microscope's files (TIFF, MRC, "
               "DigitalMicrograph, Velox EMD, TIA), which carry the pixel size and the "
               "acquisition time")
_PNG_HINT = (f"a PNG (a frame, or a label image?): {_READ_FILES}; nwwatch measure FILES "
             "measures PNG label images, and PNG frames with --read-as frames")
_JPEG_HINT = (f"a JPEG picture: {_READ_FILES}; a JPEG's compression changes grey levels (and "
              "a mask's class ids): save the frames as TIFF from the acquisition software")
#: How to make one multi-page TIFF (a tomogram) of a folder of one image per slice.
JOIN_SLICES_HINT = ("join them into one, e.g. in Fiji (File > Import > Image Sequence, then "
                    "File > Save As > Tiff)")
_CONVERT_HINTS = {".ali": _TILT_HINT, ".st": _TILT_HINT, ".avi": _VIDEO_HINT,
                  ".mp4": _VIDEO_HINT, ".mov": _VIDEO_HINT, ".mkv": _VIDEO_HINT,
                  ".png": _PNG_HINT, ".jpg": _JPEG_HINT, ".jpeg": _JPEG_HINT}


def conversion_hint(path: str | os.PathLike[str]) -> str:
    """What to do with a file of a microscope format nwwatch does not read, judged by its
    suffix (tilt series, videos, pictures), e.g. "a tilt series? nwwatch segments reconstructed
    tomograms: ..."; "" for any other name (the reason of
    :class:`NotATiffError` ends with it)."""
    return _CONVERT_HINTS.get(Path(path).suffix.lower(), "")


__all__ = [
    "AnisotropicPixelsError",
    "BlankImageError",
    "EmptyFileError",
    "ImageTooLargeError",
    "InputError",
    "MultichannelError",
    "NotATiffError",
    "PageIndexError",
    "TruncatedTiffError",
    "UnreadableFileError",
    "UnsupportedCompressionError",
    "UnsupportedDtypeError",
    "UnsupportedLayoutError",
    "JOIN_SLICES_HINT",
    "check_page_index",
    "conversion_hint",
]
