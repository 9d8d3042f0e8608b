"""TIFF input and output: frames, in-situ stacks and tomograms, with typed input errors.

Read: :func:`read_frames`, :func:`read_frame_at` (one page of a stack), :class:`FrameReader`
(pages of a stack one at a time, the file opened once),
:func:`read_frame_chunks` (a stack a bounded number of pages at a time), :func:`read_volume`,
:func:`inspect_tiff` (headers only), :func:`has_tiff_header` (the first 4 bytes); every one
opens only a regular file (:func:`open_regular`, :func:`check_regular`: a FIFO or device is
refused, never waited on);
:func:`check_tomogram` refuses a volume that cannot be segmented (one slice, no contrast).
Write: :func:`write_frame_tiff`, :func:`write_stack_tiff`, :func:`write_volume_tiff`
(atomic, ImageJ-compatible). Bad input raises a subclass of :class:`InputError`.
"""

from nwwatch.io.errors import (
    AnisotropicPixelsError,
    BlankImageError,
    EmptyFileError,
    ImageTooLargeError,
    InputError,
    MultichannelError,
    NotARegularFileError,
    NotATiffError,
    PageIndexError,
    TruncatedTiffError,
    UnreadableFileError,
    UnsupportedCompressionError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
    conversion_hint,
)
from nwwatch.io.limits import MAX_FILE_BYTES, MAX_FRAME_PIXELS, SUPPORTED_DTYPES
from nwwatch.io.metadata import unit_to_nm
from nwwatch.io.records import Frame, TiffInfo, Volume
from nwwatch.io.regular import check_regular, open_regular
from nwwatch.io.structure import has_tiff_header
from nwwatch.io.tiff import (
    FrameReader,
    check_tomogram,
    inspect_tiff,
    read_frame_at,
    read_frame_chunks,
    read_frames,
    read_volume,
)
from nwwatch.io.write import write_frame_tiff, write_stack_tiff, write_volume_tiff

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_FRAME_PIXELS",
    "SUPPORTED_DTYPES",
    "AnisotropicPixelsError",
    "BlankImageError",
    "EmptyFileError",
    "ImageTooLargeError",
    "InputError",
    "MultichannelError",
    "NotARegularFileError",
    "NotATiffError",
    "PageIndexError",
    "TruncatedTiffError",
    "UnreadableFileError",
    "UnsupportedCompressionError",
    "UnsupportedDtypeError",
    "UnsupportedLayoutError",
    "Frame",
    "FrameReader",
    "TiffInfo",
    "Volume",
    "check_regular",
    "check_tomogram",
    "conversion_hint",
    "has_tiff_header",
    "inspect_tiff",
    "open_regular",
    "read_frame_at",
    "read_frame_chunks",
    "read_frames",
    "read_volume",
    "unit_to_nm",
    "write_frame_tiff",
    "write_stack_tiff",
    "write_volume_tiff",
]
