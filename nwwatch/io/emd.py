"""Read in-situ image series from Thermo Fisher Velox EMD files (``.emd``, HDF5).

A Velox EMD file (``Version``: ``{"format": "Velox", "version": ...}``) holds each acquired
image series, one per detector, in a group ``Data/Image/<uuid>`` with

- ``Data``: the pixels, shaped (H, W, N): N frames along the last axis;
- ``Metadata``: uint8 (L, N), one null-padded JSON text per frame, of which this module reads
  ``BinaryResult`` (``Detector``; ``PixelSize`` ``width``/``height`` in ``PixelUnitX`` /
  ``PixelUnitY``, e.g. "m"), ``Acquisition.AcquisitionStartDatetime.DateTime`` (Unix
  seconds), ``Scan.FrameTime`` (seconds) and ``CustomProperties``
  ``Detectors[<detector>].TimeStamp`` (Unix microseconds, per frame of a camera series).

Spectra (``Data/Spectrum``, ``SpectrumImage``, ``SpectrumStream``, ``EelsSpectrumImage``)
are not images and are not read: a file without ``Data/Image`` is refused.

Which image series: a file may hold several image groups (the detectors of one STEM scan, a
spectrum image's maps, an FFT beside its image). Groups of complex (FFT, DPC) data are left
aside when a real-valued one is there; of the rest, the only one, else the one with the most
frames when that is more than one frame (a series beside single images); otherwise the file
is refused naming every group, since no rule tells which detector is meant.

Frame times (``acquired_at``, UTC), first match wins: every frame's detector ``TimeStamp``;
``AcquisitionStartDatetime`` plus ``i * Scan.FrameTime`` (a scanned series' time axis);
``AcquisitionStartDatetime`` for every frame; the file's modification time (source "mtime").

Pixel types: uint8, uint16, int16 and float32 are returned as stored; int8 is widened to
int16 and float16 to float32; int32, uint32 and float64 are converted to float32
(:data:`nwwatch.io.limits.SUPPORTED_DTYPES`, what every reader returns). Complex data and
other types are refused. Velox EMD files hold image series, not reconstructions: no file is
read as a tomogram.

HDF5 is read through ``h5py`` from the file opened with
:func:`~nwwatch.io.regular.open_input` (no HDF5 file lock is taken: the writer is never
blocked). A file HDF5 cannot open (cut short, still being written, no HDF5 signature)
raises :class:`~nwwatch.io.errors.TruncatedTiffError`, as a TIFF or MRC file cut short does,
so the service waits and looks again.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

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

if TYPE_CHECKING:
    import h5py

_log = structlog.get_logger("nwwatch.io")

#: Names read as Velox EMD files.
EMD_SUFFIXES = (".emd",)

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: stored dtype -> returned dtype: one of SUPPORTED_DTYPES, as the other readers return (int8
#: widened to int16, float16 to float32, both exact; int32, uint32 and float64 to float32,
#: exact for counts up to 2**24)
_DTYPES = {np.dtype(t): np.dtype(t) for t in ("u1", "u2", "i2", "f4")}
_DTYPES |= {np.dtype("i1"): np.dtype("i2"), np.dtype("f2"): np.dtype("f4"),
            np.dtype("i4"): np.dtype("f4"), np.dtype("u4"): np.dtype("f4"),
            np.dtype("f8"): np.dtype("f4")}
_SUPPORTED_NAMES = "uint8, uint16, uint32, int8, int16, int32, float16, float32, float64"
#: Pixel data are read this many bytes at a time (beside the frames themselves).
_BLOCK_BYTES = 64 * 2**20
_METADATA_COLUMNS = 64  # frames' metadata texts read at a time
#: Longest metadata text a frame may have: Velox writes tens of kB; a corrupt dataspace may
#: declare any length, which every read of a frame's metadata would allocate.
_MAX_METADATA_BYTES = 2**24
#: A Velox display entry (a few hundred characters of JSON) longer than this names nothing.
_MAX_DISPLAY_CHARS = 2**20
def is_emd(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is named as a Velox EMD file (:data:`EMD_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in EMD_SUFFIXES


@dataclass(frozen=True)
class _Series:
    """The image group read from a file, and what its header says."""

    info: TiffInfo
    name: str  # "Data/Image/<uuid>"
    data: h5py.Dataset
    metadata: h5py.Dataset | None
    returned: np.dtype


@contextmanager
def _open(path: Path) -> Iterator[tuple[h5py.File, BinaryIO]]:
    """``path`` open as an HDF5 file (and the file object under it)."""
    import h5py  # here: 0.2 s, for EMD files only

    with open_input(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise EmptyFileError(path, "file is empty (0 bytes)")
        head = handle.read(len(_HDF5_SIGNATURE))
        handle.seek(0)
        try:
            # no lock: a reader must never make the acquisition's writer fail
            hdf = h5py.File(handle, "r", locking=False)
        except MemoryError:
            raise
        except Exception as exc:  # h5py raises OSError, at times others, on a bad file
            if head == _HDF5_SIGNATURE:
                reason = (f"HDF5 file that cannot be opened ({_h5_reason(exc)}): cut short, "
                          "still being written, or damaged")
            elif len(head) < len(_HDF5_SIGNATURE):
                reason = f"EMD file cut short ({size} bytes): still being written?"
            else:
                reason = ("not an HDF5 file (no HDF5 signature at its start): not a Velox EMD "
                          "file, or a damaged one")
            raise TruncatedTiffError(path, reason) from exc
        with hdf:
            try:
                yield hdf, handle
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                # h5py's errors on a damaged structure (a group, heap or B-tree that does not
                # parse), met while the groups are walked
                raise TruncatedTiffError(path, f"HDF5 structure could not be read "
                                               f"({exc}): cut short, still being written, or "
                                               "damaged") from exc


def _h5_reason(exc: BaseException) -> str:
    """h5py's message without its "Unable to synchronously open file" prefix."""
    text = str(exc)
    return text[text.find("(") + 1:text.rfind(")")] if "(" in text else text


