"""DigitalMicrograph files (nwwatch.io.dm), written by this module's own small writer of the
tag format as DigitalMicrograph lays them out (a thumbnail first in ImageList, then the
image), read through the same readers as TIFF: pixel types, calibration, stacks, acquisition
times, incomplete and bad files, and an in-situ replay of a .dm4 frame giving the row of its
TIFF twin.

The writer follows the format description (ImageJ's DM3 format page, Boothroyd's DM4
notes): header fields, lengths and type fields big-endian (4 bytes in DM3, 8 in DM4), values
in the byte order the header declares; a DM4 tag carries its length after its label."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from damage import assert_damage_reads_or_raises_input_errors
from servicekit import model, paint_insitu

from nwwatch.io import (
    AnisotropicPixelsError,
    EmptyFileError,
    TruncatedTiffError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
    inspect_tiff,
    read_frames,
    read_volume,
)
from nwwatch.io.dm import parse_dm_time

# --- a writer of the tag format -------------------------------------------------------------

_CODES = {"i2": 2, "i4": 3, "u2": 4, "u4": 5, "f4": 6, "f8": 7, "b1": 8, "i1": 9, "u1": 10,
          "i8": 11, "u8": 12}


class G(list):
    """A tag group: (label, value) pairs; a value is a G, a scalar (S), a text (T), an array
    (A) or a struct (St)."""


@dataclass
class S:
    kind: str  # numpy type code of _CODES
    value: object


@dataclass
class T:
    text: str  # written as DigitalMicrograph writes text: an array of ushort (UTF-16)


@dataclass
class A:
    values: np.ndarray


@dataclass
class St:
    fields: list[tuple[str, object]]  # (numpy type code, value)


class Writer:
    def __init__(self, version: int, little: bool = True) -> None:
        self.version, self.little = version, little
        self.order = "<" if little else ">"

    def n(self, value: int) -> bytes:  # a length or type field
        return value.to_bytes(4 if self.version == 3 else 8, "big")

    def value(self, kind: str, value) -> bytes:
        return np.array([value], dtype=self.order + kind).tobytes()

    def data(self, item) -> bytes:
        if isinstance(item, S):
            types, payload = [_CODES[item.kind]], self.value(item.kind, item.value)
        elif isinstance(item, T):
            units = np.frombuffer(item.text.encode("utf-16-le"), "<u2")
            types, payload = [20, 4, len(units)], units.astype(self.order + "u2").tobytes()
        elif isinstance(item, A):
            kind = item.values.dtype.str[1:]
            types = [20, _CODES[kind], item.values.size]
            payload = item.values.astype(self.order + kind).tobytes()
        elif isinstance(item, St):
            types = [15, 0, len(item.fields)]
            for kind, _ in item.fields:
                types += [0, _CODES[kind]]
            payload = b"".join(self.value(k, v) for k, v in item.fields)
        else:
            raise TypeError(item)
        return b"%%%%" + self.n(len(types)) + b"".join(map(self.n, types)) + payload

    def group(self, group: G) -> bytes:
        out = bytes([1, 0]) + self.n(len(group))
        for label, value in group:
            body = self.group(value) if isinstance(value, G) else self.data(value)
            name = label.encode("latin-1")
            out += bytes([20 if isinstance(value, G) else 21]) + struct.pack(">H", len(name))
            out += name + (self.n(len(body)) if self.version == 4 else b"") + body
        return out

    def file(self, root: G) -> bytes:
        tree = self.group(root)
        return (struct.pack(">I", self.version) + self.n(len(tree))
                + struct.pack(">I", 1 if self.little else 0) + tree + bytes(8))


def image_group(data: np.ndarray, datatype: int, calibration=None, tags: G | None = None
                ) -> G:
    """An ImageList entry: ``data`` (frames, y, x) or (y, x), stored x fastest."""
    dims = list(reversed(data.shape))  # x first
    cal = calibration or [(1.0, "")] * len(dims)
    return G([
        ("ImageData", G([
            ("Calibrations", G([
                ("Brightness", G([("Origin", S("f4", 0.0)), ("Scale", S("f4", 1.0)),
                                  ("Units", T(""))])),
                ("Dimension", G([("", G([("Origin", S("f4", 0.0)), ("Scale", S("f4", scale)),
                                         ("Units", T(units))])) for scale, units in cal])),
                ("DisplayCalibratedUnits", S("b1", 1)),
            ])),
            ("Data", A(np.ascontiguousarray(data).ravel())),
            ("DataType", S("i4", datatype)),
            ("Dimensions", G([("", S("u4", d)) for d in dims])),
            ("PixelDepth", S("u4", data.dtype.itemsize)),
        ])),
        ("ImageTags", tags if tags is not None else G()),
        ("Name", T("frame")),
    ])


def thumbnail() -> G:
    # DigitalMicrograph's thumbnail: a small RGBA image, DataType 23, stored as 4-byte words
    return image_group(np.full((8, 8), -1, np.int32), 23)


def dm_file(path: Path, data: np.ndarray, datatype: int, *, version: int | None = None,
            little: bool = True, calibration=None, tags: G | None = None,
            extra: list[G] | None = None, thumbnails_group: bool = True) -> Path:
    version = version or (3 if path.suffix.lower() == ".dm3" else 4)
    images = [thumbnail(), image_group(data, datatype, calibration, tags)] + (extra or [])
    root = G([("ApplicationBounds", St([("i4", 0), ("i4", 0), ("i4", 768), ("i4", 1024)])),
              ("ImageList", G([("", image) for image in images])),
              ("InImageMode", S("b1", 1))])
    if thumbnails_group:
        root.append(("Thumbnails", G([("", G([("ImageIndex", S("u4", 0))]))])))
    path.write_bytes(Writer(version, little).file(root))
    return path


def nm_calibration(nm: float, units: str = "nm", n: int = 2):
    return [(nm, units)] * n


def filetime(when: datetime) -> float:
    return (when - datetime(1601, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1) * 10


def databar(os_time: float | None = None, date: str | None = None, time: str | None = None
            ) -> G:
    bar = G()
    if date is not None:
        bar.append(("Acquisition Date", T(date)))
    if time is not None:
        bar.append(("Acquisition Time", T(time)))
    if os_time is not None:
        bar.append(("Acquisition Time (OS)", S("f8", os_time)))
    return G([("DataBar", bar)])


# --- tests ----------------------------------------------------------------------------------

RNG = np.random.default_rng(7)
TYPES = [  # (DataType, stored numpy type, returned dtype)
    (1, np.int16, np.int16), (2, np.float32, np.float32), (6, np.uint8, np.uint8),
    (7, np.int32, np.float32), (9, np.int8, np.int16), (10, np.uint16, np.uint16),
    (11, np.uint32, np.float32), (12, np.float64, np.float32),
]


@pytest.mark.parametrize("suffix", [".dm3", ".dm4"])
@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("datatype, stored, returned", TYPES)
def test_every_grey_pixel_type_reads_back_its_values(tmp_path, suffix, little, datatype,
                                                    stored, returned):
    info = np.iinfo(stored) if np.dtype(stored).kind in "iu" else None
    low, high = (info.min, info.max) if info and info.bits <= 16 else (-70000, 2**24)
    if np.dtype(stored).kind == "u":
        low = 0
    data = RNG.integers(low, high, (5, 7), endpoint=True).astype(stored)
    path = dm_file(tmp_path / f"f{suffix}", data, datatype, little=little)
    info_ = inspect_tiff(path)
    assert (info_.layout, info_.shape, info_.axes, info_.dtype) == ("dm", (5, 7), "YX",
                                                                    np.dtype(returned))
    (frame,) = read_frames(path)
    assert frame.image.dtype == returned and frame.image.dtype.isnative
    np.testing.assert_array_equal(frame.image, data.astype(returned))
    assert frame.index == 0 and frame.source == path


@pytest.mark.parametrize("datatype, what", [
    (3, "complex"), (13, "complex"), (5, "packed complex"), (27, "packed complex"),
    (23, "RGBA"), (8, "RGB"), (14, "binary"), (39, "int64"), (99, "unknown")])
def test_complex_rgb_and_binary_images_are_refused_naming_the_file_and_type(tmp_path,
                                                                            datatype, what):
    path = dm_file(tmp_path / "fft.dm4", np.zeros((4, 4), np.int32), datatype)
    with pytest.raises(UnsupportedDtypeError, match=rf"fft.dm4: .*DataType {datatype} "
                                                    rf"\({what}"):
        read_frames(path)
    with pytest.raises(UnsupportedDtypeError):
        inspect_tiff(path)


@pytest.mark.parametrize("units, scale, nm", [
    ("nm", 0.25, 0.25), ("µm", 0.002, 2.0), ("um", 0.002, 2.0), ("Å", 2.5, 0.25),
    ("pm", 250.0, 0.25), ("1/nm", 0.05, None), ("", 1.0, None)])
def test_the_pixel_size_is_the_x_and_y_scale_in_nm_and_none_for_other_units(tmp_path, units,
                                                                          scale, nm):
    path = dm_file(tmp_path / "cal.dm3", np.ones((4, 6), np.float32), 2,
                   calibration=nm_calibration(scale, units))
    (frame,) = read_frames(path)
    assert frame.pixel_size_nm == (None if nm is None else pytest.approx(nm, rel=1e-6))


@pytest.mark.parametrize("units, scale, nm", [
    ("nm", 0.1234, 0.1234), ("Å", 1.234, 0.1234), ("µm", 0.0001234, 0.1234),
    ("nm", 0.37, 0.37), ("µm", 1 / 4096, 1000 / 4096)])
def test_a_float32_scale_is_the_decimal_it_holds(tmp_path, units, scale, nm):
    """Scale is float32: 0.1234 nm came out as 0.12340000271797180 in every row, and a
    unit's conversion added a tail of its own (1.234 Å: 0.12339999675750733)."""
    path = dm_file(tmp_path / "cal.dm4", np.ones((4, 6), np.float32), 2,
                   calibration=nm_calibration(scale, units))
    (frame,) = read_frames(path)
    assert frame.pixel_size_nm == nm  # exactly: the decimal, not within a tolerance


