"""SerialEM's metadata file beside an MRC file (``NAME.mrc.mdoc``): per-section acquisition
time and pixel size.

The file is text in IMOD's autodoc format: ``key = value`` lines, global ones first, then
sections opened by ``[type = name]``. SerialEM writes the file's titles as ``[T = ...]``
sections and one ``[ZValue = N]`` section per image it saves to the MRC file (N = the section,
from 0); the mdoc it writes for a camera's frame stack holds one ``[FrameSet = 0]`` section,
the exposure whose frames the stack holds (and, for a tilt series within one exposure,
``[ZValue]`` sections of tilts, not of sections).

- ``DateTime``: ``dd-Mon-yy  HH:MM:SS`` (a four-digit year since SerialEM 4.1), English month
  names whatever the locale, whole seconds, the local time of the acquisition PC (MFC's
  ``CTime``) when the image arrived (after its exposure), no zone: read as local time of this
  machine, as every zone-less time nwwatch reads. ``TimeStamp`` (whole seconds since
  2020-01-01 00:00 local time) is not read.
- ``PixelSpacing``: Å per pixel of the image as saved (binning included); 1/Å for a
  diffraction pattern (a section with ``CameraLength``), which is no length and not read.
  The global one replicates the MRC header's, one size for the file; a section's is its
  image's, so sections saved after the magnification changed give another
  (:func:`pixel_sizes_beside_header`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from nwwatch.io.errors import InputError
from nwwatch.io.metadata import _as_utc, nm_from, plausible_pixel_size_nm
from nwwatch.io.regular import open_regular

_log = structlog.get_logger("nwwatch.io")

MDOC_SUFFIX = ".mdoc"
#: SerialEM writes about 1 kB a section; a larger file is no mdoc of an image stack
MAX_MDOC_BYTES = 64 * 2**20

_MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    start=1)}
_DATE_TIME = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4}|\d{2})\s+(\d{1,2}):(\d{2}):(\d{2})")


#: Relative difference of two pixel sizes beyond which they are not one size written twice
#: (an .mdoc's PixelSpacing is printed to a few digits, the header holds float32 cells);
#: a magnification step is several percent
SAME_PIXEL_SIZE_REL = 1.0e-3


@dataclass(frozen=True)
class MdocMetadata:
    """What an mdoc says of each section of its MRC file: the UTC acquisition time (None when
    not every section's can be read), the pixel size in nm (None where it gives none, or
    where it is implausible; every one None when not asked for) and each section's
    ``PixelSpacing`` in nm as written, unchecked (None: none, or a diffraction pattern's;
    NaN: no number), to compare with the header's."""

    times: list[datetime] | None
    pixel_sizes_nm: list[float | None]
    stated_sizes_nm: list[float | None]


def mdoc_path(path: Path) -> Path:
    """The name SerialEM gives the mdoc of the MRC file ``path``: its whole name + ".mdoc"."""
    return path.with_name(path.name + MDOC_SUFFIX)