def _groups(path: Path, hdf: h5py.File) -> list[tuple[str, h5py.Group]]:
    """The image groups ``Data/Image/<uuid>`` of ``hdf``; refuses a file without any."""
    import h5py

    data = hdf.get("Data")
    if not isinstance(data, h5py.Group):
        berkeley = "version_major" in hdf.attrs or any(
            isinstance(g, h5py.Group) and "emd_group_type" in g.attrs for g in hdf.values())
        what = ("a Berkeley EMD file (ncempy, py4DSTEM, Prismatic), not a Velox one"
                if berkeley else "an HDF5 file without a Data group: not a Velox EMD file")
        raise UnsupportedLayoutError(path, f"{what}; nwwatch reads the image series of "
                                           "Velox EMD files (Data/Image)")
    images = data.get("Image")
    groups = ([] if not isinstance(images, h5py.Group) else
              [(f"Data/Image/{_text(key)}", g) for key, g in images.items()
               if isinstance(g, h5py.Group)])
    if not groups:
        kinds = sorted(_text(k) for k in data if k != "Image") or ["nothing"]
        raise UnsupportedLayoutError(
            path, f"a Velox EMD file without images (Data holds {', '.join(kinds)}): spectra "
                  "or a spectrum image, not an image series; nwwatch reads image series "
                  "(Data/Image)")
    return groups


def _text(name: str | bytes) -> str:
    """An HDF5 member name as text (h5py gives bytes for a name that is not UTF-8)."""
    return name if isinstance(name, str) else name.decode("utf-8", "replace")


def _metadata_text(path: Path, name: str, column: np.ndarray, frame: int) -> dict[str, Any]:
    """One frame's metadata JSON (null-padded uint8 text); {} when empty."""
    text = np.asarray(column, dtype=np.uint8).tobytes().split(b"\0", 1)[0].strip()
    if not text:
        return {}
    try:
        parsed = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TruncatedTiffError(path, f"{name}/Metadata of frame {frame} is not JSON text "
                                       f"({exc}): damaged") from exc
    return parsed if isinstance(parsed, dict) else {}