def test_an_implausible_pixel_size_is_ignored_with_a_warning_as_for_tiff(tmp_path):
    """A 50 µm pixel is no microscope's calibration (a desktop program's default): TIFF and
    EMD ignored it with io.pixel_size_ignored, DigitalMicrograph and MRC took it."""
    from structlog.testing import capture_logs

    path = dm_file(tmp_path / "big.dm4", np.ones((4, 6), np.float32), 2,
                   calibration=nm_calibration(50.0, "µm"))
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert frame.pixel_size_nm is None
    assert [e["axis"] for e in logs if e["event"] == "io.pixel_size_ignored"] == ["y", "x"]


def test_a_calibration_of_x_alone_is_none_with_a_warning(tmp_path):
    from structlog.testing import capture_logs

    path = dm_file(tmp_path / "x_only.dm4", np.ones((4, 6), np.float32), 2,
                   calibration=[(0.25, "nm"), (1.0, "")])  # y uncalibrated
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert frame.pixel_size_nm is None
    assert [(e["event"], e["source"], e["axis"]) for e in logs] == [
        ("io.pixel_size_ignored", "dm", "y")]


def test_different_x_and_y_pixel_sizes_are_refused(tmp_path):
    path = dm_file(tmp_path / "aniso.dm4", np.ones((4, 6), np.float32), 2,
                   calibration=[(0.5, "nm"), (0.7, "nm")])
    with pytest.raises(AnisotropicPixelsError, match="aniso.dm4"):
        read_frames(path)


