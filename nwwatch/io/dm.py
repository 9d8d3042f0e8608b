"""Read in-situ frames from Gatan DigitalMicrograph files (.dm3, .dm4).

The format (unpublished by Gatan; as described by those who read it, e.g. the ImageJ
DM3 format page): a header of three big-endian fields, the version (3 or 4), the length of
the tag tree (4 bytes in DM3, 8 in DM4) and the byte order of the tag data (1: little
endian, 0: big endian), then one tag group. A group is "sorted" and "open" flags (1 byte
each) and its number of tags (4 or 8 bytes); a tag is its kind (20: a group, 21: data; the
file ends in 4 or 8 zero bytes after the root group, and a tag of kind 0 is a file still
being written), the length of its label (2 bytes) and the label, in DM4 the tag's length in bytes
(8 bytes), then the group, or for data "%%%%", the number of type fields (4 or 8 bytes), the
type fields (as many, 4 or 8 bytes each: a simple type code; 18 and a length for a string;
15, the name length, the field count and (name length, type) per field for a struct; 20,
the element type (or a struct's fields) and the length for an array) and the value, in the
byte order of the header. Every length and type field is big-endian; only values follow
the declared order.

The image is an entry of the root's ``ImageList`` (entry 0, or those the root's
``Thumbnails`` group names, are the thumbnail DigitalMicrograph saves for its file browser):
of the others, the one with the most pixels (the last of equals). Its ``ImageData`` holds
``Data`` (an array, read at its offset in one call, never element by element),
``Dimensions`` (x, y[, frames]), ``DataType`` and ``Calibrations``: ``Dimension`` i
``Scale`` and ``Units``. The pixel size is x's scale in nm (nm, µm/um, Å, pm: see
:func:`nwwatch.io.metadata.unit_to_nm`); any other unit (1/nm of a diffraction pattern or
FFT, none) reads as uncalibrated. A 2-D image is one frame, a 3-D image a stack of frames
(an in-situ series); a 1-D or one pixel wide profile or spectrum, 4-D data and spectra
(``ImageTags`` ``Meta Data`` ``Format`` "Spectrum" or "Spectrum image", or a third axis in
eV) are refused.

The acquisition time comes from ``ImageTags`` ``DataBar``; a stack made by Gatan's Stack Builder
script has none and keeps the tags of the live image its planes were copied from, as they were
when the stack was created, under ``ImageTags`` ``source`` ``Tags at creation``: that
``DataBar`` is read (the live acquisition's time, seconds before the planes were added; the
script's time of day of each plane, ``plane info`` ``added @ time``, has no date and is not
read). The time is ``Acquisition Time (OS)``, a Windows FILETIME (100 ns ticks since 1601-01-01
UTC, stored as a double: to a few microseconds) when it is a time between 1990 and 2200; else
``Acquisition Date`` and ``Acquisition Time``, text in the Windows format of the acquisition PC
(seconds and any fraction written), read as local time of this machine (the TIFF convention,
:mod:`nwwatch.io.metadata`). The date is three numbers: with a 4-digit year first, Y M D; with
the year last, D.M.Y when separated by "." or "-" (European forms), else (by "/") M/D/Y, the US
default, unless the first number is above 12 (27/08/2016: D/M/Y; 03/04/2016 is read as March 4).
The time is H:M[:S] with an optional AM/PM (any case, also "p.m."); a year outside 1990-2200 is
not read. Every frame of a stack gets that time; without these tags, or when they cannot be
read, every frame gets the file's mtime.

Pixel types: uint8, uint16, int16 and float32 are returned as stored; int8 widened to int16
(no supported type holds it; exact); int32, uint32 and float64 converted to float32
(:data:`nwwatch.io.limits.SUPPORTED_DTYPES`: what every other part of nwwatch takes;
integers are exact up to 2**24 counts). Complex, packed complex (FFTs), RGB(A), binary
and 64-bit integer images are refused.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    float32_value,
    frame_pixel_size_nm,
    mtime_time,
    nm_from,
    plausible_pixel_size_nm,
    unit_to_nm,
    zoneless_to_utc,
)
from nwwatch.io.records import Frame, OpenFrames, TiffInfo, Volume
from nwwatch.io.regular import open_input

_log = structlog.get_logger("nwwatch.io")

#: Names read as DigitalMicrograph files.
DM_SUFFIXES = (".dm3", ".dm4")

#: Tag data types: code -> numpy type (without byte order). 8 is a bool, 9 a char (int8), 10
#: an octet (uint8).
_SIMPLE = {2: "i2", 3: "i4", 4: "u2", 5: "u4", 6: "f4", 7: "f8", 8: "u1", 9: "i1",
           10: "u1", 11: "i8", 12: "u8"}
_STRUCT, _STRING, _ARRAY = 15, 18, 20
_FLOAT32 = 6
_GROUP, _DATA, _END = 20, 21, 0  # 0: the zeros after the root group, never a tag
#: Arrays longer than this are not read while the tags are parsed: their offset is kept (the
#: image data, the thumbnail's pixels).
_INLINE_ARRAY_BYTES = 4096
#: Most nested groups: DigitalMicrograph writes fewer than 10; a corrupt file may declare
#: any depth (no recursion error).
_MAX_DEPTH = 64
#: Most type fields of one tag: a struct of 1000 fields, far more than any file holds.
_MAX_TYPE_FIELDS = 2003

#: ImageData DataType -> (stored numpy type, returned dtype)
_PIXELS = {1: ("i2", np.int16), 2: ("f4", np.float32), 6: ("u1", np.uint8),
           7: ("i4", np.float32), 9: ("i1", np.int16), 10: ("u2", np.uint16),
           11: ("u4", np.float32), 12: ("f8", np.float32)}
_PIXEL_NAMES = {3: "complex (8 bytes)", 4: "obsolete", 5: "packed complex (an FFT)",
                8: "RGB", 13: "complex (16 bytes)", 14: "binary (0 or 1)",
                15: "RGB", 16: "RGB", 17: "RGB (16 bits a channel)",
                18: "RGB (float32)", 19: "RGB (float64)", 20: "RGBA", 21: "RGBA",
                22: "RGBA", 23: "RGBA", 24: "RGBA (16 bits a channel)",
                25: "RGBA (float32)", 26: "RGBA (float64)", 27: "packed complex (an FFT)",
                28: "packed complex (an FFT)", 39: "int64", 40: "uint64"}
#: Units of a stack axis that make it spectral, not time: a spectrum image.
_SPECTRAL_UNITS = {"ev", "kev", "mev"}


def is_dm(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is named as a DigitalMicrograph file (:data:`DM_SUFFIXES`, any
    case)."""
    return Path(path).suffix.lower() in DM_SUFFIXES


