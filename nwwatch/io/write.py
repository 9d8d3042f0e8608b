"""Write frames, in-situ stacks and volumes as TIFF files that nwwatch and ImageJ/Fiji read.

Layout of every file written here (ImageJ format, which tifffile, Fiji and Bio-Formats read):

- pixel size as ImageJ stores it: ``XResolution``/``YResolution`` = pixels per micrometre,
  ``ResolutionUnit`` = NONE and ``unit=micron`` in the ImageJ description (z: ``spacing``);
- ``DateTime`` tag: acquisition time of the first frame, local time, whole seconds (TIFF/EXIF
  convention; Fiji shows it);
- precise times: the ImageJ property ``nwwatch`` holds JSON
  ``{"format": 1, "acquired_at": ["2026-11-21T07:45:01.250000+00:00", ...]}``, one ISO 8601
  UTC time per page.

Every write goes to a hidden temporary name in the target folder, is fsynced and then renamed
with :func:`os.replace`, so a folder watcher never sees a partial file under the final name.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import tifffile

from nwwatch.atomic import atomic_write
from nwwatch.io.limits import SUPPORTED_DTYPES

#: Key of the ImageJ property holding nwwatch's JSON metadata.
PROPERTY_KEY = "nwwatch"
#: Version of that JSON.
METADATA_FORMAT = 1

_NM_PER_UM = 1000.0


def write_frame_tiff(
    path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    pixel_size_nm: float | None = None,
    acquired_at: datetime | None = None,
) -> Path:
    """Write one frame atomically as a single-page ImageJ TIFF.

    Parameters
    ----------
    path : path of the file to create (replaced if it exists).
    image : ndarray (H, W), uint8, uint16, int16 or float32.
    pixel_size_nm : float, optional
        Square pixel size in nm (stored in micrometres, ImageJ's convention).
    acquired_at : timezone-aware datetime, optional
        Acquisition time; stored with microseconds (JSON property) and to the second
        (``DateTime`` tag).

    Returns
    -------
    Path of the written file.
    """
    image = _check_pixels(image, ndim=2, what="image (H, W)")
    pixel_size_nm = _check_size(pixel_size_nm, "pixel_size_nm")
    times = None if acquired_at is None else [_as_utc(acquired_at)]
    return _write_imagej(path, image, "YX", (pixel_size_nm, pixel_size_nm), None, times)


def write_stack_tiff(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    *,
    pixel_size_nm: float | None = None,
    acquired_at: Sequence[datetime] | None = None,
) -> Path:
    """Write an in-situ image series atomically as a multi-page ImageJ TIFF (time axis).

    Parameters
    ----------
    path : path of the file to create.
    frames : ndarray (N, H, W), uint8, uint16, int16 or float32; page i is frame i.
    pixel_size_nm : float, optional
        Square pixel size in nm.
    acquired_at : sequence of N timezone-aware datetimes, optional
        Per-frame acquisition times (microsecond precision); the mean interval is also
        written as ImageJ ``finterval`` (seconds) so Fiji calibrates its time axis.

    Returns
    -------
    Path of the written file.
    """
    frames = _check_pixels(frames, ndim=3, what="frames (N, H, W)")
    pixel_size_nm = _check_size(pixel_size_nm, "pixel_size_nm")
    times = None
    if acquired_at is not None:
        if isinstance(acquired_at, datetime):  # else "'datetime' object is not iterable"
            raise TypeError("acquired_at must be a sequence of N datetimes, one a frame, got "
                            "one datetime")
        times = [_as_utc(t) for t in acquired_at]
        if len(times) != frames.shape[0]:
            raise ValueError(
                f"acquired_at has {len(times)} times for {frames.shape[0]} frames"
            )
    return _write_imagej(path, frames, "TYX", (pixel_size_nm, pixel_size_nm), None, times)


def write_volume_tiff(
    path: str | os.PathLike[str],
    volume: np.ndarray,
    *,
    voxel_size_nm: float | tuple[float, float, float] | None = None,
) -> Path:
    """Write a tomogram atomically as an ImageJ hyperstack of Z slices.

    Parameters
    ----------
    path : path of the file to create.
    volume : ndarray (Z, Y, X), uint8, uint16, int16 or float32.
    voxel_size_nm : float or (z, y, x) floats, optional
        Voxel size in nm; one number means cubic voxels. y and x go to the resolution tags,
        z to ImageJ ``spacing``.

    Returns
    -------
    Path of the written file.
    """
    volume = _check_pixels(volume, ndim=3, what="volume (Z, Y, X)")
    if voxel_size_nm is None:
        z_nm = y_nm = x_nm = None
    elif np.ndim(voxel_size_nm) == 0:
        z_nm = y_nm = x_nm = _check_size(voxel_size_nm, "voxel_size_nm")
    else:
        if len(voxel_size_nm) != 3:
            raise ValueError(f"voxel_size_nm must be one float or (z, y, x), got {voxel_size_nm}")
        if any(v is None for v in voxel_size_nm):
            # ImageJ has no "unknown z": a stack without spacing shows slices 1 unit apart
            raise TypeError(f"voxel_size_nm must be one number or (z, y, x) numbers of nm, "
                            f"got {voxel_size_nm}; without a z size give none at all")
        z_nm, y_nm, x_nm = (_check_size(v, f"voxel_size_nm[{i}]")
                            for i, v in enumerate(voxel_size_nm))
    return _write_imagej(path, volume, "ZYX", (y_nm, x_nm), z_nm, None)


def _check_pixels(array: np.ndarray, *, ndim: int, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {array.shape}")
    if not array.dtype.isnative:  # what mrcfile or a FITS reader hands back: same values
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise TypeError(f"{what}: dtype {array.dtype} is not supported ({names})")
    if min(array.shape) == 0:
        raise ValueError(f"{what} is empty: shape {array.shape}")
    return np.ascontiguousarray(array)


def _check_size(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        # float(True) is 1.0 nm, float("0.5") a string read from a settings file
        raise TypeError(f"{name} must be a number of nm, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of nm, got {value}")
    return value


def _as_utc(when: datetime) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"acquired_at must be a datetime, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"acquired_at must be timezone-aware, got naive {when.isoformat()}")
    return when.astimezone(UTC)


def _write_imagej(
    path: str | os.PathLike[str],
    data: np.ndarray,
    axes: str,
    yx_nm: tuple[float | None, float | None],
    z_nm: float | None,
    times: list[datetime] | None,
) -> Path:
    y_nm = _check_size(yx_nm[0], "pixel size y")
    x_nm = _check_size(yx_nm[1], "pixel size x")
    z_nm = _check_size(z_nm, "voxel size z")
    metadata: dict[str, object] = {"axes": axes}
    kwargs: dict[str, object] = {}
    if x_nm is not None and y_nm is not None:
        # ImageJ convention: resolution in pixels per `unit`, ResolutionUnit NONE.
        kwargs["resolution"] = (_NM_PER_UM / x_nm, _NM_PER_UM / y_nm)
        kwargs["resolutionunit"] = tifffile.RESUNIT.NONE
        metadata["unit"] = "micron"
    if z_nm is not None:
        metadata["spacing"] = z_nm / _NM_PER_UM
        metadata.setdefault("unit", "micron")
    if times:
        metadata["Properties"] = {
            PROPERTY_KEY: json.dumps(
                {"format": METADATA_FORMAT, "acquired_at": [t.isoformat() for t in times]}
            )
        }
        # DateTime tag: whole seconds, local time (TIFF/EXIF convention).
        kwargs["datetime"] = times[0].astimezone().strftime("%Y:%m:%d %H:%M:%S")
        if len(times) > 1:
            span_s = (times[-1] - times[0]).total_seconds()
            if span_s > 0:
                metadata["finterval"] = span_s / (len(times) - 1)
    else:
        kwargs["datetime"] = False  # no time known: do not invent one (tifffile uses "now")
    return _atomic_write(path, data, metadata, kwargs)


def _atomic_write(
    path: str | os.PathLike[str], data: np.ndarray, metadata: dict, kwargs: dict
) -> Path:
    target = Path(path)
    # An explicit samples axis of 1: without it tifffile takes a trailing axis of length 1 as
    # the samples, so a (Z, Y, 1) volume (or an (N, H, 1) stack) was written as one page of
    # Z x Y px under an ImageJ header declaring Z images, which the reader refuses as cut short.
    # With it, every shape the checks accept round-trips; the file's bytes are the same.
    metadata = {**metadata, "axes": f"{metadata['axes']}S"}
    with atomic_write(target) as handle:
        tifffile.imwrite(handle, data[..., np.newaxis], imagej=True, metadata=metadata,
                         software="nwwatch", **kwargs)
    return target
