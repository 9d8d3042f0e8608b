"""Read tomograms and frame stacks from MRC files (IMOD, AreTomo, SerialEM, CCP-EM).

The MRC2014 format: a 1024-byte header (nx, ny, nz, the mode that gives the pixel type, the
cell size in Å), an optional extended header, then the sections, each (ny, nx), written one
after the other. The header is read with ``mrcfile`` (CCP-EM); the checks are this module's,
so that bad input raises an :class:`~nwwatch.io.errors.InputError` naming the file before
any pixel memory is allocated, as :mod:`nwwatch.io.structure` does for TIFF.

Pixel types: mode 1 int16, mode 2 float32 and mode 6 uint16 are returned as stored; mode 0
(bytes) as uint8 when IMOD's header flags say its bytes are unsigned, else widened to int16
(signed bytes, as MRC2014 defines them: no supported type holds them); mode 12 (float16)
widened to float32. Complex and 4-bit modes are refused.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import numpy as np
import structlog
from mrcfile.mrcinterpreter import MrcInterpreter

from nwwatch.io.errors import (
    EmptyFileError,
    ImageTooLargeError,
    TruncatedTiffError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
    check_page_index,
)
from nwwatch.io.limits import (
    MAX_FRAME_PIXELS,
    MAX_PLAUSIBLE_IMPLIED_DEPTH_RATIO,
    check_whole_read_bytes,
)
from nwwatch.io.mdoc import pixel_sizes_beside_header, read_mdoc
from nwwatch.io.metadata import (
    FLOAT32_DIGITS,
    frame_pixel_size_nm,
    mtime_time,
    nm_from,
    plausible_pixel_size_nm,
    short_decimal,
)
from nwwatch.io.records import Frame, TiffInfo, Volume
from nwwatch.io.regular import open_input

_log = structlog.get_logger("nwwatch.io")

#: Names read as MRC files: reconstructions (.rec), maps and movie stacks (.mrcs). Tilt
#: series (.st, .ali) are projections, not volumes: their names get a hint instead.
MRC_SUFFIXES = (".mrc", ".rec", ".mrcs", ".map")

_HEADER_BYTES = 1024
#: mode -> (stored dtype, returned dtype); mode 0 is resolved per file (IMOD's flags)
_MODES = {1: ("i2", np.int16), 2: ("f4", np.float32), 6: ("u2", np.uint16),
          12: ("f2", np.float32)}
_MODE_NAMES = {3: "complex int16", 4: "complex float32", 16: "RGB", 101: "4-bit"}
#: IMOD reads modes 0-31 (MRC2014 adds 101); a larger or negative mode is no MRC header
_MAX_MODE = 31
#: IMOD's stamp at header byte 152 and its flags at 156 (bit 0: mode 0 bytes are signed; bit 4:
#: mode 0 packs two 4-bit voxels a byte)
_IMOD_STAMP = 1146047817


def is_mrc(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is named as an MRC file (:data:`MRC_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in MRC_SUFFIXES


class _HeaderOnly(MrcInterpreter):
    """mrcfile's header parsing (byte order from the machine stamp, or from the mode when the
    stamp is wrong) without its extended header, whose declared size mrcfile allocates and
    reads before anything is checked (2 GiB for a corrupt ``nsymbt``)."""

    def _read_extended_header(self) -> None:
        self._extended_header = np.zeros(0, dtype="V1")


def _header(path: Path, handle: BinaryIO):
    """(mrcfile header record, file size, raw header bytes) of ``path`` open as ``handle``,
    checked as a non-empty file of at least one header."""
    size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise EmptyFileError(path, "file is empty (0 bytes)")
    handle.seek(0)  # a file kept open (FrameReader) is read again from its start
    raw = handle.read(_HEADER_BYTES)
    if len(raw) < _HEADER_BYTES:
        raise TruncatedTiffError(path, f"MRC header cut short ({size} bytes of "
                                       f"{_HEADER_BYTES}): still being written?")
    with warnings.catch_warnings():
        # permissive: a header mrcfile doubts is judged by the checks below, not by
        # warnings on stderr
        warnings.simplefilter("ignore")
        try:
            # parsed from a copy: the interpreter writes its header back to its stream when
            # it is collected
            header = _HeaderOnly(iostream=io.BytesIO(raw), permissive=True,
                                 header_only=True).header
        except MemoryError:
            raise
        except Exception as exc:  # mrcfile raises ValueError and others on garbage
            raise TruncatedTiffError(path, f"not a readable MRC header ({exc})") from exc
    return header, size, raw


_Sizes = tuple[float | None, float | None, float | None]
_Layout = tuple[TiffInfo, int, str, np.dtype, _Sizes, int | None]


def _layout(path: Path, handle: BinaryIO) -> _Layout:
    """(info, data offset, stored dtype, returned dtype, voxel size (z, y, x) in nm, each None
    when not calibrated, sections per volume of a stack of volumes or None) of the MRC file
    ``path`` open as ``handle``, from its header only."""
    header, size, raw = _header(path, handle)
    order = header.dtype["nx"].byteorder  # mrcfile reads the machine stamp
    if order in ("=", "|"):
        order = "<" if sys.byteorder == "little" else ">"
    nx, ny, nz, mode = (int(header.nx), int(header.ny), int(header.nz), int(header.mode))
    if min(nx, ny, nz) < 1 or max(nx, ny, nz) > 2**31 // 2:
        raise TruncatedTiffError(
            path, f"not an MRC file, or a corrupt one: the header declares {nx} x {ny} x {nz} "
                  "voxels")
    if not (0 <= mode <= _MAX_MODE or mode in _MODE_NAMES):
        # no MRC writer's pixel type: another format under an MRC name (JEOL's EDS .map)
        raise TruncatedTiffError(path, f"not an MRC file, or a corrupt one: the header declares "
                                       f"pixel mode {mode}")
    axis_map = (int(header.mapc), int(header.mapr), int(header.maps))
    # only a true permutation is an order; anything else (some writers leave 0, 0, 0) is no
    # order at all and the sections are read as X, Y, Z, as IMOD, mrcfile and ChimeraX do
    if sorted(axis_map) == [1, 2, 3] and axis_map != (1, 2, 3):
        raise UnsupportedLayoutError(
            path, f"MRC axes stored in the order (mapc, mapr, maps) = {axis_map}; nwwatch "
                  "reads (1, 2, 3): columns X, rows Y, sections Z (reorder it, e.g. open it "
                  "in UCSF ChimeraX and save it as .mrc: ChimeraX writes X, Y, Z)")
    if mode == 0:
        stamp, flags = np.frombuffer(raw[152:160], dtype=order + "i4")
        imod = int(stamp) == _IMOD_STAMP
        if imod and int(flags) & 16:
            # IMOD's 4-bit mode: two voxels a byte, nx/2 bytes a row; read as bytes it would
            # be "cut short"
            raise UnsupportedDtypeError(
                path, "MRC mode 0 with IMOD's 4-bit flag (two voxels a byte) is not "
                      "supported; write it as bytes or 16 bits (e.g. IMOD's newstack -mode)")
        unsigned = imod and not int(flags) & 1
        stored, returned = ("u1", np.uint8) if unsigned else ("i1", np.int16)
    elif mode in _MODES:
        stored, returned = _MODES[mode]
    else:
        what = _MODE_NAMES.get(mode, "unknown")
        raise UnsupportedDtypeError(
            path, f"MRC mode {mode} ({what}) is not supported (modes 0, 1, 2, 6 and 12: bytes, "
                  "int16, float32, uint16, float16)")
    if nx * ny > MAX_FRAME_PIXELS:
        raise ImageTooLargeError(path, f"declares {ny} x {nx} pixels per section, more than "
                                       f"the limit of {MAX_FRAME_PIXELS}")
    declared = nx * ny * nz * np.dtype(returned).itemsize
    extended = int(header.nsymbt)
    if extended < 0:
        raise TruncatedTiffError(path, f"not an MRC file, or a corrupt one: the header declares "
                                       f"an extended header of {extended} bytes")
    offset = _HEADER_BYTES + extended
    needed = offset + nx * ny * nz * np.dtype(stored).itemsize
    if size < needed:
        raise TruncatedTiffError(path, f"MRC data cut short: {size} of the {needed} bytes its "
                                       "header declares (still being written?)")
    shape = (ny, nx) if nz == 1 else (nz, ny, nx)
    # space group 0: a stack of images (a movie, a tilt series), not declared Z slices, so an
    # in-situ stack gets no "declares Z slices" note; any other: a volume
    axes = "YX" if nz == 1 else ("IYX" if int(header.ispg) == 0 else "ZYX")
    info = TiffInfo(path=path, size_bytes=size, n_pages=nz, shape=shape,
                    axes=axes, dtype=np.dtype(returned),
                    declared_bytes=declared, layout="mrc", compression="NONE")
    cell = [float(header.cella[axis]) for axis in ("z", "y", "x")]
    counts = [int(header.mz), int(header.my), int(header.mx)]
    # a zero or negative cell is no calibration (Direct Electron's movies), said nowhere;
    # plausibility is the read's (_read), so that its warning comes once a file
    size_z, size_y, size_x = (nm_from(_spacing_a(c, n), 0.1)
                              if n > 0 and math.isfinite(c) and c > 0 else None
                              for c, n in zip(cell, counts, strict=True))
    # space groups 401-630: a stack of volumes of mz sections each (MRC2014)
    ispg, mz = int(header.ispg), int(header.mz)
    per_volume = mz if 401 <= ispg <= 630 and 0 < mz != nz else None
    return info, offset, order + stored, np.dtype(returned), (size_z, size_y, size_x), per_volume


#: The spacing (nm) of a header whose cell equals its sample counts: 1 Angstrom, the value an
#: MRC writer puts there when no pixel size was set.
UNSET_SPACING_NM = 0.1


def _unset_spacing(sizes_nm: tuple[float | None, float | None, float | None]) -> bool:
    """True when x and y (and z, where the header gives one) are exactly
    :data:`UNSET_SPACING_NM`: a header without a calibration, not a 1 Angstrom pixel."""
    z, y, x = sizes_nm
    return x == y == UNSET_SPACING_NM and z in (None, UNSET_SPACING_NM)


def _spacing_a(cell_a: float, n: int) -> float:
    """The voxel spacing in Å of an axis whose float32 cell is ``cell_a`` Å over ``n``
    samples: the quotient when it is a decimal of at most 9 significant digits, else the
    shortest decimal whose ``n`` times is that float32, as a writer that set the spacing
    stored it (4.603 Å over 4096 samples, stored as 18853.889, is 4.603, not 4.6030002). A
    float32 holds some 7 digits of the cell, and of the spacing no more."""
    cell32 = np.float32(cell_a)
    exact = Decimal(float(cell32)) / n
    if short_decimal(exact):
        return float(exact)
    for digits in range(1, FLOAT32_DIGITS + 1):
        spacing = float(round(exact, digits - 1 - exact.adjusted()))
        if np.float32(spacing * n) == cell32:
            return spacing
    return float(exact)


def inspect_mrc(path: str | os.PathLike[str]) -> TiffInfo:
    """Check that ``path`` is a complete, readable MRC file, reading its header only.

    Returns a :class:`TiffInfo` (``layout`` "mrc", ``axes`` "ZYX" for a volume, "IYX" for a
    stack of images (space group 0), "YX" for one section).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    InputError
        EmptyFileError, TruncatedTiffError (a header cut short or not an MRC header, data
        shorter than the header declares: still being written), ImageTooLargeError,
        UnsupportedDtypeError (complex or 4-bit modes), UnsupportedLayoutError (axes not
        stored as X, Y, Z) or UnreadableFileError.
    """
    path = Path(path)
    with open_input(path) as handle:
        return _layout(path, handle)[0]


def _read(path: Path, sections: range | None = None, check_sizes: bool = True,
          opened: BinaryIO | None = None
          ) -> tuple[np.ndarray, TiffInfo, _Sizes, datetime, int | None]:
    """(sections (N, H, W), info, sizes, mtime, sections per volume); with ``sections``, those
    only (len(sections), H, W), the others not read (checked against ``info``).
    ``check_sizes`` False: the sizes as the header gives them, unchecked and not warned about
    (a later chunk of :func:`read_mrc_frame_chunks`, whose first chunk checked them).
    ``opened``: the file, already open (left open), else opened for this read."""
    # header and data of one file, even if renamed over meanwhile
    with open_input(path) if opened is None else contextlib.nullcontext(opened) as handle:
        info, offset, stored, returned, sizes_nm, per_volume = _layout(path, handle)
        n_read = info.n_pages
        if sections is None:
            check_whole_read_bytes(path, info.declared_bytes, info.shape)
        else:
            check_page_index(path, sections.start, info.n_pages)
            check_page_index(path, sections.stop - 1, info.n_pages)
            n_read = len(sections)
            offset += sections.start * math.prod(info.page_shape) * np.dtype(stored).itemsize
        count = n_read * math.prod(info.page_shape)
        handle.seek(offset)
        data = np.fromfile(handle, dtype=stored, count=count)
        mtime = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
    if data.size < count:  # shortened since the header check
        raise TruncatedTiffError(path, f"MRC data cut short: {data.size} of {count} voxels")
    data = data.astype(returned, copy=data.dtype != returned or not data.dtype.isnative)
    if check_sizes and _unset_spacing(sizes_nm):
        _log.warning("io.pixel_size_ignored", path=str(path), source="mrc", axis="xyz",
                     reason="a spacing of exactly 1 Angstrom on every axis (the cell equals "
                            "the sample counts) is what IMOD and other MRC writers put in a "
                            "header when no pixel size was set, not a calibration: the "
                            "file has no pixel size; set the real one (IMOD: alterheader "
                            "-PixelSize, or mrcfile's voxel_size)")
        sizes_nm = (None, None, None)
    elif check_sizes:
        sizes_nm = tuple(None if size is None else plausible_pixel_size_nm(path, "mrc", axis, size)
                         for axis, size in zip("zyx", sizes_nm, strict=True))
    return data.reshape(n_read, *info.page_shape), info, sizes_nm, mtime, per_volume


def read_mrc_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a tomogram from an MRC file: sections are Z slices, (Z, Y, X).

    ``voxel_size_nm`` (z, y, x) comes from the header's cell size over its sampling (Å ->
    nm); None when any of the three is zero (no calibration), ``declared_voxel_size_nm``
    the axes that are not. Raises as :func:`inspect_mrc`.
    """
    path = Path(path)
    data, info, sizes_nm, _, per_volume = _read(path)
    if per_volume is not None:
        raise UnsupportedLayoutError(
            path, f"a stack of volumes (MRC space group 401-630): {info.n_pages} sections of "
                  f"{per_volume} per volume; a tomogram is one volume: give one file per "
                  "volume")
    size_z, size_y, size_x = sizes_nm
    voxel_nm = (None if size_z is None or size_y is None or size_x is None
                else (size_z, size_y, size_x))
    if voxel_nm is not None and size_z > MAX_PLAUSIBLE_IMPLIED_DEPTH_RATIO * size_x:
        # a reconstruction's voxels are about cubic; sections this far apart are most often
        # an image stack whose cell spans the whole stack (Amira's exports)
        _log.warning("io.voxel_depth_implied", path=str(path), voxel_depth_nm=size_z,
                     pixel_size_nm=size_x,
                     reason=f"the MRC header's cell puts the sections {size_z:.6g} nm apart, "
                            f"{size_z / size_x:.0f} times the pixel size; if they are not, "
                            "set the voxel size in the header (e.g. mrcfile's "
                            "voxel_size) and save again")
    return Volume(data=data, source=path, voxel_size_nm=voxel_nm,
                  declared_voxel_size_nm=(size_z, size_y, size_x))