def is_mdoc(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is named as SerialEM's metadata file (``.mdoc``, any case)."""
    # splitext, not Path(...).suffix: the service asks this of every file name at every rescan
    return os.path.splitext(os.fspath(path))[1].lower() == MDOC_SUFFIX


def mdoc_stack(path: str | os.PathLike[str]) -> Path:
    """The MRC file whose metadata the ``.mdoc`` ``path`` is: its name without ``.mdoc``."""
    path = Path(path)
    return path.with_name(path.name[: -len(MDOC_SUFFIX)])


def mdoc_reason(path: str | os.PathLike[str]) -> str:
    """Why the ``.mdoc`` ``path`` is no input, and what to give instead."""
    stack = mdoc_stack(path)
    where = "" if stack.is_file() else ", which is not beside it"
    return (f"SerialEM metadata (an .mdoc), read with its stack {stack.name}{where}, not an "
            f"image: give {stack.name} (its frames get this file's times and pixel size)")


def parse_mdoc_time(text: str) -> datetime:
    """SerialEM's ``DateTime`` (``05-Dec-26  14:22:31`` or ``05-Dec-2026  14:22:31``) as a naive
    datetime; ValueError when it is not one."""
    match = _DATE_TIME.fullmatch(text.strip())
    month = _MONTHS.get(match.group(2).lower()) if match else None
    if match is None or month is None:
        raise ValueError("not dd-Mon-yy HH:MM:SS")
    day, year, hour, minute, second = (int(match.group(i)) for i in (1, 3, 4, 5, 6))
    if len(match.group(3)) == 2:  # SerialEM before 4.1: year % 100
        year += 2000 if year < 69 else 1900
    return datetime(year, month, day, hour, minute, second)


def read_mdoc(path: Path, n_sections: int, pixel_sizes: bool = True) -> MdocMetadata | None:
    """The metadata of the mdoc beside the MRC file ``path`` of ``n_sections`` sections; None
    when there is none. ``pixel_sizes`` False: none read (every one None, none warned about),
    for a file whose header has them; the sections' sizes as written are still given, for
    :func:`pixel_sizes_beside_header`.

    An mdoc that cannot be read or does not describe the file (another number of sections,
    several frame stacks) gives None, and a time that cannot be read (a missing or malformed
    ``DateTime``, a year outside the plausible years) gives no times, each with an
    ``io.times_ignored`` warning naming both files; a pixel size outside the plausible range
    is None with an ``io.pixel_size_ignored`` warning. Never raises for the mdoc's content:
    the MRC file is read all the same.
    """
    mdoc = mdoc_path(path)
    try:
        sections = _sections(mdoc, n_sections)
    except FileNotFoundError:
        return None
    except (InputError, OSError, ValueError) as exc:
        why = exc.reason if isinstance(exc, InputError) else (
            exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc))
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"{mdoc}: {why}; its times and pixel size are not read")
        return None
    glob, per_section = sections
    try:
        times = [_section_time(i, keys) for i, keys in enumerate(per_section)]
    except ValueError as exc:
        _log.warning("io.times_ignored", path=str(path),
                     reason=f"{mdoc}: {exc}; every frame gets the file's mtime")
        times = None
    # the global PixelSpacing is the first image's: a diffraction pattern's when any is one
    diffraction = any("CameraLength" in keys for keys in per_section)
    stated = [_spacing_nm(keys, None if diffraction else glob) for keys in per_section]
    raw = stated if pixel_sizes else [None] * len(stated)
    # each distinct value checked once: one warning a file, not one a section
    checked = {value: plausible_pixel_size_nm(path, "mdoc", "xy", value)
               for value in set(raw) if value is not None}
    return MdocMetadata(times=times,
                        pixel_sizes_nm=[None if v is None else checked[v] for v in raw],
                        stated_sizes_nm=stated)


def pixel_sizes_beside_header(path: Path, header_nm: float,
                              mdoc: MdocMetadata) -> list[float | None]:
    """Each section's pixel size (nm) of the MRC file ``path``, whose header gives
    ``header_nm``, beside its mdoc ``mdoc``.

    The header holds one size for the file (the mdoc's global ``PixelSpacing`` replicates
    it); each ``[ZValue]`` section's ``PixelSpacing`` is its own image's. Where they agree
    (to :data:`SAME_PIXEL_SIZE_REL`), the header's. Where some sections differ and others
    agree with the header, the magnification changed within the file, which one header
    size cannot say: each section gets its own mdoc size (checked as every calibration is).
    Where no section agrees with the header (a header recalibrated after saving, a binned
    copy, an mdoc not of this file), the header's is every section's: the file's own
    calibration comes first. Both cases are said in an ``io.pixel_size_ignored`` warning
    naming the file, the mdoc, the sections and both sizes."""
    stated = mdoc.stated_sizes_nm
    known = [(i, v) for i, v in enumerate(stated) if v is not None and math.isfinite(v)]
    differ = [(i, v) for i, v in known
              if abs(v - header_nm) > SAME_PIXEL_SIZE_REL * max(v, header_nm)]
    if not differ:
        return [header_nm] * len(stated)
    where = mdoc_path(path)
    sections = _section_list([i for i, _ in differ])
    sizes = ", ".join(f"{v:.6g}" for v in sorted({v for _, v in differ}))
    if len(differ) < len(known):  # the header is some sections' size: the same calibration
        _log.warning("io.pixel_size_ignored", path=str(path), source="mrc", axis="xy",
                     sections=sections, header_pixel_size_nm=header_nm,
                     reason=f"{where} gives sections {sections} a PixelSpacing of {sizes} nm, "
                            f"the header {header_nm:.6g} nm (the magnification changed "
                            f"within the file; the header holds one size): those sections "
                            f"get their .mdoc size, the others the header's")
        own = {i for i, _ in differ}
        checked = {v: plausible_pixel_size_nm(path, "mdoc", "xy", v)
                   for v in {v for _, v in differ}}
        return [checked[v] if i in own else header_nm for i, v in enumerate(stated)]
    _log.warning("io.pixel_size_ignored", path=str(path), source="mdoc", axis="xy",
                 sections=sections, header_pixel_size_nm=header_nm,
                 reason=f"{where} gives sections {sections} a PixelSpacing of {sizes} nm, the "
                        f"header {header_nm:.6g} nm for every section (the header "
                        f"recalibrated after saving, a binned copy, or not this file's "
                        f".mdoc?): the header's size is used; if the .mdoc's is right, set "
                        f"it in the header (IMOD: alterheader -PixelSize)")
    return [header_nm] * len(stated)