@dataclass(frozen=True)
class _ArrayRef:
    """An array tag not read while parsing: where its values are."""

    offset: int
    dtype: str  # numpy type with byte order, e.g. "<f4"
    count: int


class _Group:
    """A tag group: (label, value) in file order (ImageList's entries have empty labels)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, object]] = []

    def get(self, label: str) -> object:
        return next((v for k, v in self.entries if k == label), None)

    def group(self, label: str) -> _Group | None:
        value = self.get(label)
        return value if isinstance(value, _Group) else None

    def values(self) -> list[object]:
        return [v for _, v in self.entries]


class _Parser:
    """Reads the tag tree of one DigitalMicrograph file, open as ``handle``, of ``size`` bytes."""

    def __init__(self, path: Path, handle: BinaryIO, size: int) -> None:
        self.path, self.handle, self.size = path, handle, size
        self.version = 0
        self.width = 4  # bytes of a length or type field: 4 in DM3, 8 in DM4
        self.order = "<"

    def _read(self, n: int) -> bytes:
        raw = self.handle.read(n)
        if len(raw) < n:
            raise TruncatedTiffError(
                self.path, f"DigitalMicrograph tags cut short at byte {self.handle.tell()} of "
                           f"{self.size}: still being written?")
        return raw

    def _field(self) -> int:
        """One big-endian length or type field."""
        return int.from_bytes(self._read(self.width), "big")

    def _corrupt(self, what: str) -> TruncatedTiffError:
        return TruncatedTiffError(self.path, f"not a DigitalMicrograph file, or a corrupt one: "
                                             f"{what} (at byte {self.handle.tell()})")

    def header(self) -> None:
        if self.size == 0:
            raise EmptyFileError(self.path, "file is empty (0 bytes)")
        head = self.handle.read(4)
        if len(head) == 4:
            self.version = int.from_bytes(head, "big")
        if self.version not in (3, 4):
            if len(head) < 4:
                raise TruncatedTiffError(self.path, f"DigitalMicrograph header cut short "
                                                    f"({self.size} bytes): still being written?")
            raise TruncatedTiffError(self.path, f"not a DigitalMicrograph 3 or 4 file: its "
                                                f"first 4 bytes are {head.hex(' ')}")
        self.width = 4 if self.version == 3 else 8
        self._field()  # the tree's length: the data are checked against the file's size
        order = int.from_bytes(self._read(4), "big")
        if order not in (0, 1):
            raise self._corrupt(f"byte order {order} (0 or 1)")
        self.order = "<" if order == 1 else ">"

    def group(self, depth: int = 0) -> _Group:
        if depth > _MAX_DEPTH:
            raise self._corrupt(f"tag groups nested more than {_MAX_DEPTH} deep")
        self._read(2)  # sorted, open
        count = self._field()
        # a tag takes at least 3 bytes (kind, label length): no loop over a corrupt count
        left = self.size - self.handle.tell()
        if count > left // 3:
            raise TruncatedTiffError(
                self.path, f"a DigitalMicrograph tag group declares {count} tags, {left} bytes "
                           "are left in the file: cut short (still being written?) or corrupt")
        out = _Group()
        for _ in range(count):
            kind = self._read(1)[0]
            if kind == _END:
                # no tag of a group's count is kind 0 (DigitalMicrograph's files end in zeros
                # after the root group): a file whose final size was set before its tags
                # were written, read while the rest is still zeros
                raise TruncatedTiffError(
                    self.path, f"DigitalMicrograph tags cut short at byte "
                               f"{self.handle.tell() - 1} of {self.size}: zeros where a tag "
                               "of the group should be (still being written?) or corrupt")
            label = self._read(int.from_bytes(self._read(2), "big")).decode("latin-1")
            if self.version == 4:
                self._field()  # the tag's length in bytes: every part is read instead
            if kind == _GROUP:
                out.entries.append((label, self.group(depth + 1)))
            elif kind == _DATA:
                out.entries.append((label, self._data(label)))
            else:
                raise self._corrupt(f"tag {label!r} of unknown kind {kind} (20 or 21)")
        return out

    def _data(self, label: str) -> object:
        if self._read(4) != b"%%%%":
            raise self._corrupt(f"tag {label!r} lacks its %%%% mark")
        n = self._field()
        if not 1 <= n <= _MAX_TYPE_FIELDS:
            raise self._corrupt(f"tag {label!r} declares {n} type fields")
        types = [self._field() for _ in range(n)]
        code = types[0]
        if code in _SIMPLE and n == 1:
            return self._simple(code)
        if code == _STRING and n == 2:
            # UTF-16 in the data's byte order, 2 bytes a character
            return self._read(self._checked(types[1], 2, label)).decode(
                "utf-16-le" if self.order == "<" else "utf-16-be", "replace")
        if code == _STRUCT:
            fields = self._struct_fields(types, 0, label)
            if len(types) != 3 + 2 * len(fields):
                raise self._corrupt(f"tag {label!r}: a struct's type fields do not add up")
            return tuple(self._simple(f) for f in fields)
        if code == _ARRAY and n >= 3:
            return self._array(types, label)
        raise self._corrupt(f"tag {label!r} of unknown type {types[:4]}")

    def _struct_fields(self, types: list[int], at: int, label: str) -> list[int]:
        """The field types of the struct described at ``types[at]`` (15), checked simple."""
        if len(types) < at + 3:
            raise self._corrupt(f"tag {label!r}: a struct without its field count")
        count = types[at + 2]
        fields = types[at + 4: at + 4 + 2 * count: 2]
        if len(fields) != count or any(f not in _SIMPLE for f in fields):
            raise self._corrupt(f"tag {label!r}: a struct of {count} fields of types {fields}")
        return fields

    def _simple(self, code: int) -> int | float:
        value = np.frombuffer(self._read(int(_SIMPLE[code][1])),
                              self.order + _SIMPLE[code])[0].item()
        # a float32 (a calibration's Scale) as the decimal it holds: 0.1234, not 0.12340000271
        return float32_value(value) if code == _FLOAT32 else value

    def _checked(self, count: int, itemsize: int, label: str) -> int:
        """``count * itemsize`` bytes when they fit in the rest of the file."""
        nbytes = count * itemsize
        left = self.size - self.handle.tell()
        if nbytes > left:
            raise TruncatedTiffError(
                self.path, f"DigitalMicrograph tag {label!r} declares {nbytes} bytes, "
                           f"{left} are left in the file: cut short (still being written?) "
                           "or corrupt")
        return nbytes

    def _array(self, types: list[int], label: str) -> object:
        element = types[1]
        if element == _STRUCT:
            fields = self._struct_fields(types, 1, label)
            if len(types) != 5 + 2 * len(fields):
                raise self._corrupt(f"tag {label!r}: an array's type fields do not add up")
            count = types[-1]
            dtype = np.dtype([(f"f{i}", self.order + _SIMPLE[f]) for i, f in enumerate(fields)])
        elif element in _SIMPLE and len(types) == 3:
            count = types[2]
            dtype = np.dtype(self.order + _SIMPLE[element])
        else:
            raise self._corrupt(f"tag {label!r}: an array of type {types[1:4]}")
        nbytes = self._checked(count, dtype.itemsize, label)
        # the pixels (Data) are never read here: a small image's would read as text
        if nbytes > _INLINE_ARRAY_BYTES or element == _STRUCT or label == "Data":
            ref = _ArrayRef(self.handle.tell(), dtype.str if element != _STRUCT else "", count)
            self.handle.seek(nbytes, os.SEEK_CUR)
            return ref
        values = np.frombuffer(self._read(nbytes), dtype)
        if element == 4:  # ushort arrays: DigitalMicrograph's text (UTF-16)
            return values.astype("<u2").tobytes().decode("utf-16-le", "replace")
        return values.tolist()


_Sizes = tuple[float | None, float | None]  # (y, x) nm


@dataclass(frozen=True)
class _Layout:
    info: TiffInfo
    data: _ArrayRef
    returned: np.dtype
    sizes_nm: _Sizes
    acquired_at: datetime | None


def _images(root: _Group) -> list[_Group]:
    """The entries of ``ImageList`` that are not thumbnails."""
    listed = root.group("ImageList")
    entries = [v for v in listed.values() if isinstance(v, _Group)] if listed else []
    thumbs = root.group("Thumbnails")
    named = [v.get("ImageIndex") for v in thumbs.values() if isinstance(v, _Group)] \
        if thumbs else []
    # an index of another type (a corrupt tag: an array is a list) names no entry
    indices = {i for i in named if isinstance(i, int) and not isinstance(i, bool)}
    if not indices and len(entries) > 1:
        indices = {0}  # DigitalMicrograph writes its thumbnail first
    return [e for i, e in enumerate(entries) if i not in indices]


def _dims(image: _Group) -> list[int]:
    group = image.group("Dimensions")
    values = group.values() if group else []
    return [int(v) for v in values if isinstance(v, int)]


def _calibrations(image: _Group) -> list[tuple[float | None, str]]:
    """(scale, units) of each axis, x first."""
    calibrations = image.group("Calibrations")
    axes = calibrations.group("Dimension") if calibrations else None
    out = []
    for axis in axes.values() if axes else []:
        if not isinstance(axis, _Group):
            continue
        scale, units = axis.get("Scale"), axis.get("Units")
        out.append((float(scale) if isinstance(scale, (int, float)) else None,
                    units if isinstance(units, str) else ""))
    return out


def _pixel_size_nm(path: Path, calibration: tuple[float | None, str], axis: str) -> float | None:
    scale, units = calibration
    factor = unit_to_nm(units)
    if scale is None or factor is None:
        if units.strip() and factor is None:
            _log.info("io.pixel_size_ignored", path=str(path), source="dm", axis=axis,
                      reason=f"units {units!r} are not a length")
        return None
    # the magnitude: the sign of a scale is the axis' direction, not part of its size
    return plausible_pixel_size_nm(path, "dm", axis, nm_from(abs(scale), factor))


def _text(group: _Group | None, label: str) -> str | None:
    value = group.get(label) if group else None
    return value.strip() if isinstance(value, str) and value.strip() else None


_DATE = re.compile(r"(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})\.?$")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?\s*([ap])?\.?\s*m?\.?$",
                   re.IGNORECASE)


def parse_dm_time(date_text: str, time_text: str) -> datetime | None:
    """The naive datetime of DigitalMicrograph's ``Acquisition Date`` and ``Acquisition
    Time`` (see the module's documentation for the forms read), or None when either is in
    none of them."""
    date = _DATE.match(date_text.strip())
    clock = _TIME.match(time_text.strip())
    if date is None or clock is None:
        return None
    a, b, c = (int(g) for g in date.groups())
    if len(date.group(1)) == 4:
        year, month, day = a, b, c
    elif len(date.group(3)) == 4:
        day_first = date.group(0)[len(date.group(1))] != "/" or a > 12
        year, month, day = (c, b, a) if day_first else (c, a, b)
    else:
        return None
    hour, minute = int(clock.group(1)), int(clock.group(2))
    second = int(clock.group(3) or 0)
    micro = int((clock.group(4) or "0").ljust(6, "0"))
    half = (clock.group(5) or "").lower()
    if half:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "p" else 0)
    try:
        return datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return None


#: Windows FILETIME: 100 ns ticks since 1601-01-01 UTC.
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
def _os_time(value: object) -> datetime | None:
    """A FILETIME tag as a UTC datetime, or None when it is not a plausible time."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    try:
        when = _FILETIME_EPOCH + timedelta(microseconds=value / 10)
    except OverflowError:
        return None
    return when if when.year in range(*PLAUSIBLE_ACQUISITION_YEARS) else None


def _databar(image: _Group) -> _Group | None:
    """The image's own ``DataBar``, else, for a stack made by the Stack Builder script, the
    one of the live image its planes were taken from (``source`` ``Tags at creation``)."""
    tags = image.group("ImageTags")
    own = tags.group("DataBar") if tags else None
    if own is not None:
        return own
    source = tags.group("source") if tags else None
    at_creation = source.group("Tags at creation") if source else None
    return at_creation.group("DataBar") if at_creation else None


def _acquired_at(path: Path, image: _Group) -> datetime | None:
    bar = _databar(image)
    when = _os_time(bar.get("Acquisition Time (OS)")) if bar else None
    if when is not None:
        return when
    date, clock = _text(bar, "Acquisition Date"), _text(bar, "Acquisition Time")
    if date is None or clock is None:
        return None
    when = parse_dm_time(date, clock)
    if when is None or when.year not in range(*PLAUSIBLE_ACQUISITION_YEARS):
        # an implausible year is a corrupt or unset tag; year 1 or 9999 would also overflow
        # the conversion to UTC below
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"DataBar Acquisition Date/Time {date!r} {clock!r} not read")
        return None
    return zoneless_to_utc(when)  # naive: local time (of the replay's driver on Dask)