@pytest.mark.parametrize("suffix", [".dm3", ".dm4"])
def test_a_3d_image_is_a_stack_of_frames_with_one_calibration(tmp_path, suffix):
    data = RNG.integers(0, 4000, (3, 5, 6)).astype(np.uint16)
    path = dm_file(tmp_path / f"stack{suffix}", data, 10,
                   calibration=nm_calibration(0.4, n=2) + [(0.1, "s")])
    info = inspect_tiff(path)
    assert (info.n_pages, info.shape, info.axes) == (3, (3, 5, 6), "IYX")
    frames = read_frames(path)
    assert [f.index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), data)
    assert all(f.pixel_size_nm == pytest.approx(0.4) for f in frames)
    with pytest.raises(UnsupportedLayoutError, match=rf"stack{suffix}: .*in-situ frames.*"
                                                     "series in time"):
        read_volume(path)


@pytest.mark.parametrize("suffix, little", [(".dm3", True), (".dm4", True), (".dm4", False)])
@pytest.mark.parametrize("datatype, stored, returned", [TYPES[5], TYPES[6], TYPES[7]])
@pytest.mark.parametrize("metadata", ["os_time", "none", "implausible"])
def test_chunks_and_one_frame_are_the_frames_read_whole(tmp_path, suffix, little, datatype,
                                                        stored, returned, metadata):
    # the service and replay read a long 3-D image a chunk of planes at a time, the
    # labelling page one plane: the same images (byte order and pixel type converted as a
    # whole read converts them), indices, pixel size and time, warnings once a file
    from chunkkit import assert_chunks_are_the_whole_read

    n = 7
    data = RNG.integers(0, 4000, (n, 17, 12)).astype(stored)
    when = datetime(2024, 3, 5, 14, 7, 9, tzinfo=UTC)
    if metadata == "os_time":
        calibration, tags = nm_calibration(0.4, n=2), databar(filetime(when))
    elif metadata == "none":
        calibration, tags = None, None
    else:  # a desktop default calibration and an unreadable date: warnings, mtime
        calibration, tags = nm_calibration(353000.0, n=2), databar(None, "13.13.2024", "9:00")
    path = dm_file(tmp_path / f"stack{suffix}", data, datatype, little=little,
                   calibration=(calibration or [(1.0, "")] * 2) + [(0.1, "s")], tags=tags)
    whole = assert_chunks_are_the_whole_read(path, [1, 2, 3, 5, 7, 8], [0, 3, n - 1])
    assert whole[0].image.dtype == returned
    np.testing.assert_array_equal(np.stack([f.image for f in whole]), data.astype(returned))
    assert {f.acquired_at_source for f in whole} == {
        "metadata" if metadata == "os_time" else "mtime"}