def _section_list(indices: list[int]) -> str:
    """Sorted section numbers as runs: "3-5, 8"."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


_Keys = dict[str, str]


def _sections(mdoc: Path, n_sections: int) -> tuple[_Keys, list[_Keys]]:
    """(global keys, the keys of each of the ``n_sections`` sections) of ``mdoc``; ValueError
    says why it does not describe such a file."""
    with open_regular(mdoc) as handle:  # a FIFO or folder under the name is not waited on
        data = handle.read(MAX_MDOC_BYTES + 1)
    if len(data) > MAX_MDOC_BYTES:
        raise ValueError(f"larger than {MAX_MDOC_BYTES} bytes: no mdoc of an image stack")
    glob: _Keys = {}
    found: list[tuple[str, str, _Keys]] = []
    current = glob
    # SerialEM writes ASCII in the PC's code page; only keys and numbers are read
    for raw in data.decode("latin-1").splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            kind, _, name = line[1:-1].partition("=")
            current = {}
            found.append((kind.strip(), name.strip(), current))
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    frame_sets = [keys for kind, _, keys in found if kind == "FrameSet"]
    if len(frame_sets) == 1:
        # a frame stack's mdoc; its [ZValue] sections, if any, are tilts within the frames
        count = frame_sets[0].get("NumSubFrames")
        if count is not None and count != str(n_sections):
            raise ValueError(f"its frame set has NumSubFrames = {count}, the file holds "
                             f"{n_sections} sections")
        return glob, [frame_sets[0]] * n_sections
    if frame_sets:
        raise ValueError(f"it describes {len(frame_sets)} frame stacks ([FrameSet] sections)")
    zvalues = [(name, keys) for kind, name, keys in found if kind == "ZValue"]
    if zvalues:
        try:
            by_z = {int(name): keys for name, keys in zvalues}
        except ValueError:
            raise ValueError("a [ZValue] section whose name is no section number") from None
        if len(zvalues) != n_sections or sorted(by_z) != list(range(n_sections)):
            raise ValueError(f"it describes {len(zvalues)} sections, the file holds "
                             f"{n_sections}: not this file's mdoc, or still being written")
        return glob, [by_z[z] for z in range(n_sections)]
    raise ValueError("no [ZValue] or [FrameSet] section: no SerialEM mdoc")


def _section_time(index: int, keys: _Keys) -> datetime:
    text = keys.get("DateTime")
    if text is None:
        raise ValueError(f"section {index} has no DateTime")
    try:
        return _as_utc(parse_mdoc_time(text))
    except ValueError as exc:
        raise ValueError(f"section {index}: DateTime {text!r} not read ({exc})") from None


def _spacing_nm(keys: _Keys, glob: _Keys | None) -> float | None:
    """The section's ``PixelSpacing`` (else the global one, when ``glob`` is given) in nm,
    unchecked; None for a diffraction pattern's (1/Å) or none."""
    if "CameraLength" in keys:
        return None
    text = keys.get("PixelSpacing")
    if text is None and glob is not None:
        text = glob.get("PixelSpacing")
    if text is None:
        return None
    try:
        return nm_from(float(text), 0.1)
    except ValueError:
        return float("nan")  # warned about as no size
