"""Open a TIFF and check its structure from the headers alone, before any pixel is read.

The checks run in the order that gives the most useful error: empty file, TIFF magic, the
chain of image file directories (IFDs) inside the file, declared size (refused before any
allocation), pixel type, channels, and finally that every page's pixel data lies inside the
file (a file cut short by a writer that has not finished).
"""

from __future__ import annotations

import logging
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import structlog
import tifffile

from nwwatch.io.errors import (
    EmptyFileError,
    ImageTooLargeError,
    MultichannelError,
    NotATiffError,
    TruncatedTiffError,
    UnreadableFileError,
    UnsupportedCompressionError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
)
from nwwatch.io.limits import MAX_FILE_BYTES, MAX_FRAME_PIXELS, SUPPORTED_DTYPES
from nwwatch.io.records import TiffInfo

_log = structlog.get_logger("nwwatch.io")


class _TifffileToLog(logging.Handler):
    """tifffile's own log records as ``io.tifffile`` debug events of nwwatch's log.

    tifffile logs what it finds wrong in a file (e.g. "ImageJ series metadata invalid or
    corrupted file") as a bare line on stderr; the checks here say the same, with the file,
    in the error that refuses it. The record is kept for debugging, not printed twice.
    """

    def emit(self, record: logging.LogRecord) -> None:
        _log.debug("io.tifffile", message=record.getMessage(), tifffile_level=record.levelname)


_tifffile_log = logging.getLogger("tifffile")
if not any(isinstance(h, _TifffileToLog) for h in _tifffile_log.handlers):
    _tifffile_log.addHandler(_TifffileToLog())
    _tifffile_log.propagate = False  # not also to the root logger's last-resort stderr line

# magic -> (struct byte order, BigTIFF)
_MAGIC = {
    b"II*\x00": ("<", False),
    b"MM\x00*": (">", False),
    b"II+\x00": ("<", True),
    b"MM\x00+": (">", True),
}
_CHANNEL_AXES = "SC"  # samples (RGB, extra samples) and channels
# tifffile's series kinds of files without OME, ImageJ or vendor metadata
_PLAIN_KINDS = frozenset({"shaped", "generic", "uniform"})
# What to save a refused pixel type as (by kind and bytes): the nearest type read exactly.
_DTYPE_HINTS = {"f8": ": save it as float32", "i1": ": save it as int16",
                "i4": ": save it as float32, or int16 if the values fit",
                "u4": ": save it as float32, or uint16 if the values fit",
                "i8": ": save it as float32, or int16 if the values fit",
                "u8": ": save it as float32, or uint16 if the values fit"}
# Formats a TEM user is likely to hand over instead of a TIFF: what to do with them.
_MRC_HINT = (": an MRC volume? nwwatch reads TIFF; convert it, e.g. with IMOD's mrc2tif or "
             "Fiji (File > Save As > Tiff)")
_CONVERT_HINTS = {".mrc": _MRC_HINT, ".rec": _MRC_HINT, ".ali": _MRC_HINT, ".st": _MRC_HINT,
                  ".map": _MRC_HINT,
                  ".dm3": ": a DigitalMicrograph file? nwwatch reads TIFF; export it as TIFF",
                  ".dm4": ": a DigitalMicrograph file? nwwatch reads TIFF; export it as TIFF"}