def _spectral(image: _Group, calibrations: list[tuple[float | None, str]]) -> str | None:
    """Why an image holds spectra (a spectrum, a line scan, a spectrum image), not frames,
    or None."""
    tags = image.group("ImageTags")
    meta = tags.group("Meta Data") if tags else None
    fmt = _text(meta, "Format")
    if fmt and "spectrum" in fmt.lower():
        return f"its Meta Data Format is {fmt!r}"
    if len(calibrations) > 2 and calibrations[2][1].strip().lower() in _SPECTRAL_UNITS:
        return f"its third axis is in {calibrations[2][1].strip()}"
    return None


def _layout(path: Path, handle: BinaryIO, metadata: bool = True) -> _Layout:
    """What :func:`inspect_dm` and the readers need, from the tags of the DigitalMicrograph
    file ``path`` open as ``handle``: no pixel data read. ``metadata``: also the pixel size
    and acquisition time (else None), whose warnings belong to the read, not to the
    structural check before it."""
    size = os.fstat(handle.fileno()).st_size
    parser = _Parser(path, handle, size)
    parser.header()
    root = parser.group()
    if not root.entries:  # a file of its final size whose tags are still zeros
        raise TruncatedTiffError(path, "DigitalMicrograph root tag group holds no tag: zeros "
                                       "where the tags should be (still being written?) or "
                                       "corrupt")
    images = _images(root)
    if not images:
        raise UnsupportedLayoutError(path, "no image in its ImageList (only a thumbnail, or "
                                           "none)")
    # the most pixels, the last of equals
    shapes = [_dims(e.group("ImageData") or _Group()) for e in images]
    best = max(range(len(images)), key=lambda i: (math.prod(shapes[i] or [0]), i))
    image, dims = images[best].group("ImageData"), shapes[best]
    if image is None or not isinstance(image.get("Data"), _ArrayRef):
        raise parser._corrupt("the image has no ImageData Data array")
    code = image.get("DataType")
    if not isinstance(code, int):
        raise parser._corrupt("the image has no ImageData DataType")
    if code not in _PIXELS:
        what = _PIXEL_NAMES.get(code, "unknown")
        raise UnsupportedDtypeError(
            path, f"DigitalMicrograph DataType {code} ({what}) is not supported (grey images: "
                  "int8, uint8, int16, uint16, int32, uint32, float32, float64)")
    if not dims or any(d < 1 for d in dims):
        raise parser._corrupt(f"the image declares dimensions {dims}")
    if len(dims) == 1:
        raise UnsupportedLayoutError(path, f"a 1-D DigitalMicrograph image ({dims[0]} values: "
                                           "a profile or spectrum), not a frame")
    if len(dims) > 3:
        raise UnsupportedLayoutError(
            path, f"{len(dims)}-D DigitalMicrograph data (dimensions {dims}, x first); "
                  "nwwatch reads 2-D frames and 3-D stacks of frames")
    calibrations = _calibrations(image)
    why = _spectral(images[best], calibrations)
    if why is not None:
        raise UnsupportedLayoutError(
            path, f"DigitalMicrograph spectra ({' x '.join(map(str, dims))} values, x first; "
                  f"{why}), not frames")
    width, height = dims[0], dims[1]
    if min(width, height) < 2:
        raise UnsupportedLayoutError(
            path, f"a DigitalMicrograph image of {width} x {height} px (x first): a profile "
                  "or spectrum, not a frame")
    n_frames = dims[2] if len(dims) == 3 else 1
    stored, returned = _PIXELS[code]
    if width * height > MAX_FRAME_PIXELS:
        raise ImageTooLargeError(path, f"declares {height} x {width} pixels per frame, more "
                                       f"than the limit of {MAX_FRAME_PIXELS}")
    # the Data array's bytes were checked against the file's size while the tags were parsed
    declared = width * height * n_frames * np.dtype(returned).itemsize
    ref = _data_ref(parser, image, stored)
    if ref.count != width * height * n_frames:
        raise parser._corrupt(f"the image's Data holds {ref.count} values, its Dimensions "
                              f"{dims} declare {width * height * n_frames}")
    if size < ref.offset + ref.count * np.dtype(ref.dtype).itemsize:  # cannot be: checked
        raise TruncatedTiffError(path, "DigitalMicrograph data cut short")
    shape = (height, width) if n_frames == 1 else (n_frames, height, width)
    info = TiffInfo(path=path, size_bytes=size, n_pages=n_frames, shape=shape,
                    axes="YX" if n_frames == 1 else "IYX", dtype=np.dtype(returned),
                    declared_bytes=declared, layout="dm", compression="NONE")
    sizes_nm = (None, None)
    if metadata and len(calibrations) >= 2:
        sizes_nm = (_pixel_size_nm(path, calibrations[1], "y"),
                    _pixel_size_nm(path, calibrations[0], "x"))
    return _Layout(info, ref, np.dtype(returned), sizes_nm,
                   _acquired_at(path, images[best]) if metadata else None)