def _frame_metadata(path: Path, name: str, metadata: h5py.Dataset | None,
                    frames: range) -> Iterator[dict[str, Any]]:
    """The metadata of each frame of ``frames``, a block of columns read at a time."""
    columns = _METADATA_COLUMNS if metadata is None else max(
        1, min(_METADATA_COLUMNS, _BLOCK_BYTES // max(1, metadata.shape[0])))
    for start in range(frames.start, frames.stop, columns):
        stop = min(start + columns, frames.stop)
        if metadata is None:
            yield from ({} for _ in range(start, stop))
            continue
        try:
            block = metadata[:, start:stop]
        except MemoryError:
            raise
        except Exception as exc:
            raise TruncatedTiffError(path, f"{name}/Metadata could not be read ({exc}): cut "
                                           "short or damaged") from exc
        if block.ndim != 2 or block.shape[1] < stop - start:
            # fewer columns than frames: a group whose Metadata the writer has not extended
            raise TruncatedTiffError(path, f"{name}/Metadata holds no text for frame "
                                           f"{start + (block.shape[-1] if block.ndim else 0)}: "
                                           "still being written, or damaged")
        for i in range(stop - start):
            yield _metadata_text(path, name, block[:, i], start + i)


def _detector(meta: dict[str, Any]) -> str:
    result = meta.get("BinaryResult")
    detector = result.get("Detector") if isinstance(result, dict) else None
    return detector if isinstance(detector, str) and detector else "detector not named"


def _metadata_of(path: Path, name: str, group: h5py.Group, n_frames: int) -> h5py.Dataset | None:
    """The ``Metadata`` dataset of an image group, checked against its ``n_frames``; None when
    the group has none."""
    import h5py

    metadata = group.get("Metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, h5py.Dataset) or metadata.ndim != 2 \
            or metadata.dtype.kind not in "iu" or metadata.dtype.itemsize != 1:
        raise UnsupportedLayoutError(path, f"{name}/Metadata is not a 2-D byte array (shape "
                                           f"{getattr(metadata, 'shape', None)})")
    if metadata.shape[0] > _MAX_METADATA_BYTES:
        raise ImageTooLargeError(path, f"{name}/Metadata declares texts of {metadata.shape[0]} "
                                       f"bytes a frame, more than the limit of "
                                       f"{_MAX_METADATA_BYTES}: damaged")
    if metadata.shape[1] != n_frames:
        raise TruncatedTiffError(path, f"{name}/Metadata describes {metadata.shape[1]} frames "
                                       f"and Data holds {n_frames}: still being written, or "
                                       "damaged")
    return metadata


def _is_real(data: h5py.Dataset) -> bool:
    return data.dtype.fields is None and data.dtype.kind in "uif"


def _describe(data: h5py.Dataset) -> str:
    """A dataset's pixel type, e.g. "uint16", "complex (realFloat, imagFloat)"."""
    dtype = data.dtype
    if dtype.fields is not None:
        fields = ", ".join(dtype.names or ())
        complex_ = len(dtype.names or ()) == 2 and any("imag" in n.lower() for n in dtype.names)
        return f"{'complex' if complex_ else 'compound'} ({fields})"
    if dtype.kind == "c":
        return f"complex ({dtype})"
    return str(dtype)


def _display_json(item: object) -> dict[str, Any]:
    """The JSON object of a Velox display entry (a dataset of one text); {} otherwise."""
    import h5py

    if not isinstance(item, h5py.Dataset) or item.shape != (1,) or item.dtype.kind not in "OS":
        return {}
    text = item[0]
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    parsed = json.loads(text) if isinstance(text, str) and len(text) <= _MAX_DISPLAY_CHARS \
        else None
    return parsed if isinstance(parsed, dict) else {}


def _display_names(hdf: h5py.File) -> dict[str, str]:
    """The name Velox shows each image group under ("Data/Image/<uuid>" -> "iDPC", "Fe"),
    from its displays (``Displays/ImageDisplay`` since Velox files of version 11,
    ``Presentation/Displays/ImageDisplay`` before), to name the groups of a file refused;
    what cannot be read names nothing."""
    import h5py

    names: dict[str, str] = {}
    for group_name in ("Displays/ImageDisplay", "Presentation/Displays/ImageDisplay"):
        try:
            group = hdf.get(group_name)
            items = list(group.values()) if isinstance(group, h5py.Group) else []
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - a damaged display group only names nothing
            continue
        for item in items:
            try:
                display = _display_json(item)
                if isinstance(display.get("data"), str):  # version 11: via a data reference
                    name = display.get("title") or display.get("id")
                    data_path = _display_json(hdf.get(display["data"])).get("dataPath")
                else:
                    label = display.get("display")
                    name = label.get("label") if isinstance(label, dict) else None
                    data_path = display.get("dataPath")
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001 - a damaged display only names nothing
                continue
            if isinstance(name, str) and name and isinstance(data_path, str):
                names.setdefault(data_path.strip("/"), name)
    return names


def _choose(path: Path, groups: list[tuple[str, h5py.Group]]) -> tuple[str, h5py.Group,
                                                                     h5py.Dataset]:
    """The image group read (see the module's rule), with its ``Data``."""
    import h5py

    found = []
    for name, group in groups:
        data = group.get("Data")
        if not isinstance(data, h5py.Dataset):
            raise TruncatedTiffError(path, f"{name} has no Data dataset: still being written, "
                                           "or damaged")
        found.append((name, group, data))
    real = [item for item in found if _is_real(item[2])]
    if not real:
        name, _, data = found[0]
        raise UnsupportedDtypeError(
            path, f"{name}: pixel type {_describe(data)} is not supported (an FFT or DPC "
                  f"result?); nwwatch reads real-valued images ({_SUPPORTED_NAMES})")
    if len(real) == 1:
        return real[0]
    frames = [item[2].shape[-1] if item[2].ndim == 3 else 1 for item in real]
    most = max(frames)
    if most > 1 and frames.count(most) == 1:
        return real[frames.index(most)]
    listed = []
    shown = _display_names(real[0][1].file)
    for (name, group, data), n in zip(real, frames, strict=True):
        metadata = group.get("Metadata")
        # only to name the detector: a Metadata of no byte texts, or of texts longer than any
        # Velox writes (a damaged dataspace: read, it would allocate that much), is none
        metadata = metadata if isinstance(metadata, h5py.Dataset) and metadata.ndim == 2 \
            and metadata.dtype.itemsize == 1 and metadata.shape[0] <= _MAX_METADATA_BYTES \
            and n > 0 else None
        meta = next(_frame_metadata(path, name, metadata, range(1)))
        display = f"shown as '{shown[name]}', " if name in shown else ""
        listed.append(f"{name} ({_detector(meta)}, {display}{n} frame{'s' if n != 1 else ''} "
                      f"of {' x '.join(map(str, data.shape[:2]))} px)")
    raise UnsupportedLayoutError(
        path, f"{len(real)} images (Data/Image groups: detectors, results) and none is the one "
              f"series of several frames among them, so no rule tells which to read: "
              f"{'; '.join(listed)}; export the frames wanted as TIFF from Velox")


def _check_written(path: Path, name: str, data: h5py.Dataset) -> None:
    """Raise TruncatedTiffError when ``data`` declares pixels its file does not hold: HDF5
    chunks never written (a dataspace grown ahead of the frames, or damaged) or contiguous
    storage not allocated, which HDF5 would read as zeros (its fill value), frames of
    nothing that would be measured."""
    if data.chunks is not None:
        expected = math.prod(-(-n // c) for n, c in zip(data.shape, data.chunks, strict=True))
        written = data.id.get_num_chunks()
        what = f"{written} of its {expected} HDF5 chunks"
    else:
        expected = data.size * data.dtype.itemsize
        written = data.id.get_storage_size()
        what = f"{written} of its {expected} bytes"
    if written < expected:
        raise TruncatedTiffError(
            path, f"{name}/Data declares {data.shape[2]} frames of {data.shape[0]} x "
                  f"{data.shape[1]} px but holds {what}: still being written, or damaged")


def _series(path: Path, hdf: h5py.File, size: int) -> _Series:
    """The image series of ``hdf`` (see the module's rule), checked from headers only."""
    name, group, data = _choose(path, _groups(path, hdf))
    if data.ndim != 3:
        raise UnsupportedLayoutError(
            path, f"{name}/Data has shape {data.shape}; a Velox image series is (height, "
                  "width, frames)")
    returned = _DTYPES.get(data.dtype.newbyteorder("="))
    if returned is None:
        raise UnsupportedDtypeError(
            path, f"{name}: pixel type {_describe(data)} is not supported ({_SUPPORTED_NAMES})")
    height, width, n_frames = (int(n) for n in data.shape)
    if n_frames == 0:
        raise TruncatedTiffError(path, f"{name}/Data holds no frame yet: still being written?")
    if height == 0 or width == 0:
        raise UnsupportedLayoutError(path, f"{name}/Data has empty frames (shape {data.shape})")
    if height * width > MAX_FRAME_PIXELS:
        raise ImageTooLargeError(path, f"declares {height} x {width} pixels per frame, more "
                                       f"than the limit of {MAX_FRAME_PIXELS}")
    declared = height * width * n_frames * returned.itemsize
    _check_written(path, name, data)
    metadata = _metadata_of(path, name, group, n_frames)
    shape = (height, width) if n_frames == 1 else (n_frames, height, width)
    info = TiffInfo(path=path, size_bytes=size, n_pages=n_frames, shape=shape,
                    axes="YX" if n_frames == 1 else "IYX", dtype=returned,
                    declared_bytes=declared, layout="emd",
                    compression=str(data.compression or "NONE").upper())
    return _Series(info=info, name=name, data=data, metadata=metadata, returned=returned)


def inspect_emd(path: str | os.PathLike[str]) -> TiffInfo:
    """Check that ``path`` is a complete Velox EMD file with a readable image series, reading
    its HDF5 structure and one frame's metadata at most, no pixel data.

    Returns a :class:`TiffInfo` (``layout`` "emd", ``axes`` "IYX" for several frames, "YX"
    for one: a stack of images, declared neither Z slices nor time frames, since no EMD file
    is read as a tomogram).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    InputError
        EmptyFileError, TruncatedTiffError (not an HDF5 file HDF5 can open: cut short, still
        being written, damaged; metadata of another frame count than the data),
        ImageTooLargeError, UnsupportedDtypeError (complex or other pixel types),
        UnsupportedLayoutError (no image series: a spectrum file, another EMD flavour; several
        series and no rule for which) or UnreadableFileError.
    """
    path = Path(path)
    with _open(path) as (hdf, handle):
        return _series(path, hdf, os.fstat(handle.fileno()).st_size).info


def _pixels(path: Path, series: _Series, frames: range) -> np.ndarray:
    """The frames ``frames`` of ``series``, (len(frames), H, W) in the returned dtype, read in
    blocks that follow the file's storage: rows of those frames from contiguous data, whole
    chunks of frames from chunked data (Velox writes a chunk a frame); no other frame's
    pixels are decoded."""
    data, info = series.data, series.info
    n_frames = len(frames)
    height, width = info.page_shape
    out = np.empty((n_frames, height, width), dtype=series.returned)
    itemsize = max(data.dtype.itemsize, series.returned.itemsize)
    try:
        if data.chunks is None:
            rows = max(1, _BLOCK_BYTES // max(1, width * n_frames * itemsize))
            for top in range(0, height, rows):
                # (rows, W, len(frames)): one read of a hyperslab
                block = data[top:top + rows, :, frames.start:frames.stop]
                out[:, top:top + len(block)] = np.moveaxis(block, 2, 0)
        else:
            step = data.chunks[2]
            if step * height * width * itemsize > _BLOCK_BYTES:
                step = max(1, _BLOCK_BYTES // max(1, height * width * itemsize))
            for first in range(frames.start, frames.stop, step):
                block = data[:, :, first:min(first + step, frames.stop)]
                at = first - frames.start
                out[at:at + block.shape[2]] = np.moveaxis(block, 2, 0)
    except MemoryError:
        raise
    except Exception as exc:  # short reads, corrupt chunks, filters not available
        raise TruncatedTiffError(path, f"{series.name}/Data could not be read ({exc}): cut "
                                       "short, still being written, or damaged") from exc
    return out


def _number(value: Any) -> float | None:
    """A metadata value (Velox writes numbers as text) as a finite float, else None."""
    if isinstance(value, dict):
        value = value.get("value")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _pixel_size_nm(path: Path, name: str, meta: dict[str, Any], frame: int) -> float | None:
    """The square pixel size of a frame in nm; None when not declared or not a length (a
    diffraction pattern's 1/m)."""
    result = meta.get("BinaryResult")
    if not isinstance(result, dict) or not isinstance(result.get("PixelSize"), dict):
        return None
    sizes = []
    for axis, unit_key in (("width", "PixelUnitX"), ("height", "PixelUnitY")):
        value = result["PixelSize"].get(axis)
        unit = value.get("unit") if isinstance(value, dict) else result.get(unit_key)
        per_unit = unit_to_nm(unit) if isinstance(unit, str) else None
        number = _number(value)
        if per_unit is None or number is None:
            return None
        size = plausible_pixel_size_nm(path, "emd", axis, nm_from(number, per_unit))
        if size is None:
            return None
        sizes.append(size)
    size_x, size_y = sizes
    return frame_pixel_size_nm(path, (None, size_y, size_x), "emd")


def _unix_time(seconds: float | None) -> datetime | None:
    if seconds is None:
        return None
    try:
        when = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when if when.year in range(*PLAUSIBLE_ACQUISITION_YEARS) else None


def _time_stamp(meta: dict[str, Any]) -> datetime | None:
    """The frame's detector ``TimeStamp`` (Unix microseconds)."""
    custom = meta.get("CustomProperties")
    if not isinstance(custom, dict):
        return None
    micros = _number(custom.get(f"Detectors[{_detector(meta)}].TimeStamp"))
    return None if micros is None else _unix_time(micros / 1e6)


def _start(meta: dict[str, Any]) -> tuple[datetime | None, float | None]:
    """(``AcquisitionStartDatetime``, ``Scan.FrameTime`` in seconds) of a frame's metadata."""
    acquisition = meta.get("Acquisition")
    start = acquisition.get("AcquisitionStartDatetime") if isinstance(acquisition, dict) else None
    when = _unix_time(_number(start.get("DateTime"))) if isinstance(start, dict) else None
    scan = meta.get("Scan")
    frame_s = _number(scan.get("FrameTime")) if isinstance(scan, dict) else None
    return when, frame_s if frame_s is not None and frame_s > 0 else None


def _scan_times(path: Path, start: datetime, frame_s: float | None,
                n_frames: int) -> list[datetime]:
    """``start + i * frame_s`` for each frame, or ``start`` for every frame when that would
    put a frame past the plausible years (a damaged ``Scan.FrameTime``: the sum overflows, or
    is no acquisition's time)."""
    if frame_s:
        try:
            last = start + timedelta(seconds=frame_s * (n_frames - 1))
        except OverflowError:
            last = None
        if last is not None and last.year < PLAUSIBLE_ACQUISITION_YEARS[1]:
            step = timedelta(seconds=frame_s)
            return [start + i * step for i in range(n_frames)]
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"Scan.FrameTime {frame_s:.6g} s puts frame {n_frames - 1} past "
                            f"{PLAUSIBLE_ACQUISITION_YEARS[1]}: every frame gets the acquisition "
                            "start")
    return [start] * n_frames


def _frame_metadata_of(path: Path, series: _Series, mtime: datetime) -> FramesMetadata:
    """The pixel size and time of every frame of ``series`` (see :func:`read_emd_frames`),
    its Metadata read a block of frames at a time and not kept."""
    n_frames = series.info.n_pages
    sizes: list[float | None] = []
    stamps: list[datetime | None] = []
    start, frame_s = None, None
    for i, meta in enumerate(_frame_metadata(path, series.name, series.metadata,
                                             range(n_frames))):
        sizes.append(_pixel_size_nm(path, series.name, meta, i))
        stamps.append(_time_stamp(meta))
        if i == 0:
            start, frame_s = _start(meta)
    if all(stamps):
        times, source = [t for t in stamps if t is not None], "metadata"
    elif start is not None:
        times, source = _scan_times(path, start, frame_s, n_frames), "metadata"
    else:
        times, source = [mtime_time(path, mtime)] * n_frames, "mtime"
    return FramesMetadata(sizes, times, source)


def _frames(path: Path, series: _Series, meta: FramesMetadata, frames: range) -> list[Frame]:
    """The frames ``frames`` of ``series``, reading their pixels only."""
    stack = _pixels(path, series, frames)
    return meta.frames(path, stack, frames)


@contextmanager
def _opened(path: Path) -> Iterator[tuple[_Series, datetime]]:
    """The image series of ``path`` (structure and data of one file, even if renamed over
    meanwhile) and the file's mtime."""
    with _open(path) as (hdf, handle):
        stat = os.fstat(handle.fileno())
        yield (_series(path, hdf, stat.st_size),
               datetime.fromtimestamp(stat.st_mtime, UTC))


@contextmanager
def open_emd_frames(path: str | os.PathLike[str]) -> Iterator[OpenFrames]:
    """The frames of :func:`read_emd_frames`, the file opened once (structure and data of one
    file, even if renamed over meanwhile), every frame's metadata read, checked and warned
    about once (the times depend on all of them), each frame's pixels read when asked from
    the HDF5 dataset. ``by_page`` is :func:`frames_by_chunk` of the series. Raises as
    :func:`inspect_emd`."""
    path = Path(path)
    with _opened(path) as (series, mtime):
        meta = _frame_metadata_of(path, series, mtime)
        yield OpenFrames(series.info, lambda frames: _frames(path, series, meta, frames),
                         frames_by_chunk(series.data))


def read_emd_frames(path: str | os.PathLike[str]) -> list[Frame]:
    """Read every frame of a Velox EMD file's image series as a :class:`Frame`.

    ``pixel_size_nm`` from each frame's ``BinaryResult.PixelSize`` (None when not a length);
    ``acquired_at`` as the module says (``acquired_at_source`` "metadata", or "mtime").
    Raises as :func:`inspect_emd`, ImageTooLargeError beyond
    :data:`nwwatch.io.limits.MAX_FILE_BYTES` (every frame in memory at once), and
    AnisotropicPixelsError when a frame's x and y pixel sizes differ.
    """
    with open_emd_frames(path) as opened:
        info = opened.info
        check_whole_read_bytes(info.path, info.declared_bytes, info.shape)
        return opened.read(range(info.n_pages))


#: A series whose HDF5 chunks span more frames than this is read whole by
#: :func:`nwwatch.io.read_frame_chunks`: each chunk of frames would decode as many.
MAX_FRAMES_PER_HDF5_CHUNK = 64


def frames_by_chunk(data: h5py.Dataset) -> bool:
    """Whether a few frames of the dataset ``data`` ((H, W, N)) can be read without
    decoding most of the others: one frame, or HDF5 chunks at most
    :data:`MAX_FRAMES_PER_HDF5_CHUNK` frames deep (Velox writes a chunk a frame); not
    contiguous storage, where the frames are interleaved pixel by pixel."""
    return data.shape[2] == 1 or (data.chunks is not None
                                  and data.chunks[2] <= MAX_FRAMES_PER_HDF5_CHUNK)


def read_emd_volume(path: str | os.PathLike[str]) -> Volume:
    """Refuse a Velox EMD file as a tomogram: it holds image series (frames in time), not
    reconstructions. Raises as :func:`inspect_emd` for a file that is not a readable EMD
    file, else UnsupportedLayoutError."""
    path = Path(path)
    info = inspect_emd(path)
    raise UnsupportedLayoutError(
        path, f"a Velox EMD file holds an image series ({info.n_pages} frame"
              f"{'s' if info.n_pages != 1 else ''} in time), not a reconstructed tomogram: "
              "watch or replay it as kind \"insitu\"; give a tomogram as TIFF or MRC")