def read_mrc_frames(path: str | os.PathLike[str]) -> list[Frame]:
    """Read every section of an MRC file (a movie stack, or one image) as a :class:`Frame`.

    ``pixel_size_nm`` from the header's x and y (None when either is not calibrated; z, the
    sections' spacing, is no part of a frame's calibration and may be 0), else from
    SerialEM's mdoc beside the file (:mod:`nwwatch.io.mdoc`); where the mdoc's sections say
    the magnification changed within the file, theirs, with a warning
    (:func:`nwwatch.io.mdoc.pixel_sizes_beside_header`); ``acquired_at`` from the mdoc
    (each section's ``DateTime``), else the file's mtime (an MRC header holds no acquisition
    time). Raises as :func:`inspect_mrc`, and AnisotropicPixelsError when the x and y pixel
    sizes differ.
    """
    return _mrc_frames(Path(path), None)


def read_mrc_frame_chunks(path: str | os.PathLike[str], pages: int) -> Iterator[list[Frame]]:
    """The frames of :func:`read_mrc_frames`, in order, ``pages`` sections at a time (the last
    chunk may be shorter), reading only each chunk's pixels. The header is read again for
    each chunk; the pixel sizes and times (header and .mdoc) are those read, checked and
    warned about with the first chunk, once per file. Raises as :func:`read_mrc_frames`,
    when the chunk that meets the problem is read."""
    path = Path(path)
    n_pages = inspect_mrc(path).n_pages
    metadata = None
    for start in range(0, n_pages, pages):
        sections = range(start, min(n_pages, start + pages))
        frames, metadata = _mrc_frames_with(path, sections, metadata)
        yield frames