def _data_ref(parser: _Parser, image: _Group, stored: str) -> _ArrayRef:
    """Where the pixels are, with the stored type of DataType (a Data array of another
    element size is corrupt)."""
    data = image.get("Data")
    dtype = np.dtype(parser.order + stored)
    if isinstance(data, _ArrayRef) and data.dtype:  # not an array of structs
        if np.dtype(data.dtype).itemsize == dtype.itemsize:
            return _ArrayRef(data.offset, dtype.str, data.count)
        if (data.count * np.dtype(data.dtype).itemsize) % dtype.itemsize == 0:
            # written as bytes or another element type: the pixels are the same bytes
            count = data.count * np.dtype(data.dtype).itemsize // dtype.itemsize
            return _ArrayRef(data.offset, dtype.str, count)
    raise parser._corrupt("the image's Data array does not hold its DataType's pixels")


def inspect_dm(path: str | os.PathLike[str]) -> TiffInfo:
    """Check that ``path`` is a complete, readable DigitalMicrograph file of a frame or a stack
    of frames, reading its tags only.

    Returns a :class:`TiffInfo` (``layout`` "dm", ``axes`` "YX" for one frame, "IYX" for a
    stack).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    InputError
        EmptyFileError, TruncatedTiffError (tags or data cut short: still being written; not
        a DigitalMicrograph file or a corrupt one), ImageTooLargeError,
        UnsupportedDtypeError (complex, packed complex, RGB, binary), UnsupportedLayoutError
        (no image, 1-D, 4-D, a spectrum image) or UnreadableFileError.
    """
    path = Path(path)
    with open_input(path) as handle:
        return _layout(path, handle, metadata=False).info


