"""Pixel size and acquisition time from a TIFF's metadata; never guessed.

Pixel size sources, first match wins:

1. OME-XML ``Pixels`` ``PhysicalSizeX/Y/Z`` of the image read, with their units (OME default:
   micrometre);
2. ImageJ: ``unit`` in the description with ``XResolution``/``YResolution`` in pixels per
   ``unit`` and ``spacing`` for z (ImageJ omits ``spacing`` when it is 1 unit, which is also
   its default: no z size without it, :func:`imagej_default_depth_nm`);
3. FEI / Thermo Fisher: ``[Scan] PixelWidth``/``PixelHeight`` (metres) of the private tag
   34682 (FEI_HELIOS, as tifffile parses it), written by xT and the other FEI/Thermo
   microscope software, whose resolution tags are a screen's 64 or 96 dpi;
4. ``XResolution``/``YResolution`` with ``ResolutionUnit`` INCH or CENTIMETER (a missing
   ``ResolutionUnit`` means INCH, the TIFF default); NONE means unknown.

Acquisition time sources, first match wins: nwwatch's JSON property (per page, microseconds,
UTC); OME ``AcquisitionDate`` plus each plane's ``DeltaT`` (in its ``DeltaTUnit``); per page,
when every page has one and they differ, the FEI ``[User] Date``/``Time``, then JEOL SightX's
``TemReporter`` ``DateTime`` (ISO 8601 with its zone), then the ``DateTime`` tag; one start
for every frame: OME ``AcquisitionDate``, the first page's FEI time, JEOL time or
``DateTime`` (plus ``i * finterval``, in its ``tunit``, for ImageJ series). Times without a
zone are local time of this machine (TIFF/EXIF convention); a year outside
``PLAUSIBLE_ACQUISITION_YEARS`` is an unset clock or tag and is not read. Without any, the
file's modification time is used (:func:`mtime_time`: with a warning when its year is outside
them too).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import structlog
import tifffile

from nwwatch.io.errors import AnisotropicPixelsError
from nwwatch.io.limits import (
    ANISOTROPY_TOLERANCE,
    MAX_PLAUSIBLE_PIXEL_SIZE_NM,
    MIN_PLAUSIBLE_PIXEL_SIZE_NM,
    PLAUSIBLE_ACQUISITION_YEARS,
)
from nwwatch.io.write import PROPERTY_KEY

_log = structlog.get_logger("nwwatch.io")

# Keys after NFKC normalisation and lower-casing (NFKC maps micro sign to Greek mu and the
# angstrom sign to A-ring).
_NM_PER_UNIT = {
    "pm": 1e-3,
    "å": 0.1, "a": 0.1, "angstrom": 0.1, "angstroms": 0.1, "ångström": 0.1,
    "nm": 1.0, "nanometer": 1.0, "nanometre": 1.0, "nanometers": 1.0, "nanometres": 1.0,
    "μm": 1e3, "um": 1e3, "micron": 1e3, "microns": 1e3, "micrometer": 1e3,
    "micrometre": 1e3, "micrometers": 1e3, "micrometres": 1e3,
    "mm": 1e6, "millimeter": 1e6, "millimetre": 1e6,
    "cm": 1e7, "centimeter": 1e7, "centimetre": 1e7,
    "m": 1e9, "meter": 1e9, "metre": 1e9,
    "in": 25.4e6, "inch": 25.4e6, "inches": 25.4e6,
}
_UNCALIBRATED = {"", "pixel", "pixels", "px"}
# ImageJ's time units (``tunit``, after NFKC and lower-casing) in seconds
_SECONDS_PER_TIME_UNIT = {
    **dict.fromkeys(("sec", "s", "second", "seconds"), 1.0),
    **dict.fromkeys(("ms", "msec", "millisecond", "milliseconds"), 1e-3),
    **dict.fromkeys(("μs", "us", "usec", "microsecond", "microseconds"), 1e-6),
    **dict.fromkeys(("ns", "nsec", "nanosecond", "nanoseconds"), 1e-9),
    **dict.fromkeys(("min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
}
# The TIFF form, the other separators, each with fractions of a second (writers of fast
# series append them to the 20-byte tag) and without seconds (JEOL's SightX writes
# "2021/05/18 14:10" and "2015/07/30 7:17").
_TIFF_TIME_FORMATS = tuple(f"%Y{sep}%m{sep}%d %H:%M{seconds}"
                           for seconds in (":%S", ":%S.%f", "")
                           for sep in (":", "-", "/"))
# OME's UnitsTime symbols for DeltaTUnit, case-sensitive ("Ms" is megaseconds, "ms" not)
_SECONDS_PER_OME_TIME_UNIT = {
    "s": 1.0, "ds": 1e-1, "cs": 1e-2, "ms": 1e-3, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9,
    "ps": 1e-12, "fs": 1e-15, "das": 10.0, "hs": 100.0, "ks": 1e3, "min": 60.0, "h": 3600.0,
    "d": 86400.0,
}
#: FEI / Thermo Fisher metadata tag that holds ``[Scan] PixelWidth``, ``[User] Date`` and
#: ``[Image] ResolutionY`` (the rows above the data bar):
#: 34682 FEI_HELIOS (xT and later software of FEI and Thermo Fisher SEMs, DualBeams and
#: others). The older 34680 FEI_SFEG holds a magnification, no pixel size, and is not read.
FEI_TAG = 34682

Sizes = tuple[float | None, float | None, float | None]  # (z, y, x) nm


def unit_to_nm(unit: str) -> float | None:
    """Nanometres per ``unit`` (e.g. "micron" -> 1000.0); None for unknown or "pixel".

    Accepts ImageJ's escaped forms such as ``\\u00B5m``.
    """
    return _NM_PER_UNIT.get(_unit_key(unit))


def unit_text(unit: str) -> str:
    """``unit`` as ImageJ metadata writes it, with its escapes (``\\u00B5``) resolved: "µm"."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), unit)


