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
import threading
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
    InputError,
    MultichannelError,
    NotATiffError,
    TruncatedTiffError,
    UnsupportedCompressionError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
    conversion_hint,
)
from nwwatch.io.limits import MAX_FRAME_PIXELS, SUPPORTED_DTYPES
from nwwatch.io.mdoc import is_mdoc, mdoc_reason
from nwwatch.io.records import TiffInfo
from nwwatch.io.regular import open_input, open_regular
from nwwatch.io.series import (
    CHANNEL_AXES,
    channel_hint,
    image_series,
    series_n_pages,
    squeezed,
)

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

#: ends the reason of a file whose header, IFDs or pixels end past the end of the file: what a
#: file still being written looks like (the service waits for it; a replay quarantines it
#: until it changes), as the other formats' readers say it
CUT_SHORT = ": cut short (still being written?)"

# magic -> (struct byte order, BigTIFF)
_MAGIC = {
    b"II*\x00": ("<", False),
    b"MM\x00*": (">", False),
    b"II+\x00": ("<", True),
    b"MM\x00+": (">", True),
}
# What to save a refused pixel type as (by kind and bytes): the nearest type read exactly.
_DTYPE_HINTS = {"f8": ": save it as float32", "f2": ": save it as float32",
                "b1": " (a 1-bit black and white image): save it as 8-bit grey",
                "i1": ": save it as int16",
                "i4": ": save it with 16 bits (int16) if the values fit, else as float32",
                "u4": ": save it with 16 bits (uint16) if the values fit, else as float32",
                "i8": ": save it with 16 bits (int16) if the values fit, else as float32",
                "u8": ": save it with 16 bits (uint16) if the values fit, else as float32"}
# 32- and 64-bit integers are also how napari saves a Labels layer: 8 bits keeps the class
# ids and 255 (unlabeled) as such; float32 is read as labels only when it holds nothing but
# 0, 1 and 2 (nwwatch measure --read-as auto).
_LABEL_HINT = "; a label image: uint8"