def _mrc_frames(path: Path, sections: range | None) -> list[Frame]:
    """Every section as a Frame, or the sections ``sections`` only."""
    return _mrc_frames_with(path, sections, None)[0]


#: Per section of a file: pixel size (nm or None), acquisition time, and the times' source.
_FrameMetadata = tuple[list, list, str]


def _mrc_frames_with(path: Path, sections: range | None, metadata: _FrameMetadata | None,
                     opened: BinaryIO | None = None) -> tuple[list[Frame], _FrameMetadata]:
    """The frames of :func:`_mrc_frames` and the file's per-section metadata, read from
    the header and the .mdoc unless ``metadata`` gives it (then not checked again);
    ``opened``: the file, already open (:func:`_read`)."""
    data, info, sizes_nm, mtime, _ = _read(path, sections, check_sizes=metadata is None,
                                           opened=opened)
    if metadata is None:
        pixel_nm = frame_pixel_size_nm(path, sizes_nm, "mrc")
        n = info.n_pages
        mdoc = read_mdoc(path, n, pixel_sizes=pixel_nm is None)
        if mdoc is None:
            pixels = [pixel_nm] * n
        elif pixel_nm is None:
            pixels = mdoc.pixel_sizes_nm
        else:  # the header's, or the mdoc's where the magnification changed
            pixels = pixel_sizes_beside_header(path, pixel_nm, mdoc)
        times, source = ((mdoc.times, "metadata") if mdoc is not None and mdoc.times is not None
                         else ([mtime_time(path, mtime)] * n, "mtime"))
        metadata = (pixels, times, source)
    pixels, times, source = metadata
    indices = range(info.n_pages) if sections is None else sections
    return [Frame(image=data[k], index=i, source=path, pixel_size_nm=pixels[i],
                  acquired_at=times[i], acquired_at_source=source)
            for k, i in enumerate(indices)], metadata