def _unit_key(unit: str) -> str:
    """``unit`` with ImageJ's escapes resolved (:func:`unit_text`), NFKC-normalised, lower
    case."""
    return unicodedata.normalize("NFKC", unit_text(unit)).strip().lower()


def declared_sizes_nm(
    path: Path, tif: tifffile.TiffFile, page: tifffile.TiffPage | None = None
) -> tuple[str, Sizes]:
    """The metadata source ("ome", "imagej", "fei", "jeol", "tags"; "" for none) and the
    (z, y, x) pixel/voxel sizes in nm the file declares, None where it declares none.

    ``page``: whose resolution tags and FEI metadata to read (default the first page); OME
    sizes are those of the OME image that holds ``page``, ImageJ sizes the file's."""
    readers = (("ome", lambda p, t: _ome_sizes(p, t, page)), ("imagej", _imagej_sizes),
               ("fei", lambda p, t: _fei_sizes(t, page)),
               ("jeol", lambda p, t: _jeol_sizes(p, t, page)),
               ("tags", lambda p, t: _tag_sizes(p, t, page)))
    for source, reader in readers:
        sizes = reader(path, tif)
        if sizes is not None:
            checked = (plausible_pixel_size_nm(path, source, a, v)
                       for a, v in zip("zyx", sizes, strict=True))
            return source, tuple(checked)
    return "", (None, None, None)


def frame_pixel_size_nm(path: Path, sizes: Sizes, source: str = "") -> float | None:
    """Square pixel size of a frame from (z, y, x); raises when x and y differ.

    None when x or y is: a size the file does not declare (or that is ignored as
    implausible) is unknown, not the other's; with an ``io.pixel_size_ignored`` warning
    naming ``path``, the metadata ``source`` and the missing axis when the other is known."""
    _, y_nm, x_nm = sizes
    if x_nm is None or y_nm is None:
        if x_nm is not None or y_nm is not None:
            known, missing, value = ("x", "y", x_nm) if y_nm is None else ("y", "x", y_nm)
            _log.warning("io.pixel_size_ignored", path=str(path), source=source, axis=missing,
                         reason=f"{known} {value:.6g} nm without a {missing} size: the "
                                f"pixels' {missing} size is unknown, not assumed to be their "
                                f"{known} size, so the frame has no pixel size; declare "
                                "both (Fiji: Image > Properties)")
        return None
    if abs(x_nm - y_nm) > ANISOTROPY_TOLERANCE * max(x_nm, y_nm):
        ratio = y_nm / x_nm
        raise AnisotropicPixelsError(
            path,
            f"pixel size x {x_nm:.6g} nm differs from y {y_nm:.6g} nm (y/x {ratio:.4g}); "
            "measurements need square pixels (contact angles are measured in pixel space). "
            "Check the calibration the file declares (Fiji: Image > Properties shows both "
            "sizes; a y size set wrongly is corrected there and the file saved again) and the "
            "acquisition (a scan of different x and y steps, asymmetric binning, a frame "
            "stretched on export); pixels that really differ need resampling to square "
            f"pixels first (Fiji: Image > Scale with X scale 1 and Y scale {ratio:.4g} gives "
            f"{x_nm:.6g} nm both ways; for a label image set its Interpolation to None, "
            "which keeps the class values unblended)",
        )
    return x_nm


def check_declared_aspect(path: Path, tif: tifffile.TiffFile, page: tifffile.TiffPage) -> None:
    """Refuse a frame whose resolution tags declare pixels that are not square without a
    length unit (``ResolutionUnit`` NONE, an ImageJ ``unit=pixel``): its pixel size is
    unknown, its aspect is not, and contact angles are measured in pixel space, so it is
    refused as a calibrated frame of that aspect is (:func:`frame_pixel_size_nm`). For a
    page no metadata gave a size; tags of equal x and y (to ``ANISOTROPY_TOLERANCE``) or
    without both pass."""
    y_per_unit, x_per_unit = _resolution(page)
    if (y_per_unit is None or x_per_unit is None
            or abs(x_per_unit - y_per_unit) <= ANISOTROPY_TOLERANCE * max(x_per_unit,
                                                                          y_per_unit)):
        return
    ratio = float(x_per_unit / y_per_unit)  # pixel height over width
    meta = tif.imagej_metadata if tif.is_imagej else None
    if meta and "unit" in meta:
        unit = f"ImageJ unit {str(meta['unit'])!r}"
    else:
        code = page.tags.valueof(296, tifffile.RESUNIT.INCH)
        try:
            unit = f"ResolutionUnit {tifffile.RESUNIT(code).name}"
        except ValueError:
            unit = f"ResolutionUnit {code}"
    raise AnisotropicPixelsError(
        path,
        f"pixels declared {ratio:.4g} times as high as wide (XResolution {float(x_per_unit):.6g}, "
        f"YResolution {float(y_per_unit):.6g} pixels per unit, {unit}: no length unit, so no "
        "pixel size, but this aspect); measurements need square pixels (contact angles are "
        "measured in pixel space). If the pixels are square, the declared aspect is wrong: "
        "set pixel width and height equal (Fiji: Image > Properties) and save again; pixels "
        "that really differ need resampling to square pixels first (Fiji: Image > Scale "
        f"with X scale 1 and Y scale {ratio:.4g}; for a label image set its Interpolation "
        "to None, which keeps the class values unblended)",
    )