def has_tiff_header(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` starts with a TIFF or BigTIFF header (its first 4 bytes,
    nothing else read). Raises OSError when it cannot be opened and NotARegularFileError for
    a FIFO, device or folder."""
    with open_regular(path) as handle:
        return handle.read(4) in _MAGIC


@contextmanager
def open_tiff(path: str | os.PathLike[str]) -> Iterator[tuple[tifffile.TiffFile, TiffInfo]]:
    """Open ``path`` after checking its structure; yield the TiffFile and its :class:`TiffInfo`.

    Raises FileNotFoundError when the file does not exist and an :class:`InputError` subclass
    when it is not a usable TIFF (NotARegularFileError for a FIFO, device or folder: never
    waited on).
    """
    path = Path(path)
    with open_input(path) as handle:
        if is_mdoc(path):  # a sidecar of an MRC file, whatever it holds
            raise NotATiffError(path, mdoc_reason(path))
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise EmptyFileError(path, "file is empty (0 bytes)")
        n_ifds, layouts = _check_ifd_chain(path, handle, size)
        handle.seek(0)
        # tifffile fails on complex-integer pages with a TypeError: said as what they are,
        # not as a corrupt file still being written (a complex page it reads, beside the
        # image, is an extra series left out, as before)
        complex_pixels = any(_complex_pixels(layout) for layout in layouts)
        with corrupt_structure_refused(path, complex_pixels):
            # _multifile=False: planes an OME header places in other files (a dataset split
            # over several files) are not looked for, by a name relative to the working
            # directory; every file is an input of its own, read alone (tifffile's own
            # command line offers the same switch).
            # Pages of several layouts are never one "uniform" series: tifffile takes 8 or
            # more plain pages for one layout when 3 of them share it, and decodes the others
            # with it (a float32, RGB, compressed or inverted page read as page 0's kind:
            # garbage, without a word), or fails on a page of another size among them
            # ("incompatible keyframe"); its pages are grouped by their own layouts, as for
            # 7 pages. The files of other conventions (OME, ImageJ, its own) are read as
            # before: tifffile tries "uniform" only after them.
            tif = tifffile.TiffFile(handle, name=path.name, _multifile=False,
                                    **({"is_uniform": False} if len(set(layouts)) > 1
                                       else {}))
        with tif:
            with corrupt_structure_refused(path, complex_pixels):
                info = _describe(path, tif, size, n_ifds)
            yield tif, info


@contextmanager
def corrupt_structure_refused(path: Path, complex_pixels: bool = False) -> Iterator[None]:
    """Around tifffile's lazy parsing of ``path`` (series, tags of later pages): an exception
    it raises on a corrupt tag or header becomes a TruncatedTiffError naming the file, or, in
    a file declaring complex pixels (``complex_pixels``), an UnsupportedDtypeError saying so.
    InputError, OSError and MemoryError pass unchanged."""
    try:
        yield
    except (InputError, OSError, MemoryError):
        raise
    except Exception as exc:  # tifffile raises many types on corrupt structure
        if complex_pixels:
            raise UnsupportedDtypeError(
                path, "complex pixels (SampleFormat COMPLEXINT or COMPLEXIEEEFP) are not "
                      "supported: save the magnitude or the real part as float32") from exc
        raise TruncatedTiffError(path, f"corrupt TIFF structure ({exc})") from exc


def _check_ifd_chain(path: Path, handle: BinaryIO, size: int) -> tuple[int, list[tuple]]:
    """Follow the IFD chain; return its length and each full-resolution IFD's pixel layout
    (:func:`_layout`). A pointer beyond the end means truncation."""
    head = handle.read(16)
    if len(head) < 4 and any(magic.startswith(head) for magic in _MAGIC):
        raise TruncatedTiffError(
            path, f"TIFF header cut short ({size} bytes): still being written?")
    if head[:4] not in _MAGIC:
        # The reason names no bytes of the file: it is logged and stored, and the file may be a
        # secret the service should not have read.
        hint = conversion_hint(path)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):  # saved as PNG under a TIFF name
            hint = ("it holds a PNG image (measure, label and train read one under a .png "
                    "name; the service and replay read TIFF)")
        elif head.startswith(b"\xff\xd8\xff"):
            hint = ("it holds a JPEG image, whose lossy compression changes pixel values: "
                    "save the image again as TIFF or PNG")
        raise NotATiffError(path, "not a TIFF file (no TIFF or BigTIFF header)"
                                  + (f": {hint}" if hint else ""))
    order, bigtiff = _MAGIC[head[:4]]
    if bigtiff:
        if len(head) < 16:
            raise TruncatedTiffError(
                path, f"BigTIFF header cut short ({size} bytes): still being written?")
        count_fmt, entry_size, offset_fmt = "Q", 20, "Q"
        offset = struct.unpack(order + "Q", head[8:16])[0]
    else:
        if len(head) < 8:
            raise TruncatedTiffError(
                path, f"TIFF header cut short ({size} bytes): still being written?")
        count_fmt, entry_size, offset_fmt = "H", 12, "I"
        offset = struct.unpack(order + "I", head[4:8])[0]
    count_size = struct.calcsize(count_fmt)
    offset_size = struct.calcsize(offset_fmt)
    seen: set[int] = set()
    layouts: list[tuple] = []
    while offset:
        where = f"image directory {len(seen)} at byte {offset}"
        if offset in seen:
            raise TruncatedTiffError(path, f"{where} loops back (corrupt IFD chain)")
        if offset + count_size > size:
            raise TruncatedTiffError(path, f"{where} lies beyond the end of the {size}-byte file"
                                           f"{CUT_SHORT}")
        seen.add(offset)
        handle.seek(offset)
        n_entries = struct.unpack(order + count_fmt, handle.read(count_size))[0]
        next_at = offset + count_size + n_entries * entry_size
        if next_at + offset_size > size:
            raise TruncatedTiffError(path, f"{where} is cut short by the end of the file: "
                                           "still being written?")
        entries = handle.read(n_entries * entry_size)
        _check_tag_values(path, where, entries, order, bigtiff, size)
        layout = _layout(entries, order, bigtiff)
        if layout is not None:
            layouts.append(layout)
        offset = struct.unpack(order + offset_fmt, handle.read(offset_size))[0]
    if not seen:
        raise TruncatedTiffError(path, "TIFF header points to no image")
    return len(seen), layouts


#: Tags that say how an IFD's pixels are laid out and decoded: width, length, bits per
#: sample, compression, photometric, samples per pixel, planar configuration, predictor,
#: sample format.
_LAYOUT_TAGS = frozenset((256, 257, 258, 259, 262, 277, 284, 317, 339))


def _complex_pixels(layout: tuple) -> bool:
    """Whether an IFD's ``layout`` (:func:`_layout`) declares complex pixels (SampleFormat 5,
    6)."""
    return any(code == 339 and value in (5, 6) for code, _, _, value in layout)


def _layout(entries: bytes, order: str, bigtiff: bool) -> tuple | None:
    """The pixel layout of one IFD's ``entries`` (its :data:`_LAYOUT_TAGS` with their type,
    count and inline value, a single SHORT as its number; a value stored elsewhere by type
    and count), or None for a reduced-resolution page (NewSubfileType bit 0: a preview, a
    series of its own)."""
    entry_fmt, entry_size, inline = (order + "HHQ", 20, 8) if bigtiff else (order + "HHI", 12, 4)
    head = struct.calcsize(entry_fmt)
    layout = []
    for start in range(0, len(entries), entry_size):
        code, kind, count = struct.unpack_from(entry_fmt, entries, start)
        value = entries[start + head:start + head + inline]
        if code == 254 and kind in (3, 4, 16) and count == 1:
            fmt = {3: "H", 4: "I", 16: "Q"}[kind]
            if struct.unpack_from(order + fmt, value)[0] & 1:
                return None
        if code in _LAYOUT_TAGS:
            fits = count * _TYPE_SIZE.get(kind, inline + 1) <= inline
            if kind == 3 and count == 1:
                value = struct.unpack_from(order + "H", value)[0]
            layout.append((code, kind, count, value if fits else None))
    return tuple(layout)


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
                f"beyond the end of the {size}-byte file{CUT_SHORT}"
            )


def _describe(path: Path, tif: tifffile.TiffFile, size: int, n_ifds: int) -> TiffInfo:
    if len(tif.pages) < n_ifds:
        raise TruncatedTiffError(
            path, f"only {len(tif.pages)} of {n_ifds} image directories could be read"
        )
    try:
        all_series = tif.series
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # e.g. TypeError from an ImageJ header saying "images=abc"
        what = ("its ImageJ header (the ImageDescription tag: images=, slices=, frames=, "
                "channels=) does not give page counts" if tif.is_imagej
                else "its image series cannot be made out")
        raise TruncatedTiffError(
            path, f"corrupt metadata: {what} (tifffile: {type(exc).__name__}: {exc})"
        ) from exc
    if not all_series:
        raise TruncatedTiffError(path, "no image series found")
    for series in all_series:
        # tifffile takes an ImageJ header's "frames=2.5" as a dimension of 2.5 pages
        if not all(isinstance(n, (int, np.integer)) for n in series.shape):
            raise TruncatedTiffError(
                path, f"corrupt {series.kind} metadata: dimensions {series.shape} are not "
                      "whole numbers")
    read, ignored = image_series(tif)
    series = read[0]
    shape, axes = squeezed(series)
    if len(read) > 1:  # plain series of single-channel (H, W) pages: one stack
        shape, axes = (sum(series_n_pages(s) for s in read), *shape[-2:]), "IYX"
    if ignored and _first_time(path, tif):  # e.g. a thumbnail, or pages of another size
        _log.warning("io.extra_series_ignored", path=str(path), n_series=len(tif.series),
                     read_shape=shape, ignored_shapes=[s.shape for s in ignored],
                     ignored_dtypes=[str(s.dtype) for s in ignored])
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
    # a page of a format numpy has no type for (12-bit signed, 8-bit float): the page's dtype
    # is None, the series' tifffile's float64 (not in the file)
    if dtype is None or getattr(page, "dtype", dtype) is None:
        raise UnsupportedDtypeError(
            path,
            f"unsupported pixel format ({page.bitspersample} bits, "
            f"sample format {tifffile.SAMPLEFORMAT(page.sampleformat).name})",
        )
    dtype = np.dtype(dtype).newbyteorder("=")
    declared = math.prod(shape) * dtype.itemsize
    if dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        hint = _DTYPE_HINTS.get(f"{dtype.kind}{dtype.itemsize}", "")
        if dtype.kind in "iu" and dtype.itemsize >= 4:
            hint += _LABEL_HINT
        raise UnsupportedDtypeError(path, f"pixel type {dtype} is not supported ({names}){hint}")
    channel_axes = [a for a in axes if a in CHANNEL_AXES]
    if channel_axes:
        n = math.prod(shape[axes.index(a)] for a in channel_axes)
        hint = channel_hint(axes, shape, tif.is_imagej, page.planarconfig == 2)
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


#: The file versions (path, size, mtime) whose ignored series were logged: a file is
#: described when it is inspected and again when it is read, and said once.
_SAID: dict[tuple, None] = {}
_SAID_MAX = 1024
_SAID_LOCK = threading.Lock()


def _first_time(path: Path, tif: tifffile.TiffFile) -> bool:
    """True the first time this process describes this version of ``path``."""
    try:
        stat = os.fstat(tif.filehandle.fileno())
        key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
    except (OSError, AttributeError, ValueError):  # an in-memory handle: say it
        return True
    with _SAID_LOCK:  # the service reads files in several threads
        if key in _SAID:
            return False
        if len(_SAID) >= _SAID_MAX:
            _SAID.pop(next(iter(_SAID)))
        _SAID[key] = None
    return True


def _check_pages(
    path: Path, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, size: int,
    first_page: int,
) -> None:
    """Colour model, codecs and data extents of one series whose pages start at ``first_page``."""
    page = series.keyframe
    if page.photometric == tifffile.PHOTOMETRIC.PALETTE and not _grey_ramp_palette(page):
        raise MultichannelError(
            path, f"palette (indexed colour) image of shape {series.shape}; save it as greyscale "
                  f"(a label mask: its indices are the class ids, so save the indices as 8-bit "
                  f"grey, not its colours converted to grey, or as an indexed PNG, which is "
                  f"read as its indices)"
        )
    # tifffile reads a missing PhotometricInterpretation tag as 0, MinIsWhite's value: such
    # a grey image (the tag is required, but some writers leave it out) is read as MinIsBlack,
    # as libtiff does
    stated = 262 in page.tags
    if stated and page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        # Read as stored, its contrast would be inverted: a dark droplet segmented as bright.
        raise MultichannelError(
            path, "inverted grey image (PhotometricInterpretation MinIsWhite: 0 is white); "
                  "save it as ordinary greyscale (MinIsBlack; a label mask with Fiji's "
                  "inverting LUT: Image > Lookup Tables > Invert LUT keeps its class ids, "
                  "Edit > Invert would change them)"
        )
    if stated and page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK,
                                           tifffile.PHOTOMETRIC.PALETTE):
        # e.g. a camera's raw colour mosaic (CFA) or a transparency mask: not grey levels
        name = getattr(page.photometric, "name", page.photometric)
        raise MultichannelError(
            path, f"not a grey image (PhotometricInterpretation {name}); nwwatch reads "
                  "single-channel grey images (MinIsBlack)")
    _check_codecs(path, page)
    _check_tile_size(path, page, first_page)
    _check_data_extents(path, tif, series, size, first_page)


def _grey_ramp_palette(page: tifffile.TiffPage) -> bool:
    """Whether a palette page's colour map shows each index i as grey level i (R = G = B, at
    the map's 16 bits a channel: i * 257 or i * 256 for 8 bits), as Zeiss SmartSEM and
    AxioVision save grey images: its indices are its grey values, read as stored."""
    bits = page.bitspersample
    colormap = page.colormap
    if colormap is None or not 1 <= bits <= 16:
        return False
    colormap = np.asarray(colormap, np.int64)
    if colormap.shape != (3, 1 << bits) or not (colormap == colormap[0]).all():
        return False
    return bool(((colormap[0] >> (16 - bits)) == np.arange(1 << bits)).all())


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
        images = (tif.imagej_metadata or {}).get("images", 1)
        try:
            declared_images = float(images)
        except (TypeError, ValueError):
            declared_images = math.nan
        if not declared_images <= n_pages:  # more than present, or not a number ("1e400")
            raise TruncatedTiffError(
                path, f"ImageJ header declares {images} images, the file holds {n_pages}"
                      + (CUT_SHORT if math.isfinite(declared_images) else ""))
        if len(series.pages) > n_pages:  # tifffile then gives every page, not the header's
            raise UnsupportedLayoutError(
                path, f"its ImageJ header declares {images} images, but the file holds "
                      f"{len(series.pages)} pages (pages appended by a program that kept the "
                      f"first page's ImageJ header?): which are the stack's cannot be told; "
                      f"save the stack again in Fiji, or as a plain TIFF")
    contiguous_at = series.dataoffset
    if contiguous_at is not None:
        end = contiguous_at + series.nbytes
        if end > size:
            raise TruncatedTiffError(
                path, f"pixel data end at byte {end}, the file has only {size} bytes{CUT_SHORT}"
            )
        return
    for index, page in enumerate(series.pages, start=first_page):
        if page is None:
            raise TruncatedTiffError(path, f"page {index} is missing{CUT_SHORT}")
        if isinstance(page, tifffile.TiffPage):  # a TiffFrame has its keyframe's tiles
            _check_tile_size(path, page, index)
        offsets, counts = page.dataoffsets, page.databytecounts
        if not offsets:
            raise TruncatedTiffError(path, f"page {index} has no pixel data")
        end = max(o + c for o, c in zip(offsets, counts, strict=False))
        if end > size:
            raise TruncatedTiffError(
                path, f"page {index} data end at byte {end}, the file has only {size} bytes"
                      f"{CUT_SHORT}")
        if page.compression == tifffile.COMPRESSION.NONE:
            stored = _uncompressed_bytes(page.keyframe)  # a TiffFrame: its keyframe's layout
            if sum(counts) < stored:
                raise TruncatedTiffError(
                    path, f"page {index} holds {sum(counts)} of {stored} bytes of pixels"
                          f"{CUT_SHORT}")


def _check_tile_size(path: Path, page: tifffile.TiffPage, index: int) -> None:
    """A tile is decoded whole: one larger than the frame limit (a damaged TileWidth) would
    allocate gigabytes for a small page."""
    if not page.is_tiled:
        return
    values = page.tilewidth * page.tilelength * page.tiledepth * page.samplesperpixel
    if values > MAX_FRAME_PIXELS:
        raise ImageTooLargeError(
            path, f"page {index} declares tiles of {page.tilewidth} x {page.tilelength} pixels "
                  f"({values} values), more than the limit of {MAX_FRAME_PIXELS}")


def _uncompressed_bytes(page: tifffile.TiffPage) -> int:
    """Bytes of an uncompressed page's pixels as stored: every row padded to a whole byte, so
    12-bit packed data (decoded to uint16) store 1.5 bytes a pixel. Tiles store more (their
    padding), never less."""
    if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
        planes, samples = page.samplesperpixel, 1
    else:
        planes, samples = 1, page.samplesperpixel
    row_bytes = math.ceil(page.imagewidth * samples * page.bitspersample / 8)
    return planes * page.imagedepth * page.imagelength * row_bytes