def test_a_chunk_reads_only_its_own_planes(tmp_path):
    # the file cut inside plane 5 after the first chunk was read (rewritten by another
    # program meanwhile): that chunk came before any later plane was read, and the chunk
    # holding plane 5 is bad input naming the file
    from nwwatch.io import read_frame_chunks

    data = RNG.integers(0, 4000, (7, 8, 8)).astype(np.uint16)
    path = dm_file(tmp_path / "s.dm4", data, 10)
    raw = path.read_bytes()
    plane_5 = raw.index(data[5].tobytes())
    chunks = read_frame_chunks(path, 3)
    first = next(chunks)
    assert [f.index for f in first] == [0, 1, 2]
    with open(path, "r+b") as handle:
        handle.truncate(plane_5 + 10)
    with pytest.raises(TruncatedTiffError, match="s.dm4: DigitalMicrograph data cut short"):
        next(chunks)
    np.testing.assert_array_equal(np.stack([f.image for f in first]), data[:3])


def test_a_stack_over_the_whole_read_limit_is_read_by_chunks_and_refused_whole(
        tmp_path, monkeypatch):
    from chunkkit import assert_read_by_chunks_past_the_whole_read_limit

    data = RNG.integers(0, 4000, (6, 16, 16)).astype(np.uint16)
    assert_read_by_chunks_past_the_whole_read_limit(dm_file(tmp_path / "long.dm4", data, 10),
                                                    data, monkeypatch)


def test_the_thumbnail_is_skipped_and_the_largest_image_read(tmp_path):
    data = np.arange(20, dtype=np.int16).reshape(4, 5)
    small = image_group(np.zeros((2, 2), np.int16), 1)
    for groups in (True, False):  # named by the Thumbnails group, or first in ImageList
        path = dm_file(tmp_path / f"t{groups}.dm4", data, 1, extra=[small],
                       thumbnails_group=groups)
        (frame,) = read_frames(path)
        np.testing.assert_array_equal(frame.image, data)
    # an image alone in its list is the image
    only = tmp_path / "only.dm3"
    root = G([("ImageList", G([("", image_group(data, 1))]))])
    only.write_bytes(Writer(3).file(root))
    np.testing.assert_array_equal(read_frames(only)[0].image, data)
    # a list of nothing but the thumbnail holds no image
    thumb = tmp_path / "thumb.dm4"
    thumb.write_bytes(Writer(4).file(G([("ImageList", G([("", thumbnail())])),
                                        ("Thumbnails", G([("", G([("ImageIndex",
                                                                     S("u4", 0))]))]))])))
    with pytest.raises(UnsupportedLayoutError, match="thumb.dm4: no image"):
        read_frames(thumb)


@pytest.mark.parametrize("index", [A(np.array([0], np.uint32)), T("0"), S("f4", 0.0)])
def test_a_thumbnail_index_of_another_type_names_no_entry(tmp_path, index):
    # a corrupt ImageIndex (an array reads as a list) raised TypeError (unhashable) out of
    # the structural check; a text one named no entry, and the larger thumbnail was read
    data = np.arange(16, dtype=np.float32).reshape(4, 4)
    root = G([("ImageList", G([("", thumbnail()), ("", image_group(data, 2))])),
              ("Thumbnails", G([("", G([("ImageIndex", index)]))]))])
    path = tmp_path / "index.dm4"
    path.write_bytes(Writer(4).file(root))
    assert inspect_tiff(path).shape == (4, 4)
    np.testing.assert_array_equal(read_frames(path)[0].image, data)


def test_the_acquisition_time_is_the_os_time_else_the_databar_text_else_the_mtime(tmp_path):
    when = datetime(2024, 3, 5, 14, 7, 9, 250000, tzinfo=UTC)
    data = np.ones((3, 3), np.float32)
    os_time = dm_file(tmp_path / "os.dm4", data, 2,
                      tags=databar(filetime(when), "3/5/2024", "3:07:09 PM"))
    (frame,) = read_frames(os_time)
    assert frame.acquired_at_source == "metadata"
    assert abs(frame.acquired_at - when) < timedelta(microseconds=5)
    # text only: local time of this machine
    text = dm_file(tmp_path / "text.dm3", data, 2, tags=databar(None, "27.08.2016", "20:54:33"))
    (frame,) = read_frames(text)
    assert frame.acquired_at == datetime(2016, 8, 27, 20, 54, 33).astimezone(UTC)
    assert frame.acquired_at_source == "metadata"
    # an unreadable text, an implausible OS time, or none: the mtime
    for name, tags in (("bad.dm4", databar(None, "yesterday", "noon")),
                       ("zero.dm4", databar(0.0)), ("none.dm4", None)):
        (frame,) = read_frames(dm_file(tmp_path / name, data, 2, tags=tags))
        assert frame.acquired_at_source == "mtime", name
    # every frame of a stack gets the one time
    stack = dm_file(tmp_path / "stack.dm4", np.ones((2, 3, 3), np.float32), 2,
                    tags=databar(filetime(when)))
    assert {f.acquired_at for f in read_frames(stack)} == {frame.acquired_at
                                                          for frame in read_frames(os_time)}