def mtime_time(path: Path, mtime: datetime) -> datetime:
    """``mtime``, the modification time of ``path``, taken as its acquisition time (the last
    source, ``acquired_at_source`` "mtime"). Nothing else tells the time, so it is kept
    whatever its year; one outside :data:`PLAUSIBLE_ACQUISITION_YEARS` (a PC whose clock was
    never set, 1970, or set decades ahead) gives an ``io.mtime_implausible`` warning naming
    the file and the year."""
    first, end = PLAUSIBLE_ACQUISITION_YEARS
    if mtime.year not in range(first, end):
        _log.warning("io.mtime_implausible", path=str(path), year=mtime.year,
                     reason=f"the file's modification time, taken as its acquisition time "
                            f"(no time in its metadata), is in {mtime.year}, outside "
                            f"{first}-{end - 1}: is the clock of the PC that wrote it set?")
    return mtime


def acquisition_times(
    path: Path, tif: tifffile.TiffFile, pages: list, n_frames: int, mtime: datetime
) -> tuple[list[datetime], str]:
    """One UTC time per frame and its source, "metadata" or "mtime".

    ``pages``: the pages read, in order (tifffile TiffPage, or TiffFrame/None for pages
    tifffile did not parse).
    """
    own = _nwwatch_times(path, tif)
    if own is not None:
        if len(own) == n_frames:
            return own, "metadata"
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"{len(own)} nwwatch times for {n_frames} frames")
    ome_start = _ome_acquisition_date(path, tif, pages[0])
    planes = _ome_plane_times(path, tif, ome_start, n_frames, pages[0]) if ome_start else None
    if planes is not None:
        return planes, "metadata"
    firsts = []
    for reader in (_fei_time, _jeol_time, _tag_time):
        first = reader(path, pages[0]) if isinstance(pages[0], tifffile.TiffPage) else None
        # The other pages are looked at only when the first has a time (no log line per
        # page).
        page_times = [first] + [
            reader(path, page) if first and isinstance(page, tifffile.TiffPage) else None
            for page in pages[1:]
        ]
        # Per-page times count only when they differ (some writers stamp every page with
        # the save time).
        if len(page_times) == n_frames > 1 and all(page_times) and len(set(page_times)) > 1:
            return page_times, "metadata"
        firsts.append(first)
    start = ome_start or next((first for first in firsts if first), None)
    per_time_point = _imagej_pages_per_time_point(tif)
    last = (n_frames - 1) // per_time_point
    if start is None:
        # ImageJ writes no DateTime tag: a Fiji series' frame interval is kept, the file's
        # mtime (its save, after the last frame) the time of its last time point
        end = mtime_time(path, mtime)
        step = _frame_step(path, end, _imagej_frame_interval_s(path, tif) if last else None,
                           last, back=True)
        return [end - (last - i // per_time_point) * step for i in range(n_frames)], "mtime"
    step = _frame_step(path, start, _imagej_frame_interval_s(path, tif), last)
    return [start + (i // per_time_point) * step for i in range(n_frames)], "metadata"


def _frame_step(path: Path, anchor: datetime, interval_s: float | None,
                last_time_point: int, *, back: bool = False) -> timedelta:
    """The ImageJ frame interval counted from ``anchor`` (the first time point's time, or with
    ``back`` the last's: the mtime), or none when it would put the other end of the series
    outside the plausible years (a damaged ``finterval``: the sum overflows, or is no
    acquisition's time): every frame then gets ``anchor``, with a warning. Counted back from
    an mtime outside them (a clock never set), the interval is kept: the mtime is anyway."""
    if not interval_s:
        return timedelta(0)
    first_year, end_year = PLAUSIBLE_ACQUISITION_YEARS
    try:
        step = timedelta(seconds=interval_s)
        if back:
            fits = ((anchor - last_time_point * step).year >= first_year
                    or not first_year <= anchor.year < end_year)
        else:
            fits = (anchor + last_time_point * step).year < end_year
        if fits:
            return step
    except OverflowError:
        pass
    where = (f"time point 0 before {first_year}, the last at the file's mtime: every frame "
             "gets the mtime" if back else f"time point {last_time_point} past {end_year}: "
             "every frame gets the first time")
    _log.warning("io.times_ignored", path=str(path),
                 reason=f"ImageJ finterval {interval_s:.6g} s puts {where}")
    return timedelta(0)


def plausible_pixel_size_nm(path: Path, source: str, axis: str, value: float | None
                            ) -> float | None:
    """``value`` (nm) when it can be a microscope's pixel size: finite, at least
    :data:`~nwwatch.io.limits.MIN_PLAUSIBLE_PIXEL_SIZE_NM` and at most
    :data:`~nwwatch.io.limits.MAX_PLAUSIBLE_PIXEL_SIZE_NM`; otherwise None, with an
    ``io.pixel_size_ignored`` warning naming ``path``, the metadata ``source`` and ``axis``.
    Every reader's calibration passes through it."""
    if value is None:
        return None
    if not (math.isfinite(value) and value > 0):
        _log.warning("io.pixel_size_ignored", path=str(path), source=source, axis=axis,
                     reason=f"not a positive size: {value}")
        return None
    if value > MAX_PLAUSIBLE_PIXEL_SIZE_NM:
        # 72/96/300 dpi defaults of desktop software, not a microscope calibration.
        _log.warning("io.pixel_size_ignored", path=str(path), source=source, axis=axis,
                     reason=f"{value:.6g} nm is above {MAX_PLAUSIBLE_PIXEL_SIZE_NM:g} nm")
        return None
    if value < MIN_PLAUSIBLE_PIXEL_SIZE_NM:
        _log.warning("io.pixel_size_ignored", path=str(path), source=source, axis=axis,
                     reason=f"{value:.6g} nm is below {MIN_PLAUSIBLE_PIXEL_SIZE_NM:g} nm "
                            "(metres, or a unit left out?)")
        return None
    return float(value)


def _ome_pixels(tif: tifffile.TiffFile, page: object = None
                ) -> tuple[ET.Element | None, ET.Element | None]:
    """The OME ``Image`` and its ``Pixels`` that hold ``page`` (a TiffPage or TiffFrame of
    ``tif``), by the IFDs their ``TiffData`` place in this file; the first image when
    ``page`` is None or no image names its IFD."""
    if not tif.is_ome or not tif.ome_metadata:
        return None, None
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None, None
    images = root.findall("{*}Image")
    if not images:
        return None, None
    ifd = getattr(page, "index", None)
    image = (next((i for i in images if _holds_ifd(i, ifd, root.get("UUID"), len(tif.pages))),
                  images[0])
             if isinstance(ifd, int) and len(images) > 1 else images[0])
    return image, image.find("{*}Pixels")


def _holds_ifd(image: ET.Element, ifd: int, own_uuid: str | None, n_ifds: int) -> bool:
    """Whether an OME ``Image``'s ``TiffData`` place IFD ``ifd`` of this file (UUID
    ``own_uuid``) among its planes: ``PlaneCount`` IFDs from ``IFD`` (OME's defaults: IFD 0;
    one IFD when ``IFD`` is given, else every IFD from it)."""
    pixels = image.find("{*}Pixels")
    for data in [] if pixels is None else pixels.findall("{*}TiffData"):
        uuid = data.find("{*}UUID")
        if uuid is not None and own_uuid and (uuid.text or "").strip() != own_uuid:
            continue  # planes of another file of a multi-file dataset
        try:
            first = int(data.get("IFD", 0))
            count = int(data.get("PlaneCount", 1 if "IFD" in data.attrib else n_ifds - first))
        except ValueError:
            continue
        if first <= ifd < first + count:
            return True
    return False


def _ome_sizes(path: Path, tif: tifffile.TiffFile, page: object = None) -> Sizes | None:
    _, pixels = _ome_pixels(tif, page)
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")  # OME default unit
        factor = unit_to_nm(unit)
        if value is not None and factor is None:
            _log.warning("io.pixel_size_ignored", path=str(path), source="ome", axis=axis,
                         reason=f"unknown unit {unit!r}")
        sizes.append(None if value is None or factor is None else nm_from(_float(value), factor))
    return None if sizes == [None, None, None] else tuple(sizes)


def _imagej_sizes(path: Path, tif: tifffile.TiffFile) -> Sizes | None:
    meta = tif.imagej_metadata if tif.is_imagej else None
    if not meta or "unit" not in meta:
        return None
    unit = str(meta["unit"])
    factor = unit_to_nm(unit)
    if factor is None:
        if unit.strip().lower() not in _UNCALIBRATED:
            _log.warning("io.pixel_size_ignored", path=str(path), source="imagej",
                         reason=f"unknown unit {unit!r}")
        return None
    # ImageJ writes yunit= / zunit= where an axis's unit is not unit='s (its Y resolution
    # and spacing are then in those units)
    y_factor = _axis_unit_nm(path, meta, "yunit", factor)
    z_factor = _axis_unit_nm(path, meta, "zunit", factor)
    y_per_unit, x_per_unit = _resolution(tif.pages.first)
    x_nm = None if x_per_unit is None else _per_unit_nm(factor, x_per_unit)
    # Without spacing= the depth is ImageJ's default, not declared: imagej_default_depth_nm.
    z_nm = (nm_from(_float(meta["spacing"]), z_factor)
            if z_factor is not None and "spacing" in meta else None)
    return (
        z_nm,
        None if y_per_unit is None or y_factor is None else _per_unit_nm(y_factor, y_per_unit),
        x_nm,
    )


def imagej_default_depth_nm(tif: tifffile.TiffFile) -> float | None:
    """The voxel depth Fiji shows for an ImageJ stack (``slices`` > 1) whose metadata gives a
    length unit and no ``spacing=``: 1 unit (``zunit``'s, else ``unit``'s), in nm; None for
    any other file. ImageJ writes no spacing line when the depth is 1 unit, so such a file
    does not tell a depth of 1 unit set on purpose from one never set (Fiji's default, also
    beside a pixel size of 0.32 nm): :func:`declared_sizes_nm` takes no z size from it."""
    meta = tif.imagej_metadata if tif.is_imagej else None
    if (not meta or "unit" not in meta or "spacing" in meta
            or not _float(meta.get("slices", 1)) > 1):
        return None
    return unit_to_nm(str(meta.get("zunit", meta["unit"])))


def _axis_unit_nm(path: Path, meta: dict, key: str, factor: float) -> float | None:
    """nm per unit of the ImageJ metadata's ``key`` (``yunit``, ``zunit``), ``factor`` (the
    ``unit``'s) when absent; None, with a warning, for a unit that is not a length."""
    if key not in meta:
        return factor
    unit = str(meta[key])
    axis_factor = unit_to_nm(unit)
    if axis_factor is None:
        _log.warning("io.pixel_size_ignored", path=str(path), source="imagej",
                     axis=key[0], reason=f"unknown {key} {unit!r}")
    return axis_factor


def _tag_sizes(
    path: Path, tif: tifffile.TiffFile, page: tifffile.TiffPage | None = None
) -> Sizes | None:
    page = tif.pages.first if page is None else page
    unit = page.tags.valueof(296, tifffile.RESUNIT.INCH)  # TIFF default when absent
    # millimetre and micrometre: not in the TIFF standard, but tifffile writes them
    factor = {tifffile.RESUNIT.INCH: 25.4e6, tifffile.RESUNIT.CENTIMETER: 1e7,
              tifffile.RESUNIT.MILLIMETER: 1e6, tifffile.RESUNIT.MICROMETER: 1e3}.get(unit)
    y_per_unit, x_per_unit = _resolution(page)
    if factor is None or (x_per_unit is None and y_per_unit is None):
        return None
    return (
        None,
        None if y_per_unit is None else _per_unit_nm(factor, y_per_unit),
        None if x_per_unit is None else _per_unit_nm(factor, x_per_unit),
    )


def _fei_metadata(page: tifffile.TiffPage) -> dict | None:
    """The FEI / Thermo Fisher metadata of ``page`` (tag :data:`FEI_TAG`), as tifffile parses
    its INI text: ``{section: {key: value}}``; None without it or when it is no such text."""
    value = page.tags.valueof(FEI_TAG)
    return value if isinstance(value, dict) and value else None


def _fei_sizes(tif: tifffile.TiffFile, page: tifffile.TiffPage | None = None
               ) -> Sizes | None:
    """(None, y, x) nm from ``[Scan] PixelHeight``/``PixelWidth``, which FEI's software
    writes in metres; None without them (a navigation camera's photograph has no [Scan])."""
    meta = _fei_metadata(tif.pages.first if page is None else page)
    scan = (meta or {}).get("Scan")
    if not isinstance(scan, dict):
        return None
    x_m, y_m = scan.get("PixelWidth"), scan.get("PixelHeight")
    if x_m is None and y_m is None:
        return None
    return (
        None,
        None if y_m is None else nm_from(_float(y_m), 1e9),
        None if x_m is None else nm_from(_float(x_m), 1e9),
    )


def fei_calibration_key(page: tifffile.TiffPage) -> tuple:
    """What of ``page``'s FEI metadata its pixel size depends on (for caching per page)."""
    scan = (_fei_metadata(page) or {}).get("Scan")
    if not isinstance(scan, dict):
        return (None, None)
    return (scan.get("PixelWidth"), scan.get("PixelHeight"))


def fei_image_size(page: tifffile.TiffPage) -> tuple[int | None, int | None]:
    """(rows, columns) of the scanned image in ``page``'s FEI metadata, ``[Image]``
    ``ResolutionY`` and ``ResolutionX``: the page without the data bar that xT draws below
    the image (``[PrivateFei] DatabarHeight`` rows). None for a value that is absent or not a
    positive whole number."""
    image = (_fei_metadata(page) or {}).get("Image")
    if not isinstance(image, dict):
        return (None, None)
    return (_positive_int(image.get("ResolutionY")), _positive_int(image.get("ResolutionX")))


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    number = _float(value)
    return int(number) if math.isfinite(number) and number >= 1 and number.is_integer() else None


def _resolution(page: tifffile.TiffPage) -> tuple[Fraction | None, Fraction | None]:
    """(y, x) pixels per resolution unit from the rational tags, exactly; None if absent,
    zero or negative."""
    values = []
    for code in (283, 282):  # YResolution, XResolution
        value = page.tags.valueof(code)
        try:
            numerator, denominator = value
            per_unit = Fraction(numerator) / Fraction(denominator)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            per_unit = None  # no pair of numbers; infinite or NaN ones
        values.append(per_unit if per_unit and per_unit > 0 else None)
    return values[0], values[1]


def _per_unit_nm(nm_per_unit: float, pixels_per_unit: Fraction) -> float:
    """The pixel size in nm of ``pixels_per_unit`` (a rational tag, exact) in a unit of
    ``nm_per_unit`` nm, rounded once: ImageJ's 5000/617 pixels a nm is 0.1234 nm, where
    the division of binary floats gives 0.12340000000000001."""
    return float(Decimal(repr(nm_per_unit)) * pixels_per_unit.denominator
                 / pixels_per_unit.numerator)


def nm_from(value: float, nm_per_unit: float) -> float:
    """``value`` in a unit of ``nm_per_unit`` nm, in nm: the product of the decimals the two
    stand for (their shortest forms), rounded once. 1.234 Å is 0.1234 nm, where the product
    of binary floats is 0.12340000000000001 (about a quarter of such products carry a
    tail). A value that is not finite is returned as the plain product."""
    if not math.isfinite(value):
        return value * nm_per_unit
    return float(Decimal(repr(float(value))) * Decimal(repr(float(nm_per_unit))))


#: Significant digits that tell any two float32 apart (numpy's ``finfo`` has no such field).
FLOAT32_DIGITS = 9


def short_decimal(value: Decimal) -> bool:
    """Whether ``value`` has at most :data:`FLOAT32_DIGITS` significant digits."""
    return value.is_finite() and len(value.normalize().as_tuple().digits) <= FLOAT32_DIGITS


def float32_value(value: float) -> float:
    """The decimal a float32 ``value`` holds: its binary value when that is a decimal of at
    most 9 significant digits (1/4096 = 0.000244140625), else the shortest decimal that
    reads back as the same float32. A calibration stored as float32 (DigitalMicrograph
    tags, MRC headers) set to 0.1234 is 0.1234, not the float32's binary value
    0.12340000271797180."""
    exact = Decimal(float(np.float32(value)))
    if short_decimal(exact) or not exact.is_finite():
        return float(exact)
    return float(np.format_float_scientific(np.float32(value), unique=True))


def _float(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


#: The zone that times written without one are read in; None: this machine's local time (the
#: TIFF/EXIF convention). A Dask replay's tasks set the driver's (:func:`read_zoneless_in`):
#: every worker then reads them as the machine that started the replay, whatever its own TZ.
_zoneless_zone: tzinfo | None = None


def read_zoneless_in(zone_key: str | None) -> None:
    """Read times without a zone in the IANA zone ``zone_key`` (e.g. ``Europe/Berlin``) from
    now on in this process; None: in this machine's local time. Raises
    ``zoneinfo.ZoneInfoNotFoundError`` for a zone this machine has no data for."""
    global _zoneless_zone
    if zone_key is None:
        _zoneless_zone = None
    else:
        from zoneinfo import ZoneInfo

        _zoneless_zone = ZoneInfo(zone_key)


def local_zone_key() -> str | None:
    """This machine's time zone as an IANA key (``TZ``, else where ``/etc/localtime`` points,
    else ``/etc/timezone``), or None when it has none that names a zone (a POSIX ``TZ`` rule
    such as ``CET-1CEST,M3.5.0,M10.5.0/3``, a copied ``/etc/localtime``)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    candidates = []
    tz = os.environ.get("TZ")
    if tz is not None:
        candidates.append(tz.removeprefix(":"))
    else:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1])
        try:
            candidates.append(Path("/etc/timezone").read_text().strip())
        except (OSError, UnicodeDecodeError):
            pass
    for key in candidates:
        if not key or key.startswith("/"):
            continue
        try:
            ZoneInfo(key)
        except (ValueError, OSError, ZoneInfoNotFoundError):  # a POSIX rule, no such zone
            continue
        return key
    return None


def zoneless_to_utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive time is read in the zone of :func:`read_zoneless_in` (by
    default this machine's local time, by its IANA zone where it names one: the rules a
    Dask worker given that zone applies, also in the hour skipped when clocks go forward,
    which the C library reads otherwise). A time of the hour repeated when clocks go back is
    read as its first occurrence (``fold`` 0)."""
    if when.tzinfo is None:
        zone = _zoneless_zone if _zoneless_zone is not None else _local_zone(
            os.environ.get("TZ"))
        if zone is not None:
            when = when.replace(tzinfo=zone)
    return when.astimezone(UTC)


@functools.lru_cache(maxsize=8)
def _local_zone(tz_variable: str | None) -> tzinfo | None:
    """The ZoneInfo of :func:`local_zone_key` (None where the local time names no zone),
    looked up once per value of ``TZ``."""
    from zoneinfo import ZoneInfo

    key = local_zone_key()
    return ZoneInfo(key) if key is not None else None


def _as_utc(when: datetime) -> datetime:
    """``when`` in UTC (:func:`zoneless_to_utc`).

    Raises ValueError for a year outside :data:`PLAUSIBLE_ACQUISITION_YEARS`: an unset clock
    or tag (.NET's 0001-01-01, 1970), as the other readers take it; year 1 or 9999 would
    also overflow the conversion."""
    first, end = PLAUSIBLE_ACQUISITION_YEARS
    if when.year not in range(first, end):
        raise ValueError(f"year {when.year} is outside {first}-{end - 1}")
    return zoneless_to_utc(when)


def _nwwatch_times(path: Path, tif: tifffile.TiffFile) -> list[datetime] | None:
    meta = tif.imagej_metadata if tif.is_imagej else None
    properties = (meta or {}).get("Properties") or {}
    text = properties.get(PROPERTY_KEY) if isinstance(properties, dict) else None
    if text is None:
        return None
    try:
        return [_as_utc(datetime.fromisoformat(t)) for t in json.loads(text)["acquired_at"]]
    except (ValueError, TypeError, KeyError) as exc:
        _log.warning("io.times_ignored", path=str(path), reason=f"bad nwwatch metadata: {exc}")
        return None


def _ome_acquisition_date(path: Path, tif: tifffile.TiffFile,
                          page: object = None) -> datetime | None:
    image, _ = _ome_pixels(tif, page)
    return _iso_time(path, None if image is None else image.find("{*}AcquisitionDate"),
                     "OME AcquisitionDate")


def _iso_time(path: Path, element: ET.Element | None, what: str) -> datetime | None:
    """The ISO 8601 time of an XML ``element`` (OME's AcquisitionDate, JEOL's TemReporter
    DateTime), in UTC; None when it is absent or empty, or, with an ``io.times_ignored``
    warning naming ``what``, when it is no ISO time."""
    if element is None or not (element.text or "").strip():
        return None
    try:
        return _as_utc(datetime.fromisoformat(element.text.strip()))
    except ValueError as exc:
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"bad {what} {element.text!r}: {exc}")
        return None


def _ome_plane_times(path: Path, tif: tifffile.TiffFile, start: datetime,
                     n_frames: int, page: object = None) -> list[datetime] | None:
    """``start`` (the OME ``AcquisitionDate``) plus each plane's ``DeltaT`` in its
    ``DeltaTUnit`` (OME's default: s), one per frame in page order, else plus its time
    point's multiple of the Pixels' ``TimeIncrement`` (:func:`_increment_times`); None when
    the header has neither, or, with an ``io.times_ignored`` warning, when they do not give
    one time for each of the ``n_frames`` pages read (planes missing or of another file of a
    multi-file dataset, an unknown unit, a time outside the plausible years). ``page``: the
    first page read, whose OME image's header is read (:func:`_ome_pixels`)."""
    _, pixels = _ome_pixels(tif, page)
    planes = [] if pixels is None else pixels.findall("{*}Plane")
    if any(plane.get("DeltaT") is not None for plane in planes):
        read, what = _plane_times, "Plane DeltaT"
    elif pixels is not None and pixels.get("TimeIncrement") is not None:
        read, what = _increment_times, "Pixels TimeIncrement"
    else:
        return None
    try:
        return read(pixels, planes, start, n_frames)
    except ValueError as exc:
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"OME {what} not read: {exc}; every frame gets the "
                            "AcquisitionDate")
        return None


def _page_axes(pixels: ET.Element) -> tuple[str, dict[str, int]]:
    """The OME series' stack axes after XY in its ``DimensionOrder`` (the first varies
    fastest, as tifffile orders an OME series' pages) and their sizes; ValueError for an
    order that is not one of Z, C and T."""
    order = pixels.get("DimensionOrder", "XYZCT")[2:]
    if sorted(order) != ["C", "T", "Z"]:
        raise ValueError(f"DimensionOrder {pixels.get('DimensionOrder')!r}")
    return order, {axis: int(_float(pixels.get(f"Size{axis}", 1))) for axis in "ZCT"}


def _offset(start: datetime, seconds: float, what: str) -> datetime:
    """``start`` plus ``seconds``; ValueError when that lies outside the plausible years."""
    try:
        when = start + timedelta(seconds=seconds)
    except OverflowError:
        when = None
    if when is None or when.year not in range(*PLAUSIBLE_ACQUISITION_YEARS):
        raise ValueError(f"{what} past the plausible years")
    return when


def _increment_times(pixels: ET.Element, planes: list[ET.Element], start: datetime,
                     n_frames: int) -> list[datetime]:
    """``start`` plus ``t * TimeIncrement`` (in its ``TimeIncrementUnit``, OME's default s)
    for the time point ``t`` of each page, when the header has no plane times; ValueError
    says why there are none (pages of another number than SizeZ x SizeC x SizeT, an unknown
    unit)."""
    order, sizes = _page_axes(pixels)
    if math.prod(sizes.values()) != n_frames:
        raise ValueError(f"SizeZ x SizeC x SizeT = {math.prod(sizes.values())} planes for "
                         f"{n_frames} pages")
    increment = _float(pixels.get("TimeIncrement"))
    unit = pixels.get("TimeIncrementUnit", "s")
    per_unit = _SECONDS_PER_OME_TIME_UNIT.get(unit.strip())
    if per_unit is None:
        raise ValueError(f"unknown TimeIncrementUnit {unit!r}")
    if not math.isfinite(increment):
        raise ValueError(f"TimeIncrement {pixels.get('TimeIncrement')!r}")
    stride = math.prod(sizes[axis] for axis in order[:order.index("T")])
    return [_offset(start, (index // stride % sizes["T"]) * increment * per_unit,
                    f"TimeIncrement {increment:g} {unit} puts page {index}")
            for index in range(n_frames)]


def _plane_times(pixels: ET.Element, planes: list[ET.Element], start: datetime,
                 n_frames: int) -> list[datetime]:
    """The times of :func:`_ome_plane_times`; ValueError says why there are none."""
    if len(planes) != n_frames:
        raise ValueError(f"{len(planes)} planes for {n_frames} pages")
    order, sizes = _page_axes(pixels)
    times: list[datetime | None] = [None] * n_frames
    for plane in planes:
        # the page of plane (z, c, t): the first axis of DimensionOrder after XY varies
        # fastest, as tifffile orders an OME series' pages
        index, stride = 0, 1
        for axis in order:
            index += int(_float(plane.get(f"The{axis}", 0))) * stride
            stride *= sizes[axis]
        delta, unit = _float(plane.get("DeltaT")), plane.get("DeltaTUnit", "s")
        per_unit = _SECONDS_PER_OME_TIME_UNIT.get(unit.strip())
        if per_unit is None:
            raise ValueError(f"unknown DeltaTUnit {unit!r}")
        if not math.isfinite(delta):
            raise ValueError(f"DeltaT {plane.get('DeltaT')!r} of plane {index}")
        if not 0 <= index < n_frames or times[index] is not None:
            raise ValueError(f"plane {plane.attrib} is not one of the {n_frames} pages")
        times[index] = _offset(start, delta * per_unit, f"DeltaT {delta:g} {unit} puts "
                                                        f"plane {index}")
    return times  # every index filled: as many planes as pages, none twice


def _fei_time(path: Path, page: tifffile.TiffPage) -> datetime | None:
    """The FEI ``[User] Date`` and ``Time`` of ``page`` (local time of the microscope PC),
    in UTC; the date is month first (``06/13/2016``), as FEI's software writes it, unless
    its first number is above 12; the time ``05:06:40 PM`` or 24-hour."""
    from nwwatch.io.dm import parse_dm_time  # dm imports this module

    user = (_fei_metadata(page) or {}).get("User")
    date, clock = (user.get(key) if isinstance(user, dict) else None
                   for key in ("Date", "Time"))
    if not (isinstance(date, str) and isinstance(clock, str) and date.strip()
            and clock.strip()):
        return None
    when = parse_dm_time(date, clock)
    try:
        if when is None:
            raise ValueError("not a date and time")
        return _as_utc(when)
    except ValueError as exc:
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"bad FEI [User] Date/Time {date!r} {clock!r}: {exc}")
        return None


def _jeol_report(page: tifffile.TiffPage) -> ET.Element | None:
    """The ``TemReporter`` XML that JEOL's SightX writes as the description of its TIFFs
    (``Make`` "JEOL Ltd."); None for another file. Raises ET.ParseError when it is no XML."""
    if page.tags.valueof(271) != "JEOL Ltd.":  # Make
        return None
    text = page.description
    end = text.rfind("</TemReporter>")
    if "<TemReporter" not in text or end < 0:
        return None
    # SightX pads the description with NUL and \x01 bytes after the XML
    return ET.fromstring(text[:end + len("</TemReporter>")].strip())


def _jeol_time(path: Path, page: tifffile.TiffPage) -> datetime | None:
    """The ``DateTime`` of JEOL SightX's ``TemReporter`` (:func:`_jeol_report`), in UTC:
    ISO 8601 with the acquisition PC's zone (``2019-11-27T16:11:26.6205405+09:00``), where
    the ``DateTime`` tag holds the same time to the minute without a zone."""
    try:
        report = _jeol_report(page)
    except ET.ParseError as exc:
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"JEOL TemReporter description is not XML: {exc}")
        return None
    if report is None:
        return None
    return _iso_time(path, report.find("DateTime"), "JEOL TemReporter DateTime")


def _jeol_sizes(path: Path, tif: tifffile.TiffFile,
                page: tifffile.TiffPage | None = None) -> Sizes | None:
    """(None, y, x) nm of a JEOL SightX TEM image: its resolution tags hold the camera's
    pixel, so divided by the magnification of the ``TemReporter`` (``ImageFormingSystem``
    ``SelectorValue`` in MAG mode), as RosettaSciIO reads them; (None, None, None) for its
    other images (a diffraction pattern's pixel is reciprocal, STEM's is not in the tags);
    None for any other file."""
    page = tif.pages.first if page is None else page
    try:
        report = _jeol_report(page)
    except ET.ParseError:  # said by the time's reader; the tags are the camera's
        return None, None, None
    if report is None:
        return None
    mode = report.findtext("Eos/EosMode", "")
    forming = report.findtext("ImageFormingSystem/ModeString", "")
    magnification = _float(report.findtext("ImageFormingSystem/SelectorValue", ""))
    sizes = _tag_sizes(path, tif, page)
    why = None
    if mode != "eosTEM" or forming != "MAG":
        why = (f"JEOL SightX image in {mode or '?'} {forming or '?'} mode: its resolution "
               "tags describe the camera, not the specimen")
    elif sizes is None:
        why = "JEOL SightX TEM image without resolution tags (the camera's pixel)"
    elif not magnification > 0:
        why = "JEOL SightX TEM image without its magnification (SelectorValue)"
    if why is not None:
        _log.info("io.pixel_size_ignored", path=str(path), source="jeol", reason=why)
        return None, None, None
    return tuple(None if v is None else v / magnification for v in sizes)


def _tag_time(path: Path, page: tifffile.TiffPage) -> datetime | None:
    text = page.tags.valueof(306)  # DateTime
    if not isinstance(text, str) or not text.strip(" :\x00"):
        return None
    text = text.strip().rstrip("\x00")
    try:
        return _as_utc(_parse_tag_time(text))
    except ValueError as exc:
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"bad DateTime tag {text!r}: {exc}")
        return None


def _parse_tag_time(text: str) -> datetime:
    for fmt in _TIFF_TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return datetime.fromisoformat(text)


def _imagej_pages_per_time_point(tif: tifffile.TiffFile) -> int:
    """Pages that share one time: the Z slices of a hyperstack with T frames (ImageJ stores
    T, then Z, then Y X). Without a T axis every page is a time point: a stack Fiji made of an
    image sequence has slices, not frames, and its finterval is still the frame time."""
    meta = tif.imagej_metadata if tif.is_imagej else None
    frames, slices = (_float((meta or {}).get(key, 1)) for key in ("frames", "slices"))
    if not (1 < frames < math.inf and 1 <= slices < math.inf):
        return 1
    return int(slices)


def _imagej_frame_interval_s(path: Path, tif: tifffile.TiffFile) -> float | None:
    """ImageJ's ``finterval`` in seconds: in its ``tunit`` (ImageJ writes that line for any
    unit but seconds: Fiji's "Frame interval: 40 ms"); else ``1/fps``."""
    meta = tif.imagej_metadata if tif.is_imagej else None
    if not meta:
        return None
    interval = _float(meta.get("finterval"))
    if math.isfinite(interval) and interval > 0:
        unit = str(meta.get("tunit", "sec"))
        per_unit = _SECONDS_PER_TIME_UNIT.get(_unit_key(unit))
        if per_unit is None:
            _log.warning("io.times_ignored", path=str(path),
                         reason=f"ImageJ finterval {interval:g} in unknown time unit {unit!r}")
            return None
        return interval * per_unit
    fps = _float(meta.get("fps"))
    return 1.0 / fps if math.isfinite(fps) and fps > 0 else None