@dataclass(frozen=True)
class _FrameMetadata:
    """The pixel size and time every frame of a file gets (DigitalMicrograph keeps one
    calibration and one time for a 3-D image), and the time's source."""

    pixel_size_nm: float | None
    acquired_at: datetime
    source: str


def _frame_metadata(path: Path, handle: BinaryIO, layout: _Layout) -> _FrameMetadata:
    pixel_nm = frame_pixel_size_nm(path, (None, *layout.sizes_nm), "dm")
    if layout.acquired_at is not None:
        return _FrameMetadata(pixel_nm, layout.acquired_at, "metadata")
    mtime = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
    return _FrameMetadata(pixel_nm, mtime_time(path, mtime), "mtime")


def _frames(path: Path, handle: BinaryIO, layout: _Layout, meta: _FrameMetadata,
            planes: range) -> list[Frame]:
    """The planes ``planes`` of the image as frames, reading their pixels only: the image's
    Data is one array, x fastest, then y, then the plane, so the planes asked are one
    contiguous run of it, read in one call."""
    info, ref = layout.info, layout.data
    plane_pixels = math.prod(info.page_shape)
    count = len(planes) * plane_pixels
    handle.seek(ref.offset + planes.start * plane_pixels * np.dtype(ref.dtype).itemsize)
    data = np.fromfile(handle, dtype=ref.dtype, count=count)
    if data.size < count:  # shortened since the tags were read
        raise TruncatedTiffError(path, f"DigitalMicrograph data cut short: {data.size} of "
                                       f"{count} pixels of frames {planes.start} to "
                                       f"{planes.stop - 1}")
    returned = layout.returned
    data = data.astype(returned, copy=data.dtype != returned or not data.dtype.isnative)
    data = data.reshape(len(planes), *info.page_shape)
    return [Frame(image=data[k], index=i, source=path, pixel_size_nm=meta.pixel_size_nm,
                  acquired_at=meta.acquired_at, acquired_at_source=meta.source)
            for k, i in enumerate(planes)]


