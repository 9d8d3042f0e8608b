"""Read in-situ frames from FEI/Thermo TIA series files (.ser).

The format (FEI's published description of the TIA series file): a little-endian header of
``ByteOrder`` (2 bytes, 0x4949), ``SeriesID`` (2 bytes, 0x0197), ``SeriesVersion`` (2 bytes:
0x0210, whose offsets are 4 bytes, or 0x0220, whose offsets are 8 bytes), ``DataTypeID`` (4
bytes: 0x4120 1-D elements, spectra; 0x4122 2-D elements, images), ``TagTypeID`` (4 bytes:
0x4152 a time per element; 0x4142 a time and a stage position), ``TotalNumberElements`` and
``ValidNumberElements`` (4 bytes each), ``OffsetArrayOffset`` (an offset) and
``NumberDimensions`` (4 bytes), then per dimension of the series its size (4 bytes),
calibration offset and delta (8-byte floats), calibration element (4 bytes), and a
description and units (each a 4-byte length and the text). At ``OffsetArrayOffset`` are two
arrays of ``TotalNumberElements`` offsets: where each element's data are, then where each
element's tag is. A 2-D element is ``CalibrationOffsetX``, ``CalibrationDeltaX`` (8-byte
floats), ``CalibrationElementX`` (4 bytes), the same for Y, ``DataType`` (2 bytes),
``ArraySizeX`` and ``ArraySizeY`` (4 bytes each) and the pixels, x fastest; a tag is its
``TagTypeID`` (4 bytes), the ``Time`` (4 bytes: whole seconds since 1970-01-01 UTC) and, for
0x4142, the stage position (two 8-byte floats).

The frames are the first ``ValidNumberElements`` elements, in element order: a series
stopped early, or read while still being recorded, declares more elements
(``TotalNumberElements``) than it holds. A series whose dimension is a length (a line scan:
images at stage positions) or that has more than one dimension (a scan grid: 4-D data) is
refused, as are spectra (``DataTypeID`` 0x4120); every element must have the size and pixel
type of the first. TIA stores the bottom row first (its y axis points up): rows are returned
top row first, as TIA shows the image.

The pixel size is ``CalibrationDeltaX`` and ``CalibrationDeltaY`` (metres) in nm, each element's
own. A diffraction pattern's calibration (reciprocal metres, in the same fields; the unit is
only in the companion ``.emi`` file, which is not read) reads as a size far above
:data:`nwwatch.io.limits.MAX_PLAUSIBLE_PIXEL_SIZE_NM` and is ignored (uncalibrated), with the
``io.pixel_size_ignored`` warning every reader gives.

The acquisition time is each element's tag ``Time``, to the second: frames recorded within
one second share that second's time (no fraction is invented), and their order is the
element order (:attr:`Frame.index`). A time before 1990 (an unset tag) makes every frame of
the file get the file's mtime, with a warning.

Pixel types (``DataType``): uint8 (1), uint16 (2) and int16 (5) and float32 (7) are returned
as stored; int8 (4) widened to int16 (exact); uint32 (3), int32 (6) and float64 (8) converted
to float32 (:data:`nwwatch.io.limits.SUPPORTED_DTYPES`, as for DigitalMicrograph; integers
exact up to 2**24 counts). Complex elements (9, 10) are refused.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import structlog

from nwwatch.io.errors import (
    EmptyFileError,
    ImageTooLargeError,
    TruncatedTiffError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
)
from nwwatch.io.limits import (
    MAX_FRAME_PIXELS,
    PLAUSIBLE_ACQUISITION_YEARS,
    check_whole_read_bytes,
)
from nwwatch.io.metadata import (
    frame_pixel_size_nm,
    mtime_time,
    nm_from,
    plausible_pixel_size_nm,
    unit_to_nm,
)
from nwwatch.io.records import Frame, FramesMetadata, OpenFrames, TiffInfo, Volume
from nwwatch.io.regular import open_input

_log = structlog.get_logger("nwwatch.io")

#: Names read as TIA series files.
SER_SUFFIXES = (".ser",)

#: ByteOrder 0x4949 and SeriesID 0x0197, little-endian.
_MAGIC = b"II\x97\x01"
#: SeriesVersion -> bytes of an offset (OffsetArrayOffset and the offset arrays).
_OFFSET_BYTES = {0x0210: 4, 0x0220: 8}
#: Offsets are unsigned: a 0x0210 series reaches 4 GiB, and its offsets past 2 GiB are not
#: negative.
_OFFSET_TYPES = {4: "<u4", 8: "<u8"}
_SPECTRA, _IMAGES = 0x4120, 0x4122
#: TagTypeID -> bytes of one tag: type and time; type, time and stage position x, y.
_TAG_BYTES = {0x4152: 8, 0x4142: 24}
#: A 2-D element's calibrations, DataType and array size, before its pixels.
_ELEMENT = struct.Struct("<ddiddihii")
#: A dimension array without its description and units: size, offset, delta, element, and
#: the description's length.
_DIMENSION = struct.Struct("<iddii")

#: DataType -> (stored numpy type, returned dtype)
_PIXELS = {1: ("<u1", np.uint8), 2: ("<u2", np.uint16), 3: ("<u4", np.float32),
           4: ("<i1", np.int16), 5: ("<i2", np.int16), 6: ("<i4", np.float32),
           7: ("<f4", np.float32), 8: ("<f8", np.float32)}
_PIXEL_NAMES = {9: "complex (2 x float32)", 10: "complex (2 x float64)"}
#: A dimension's description or units longer than this is a corrupt length, not a text (TIA
#: writes words: "Number", "meters"): refused before it is read, whatever the file's size.
_MAX_TEXT_BYTES = 4096
#: Acquisition times before this are an unset tag, not a time (the tag is a signed 32-bit
#: count of seconds: it cannot reach past 2038, within the plausible years).
_EARLIEST = datetime(PLAUSIBLE_ACQUISITION_YEARS[0], 1, 1, tzinfo=UTC)


def is_ser(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is named as a TIA series file (:data:`SER_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in SER_SUFFIXES


@dataclass(frozen=True)
class _Element:
    """One 2-D element: where its pixels are and its calibration (metres)."""

    pixels_at: int
    delta_x_m: float
    delta_y_m: float


@dataclass(frozen=True)
class _Layout:
    info: TiffInfo
    elements: list[_Element]
    stored: np.dtype
    returned: np.dtype
    tags_at: list[int]
    tag_type: int


class _Reader:
    """Bounded reads of one TIA series file, open as ``handle``, of ``size`` bytes."""

    def __init__(self, path: Path, handle: BinaryIO, size: int) -> None:
        self.path, self.handle, self.size = path, handle, size

    def cut_short(self, what: str) -> TruncatedTiffError:
        return TruncatedTiffError(self.path, f"TIA series {what} cut short ({self.size} bytes): "
                                             "still being written?")

    def corrupt(self, what: str) -> TruncatedTiffError:
        return TruncatedTiffError(self.path, f"not a TIA series file, or a corrupt one: {what}")

    def read(self, at: int, n: int, what: str) -> bytes:
        """``n`` bytes at ``at``; TruncatedTiffError when the file ends before them."""
        if at + n > self.size:
            raise self.cut_short(f"{what} (bytes {at} to {at + n})")
        self.handle.seek(at)
        raw = self.handle.read(n)
        if len(raw) < n:  # shortened since its size was taken
            raise self.cut_short(what)
        return raw


def _dimensions(reader: _Reader, at: int, count: int) -> tuple[list[tuple[int, str, str]], int]:
    """(size, description, units) of each of the ``count`` dimensions of the series from
    byte ``at``, and the byte after them."""
    out = []
    for i in range(count):
        size, _, _, _, n_description = _DIMENSION.unpack(
            reader.read(at, _DIMENSION.size, f"dimension {i}"))
        at += _DIMENSION.size
        _check_text(reader, at, n_description, f"dimension {i} declares a description")
        description = reader.read(at, n_description, f"dimension {i}").decode("latin-1")
        at += n_description
        (n_units,) = struct.unpack("<i", reader.read(at, 4, f"dimension {i}"))
        at += 4
        _check_text(reader, at, n_units, f"dimension {i} declares units")
        units = reader.read(at, n_units, f"dimension {i}").decode("latin-1")
        at += n_units
        out.append((size, description.strip("\0 "), units.strip("\0 ")))
    return out, at


def _check_text(reader: _Reader, at: int, nbytes: int, what: str) -> None:
    """Refuse a text of ``nbytes`` at ``at`` that cannot be (negative) or that the file does
    not hold (yet)."""
    if not 0 <= nbytes <= _MAX_TEXT_BYTES:
        raise reader.corrupt(f"{what} of {nbytes} bytes")
    if nbytes > reader.size - at:
        raise TruncatedTiffError(
            reader.path, f"TIA series {what} of {nbytes} bytes, {reader.size - at} are left "
                         "in the file: cut short (still being written?) or corrupt")


def _offsets(reader: _Reader, at: int, count: int, width: int, what: str) -> list[int]:
    raw = reader.read(at, count * width, what)
    return np.frombuffer(raw, _OFFSET_TYPES[width]).tolist()


def _layout(path: Path, handle: BinaryIO) -> _Layout:
    """What :func:`inspect_ser` and the readers need, from the header, offsets and element
    headers of the TIA series file ``path`` open as ``handle``: no pixel data or tag read."""
    size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise EmptyFileError(path, "file is empty (0 bytes)")
    reader = _Reader(path, handle, size)
    head = handle.read(6)
    if head[:4] != _MAGIC[:len(head[:4])]:
        raise TruncatedTiffError(path, f"not a TIA series file: its first bytes are "
                                       f"{head[:4].hex(' ')} (49 49 97 01)")
    if len(head) < 6:
        raise reader.cut_short("header")
    (version,) = struct.unpack_from("<H", head, 4)
    if version not in _OFFSET_BYTES:
        raise reader.corrupt(f"SeriesVersion 0x{version:04x} (0x0210 or 0x0220)")
    width = _OFFSET_BYTES[version]
    data_type, tag_type, total, valid = struct.unpack("<iiii", reader.read(6, 16, "header"))
    (array_at,) = struct.unpack("<I" if width == 4 else "<Q",
                                reader.read(22, width, "header"))
    (n_dims,) = struct.unpack("<i", reader.read(22 + width, 4, "header"))
    if data_type == _SPECTRA:
        raise UnsupportedLayoutError(path, "TIA spectra (DataTypeID 0x4120: 1-D elements), "
                                           "not frames")
    if data_type != _IMAGES:
        raise reader.corrupt(f"DataTypeID 0x{data_type & 0xFFFFFFFF:x} (0x4120 or 0x4122)")
    if tag_type not in _TAG_BYTES:
        raise reader.corrupt(f"TagTypeID 0x{tag_type & 0xFFFFFFFF:x} (0x4152 or 0x4142)")
    if total < 1 or not 0 <= valid <= total:
        raise reader.corrupt(f"{valid} valid of {total} elements")
    # a dimension takes at least 36 bytes: no loop over a corrupt count
    if not 1 <= n_dims <= (size - 26 - width) // 36 + 1:
        raise reader.corrupt(f"{n_dims} dimensions in a file of {size} bytes")
    dims, header_end = _dimensions(reader, 26 + width, n_dims)
    if n_dims > 1:
        shape = " x ".join(str(d[0]) for d in dims)
        raise UnsupportedLayoutError(
            path, f"a TIA series of {n_dims} dimensions ({shape} images: a scan grid, 4-D "
                  "data); nwwatch reads a series of frames in time")
    scan_units = dims[0][2]
    if scan_units and (unit_to_nm(scan_units) is not None or "meter" in scan_units.lower()):
        raise UnsupportedLayoutError(
            path, f"a TIA series of images at {dims[0][0]} positions (a line scan: its "
                  f"dimension {dims[0][1]!r} is in {scan_units}), not frames in time")
    if valid == 0:
        raise TruncatedTiffError(path, f"TIA series holds none of its {total} elements yet "
                                       "(ValidNumberElements 0): still being recorded?")
    if not header_end <= array_at <= size:
        raise (reader.corrupt(f"OffsetArrayOffset {array_at} before the header's end "
                              f"({header_end})") if array_at < header_end
               else reader.cut_short(f"offset arrays (at byte {array_at})"))
    # both arrays hold TotalNumberElements offsets, whatever the number of valid ones
    if 2 * total * width > size - array_at:
        raise reader.cut_short(f"offset arrays ({total} elements from byte {array_at})")
    # the first element's size and type bound the valid count before the offset arrays are
    # read: a corrupt count in a large file allocates no array of millions of offsets
    (first_at,) = _offsets(reader, array_at, 1, width, "data offset array")
    first = _element_header(reader, 0, first_at, header_end)[6:]
    stored, returned = _element_type(path, first[0])
    _check_size(reader, first[1], first[2], valid, stored)
    data_at = _offsets(reader, array_at, valid, width, "data offset array")
    tags_at = _offsets(reader, array_at + total * width, valid, width, "tag offset array")
    elements = []
    for i, at in enumerate(data_at):
        values = _element_header(reader, i, at, header_end)
        _, delta_x, _, _, delta_y, _, code, size_x, size_y = values
        if (code, size_x, size_y) != first:
            raise UnsupportedLayoutError(
                path, f"TIA series elements differ: element 0 is {first[1]} x {first[2]} px "
                      f"of DataType {first[0]}, element {i} {size_x} x {size_y} px of "
                      f"DataType {code} (x first); nwwatch reads frames of one size and type")
        pixels_at = at + _ELEMENT.size
        end = pixels_at + size_x * size_y * stored.itemsize
        if end > size:
            raise reader.cut_short(f"element {i}'s pixels (bytes {pixels_at} to {end})")
        elements.append(_Element(pixels_at, delta_x, delta_y))
    for i, at in enumerate(tags_at):
        if at < header_end:
            raise reader.corrupt(f"tag {i} at byte {at}, before the header's end "
                                 f"({header_end})")
        if at + _TAG_BYTES[tag_type] > size:
            raise reader.cut_short(f"tag {i} (bytes {at} to {at + _TAG_BYTES[tag_type]})")
    width_px, height_px = first[1], first[2]
    shape = (height_px, width_px) if valid == 1 else (valid, height_px, width_px)
    info = TiffInfo(path=path, size_bytes=size, n_pages=valid, shape=shape,
                    axes="YX" if valid == 1 else "IYX", dtype=returned,
                    declared_bytes=valid * width_px * height_px * returned.itemsize,
                    layout="ser", compression="NONE")
    return _Layout(info, elements, stored, returned, tags_at, tag_type)


def _element_header(reader: _Reader, i: int, at: int, header_end: int) -> tuple:
    """The unpacked 50-byte header of element ``i`` at byte ``at``."""
    if at < header_end:
        raise reader.corrupt(f"element {i} at byte {at}, before the header's end "
                             f"({header_end})")
    return _ELEMENT.unpack(reader.read(at, _ELEMENT.size, f"element {i}"))


def _element_type(path: Path, code: int) -> tuple[np.dtype, np.dtype]:
    if code not in _PIXELS:
        what = _PIXEL_NAMES.get(code, "unknown")
        raise UnsupportedDtypeError(
            path, f"TIA DataType {code} ({what}) is not supported (grey images: uint8, "
                  "uint16, uint32, int8, int16, int32, float32, float64)")
    stored, returned = _PIXELS[code]
    return np.dtype(stored), np.dtype(returned)


def _check_size(reader: _Reader, size_x: int, size_y: int, n_frames: int,
                stored: np.dtype) -> None:
    if size_x < 1 or size_y < 1:
        raise reader.corrupt(f"an element of {size_x} x {size_y} px")
    if min(size_x, size_y) < 2:
        raise UnsupportedLayoutError(
            reader.path, f"TIA elements of {size_x} x {size_y} px (x first): a profile, not "
                         "a frame")
    if size_x * size_y > MAX_FRAME_PIXELS:
        raise ImageTooLargeError(reader.path, f"declares {size_y} x {size_x} pixels per frame, "
                                              f"more than the limit of {MAX_FRAME_PIXELS}")
    # every valid element (its header and pixels) is in the file: a count the file cannot
    # hold (corrupt, or a header written ahead of its elements) allocates no offset array
    needed = n_frames * (_ELEMENT.size + size_x * size_y * stored.itemsize)
    if needed > reader.size:
        raise TruncatedTiffError(
            reader.path, f"TIA series declares {n_frames} valid elements of {size_x} x "
                         f"{size_y} px, {needed} bytes, in a file of {reader.size} bytes: "
                         "cut short (still being written?) or corrupt")


def inspect_ser(path: str | os.PathLike[str]) -> TiffInfo:
    """Check that ``path`` is a complete, readable TIA series file of 2-D images, reading its
    header, offsets and element headers only.

    Returns a :class:`TiffInfo` (``layout`` "ser", ``axes`` "YX" for one frame, "IYX" for a
    series; ``n_pages`` its ``ValidNumberElements``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    InputError
        EmptyFileError, TruncatedTiffError (header, offsets, an element or a tag cut short:
        still being written; not a TIA series file or a corrupt one), ImageTooLargeError,
        UnsupportedDtypeError (complex), UnsupportedLayoutError (spectra, a scan, elements of
        different sizes or types, 1 px high or wide) or UnreadableFileError.
    """
    path = Path(path)
    with open_input(path) as handle:
        return _layout(path, handle).info


def _pixel_sizes_nm(path: Path, elements: list[_Element]) -> list[float | None]:
    """Each element's square pixel size (one warning per distinct calibration)."""
    by_delta: dict[tuple[float, float], float | None] = {}
    out = []
    for element in elements:
        key = (element.delta_x_m, element.delta_y_m)
        if key not in by_delta:
            # the magnitude: a negative delta is the axis' direction, not part of its size
            sizes = (None, plausible_pixel_size_nm(path, "ser", "y", nm_from(abs(key[1]), 1e9)),
                     plausible_pixel_size_nm(path, "ser", "x", nm_from(abs(key[0]), 1e9)))
            by_delta[key] = frame_pixel_size_nm(path, sizes, "ser")
        out.append(by_delta[key])
    return out


def _times(path: Path, handle: BinaryIO, layout: _Layout) -> list[datetime] | None:
    """Each element's tag time, or None (with a warning) when one is not a plausible time
    or its tag is not of the header's TagTypeID."""
    times = []
    for i, at in enumerate(layout.tags_at):
        handle.seek(at)
        raw = handle.read(8)
        if len(raw) < 8:  # shortened since the offsets were checked
            raise TruncatedTiffError(path, f"TIA series tag {i} cut short: still being "
                                           "written?")
        tag_type, seconds = struct.unpack("<ii", raw)
        if tag_type & 0xFFFF != layout.tag_type:
            _log.warning("io.times_ignored", path=str(path),
                         reason=f"tag {i} is of type 0x{tag_type & 0xFFFFFFFF:x}, the header "
                                f"declares 0x{layout.tag_type:x}")
            return None
        when = datetime.fromtimestamp(seconds, UTC)
        if when < _EARLIEST:
            _log.warning("io.times_ignored", path=str(path),
                         reason=f"tag {i} time {seconds} s ({when:%Y-%m-%d}) is before "
                                f"{PLAUSIBLE_ACQUISITION_YEARS[0]}")
            return None
        times.append(when)
    return times


def _frame_metadata(path: Path, handle: BinaryIO, layout: _Layout) -> FramesMetadata:
    """The pixel size and time of every valid element (see :func:`read_ser_frames`), with
    their warnings: the tags' times first, then the calibrations'."""
    times = _times(path, handle, layout)
    mtime = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
    sizes_nm = _pixel_sizes_nm(path, layout.elements)
    if times is None:
        return FramesMetadata(sizes_nm, [mtime_time(path, mtime)] * layout.info.n_pages,
                              "mtime")
    return FramesMetadata(sizes_nm, times, "metadata")


def _frames(path: Path, handle: BinaryIO, layout: _Layout, meta: FramesMetadata,
            indices: range) -> list[Frame]:
    """The valid elements ``indices`` as frames, top row first, reading their pixels only
    (each element at its own offset)."""
    height, width = layout.info.page_shape
    count = height * width
    stack = np.empty((len(indices), height, width), layout.returned)
    for k, i in enumerate(indices):
        handle.seek(layout.elements[i].pixels_at)
        data = np.fromfile(handle, dtype=layout.stored, count=count)
        if data.size < count:  # shortened since the offsets were read
            raise TruncatedTiffError(path, f"TIA series element {i} cut short: "
                                           f"{data.size} of {count} pixels")
        # stored bottom row first (TIA's y axis points up)
        stack[k] = data.reshape(height, width)[::-1]
    return meta.frames(path, stack, indices)


@contextmanager
def open_ser_frames(path: str | os.PathLike[str]) -> Iterator[OpenFrames]:
    """The frames of :func:`read_ser_frames`, the file opened once (structure and data of one
    file, even if renamed over meanwhile), its header, offsets, element headers and tags read,
    checked and warned about once, each element's pixels read when asked. Raises as
    :func:`inspect_ser`."""
    path = Path(path)
    with open_input(path) as handle:
        layout = _layout(path, handle)
        meta = _frame_metadata(path, handle, layout)
        yield OpenFrames(layout.info,
                         lambda indices: _frames(path, handle, layout, meta, indices))


def read_ser_frames(path: str | os.PathLike[str]) -> list[Frame]:
    """Read the valid elements of a TIA series file as frames, top row first.

    ``pixel_size_nm`` from each element's calibration (None when implausible, e.g. a
    diffraction pattern's); ``acquired_at`` from each element's tag time (whole seconds),
    else the file's mtime (see the module's documentation). Raises as :func:`inspect_ser`,
    ImageTooLargeError beyond :data:`nwwatch.io.limits.MAX_FILE_BYTES` (every frame in
    memory at once), and AnisotropicPixelsError when an element's x and y pixel sizes
    differ.
    """
    with open_ser_frames(path) as opened:
        info = opened.info
        check_whole_read_bytes(info.path, info.declared_bytes, info.shape)
        return opened.read(range(info.n_pages))


def read_ser_volume(path: str | os.PathLike[str]) -> Volume:
    """Refuse a TIA series file as a tomogram: its elements are image series (frames in
    time), not slices of a reconstruction. Raises UnsupportedLayoutError (after the checks
    of :func:`inspect_ser`, whose errors come first)."""
    path = Path(path)
    info = inspect_ser(path)
    what = "one image" if info.n_pages == 1 else f"a series of {info.n_pages} images"
    raise UnsupportedLayoutError(
        path, f"a TIA series file ({what}) is read as in-situ frames, not as a tomogram: "
              "TIA series are image series, not tomograms. Watch or replay it as kind "
              "\"insitu\"; for a tomogram give a TIFF or MRC reconstruction")