def stack_builder_tags(at_creation: G) -> G:
    """The ImageTags of a stack made by Gatan's Stack Builder script (as in RosettaSciIO's
    test_stackbuilder_imagestack.dm3): no DataBar of its own; the live image's tags when the
    stack was created under source, Tags at creation; each plane's time of day."""
    return G([
        ("GMS Version", G([("Saved", T("2.31.734.0"))])),
        ("plane info", G([("", G([("added @ tick", S("u4", 951112745 + 2137 * i)),
                                  ("added @ time", T(f"5:00:{27 + 2 * i} PM"))]))
                          for i in range(2)])),
        ("source", G([("created @ time", T("5:00:19 PM")),
                      ("script", G([("name", T("Automatic Stack Builder"))])),
                      ("source name", T("HAADF")),
                      ("Tags at creation", at_creation)])),
    ])


def test_a_stack_builder_stack_is_timed_by_the_databar_of_its_source(tmp_path, local_tz):
    when = datetime(2015, 5, 17, 15, 0, 16, 464548, tzinfo=UTC)
    frames = np.ones((2, 3, 3), np.float32)
    path = dm_file(tmp_path / "stack.dm3", frames, 2, tags=stack_builder_tags(
        databar(filetime(when), "5/17/2015", "5:00:16 PM")))
    got = read_frames(path)
    assert {f.acquired_at_source for f in got} == {"metadata"}
    assert all(abs(f.acquired_at - when) < timedelta(microseconds=5) for f in got)
    # the text alone: local time of this machine (Berlin, UTC+2 in May)
    text = dm_file(tmp_path / "text.dm4", frames, 2, tags=stack_builder_tags(
        databar(None, "5/17/2015", "5:00:16 PM")))
    assert [f.acquired_at for f in read_frames(text)] == [when.replace(microsecond=0)] * 2
    # the image's own DataBar comes first
    own = stack_builder_tags(databar(filetime(when)))
    own.append(("DataBar", databar(None, "5/18/2015", "5:00:16 PM")[0][1]))
    (first, _) = read_frames(dm_file(tmp_path / "own.dm4", frames, 2, tags=own))
    assert first.acquired_at == when.replace(day=18, microsecond=0)


def test_the_structural_check_leaves_the_metadata_warnings_to_the_read(tmp_path):
    # the service checks each file (inspect_tiff) before it reads it: a warning of both
    # was logged twice per file, 80 lines a second at 40 frames a second
    from structlog.testing import capture_logs

    path = dm_file(tmp_path / "noisy.dm4", np.ones((3, 3), np.float32), 2,
                   calibration=nm_calibration(0.05, "1/nm"),
                   tags=databar(None, "yesterday", "noon"))
    with capture_logs() as logs:
        inspect_tiff(path)
    assert [e["event"] for e in logs] == []
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert sorted(e["event"] for e in logs) == ["io.pixel_size_ignored",
                                                "io.pixel_size_ignored", "io.times_ignored"]
    assert frame.pixel_size_nm is None and frame.acquired_at_source == "mtime"


@pytest.mark.parametrize("date", ["01.01.0001", "12/31/9999", "01.06.1601"])
def test_a_databar_date_of_an_implausible_year_reads_as_no_time(tmp_path, monkeypatch, date):
    # year 1 east of UTC, or 9999 west of it, does not convert to UTC (ValueError,
    # OverflowError): raised out of the structural check, it stopped the service
    import time as time_module

    try:
        for zone in ("Europe/Berlin", "America/New_York"):
            monkeypatch.setenv("TZ", zone)
            time_module.tzset()
            clock = "00:30" if zone == "Europe/Berlin" else "23:30"
            path = dm_file(tmp_path / "old.dm4", np.ones((3, 3), np.float32), 2,
                           tags=databar(None, date, clock))
            assert inspect_tiff(path).n_pages == 1
            (frame,) = read_frames(path)
            assert frame.acquired_at_source == "mtime", (zone, date)
    finally:
        monkeypatch.undo()
        time_module.tzset()


@pytest.mark.parametrize("date, time, expected", [
    ("5/17/2015", "5:00:16 PM", datetime(2015, 5, 17, 17, 0, 16)),  # US
    ("27/08/2016", "08:55:59 p.m.", datetime(2016, 8, 27, 20, 55, 59)),  # Mexico
    ("27.08.2016", "20:54:33", datetime(2016, 8, 27, 20, 54, 33)),  # Germany
    ("03.04.2016", "09:05", datetime(2016, 4, 3, 9, 5)),  # day first with dots
    ("03/04/2016", "12:00:01 AM", datetime(2016, 3, 4, 0, 0, 1)),  # ambiguous: US order
    ("2016-08-27", "20:52:30", datetime(2016, 8, 27, 20, 52, 30)),
    ("2016-08-27", "20:52:30.125", datetime(2016, 8, 27, 20, 52, 30, 125000)),
    ("31/31/2016", "20:52:30", None), ("8/27/16", "20:52:30", None),
    ("8/27/2016", "13:00 PM", None), ("8/27/2016", "25:00", None)])