@contextmanager
def open_dm_frames(path: str | os.PathLike[str]) -> Iterator[OpenFrames]:
    """The frames of :func:`read_dm_frames`, the file opened once (its tags and data, even if
    renamed over meanwhile), its calibration and time read, checked and warned about once,
    each frame's pixels read when asked. Raises as :func:`inspect_dm`."""
    path = Path(path)
    with open_input(path) as handle:
        layout = _layout(path, handle)
        meta = _frame_metadata(path, handle, layout)
        yield OpenFrames(layout.info, lambda planes: _frames(path, handle, layout, meta, planes))


def read_dm_frames(path: str | os.PathLike[str]) -> list[Frame]:
    """Read a DigitalMicrograph image (one frame) or 3-D image (a stack of frames).

    ``pixel_size_nm`` from the x and y calibrations (None unless both are lengths);
    ``acquired_at`` from the DataBar tags, else the file's mtime (see the module's
    documentation). Raises as :func:`inspect_dm`, ImageTooLargeError beyond
    :data:`nwwatch.io.limits.MAX_FILE_BYTES` (every frame in memory at once), and
    AnisotropicPixelsError when the x and y pixel sizes differ.
    """
    with open_dm_frames(path) as opened:
        info = opened.info
        check_whole_read_bytes(info.path, info.declared_bytes, info.shape)
        return opened.read(range(info.n_pages))


def read_dm_volume(path: str | os.PathLike[str]) -> Volume:
    """Refuse a DigitalMicrograph file as a tomogram: its 3-D images are in-situ series
    (frames in time) or spectrum images, not reconstructions. Raises UnsupportedLayoutError
    (after the checks of :func:`inspect_dm`, whose errors come first)."""
    path = Path(path)
    info = inspect_dm(path)
    what = "one image" if info.n_pages == 1 else f"a stack of {info.n_pages} frames"
    raise UnsupportedLayoutError(
        path, f"a DigitalMicrograph file ({what}) is read as in-situ frames, not as a "
              "tomogram: a 3-D DigitalMicrograph image is a series in time. Watch or replay it "
              "as kind \"insitu\"; for a tomogram give a TIFF or MRC reconstruction")