def has_tiff_header(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` starts with a TIFF or BigTIFF header (its first 4 bytes,
    nothing else read). Raises OSError when it cannot be opened."""
    with open(path, "rb") as handle:
        return handle.read(4) in _MAGIC


@contextmanager
def open_tiff(path: str | os.PathLike[str]) -> Iterator[tuple[tifffile.TiffFile, TiffInfo]]:
    """Open ``path`` after checking its structure; yield the TiffFile and its :class:`TiffInfo`.

    Raises FileNotFoundError when the file does not exist and an :class:`InputError` subclass
    when it is not a usable TIFF.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with block below
    except PermissionError as exc:
        raise UnreadableFileError(path, f"permission denied ({exc.strerror})") from exc
    except IsADirectoryError as exc:
        raise UnreadableFileError(path, "is a directory, not a file") from exc
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise EmptyFileError(path, "file is empty (0 bytes)")
        n_ifds = _check_ifd_chain(path, handle, size)
        handle.seek(0)
        try:
            tif = tifffile.TiffFile(handle, name=path.name)
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # tifffile raises many types on corrupt structure
            raise TruncatedTiffError(path, f"corrupt TIFF structure ({exc})") from exc
        with tif:
            info = _describe(path, tif, size, n_ifds)
            yield tif, info


def _check_ifd_chain(path: Path, handle: BinaryIO, size: int) -> int:
    """Follow the IFD chain; return its length. A pointer beyond the end means truncation."""
    head = handle.read(16)
    if len(head) < 4 and any(magic.startswith(head) for magic in _MAGIC):
        raise TruncatedTiffError(path, f"TIFF header cut short ({size} bytes)")
    if head[:4] not in _MAGIC:
        # The reason names no bytes of the file: it is logged and stored, and the file may be a
        # secret the service should not have read.
        hint = _CONVERT_HINTS.get(Path(path).suffix.lower(), "")
        raise NotATiffError(path, f"not a TIFF file (no TIFF or BigTIFF header){hint}")
    order, bigtiff = _MAGIC[head[:4]]
    if bigtiff:
        if len(head) < 16:
            raise TruncatedTiffError(path, f"BigTIFF header cut short ({size} bytes)")
        count_fmt, entry_size, offset_fmt = "Q", 20, "Q"
        offset = struct.unpack(order + "Q", head[8:16])[0]
    else:
        if len(head) < 8:
            raise TruncatedTiffError(path, f"TIFF header cut short ({size} bytes)")
        count_fmt, entry_size, offset_fmt = "H", 12, "I"
        offset = struct.unpack(order + "I", head[4:8])[0]
    count_size = struct.calcsize(count_fmt)
    offset_size = struct.calcsize(offset_fmt)
    seen: set[int] = set()
    while offset:
        where = f"image directory {len(seen)} at byte {offset}"
        if offset in seen:
            raise TruncatedTiffError(path, f"{where} loops back (corrupt IFD chain)")
        if offset + count_size > size:
            raise TruncatedTiffError(path, f"{where} lies beyond the end of the {size}-byte file")
        seen.add(offset)
        handle.seek(offset)
        n_entries = struct.unpack(order + count_fmt, handle.read(count_size))[0]
        next_at = offset + count_size + n_entries * entry_size
        if next_at + offset_size > size:
            raise TruncatedTiffError(path, f"{where} is cut short by the end of the file")
        entries = handle.read(n_entries * entry_size)
        _check_tag_values(path, where, entries, order, bigtiff, size)
        offset = struct.unpack(order + offset_fmt, handle.read(offset_size))[0]
    if not seen:
        raise TruncatedTiffError(path, "TIFF header points to no image")
    return len(seen)


# TIFF field type -> bytes per value (types 1-18 of TIFF 6 and BigTIFF)
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              13: 4, 16: 8, 17: 8, 18: 8}


def _check_tag_values(
    path: Path, where: str, entries: bytes, order: str, bigtiff: bool, size: int
) -> None:
    """Tag values stored outside the IFD must lie inside the file."""
    entry_fmt, entry_size, inline = (order + "HHQQ", 20, 8) if bigtiff else (order + "HHII", 12, 4)
    for start in range(0, len(entries), entry_size):
        code, kind, count, value_at = struct.unpack_from(entry_fmt, entries, start)
        n_bytes = count * _TYPE_SIZE.get(kind, 0)  # unknown types are skipped, as TIFF says
        if n_bytes > inline and value_at + n_bytes > size:
            raise TruncatedTiffError(
                path, f"{where}: value of tag {code} ends at byte {value_at + n_bytes}, "
                f"beyond the end of the {size}-byte file"
            )


def squeezed(series: tifffile.TiffPageSeries) -> tuple[tuple[int, ...], str]:
    """Series shape and axes without singleton axes; Y and X always kept."""
    shape = series.get_shape(False)
    axes = series.get_axes(False)
    keep = [i for i, (n, a) in enumerate(zip(shape, axes, strict=True)) if n != 1 or a in "YX"]
    return tuple(shape[i] for i in keep), "".join(axes[i] for i in keep)


def image_series(
    tif: tifffile.TiffFile,
) -> tuple[list[tifffile.TiffPageSeries], list[tifffile.TiffPageSeries]]:
    """The series read as one stack of pages, in file order, and the series not read.

    tifffile makes one series per ``TiffWriter.write`` call of its own (shaped) format, so a
    file that acquisition software grew one page at a time holds one series per page. In a
    file without OME, ImageJ or vendor metadata (tifffile kinds "shaped", "generic",
    "uniform"), every plain series of 2-D pages with the first series' page shape and pixel
    type is read; the others (e.g. a thumbnail) are not. OME, ImageJ and vendor files: the
    first series only.
    """
    first, rest = tif.series[0], list(tif.series[1:])
    if not _is_plain_stack(first):
        return [first], rest
    page_shape = squeezed(first)[0][-2:]
    read, ignored = [first], []
    for series in rest:
        same = (_is_plain_stack(series) and squeezed(series)[0][-2:] == page_shape
                and series.dtype == first.dtype)
        (read if same else ignored).append(series)
    return read, ignored


def _is_plain_stack(series: tifffile.TiffPageSeries) -> bool:
    """A series without a metadata convention, of 2-D pages on at most one stack axis."""
    shape, axes = squeezed(series)
    return (series.kind in _PLAIN_KINDS and len(axes) <= 3 and axes.endswith("YX")
            and not any(a in _CHANNEL_AXES for a in axes))


def series_n_pages(series: tifffile.TiffPageSeries) -> int:
    """2-D pages in ``series`` (the product of its axes before Y)."""
    shape, axes = squeezed(series)
    return math.prod(shape[: axes.index("Y")])


def _describe(path: Path, tif: tifffile.TiffFile, size: int, n_ifds: int) -> TiffInfo:
    if len(tif.pages) < n_ifds:
        raise TruncatedTiffError(
            path, f"only {len(tif.pages)} of {n_ifds} image directories could be read"
        )
    if not tif.series:
        raise TruncatedTiffError(path, "no image series found")
    read, ignored = image_series(tif)
    series = read[0]
    shape, axes = squeezed(series)
    if len(read) > 1:  # plain series of single-channel (H, W) pages: one stack
        shape, axes = (sum(series_n_pages(s) for s in read), *shape[-2:]), "IYX"
    if ignored:  # e.g. a thumbnail, or pages of another size: not read
        _log.warning("io.extra_series_ignored", path=str(path), n_series=len(tif.series),
                     read_shape=shape, ignored_shapes=[s.shape for s in ignored])
    if not axes.endswith("YX") and not axes.endswith("YXS"):
        raise UnsupportedLayoutError(path, f"no 2-D image pages (axes {axes}, shape {shape})")
    y, x = axes.index("Y"), axes.index("X")
    page_values = shape[y] * shape[x] * (shape[axes.index("S")] if "S" in axes else 1)
    if page_values > MAX_FRAME_PIXELS:
        raise ImageTooLargeError(
            path,
            f"declares {shape[y]} x {shape[x]} pixels per page ({page_values} values), "
            f"more than the limit of {MAX_FRAME_PIXELS}",
        )
    page = series.keyframe
    dtype = series.dtype
    if dtype is None:
        raise UnsupportedDtypeError(
            path,
            f"unsupported pixel format ({page.bitspersample} bits, "
            f"sample format {tifffile.SAMPLEFORMAT(page.sampleformat).name})",
        )
    dtype = np.dtype(dtype).newbyteorder("=")
    declared = math.prod(shape) * dtype.itemsize
    if declared > MAX_FILE_BYTES:
        raise ImageTooLargeError(
            path, f"declares {declared} bytes of pixels (shape {shape}), "
            f"more than the limit of {MAX_FILE_BYTES}"
        )
    if dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        hint = _DTYPE_HINTS.get(f"{dtype.kind}{dtype.itemsize}", "")
        raise UnsupportedDtypeError(path, f"pixel type {dtype} is not supported ({names}){hint}")
    channel_axes = [a for a in axes if a in _CHANNEL_AXES]
    if channel_axes:
        n = math.prod(shape[axes.index(a)] for a in channel_axes)
        hint = ""
        if axes == "CYX" and tif.is_imagej:
            # tifffile.imwrite(path, stack, imagej=True) declares a (N, Y, X) array as
            # channels: most likely Z slices (a tomogram) or frames saved without axes.
            hint = ("; if the pages are Z slices or frames, save them so: "
                    "tifffile.imwrite(path, data, imagej=True, metadata={'axes': 'ZYX'}) "
                    "(or 'TYX'), or in Fiji Image > Hyperstacks > Re-order Hyperstack")
        raise MultichannelError(
            path, f"{n} channels per pixel (shape {shape}, axes {axes}); "
            f"nwwatch reads single-channel grey images{hint}"
        )
    first_page = 0
    for part in read:
        _check_pages(path, tif, part, size, first_page)
        first_page += series_n_pages(part)
    n_pages = math.prod(shape[: axes.index("Y")])
    layout = "ome" if tif.is_ome else "imagej" if tif.is_imagej else "tiff"
    return TiffInfo(
        path=path,
        size_bytes=size,
        n_pages=n_pages,
        shape=shape,
        axes=axes,
        dtype=dtype,
        declared_bytes=declared,
        layout=layout,
        compression=tifffile.COMPRESSION(page.compression).name,  # known: checked above
    )


def _check_pages(
    path: Path, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, size: int,
    first_page: int,
) -> None:
    """Colour model, codecs and data extents of one series whose pages start at ``first_page``."""
    page = series.keyframe
    if page.photometric == tifffile.PHOTOMETRIC.PALETTE:
        raise MultichannelError(
            path, f"palette (indexed colour) image of shape {series.shape}; save it as greyscale"
        )
    _check_codecs(path, page)
    _check_data_extents(path, tif, series, size, first_page)


def _check_codecs(path: Path, page: tifffile.TiffPage) -> None:
    """Refuse, from the header, data this installation cannot decode."""
    for kind, code, codecs, names in (
        ("compression", page.compression, tifffile.TIFF.DECOMPRESSORS, tifffile.COMPRESSION),
        ("predictor", page.predictor, tifffile.TIFF.UNPREDICTORS, tifffile.PREDICTOR),
    ):
        if code in codecs:
            continue
        try:
            name = names(code).name
        except ValueError:
            raise UnsupportedCompressionError(path, f"unknown {kind} code {code}") from None
        raise UnsupportedCompressionError(
            path, f"{name} {kind} cannot be decoded here (install the 'imagecodecs' package)"
        )


def _check_data_extents(
    path: Path, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, size: int,
    first_page: int,
) -> None:
    """Every page present and its pixel data inside the file; pages numbered from ``first_page``."""
    n_pages = series_n_pages(series)
    if tif.is_imagej:
        declared_images = int((tif.imagej_metadata or {}).get("images", 1))
        if declared_images > n_pages:
            raise TruncatedTiffError(
                path, f"ImageJ header declares {declared_images} images, the file holds {n_pages}"
            )
    contiguous_at = series.dataoffset
    if contiguous_at is not None:
        end = contiguous_at + series.nbytes
        if end > size:
            raise TruncatedTiffError(
                path, f"pixel data end at byte {end}, the file has only {size} bytes"
            )
        return
    for index, page in enumerate(series.pages, start=first_page):
        if page is None:
            raise TruncatedTiffError(path, f"page {index} is missing")
        offsets, counts = page.dataoffsets, page.databytecounts
        if not offsets:
            raise TruncatedTiffError(path, f"page {index} has no pixel data")
        end = max(o + c for o, c in zip(offsets, counts, strict=False))
        if end > size:
            raise TruncatedTiffError(
                path, f"page {index} data end at byte {end}, the file has only {size} bytes"
            )
        if page.compression == tifffile.COMPRESSION.NONE and sum(counts) < page.nbytes:
            raise TruncatedTiffError(
                path, f"page {index} holds {sum(counts)} of {page.nbytes} bytes of pixels"
            )