def test_databar_dates_and_times_of_each_windows_format(date, time, expected):
    assert parse_dm_time(date, time) == expected


@pytest.mark.parametrize("suffix", [".dm3", ".dm4"])
def test_a_file_being_written_is_truncated_at_every_cut(tmp_path, suffix):
    # the service keeps a file that fails its structural check as a candidate until its size
    # settles: every cut must be an InputError saying so, never a partial frame
    full = dm_file(tmp_path / f"full{suffix}", np.ones((2, 16, 16), np.float32), 2,
                   tags=databar(filetime(datetime(2024, 1, 1, tzinfo=UTC)))).read_bytes()
    data_end = len(full) - 8 - full[::-1].find(b"%%%%"[::-1])  # about where tags end
    path = tmp_path / f"part{suffix}"
    cuts = sorted({1, 3, 4, 11, 12, 16, 17, 100, 200, len(full) // 2, data_end,
                   len(full) - 400, len(full) - 9})
    for cut in cuts:
        path.write_bytes(full[:cut])
        with pytest.raises(TruncatedTiffError, match=rf"part{suffix}: .*cut short"):
            inspect_tiff(path)
        with pytest.raises(TruncatedTiffError):
            read_frames(path)
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError, match=f"part{suffix}"):
        read_frames(path)
    path.write_bytes(full)
    assert len(read_frames(path)) == 2


def test_a_file_of_its_final_size_still_zeros_at_the_end_is_being_written(tmp_path):
    # a writer that sets the file's size first (or a share that shows it) leaves zeros where
    # the rest comes: read at any moment, the file must be "still being written", never a
    # frame without the tags that follow the pixels (the acquisition time, so the mtime)
    when = datetime(2024, 1, 1, 12, 0, 0, 300000, tzinfo=UTC)
    full = dm_file(tmp_path / "full.dm4", np.arange(256, dtype=np.uint16).reshape(16, 16), 10,
                   calibration=nm_calibration(0.4),
                   tags=databar(filetime(when), "1/1/2024", "12:00:00 PM")).read_bytes()
    path = tmp_path / "sized.dm4"
    refused = 0
    for cut in range(16, len(full) - 8):  # every byte of the tags, the trailer's zeros aside
        path.write_bytes(full[:cut] + bytes(len(full) - cut))
        try:
            (frame,) = read_frames(path)
        except TruncatedTiffError:  # what the service waits on (then quarantines if it stays)
            refused += 1
        else:  # a cut inside the last values can leave the same bytes as the whole file
            assert frame.acquired_at_source == "metadata", cut
            assert abs(frame.acquired_at - when) < timedelta(microseconds=5), cut
    assert refused > len(full) - 24 - 64, refused
    path.write_bytes(full)
    assert read_frames(path)[0].acquired_at_source == "metadata"


def _patched(tmp_path: Path, name: str, find: bytes, replace: bytes, after: bytes = b"",
             nth: int = 1) -> Path:
    """A file of a 4 x 4 uint16 image with the first ``find`` after the ``nth`` ``after``
    replaced."""
    src = dm_file(tmp_path / f"src-{name}", np.ones((4, 4), np.uint16), 10).read_bytes()
    start = -1
    for _ in range(nth if after else 0):
        start = src.index(after, start + 1)
    at = src.index(find, max(start, 0))
    path = tmp_path / name
    path.write_bytes(src[:at] + replace + src[at + len(find):])
    return path


def test_corrupt_files_are_refused_naming_the_file_and_what_is_wrong(tmp_path):
    cases = {
        "version.dm4": (b"\0\0\0\x04", b"\0\0\0\x05", "not a DigitalMicrograph 3 or 4 file"),
        "tiff.dm3": (b"\0\0\0\x03", b"II*\0", "not a DigitalMicrograph 3 or 4 file"),
        "order.dm4": (b"\0\0\0\x01\x01\x00", b"\0\0\0\x07\x01\x00", "byte order 7"),
        "mark.dm4": (b"%%%%", b"%%#%", "lacks its %%%% mark"),
    }
    for name, (find, replace, reason) in cases.items():
        path = _patched(tmp_path, name, find, replace)
        with pytest.raises(TruncatedTiffError, match=rf"{name}: .*{reason}"):
            inspect_tiff(path)
    # a tag kind other than group (20) or data (21)
    path = _patched(tmp_path, "kind.dm4", b"\x15\x00\x08DataType", b"\x17\x00\x08DataType")
    with pytest.raises(TruncatedTiffError, match=r"kind.dm4: .*'DataType' of unknown kind 23"):
        read_frames(path)
    # an unknown data type
    w = Writer(4)
    path = _patched(tmp_path, "type.dm4", w.n(1) + w.n(3), w.n(1) + w.n(16))
    with pytest.raises(TruncatedTiffError, match=r"type.dm4: .*unknown type \[16\]"):
        read_frames(path)
    # Dimensions that do not match Data
    path = _patched(tmp_path, "dims.dm4", w.n(5) + b"\x04\0\0\0", w.n(5) + b"\x05\0\0\0",
                    after=b"Dimensions", nth=2)  # the image's, not the thumbnail's
    with pytest.raises(TruncatedTiffError, match=r"dims.dm4: .*Data holds 16 values, its "
                                                 r"Dimensions \[5, 4\] declare 20"):
        read_frames(path)


def test_absurd_declared_lengths_are_refused_before_anything_is_allocated(tmp_path):
    import os
    import subprocess
    import sys

    w = Writer(4)
    data_type = w.n(3) + w.n(20) + w.n(4) + w.n(16)  # the Data array: 16 ushort
    cases = {  # what is patched -> what the reason says
        "array.dm4": (data_type, w.n(3) + w.n(20) + w.n(4) + w.n(2**62), "declares"),
        "count.dm4": (b"\x01\x00" + w.n(3), b"\x01\x00" + w.n(2**60), "declares"),
        "fields.dm4": (data_type, w.n(2**40) + w.n(20) + w.n(4) + w.n(16), "type fields"),
    }
    paths = []
    for name, (find, replace, _) in cases.items():
        paths.append(_patched(tmp_path, name, find, replace))
    script = (
        "import resource, sys\n"
        "from nwwatch.io import InputError, inspect_tiff\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 2**28, resource.RLIM_INFINITY))\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        inspect_tiff(p)\n"
        "    except InputError as exc:\n"
        "        print(type(exc).__name__, exc)\n")
    proc = subprocess.run([sys.executable, "-c", script, *map(str, paths)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    for line, (name, (_, _, reason)) in zip(lines, cases.items(), strict=True):
        assert line.startswith(f"TruncatedTiffError {tmp_path / name}: "), line
        assert reason in line, line


def test_spectra_profiles_and_4d_data_are_refused_as_no_frames(tmp_path):
    meta = G([("Meta Data", G([("Format", T("Spectrum image")), ("Signal", T("EELS"))]))])
    cases = {
        "line.dm4": (np.ones(64, np.float32), None, None, "1-D .*profile or spectrum"),
        "row.dm4": (np.ones((1, 64), np.float32), None, None, "64 x 1 px .*profile"),
        "si.dm4": (np.ones((2, 3, 3), np.float32), None, meta, "Spectrum image"),
        "ev.dm3": (np.ones((8, 3, 3), np.float32),
                   nm_calibration(1.0, n=2) + [(0.5, "eV")], None, "third axis is in eV"),
        "4d.dm4": (np.ones((2, 2, 3, 3), np.float32), None, None, "4-D"),
    }
    for name, (data, cal, tags, reason) in cases.items():
        path = dm_file(tmp_path / name, data, 2, calibration=cal, tags=tags)
        with pytest.raises(UnsupportedLayoutError, match=rf"{name}: .*{reason}"):
            read_frames(path)


def test_default_patterns_take_dm_names_for_in_situ_frames_only(tmp_path):
    from nwwatch.service.replay import list_inputs
    from nwwatch.service.watcher import unread_hint

    for name in ("a.tif", "b.dm3", "c.DM4", "d.emd"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_inputs(tmp_path, "insitu")] == ["a.tif", "b.dm3", "c.DM4",
                                                                  "d.emd"]
    left: list[Path] = []
    assert [p.name for p in list_inputs(tmp_path, "tomogram", unread=left)] == ["a.tif"]
    assert [p.name for p in left] == ["b.dm3", "c.DM4", "d.emd"]
    assert 'kind "insitu"' in unread_hint("c.DM4", "tomogram")
    assert unread_hint("x.dm4", "insitu").startswith("a DigitalMicrograph file whose name")


def test_a_tomogram_replay_names_the_dm_files_it_leaves_out(tmp_path):
    from servicekit import write_small_tomogram

    from nwwatch.service import replay

    acq = tmp_path / "acq"
    acq.mkdir()
    write_small_tomogram(acq / "tomo.tif")
    dm_file(acq / "frame.dm4", np.ones((4, 4), np.float32), 2)
    s = replay(acq, tmp_path / "out", kind="tomogram", model=model(tmp_path, kind="tomogram"))
    (note,) = [line for line in s.lines() if line.startswith("note: left out of this replay")]
    assert ("1 file whose name a tomogram replay does not look for (frame.dm4): in-situ "
            "frames (.dm4): replay without --kind tomogram") in note, note
    assert "a format replay does not read" not in note


def test_a_dm4_frame_replays_to_the_row_of_its_tiff_twin(tmp_path):
    from nwwatch.io import write_frame_tiff
    from nwwatch.service import replay

    onnx = model(tmp_path)
    img = paint_insitu(110.0, size=64)
    when = datetime(2025, 6, 1, 9, 30, 15, 500000, tzinfo=UTC)
    rows = {}
    for name in ("frame.tif", "frame.dm4"):
        acq = tmp_path / f"acq-{name}"
        acq.mkdir()
        if name.endswith(".tif"):
            write_frame_tiff(acq / name, img, pixel_size_nm=1000 / 4096, acquired_at=when)
        else:  # calibrated in µm (a scale float32 holds exactly), timed by the PC's clock
            dm_file(acq / name, img, 6,
                    calibration=nm_calibration(1 / 4096, "µm"), tags=databar(filetime(when)))
        summary = replay(acq, tmp_path / f"out-{name}", kind="insitu", model=onnx)
        assert (summary.done, summary.quarantined, summary.exit_status) == (1, 0, 0)
        (row,) = ds.dataset(tmp_path / f"out-{name}" / "frames",
                            format="parquet").to_table().to_pylist()
        rows[name] = row
    tif, dm = rows["frame.tif"], rows["frame.dm4"]
    assert dm["status"] == tif["status"] and dm["source"] == str(
        tmp_path / "acq-frame.dm4" / "frame.dm4")
    differ = {"source", "source_sha256", "mask_path", "batch_id", "processed_at", "file_mtime",
              "file_size_bytes", "acquisition", "detected_at", "acquired_at"}
    same = {k: v for k, v in tif.items() if k not in differ and not k.endswith(("_s", "_ms"))}
    assert same == {k: dm[k] for k in same}
    assert dm["pixel_size_nm"] == 1000 / 4096
    assert abs(dm["acquired_at"] - when) < timedelta(microseconds=5)
    assert np.isfinite(dm["contact_angle_deg"])


@pytest.mark.parametrize("suffix", [".dm3", ".dm4"])
def test_damaged_files_raise_input_errors_only(tmp_path, suffix):
    # a few random bytes changed, and the file cut short: the service quarantines (or waits
    # for) an InputError; any other exception would stop the batch

    src = dm_file(tmp_path / f"src{suffix}", np.arange(60, dtype=np.uint16).reshape(2, 5, 6),
                  10, calibration=nm_calibration(0.5),
                  tags=databar(filetime(datetime(2024, 1, 1, tzinfo=UTC)), "1/1/2024",
                               "1:00 PM")).read_bytes()
    assert_damage_reads_or_raises_input_errors(src, tmp_path / f"damaged{suffix}", 400, seed=3)


def test_the_service_waits_for_a_dm4_whose_size_was_set_before_its_tags_were_written(tmp_path):
    # a writer that sets the final size first, writes all but the image's tags, closes the
    # file and pauses (under settle_seconds): a real service must wait and give one row with
    # the DataBar time, not a row timed by the mtime and then the file's second version
    import time

    from servicekit import DaemonProcess, ledger_count, wait_rows, write_config

    acq, res = tmp_path / "in", tmp_path / "res"
    second = acq / "growth" / "Hour_00" / "Minute_00" / "Second_00"
    second.mkdir(parents=True)
    when = datetime(2025, 6, 1, 9, 30, 15, 100000, tzinfo=UTC)
    staged = dm_file(tmp_path / "whole.dm4", paint_insitu(110.0, size=64), 6,
                     calibration=nm_calibration(0.5), tags=databar(filetime(when)))
    raw = staged.read_bytes()
    cut = raw.rfind(b"\x14\x00\x09ImageTags")  # the frame's tags, after its pixels
    assert cut > raw.rfind(b"\x15\x00\x04Data")  # after the pixels of the frame
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=5.0,
                       batch_size=1, latency_ms=50)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        target = second / "growth_Hour_00_Minute_00_Second_00_Frame_0000.dm4"
        with open(target, "wb") as out:
            out.truncate(len(raw))
            out.write(raw[:cut])
        time.sleep(2.0)  # closed, final size, zeros where the tags come
        with open(target, "r+b") as out:
            out.seek(cut)
            out.write(raw[cut:])
        table = wait_rows(res, 1, timeout=60, proc=daemon)
        time.sleep(1.5)  # a second version would be processed by now
        code, _ = daemon.terminate(timeout=30)
        assert code == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    processed = [e for e in daemon.events() if e.get("event") == "file_processed"]
    assert len(processed) == 1, processed
    assert ledger_count(res, "items", "state = 'done'") == 1
    (row,) = ds.dataset(res / "frames", format="parquet").to_table().to_pylist()
    assert row["acquired_at_source"] == "metadata"
    assert abs(row["acquired_at"] - when) < timedelta(microseconds=5)
    assert len(table) == 1
