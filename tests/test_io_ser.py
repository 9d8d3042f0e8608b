"""TIA series files (nwwatch.io.ser), written by this module's own small writer of the format
as TIA lays it out (header, dimension array, both offset arrays in full, then each element's
data followed by its tag), read through the same readers as TIFF: pixel types, calibration,
both series versions, time tags, series with fewer valid than total elements, incomplete and
bad files, and an in-situ replay of a .ser giving the rows of its TIFF twin.

The writer follows FEI's description of the TIA series file: little-endian; offsets 4 bytes
in SeriesVersion 0x0210, 8 bytes in 0x0220; a 2-D element is its x and y calibration (offset,
delta in metres, element), DataType, ArraySizeX, ArraySizeY and the pixels, x fastest, the
bottom row first; a tag is TagTypeID (4 bytes), the time (seconds since 1970) and, for
0x4142, the stage position."""

from __future__ import annotations

import os
import struct
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
    ImageTooLargeError,
    TruncatedTiffError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
    inspect_tiff,
    read_frames,
    read_volume,
)

# --- a writer of the series format ----------------------------------------------------------

_TYPES = {1: "<u1", 2: "<u2", 3: "<u4", 4: "<i1", 5: "<i2", 6: "<i4", 7: "<f4", 8: "<f8",
          9: "<c8", 10: "<c16"}
_WHEN = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def _dimension(size: int, description: str = "Number", units: str = "") -> bytes:
    return (struct.pack("<iddi", size, 0.0, 1.0, 0)
            + struct.pack("<i", len(description)) + description.encode()
            + struct.pack("<i", len(units)) + units.encode())


def ser_bytes(frames: list[np.ndarray], datatype: int = 2, *, version: int = 0x0220,
              delta_m: tuple[float, float] = (0.5e-9, 0.5e-9), times: list[int] | None = None,
              total: int | None = None, tag_type: int = 0x4152, data_type_id: int = 0x4122,
              dims: list[bytes] | None = None) -> bytes:
    """A series of ``frames`` (rows top first, as shown), DataType ``datatype``; ``total``
    elements declared (default: as many as frames, all valid); ``times`` seconds since 1970
    per frame (default: one a second from 2024-03-01 12:00 UTC)."""
    width = 4 if version == 0x0210 else 8
    offset = "<i" if width == 4 else "<q"
    total = len(frames) if total is None else total
    times = times if times is not None else [int(_WHEN.timestamp()) + i
                                             for i in range(len(frames))]
    dims = dims if dims is not None else [_dimension(total)]
    head_size = 26 + width + sum(len(d) for d in dims)
    array_at = head_size
    body_at = array_at + 2 * total * width
    body, data_at, tags_at = b"", [], []
    for frame, seconds in zip(frames, times, strict=True):
        if data_type_id == 0x4122:
            height, cols = frame.shape
            element = struct.pack("<ddiddihii", -1e-7, delta_m[0], 0, -1e-7, delta_m[1], 0,
                                  datatype, cols, height)
            pixels = np.ascontiguousarray(frame[::-1]).astype(_TYPES[datatype]).tobytes()
        else:  # a spectrum
            element = struct.pack("<ddihi", 100.0, 0.2, 0, datatype, frame.size)
            pixels = frame.astype(_TYPES[datatype]).tobytes()
        data_at.append(body_at + len(body))
        body += element + pixels
        tags_at.append(body_at + len(body))
        tag = struct.pack("<ii", tag_type, seconds)
        if tag_type == 0x4142:
            tag += struct.pack("<dd", 1e-6, -2e-6)
        body += tag
    pad = [0] * (total - len(frames))
    head = (struct.pack("<HHHiiii", 0x4949, 0x0197, version, data_type_id, tag_type, total,
                        len(frames))
            + struct.pack(offset, array_at) + struct.pack("<i", len(dims)) + b"".join(dims))
    arrays = b"".join(struct.pack(offset, v) for v in data_at + pad + tags_at + pad)
    return head + arrays + body


def ser_file(path: Path, frames: list[np.ndarray], datatype: int = 2, **kwargs) -> Path:
    path.write_bytes(ser_bytes(frames, datatype, **kwargs))
    return path


def _frames(n: int = 2, shape: tuple[int, int] = (5, 6), dtype=np.uint16) -> list[np.ndarray]:
    return [(np.arange(shape[0] * shape[1]).reshape(shape) + 7 * i).astype(dtype)
            for i in range(n)]


# --- pixels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0x0210, 0x0220])
@pytest.mark.parametrize(("datatype", "returned"), [
    (1, np.uint8), (2, np.uint16), (3, np.float32), (4, np.int16), (5, np.int16),
    (6, np.float32), (7, np.float32), (8, np.float32)])
def test_every_grey_pixel_type_reads_back_its_values_in_both_versions(tmp_path, version,
                                                                      datatype, returned):
    values = np.array([[0, 1, 2, 3], [4, 5, 6, 100], [7, 8, 9, 120]])
    if datatype in (4, 5, 6, 7, 8):
        values = values - 60  # signed
    stored = np.dtype(_TYPES[datatype])
    frames = [values.astype(stored), (values[::-1] + 1).astype(stored)]
    path = ser_file(tmp_path / "s_1.ser", frames, datatype, version=version)
    info = inspect_tiff(path)
    assert (info.layout, info.axes, info.shape, info.dtype) == ("ser", "IYX", (2, 3, 4),
                                                                 np.dtype(returned))
    read = read_frames(path)
    assert [f.index for f in read] == [0, 1]
    for frame, expected in zip(read, frames, strict=True):
        assert frame.image.dtype == returned and frame.image.flags.c_contiguous
        np.testing.assert_array_equal(frame.image, expected.astype(returned))
        assert frame.source == path


def test_rows_are_returned_top_row_first_as_tia_shows_them(tmp_path):
    # TIA stores the bottom row first (its y axis points up)
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    raw = ser_bytes([image])
    pixels_at = raw.index(image[-1].tobytes())
    assert raw[pixels_at:pixels_at + 24] == image[::-1].tobytes()  # as stored
    path = tmp_path / "one.ser"
    path.write_bytes(raw)
    (frame,) = read_frames(path)
    np.testing.assert_array_equal(frame.image, image)
    assert inspect_tiff(path).axes == "YX"


@pytest.mark.parametrize(("datatype", "what"), [(9, "complex"), (10, "complex"),
                                                (11, "unknown")])
def test_complex_and_unknown_pixel_types_are_refused_naming_the_file_and_type(tmp_path,
                                                                              datatype, what):
    frames = [np.ones((3, 3), np.complex64)] if datatype != 11 else [np.ones((3, 3))]
    raw = ser_bytes(frames, 9 if datatype != 11 else 1)
    if datatype != 9:  # the DataType field of the first element
        at = raw.index(struct.pack("<hii", 9 if datatype == 10 else 1, 3, 3))
        raw = raw[:at] + struct.pack("<h", datatype) + raw[at + 2:]
    path = tmp_path / "c.ser"
    path.write_bytes(raw)
    for check in (inspect_tiff, read_frames):
        with pytest.raises(UnsupportedDtypeError, match=rf"c.ser: .*DataType {datatype} "
                                                        rf"\({what}"):
            check(path)


# --- calibration ----------------------------------------------------------------------------


def test_the_pixel_size_is_the_calibration_delta_in_nm(tmp_path):
    path = ser_file(tmp_path / "a.ser", _frames(), delta_m=(2.5e-9, -2.5e-9))
    assert [f.pixel_size_nm for f in read_frames(path)] == [2.5, 2.5]


def test_a_delta_in_metres_is_its_decimal_in_nm(tmp_path):
    # 1.234e-10 * 1e9 is 0.12340000000000001 in binary floats
    path = ser_file(tmp_path / "a.ser", _frames(), delta_m=(1.234e-10, 1.234e-10))
    assert [f.pixel_size_nm for f in read_frames(path)] == [0.1234, 0.1234]


def test_a_diffraction_calibration_is_ignored_with_a_warning(tmp_path):
    # reciprocal metres in the same fields (the unit is only in the .emi): implausible as nm
    from structlog.testing import capture_logs

    path = ser_file(tmp_path / "dp.ser", _frames(3), delta_m=(1.0157e8, 1.0157e8))
    with capture_logs() as logs:
        inspect_tiff(path)
    assert logs == []  # the structural check reads no metadata and warns of none
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [f.pixel_size_nm for f in frames] == [None] * 3
    # one warning per axis for the file, not per frame
    assert sorted((e["event"], e["axis"]) for e in logs) == [
        ("io.pixel_size_ignored", "x"), ("io.pixel_size_ignored", "y")]
    assert all(e["source"] == "ser" for e in logs)


def test_different_x_and_y_pixel_sizes_are_refused(tmp_path):
    path = ser_file(tmp_path / "aniso.ser", _frames(), delta_m=(1e-9, 2e-9))
    with pytest.raises(AnisotropicPixelsError, match="aniso.ser: pixel size x 1 nm differs"):
        read_frames(path)


# --- chunks and single frames ----------------------------------------------------------------


def _with_calibrations(raw: bytes, deltas_m: list[float]) -> bytes:
    """``raw`` (a 0x0220 series) with element ``i``'s x and y delta set to ``deltas_m[i]``."""
    raw = bytearray(raw)
    (array_at,) = struct.unpack_from("<q", raw, 22)
    for i, delta in enumerate(deltas_m):
        (at,) = struct.unpack_from("<q", raw, array_at + 8 * i)
        struct.pack_into("<d", raw, at + 8, delta)
        struct.pack_into("<d", raw, at + 28, delta)
    return bytes(raw)


@pytest.mark.parametrize("version", [0x0210, 0x0220])
@pytest.mark.parametrize("datatype", [2, 3])
@pytest.mark.parametrize("times", ["tags", "unset"])
def test_chunks_and_one_frame_are_the_frames_read_whole(tmp_path, version, datatype, times):
    # the service and replay read a long series a chunk of elements at a time, the labelling
    # page one element: the same images, indices, pixel sizes and times, warnings once a file
    from chunkkit import assert_chunks_are_the_whole_read

    n = 7
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 60000, (16, 12)).astype(np.uint16) for _ in range(n)]
    start = int(_WHEN.timestamp())
    seconds = [start + i // 2 for i in range(n)] if times == "tags" else [start] + [0] * (n - 1)
    raw = ser_bytes(frames, datatype, version=0x0220, times=seconds, total=n + 3)
    # the magnification changed part way; element 5 a diffraction pattern's calibration
    raw = _with_calibrations(raw, [2.5e-10] * 3 + [5e-10] * 2 + [1.0157e8, 5e-10])
    if version == 0x0210:  # the same elements, offsets of 4 bytes
        raw = _as_version_0x0210(raw)
    path = tmp_path / "series.ser"
    path.write_bytes(raw)
    whole = assert_chunks_are_the_whole_read(path, [1, 2, 3, 4, 7, 9], [0, 4, 5, n - 1])
    np.testing.assert_array_equal(np.stack([f.image for f in whole]), np.stack(frames))
    assert [f.pixel_size_nm for f in whole] == [0.25] * 3 + [0.5] * 2 + [None, 0.5]
    assert {f.acquired_at_source for f in whole} == {"metadata" if times == "tags" else "mtime"}


def _as_version_0x0210(raw: bytes) -> bytes:
    """A 0x0220 series of ``raw`` rewritten as 0x0210: 4-byte offsets, elements moved."""
    (array_at,) = struct.unpack_from("<q", raw, 22)
    total = struct.unpack_from("<i", raw, 14)[0]
    offsets = struct.unpack_from(f"<{2 * total}q", raw, array_at)
    body_at = array_at + 16 * total
    shift = 4 + 8 * total  # 4 bytes less in the header, 4 less per offset
    head = (raw[:22] + struct.pack("<I", array_at - 4) + raw[30:array_at])
    head = head[:4] + struct.pack("<H", 0x0210) + head[6:]
    arrays = b"".join(struct.pack("<I", o - shift if o else 0) for o in offsets)
    return head + arrays + raw[body_at:]


def test_a_chunk_reads_only_its_own_elements(tmp_path):
    # the file cut inside element 5's pixels after the first chunk was read (rewritten by
    # another program meanwhile): that chunk came before any later element was read, and
    # the chunk holding element 5 is bad input naming the file
    from nwwatch.io import read_frame_chunks

    frames = _frames(7, (8, 8))
    path = ser_file(tmp_path / "s.ser", frames)
    raw = path.read_bytes()
    (array_at,) = struct.unpack_from("<q", raw, 22)
    (fifth,) = struct.unpack_from("<q", raw, array_at + 8 * 5)
    chunks = read_frame_chunks(path, 3)
    first = next(chunks)
    assert [f.index for f in first] == [0, 1, 2]
    with open(path, "r+b") as handle:
        handle.truncate(fifth + 60)
    with pytest.raises(TruncatedTiffError, match="s.ser: TIA series element 5 cut short"):
        next(chunks)
    np.testing.assert_array_equal(np.stack([f.image for f in first]), np.stack(frames[:3]))


def test_a_series_over_the_whole_read_limit_is_read_by_chunks_and_refused_whole(
        tmp_path, monkeypatch):
    from chunkkit import assert_read_by_chunks_past_the_whole_read_limit

    frames = _frames(6, (16, 16))
    assert_read_by_chunks_past_the_whole_read_limit(ser_file(tmp_path / "long.ser", frames),
                                                    np.stack(frames), monkeypatch)


# --- times ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tag_type", [0x4152, 0x4142])
def test_each_frame_gets_its_tag_time_and_frames_of_one_second_share_it(tmp_path, tag_type):
    start = int(_WHEN.timestamp())
    times = [start, start, start + 1, start + 1, start + 3]
    path = ser_file(tmp_path / "t.ser", _frames(5), times=times, tag_type=tag_type)
    frames = read_frames(path)
    assert [f.acquired_at for f in frames] == [_WHEN + timedelta(seconds=s - start)
                                               for s in times]
    assert {f.acquired_at_source for f in frames} == {"metadata"}
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]  # the order within a second


def test_an_unset_time_tag_gives_every_frame_the_mtime(tmp_path):
    from structlog.testing import capture_logs

    path = ser_file(tmp_path / "t0.ser", _frames(3), times=[int(_WHEN.timestamp()), 0, 0])
    mtime = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [(f.acquired_at, f.acquired_at_source) for f in frames] == [(mtime, "mtime")] * 3
    assert [e["event"] for e in logs] == ["io.times_ignored"]
    assert "before 1990" in logs[0]["reason"]


def test_a_tag_of_another_type_than_the_header_declares_gives_the_mtime(tmp_path):
    raw = bytearray(ser_bytes(_frames(2)))
    at = raw.rindex(struct.pack("<i", 0x4152))  # the last tag
    raw[at:at + 4] = struct.pack("<i", 0x4142)
    path = tmp_path / "mixed.ser"
    path.write_bytes(bytes(raw))
    assert {f.acquired_at_source for f in read_frames(path)} == {"mtime"}


# --- valid and total elements ---------------------------------------------------------------


@pytest.mark.parametrize("version", [0x0210, 0x0220])
def test_a_series_of_fewer_valid_than_total_elements_reads_the_valid_ones(tmp_path, version):
    # a series stopped early (or read while recording) declares all its elements
    frames = _frames(3)
    path = ser_file(tmp_path / "early.ser", frames, total=200, version=version)
    info = inspect_tiff(path)
    assert (info.n_pages, info.shape) == (3, (3, 5, 6))
    read = read_frames(path)
    assert len(read) == 3
    np.testing.assert_array_equal(read[2].image, frames[2])


def test_a_series_with_no_valid_element_yet_is_being_written(tmp_path):
    path = ser_file(tmp_path / "none.ser", [], total=10)
    with pytest.raises(TruncatedTiffError, match="none.ser: .*none of its 10 elements yet"):
        inspect_tiff(path)


# --- incomplete and bad files ---------------------------------------------------------------


@pytest.mark.parametrize("version", [0x0210, 0x0220])
def test_a_file_being_written_is_truncated_at_every_cut(tmp_path, version):
    # the service keeps a file that fails its structural check as a candidate until its size
    # settles: every cut must be an InputError saying so, never a partial series
    full = ser_bytes(_frames(2, (3, 4), np.uint8), 1, version=version,
                     tag_type=0x4142, total=3)
    path = tmp_path / "part.ser"
    for cut in range(1, len(full)):
        path.write_bytes(full[:cut])
        with pytest.raises(TruncatedTiffError, match=r"part.ser: TIA series .*cut short"):
            inspect_tiff(path)
        with pytest.raises(TruncatedTiffError):
            read_frames(path)
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError, match="part.ser"):
        read_frames(path)
    path.write_bytes(full)
    assert len(read_frames(path)) == 2


def _patched(raw: bytes, at: int, value: bytes) -> bytes:
    return raw[:at] + value + raw[at + len(value):]


def test_corrupt_headers_are_refused_naming_the_file_and_what_is_wrong(tmp_path):
    raw = ser_bytes(_frames(2), version=0x0210)
    array_at = 30 + len(_dimension(2))
    cases = {
        "tiff.ser": (b"II*\0" + raw[4:], "not a TIA series file: its first bytes are 49 49 2a"),
        "version.ser": (_patched(raw, 4, struct.pack("<H", 0x0300)), "SeriesVersion 0x0300"),
        "datatype.ser": (_patched(raw, 6, struct.pack("<i", 0x4121)), "DataTypeID 0x4121"),
        "tagtype.ser": (_patched(raw, 10, struct.pack("<i", 7)), "TagTypeID 0x7"),
        "valid.ser": (_patched(raw, 18, struct.pack("<i", 3)), "3 valid of 2 elements"),
        "nototal.ser": (_patched(raw, 14, struct.pack("<ii", 0, 0)), "0 valid of 0"),
        "dims.ser": (_patched(raw, 26, struct.pack("<i", 10**6)), "1000000 dimensions"),
        "nodims.ser": (_patched(raw, 26, struct.pack("<i", 0)), "0 dimensions"),
        "description.ser": (_patched(raw, 30 + 24, struct.pack("<i", 2**30)),
                            "description of 1073741824 bytes"),
        "arrays.ser": (_patched(raw, 22, struct.pack("<i", 8)), "OffsetArrayOffset 8 before"),
        "element.ser": (_patched(raw, array_at, struct.pack("<i", 4)), "element 0 at byte 4"),
        "tag.ser": (_patched(raw, array_at + 8, struct.pack("<i", 5)), "tag 0 at byte 5"),
        # offsets are unsigned: -5 is past the end of the file
        "past.ser": (_patched(raw, array_at + 8, struct.pack("<i", -5)),
                     "tag 0 .bytes 4294967291 to"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(TruncatedTiffError, match=rf"{name}: .*{reason}"):
            inspect_tiff(path)


def test_a_version_0x0210_series_past_2_gib_reads_its_unsigned_offsets(tmp_path):
    # 4-byte offsets reach 4 GiB: the second element and the offset arrays lie past 2 GiB
    # (a sparse file), where offsets read as signed were negative and the file "corrupt"
    dim = _dimension(2)
    first, second, arrays = 30 + len(dim), 2**31 + 1024, 2**31 + 4096
    images = [np.arange(12, dtype=np.uint16).reshape(3, 4) + 100 * i for i in range(2)]
    times = [int(_WHEN.timestamp()), int(_WHEN.timestamp()) + 1]

    def element(image: np.ndarray, seconds: int) -> bytes:
        return (struct.pack("<ddiddihii", 0.0, 1e-9, 0, 0.0, 1e-9, 0, 2, 4, 3)
                + image[::-1].tobytes() + struct.pack("<ii", 0x4152, seconds))

    path = tmp_path / "big.ser"
    with open(path, "wb") as f:
        f.write(struct.pack("<HHHiiii", 0x4949, 0x0197, 0x0210, 0x4122, 0x4152, 2, 2)
                + struct.pack("<I", arrays) + struct.pack("<i", 1) + dim)
        for at, image, seconds in ((first, images[0], times[0]),
                                   (second, images[1], times[1])):
            f.seek(at)
            f.write(element(image, seconds))
        f.seek(arrays)
        f.write(struct.pack("<IIII", first, second, first + 74, second + 74))
    info = inspect_tiff(path)
    assert (info.layout, info.shape) == ("ser", (2, 3, 4))
    frames = read_frames(path)
    for frame, image in zip(frames, images, strict=True):
        np.testing.assert_array_equal(frame.image, image)
    assert [f.acquired_at for f in frames] == [_WHEN, _WHEN + timedelta(seconds=1)]


def test_absurd_declared_sizes_are_refused_before_anything_is_allocated(tmp_path):
    raw = ser_bytes(_frames(1, (3, 4)), version=0x0220)
    at = raw.index(struct.pack("<hii", 2, 4, 3))
    huge = tmp_path / "huge.ser"
    huge.write_bytes(_patched(raw, at + 2, struct.pack("<ii", 2**20, 2**20)))
    with pytest.raises(ImageTooLargeError, match="huge.ser: declares 1048576 x 1048576"):
        read_frames(huge)
    many = tmp_path / "many.ser"  # an element count no file holds: arrays past the end
    many.write_bytes(_patched(raw, 14, struct.pack("<ii", 2**31 - 1, 1)))
    with pytest.raises(TruncatedTiffError, match="many.ser: TIA series offset arrays"):
        read_frames(many)
    far = tmp_path / "far.ser"  # offset arrays past the end
    far.write_bytes(_patched(raw, 22, struct.pack("<q", 2**62)))
    with pytest.raises(TruncatedTiffError, match="far.ser: TIA series offset arrays"):
        read_frames(far)


def test_a_corrupt_count_or_text_length_in_a_large_file_is_refused_before_it_is_read(
        tmp_path):
    # a count of millions of elements is refused by the bytes it implies, more than the
    # file holds, before its offset arrays are read,
    # and a dimension's text longer than a word before it is read
    total = 4_000_000
    dim = _dimension(total)
    arrays = 34 + len(dim)
    first = arrays + 2 * total * 8
    path = tmp_path / "count.ser"
    with open(path, "wb") as f:  # a sparse file: the offset arrays are zeros but the first
        f.write(struct.pack("<HHHiiii", 0x4949, 0x0197, 0x0220, 0x4122, 0x4152, total, total)
                + struct.pack("<q", arrays) + struct.pack("<i", 1) + dim
                + struct.pack("<q", first))
        f.seek(first)
        f.write(struct.pack("<ddiddihii", 0.0, 1e-9, 0, 0.0, 1e-9, 0, 2, 1024, 1024))
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(TruncatedTiffError, match=r"count.ser: TIA series declares 4000000 "
                                                     r"valid elements of 1024 x 1024 px, \d+ "
                                                     r"bytes, in a file of \d+ bytes: cut "
                                                     "short"):
            inspect_tiff(path)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 4 * 2**20  # the offset arrays: 64 MB, and more as Python integers
    text = tmp_path / "text.ser"
    ser_file(text, _frames(2), dims=[_dimension(2, description="x" * 5000)])
    with pytest.raises(TruncatedTiffError, match="text.ser: .*corrupt.*description of 5000"):
        inspect_tiff(text)
    ser_file(text, _frames(2), dims=[_dimension(2, description="x" * 4096)])
    assert len(read_frames(text)) == 2


def test_spectra_scans_profiles_and_mixed_elements_are_refused(tmp_path):
    spectra = [np.arange(1024, dtype=np.float32)] * 2
    cases = {
        "spectrum.ser": (ser_bytes(spectra, 7, data_type_id=0x4120, tag_type=0x4142),
                         r"TIA spectra \(DataTypeID 0x4120"),
        "grid.ser": (ser_bytes(_frames(4), tag_type=0x4142,
                               dims=[_dimension(2, "Position", "meters")] * 2),
                     r"2 dimensions \(2 x 2 images: a scan grid"),
        "line.ser": (ser_bytes(_frames(3), tag_type=0x4142,
                               dims=[_dimension(3, "Position", "meters")]),
                     "images at 3 positions .*line scan"),
        "profile.ser": (ser_bytes([np.ones((1, 64), np.uint16)]), "64 x 1 px .*profile"),
        "mixed.ser": (ser_bytes([np.ones((4, 4), np.uint16), np.ones((4, 5), np.uint16)]),
                      "element 0 is 4 x 4 px of DataType 2, element 1 5 x 4 px"),
    }
    raw = ser_bytes(_frames(2))  # the second element's DataType changed to uint8
    second = raw.rindex(struct.pack("<hii", 2, 6, 5))
    cases["types.ser"] = (_patched(raw, second, struct.pack("<h", 1)),
                          "element 1 6 x 5 px of DataType 1")
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(UnsupportedLayoutError, match=rf"{name}: .*{reason}"):
            read_frames(path)


def test_read_volume_refuses_a_series_as_in_situ_frames(tmp_path):
    path = ser_file(tmp_path / "v.ser", _frames(3))
    with pytest.raises(UnsupportedLayoutError,
                       match=r'v.ser: a TIA series file \(a series of 3 images\).*image series, '
                             r'not tomograms.*kind "insitu"'):
        read_volume(path)


def test_damaged_files_raise_input_errors_only(tmp_path):
    # a few random bytes changed, and the file cut short: the service quarantines (or waits
    # for) an InputError; any other exception would stop the batch
    src = ser_bytes(_frames(3, (5, 6)), 2, version=0x0210, total=4, tag_type=0x4142)
    assert_damage_reads_or_raises_input_errors(src, tmp_path / "damaged.ser", 500, seed=5)


# --- the service ----------------------------------------------------------------------------


def test_default_patterns_take_ser_for_in_situ_frames_and_never_the_emi(tmp_path):
    from nwwatch.io import conversion_hint
    from nwwatch.service.replay import list_inputs
    from nwwatch.service.watcher import unread_hint

    for name in ("a.tif", "run.emi", "run_1.ser", "b.SER"):
        (tmp_path / name).write_bytes(b"")
    left: list[Path] = []
    assert [p.name for p in list_inputs(tmp_path, "insitu", unread=left)] == [
        "a.tif", "b.SER", "run_1.ser"]
    assert left == []  # the .emi companion (metadata): no input, not reported
    assert [p.name for p in list_inputs(tmp_path, "tomogram", unread=left)] == ["a.tif"]
    assert [p.name for p in left] == ["b.SER", "run_1.ser"]
    assert 'kind "insitu"' in unread_hint("run_1.ser", "tomogram")
    assert unread_hint("x.ser", "insitu").startswith("a TIA series file whose name")
    assert conversion_hint("x.ser") == "" and unread_hint("run.emi", "insitu") == ""


def test_a_ser_series_replays_to_the_rows_of_its_tiff_twins(tmp_path):
    from nwwatch.io import write_frame_tiff
    from nwwatch.service import replay

    onnx = model(tmp_path)
    images = [paint_insitu(100.0, size=64), paint_insitu(120.0, size=64)]
    start = int(_WHEN.timestamp())
    acq_tif, acq_ser = tmp_path / "acq-tif", tmp_path / "acq-ser"
    acq_tif.mkdir()
    acq_ser.mkdir()
    for i, img in enumerate(images):
        write_frame_tiff(acq_tif / f"frame{i}.tif", img, pixel_size_nm=0.25,
                         acquired_at=_WHEN + timedelta(seconds=i))
    ser_file(acq_ser / "run_1.ser", images, 1, delta_m=(0.25e-9, 0.25e-9),
             times=[start, start + 1])
    (acq_ser / "run.emi").write_bytes(b"\0" * 64)
    rows = {}
    for acq in (acq_tif, acq_ser):
        summary = replay(acq, tmp_path / f"out-{acq.name}", kind="insitu", model=onnx)
        assert (summary.done, summary.quarantined, summary.exit_status) == (
            2 if acq is acq_tif else 1, 0, 0)
        assert not any("left out" in line for line in summary.lines())
        table = ds.dataset(tmp_path / f"out-{acq.name}" / "frames", format="parquet")
        rows[acq.name] = sorted(table.to_table().to_pylist(), key=lambda r: r["acquired_at"])
    differ = {"source", "source_sha256", "mask_path", "batch_id", "processed_at", "file_mtime",
              "file_size_bytes", "acquisition", "detected_at", "frame"}
    assert len(rows["acq-ser"]) == 2
    for tif, ser in zip(rows["acq-tif"], rows["acq-ser"], strict=True):
        same = {k: v for k, v in tif.items() if k not in differ and not k.endswith(("_s", "_ms"))}
        assert same == {k: ser[k] for k in same}
        assert ser["source"] == str(acq_ser / "run_1.ser")
        assert ser["pixel_size_nm"] == 0.25 and ser["acquired_at_source"] == "metadata"
        assert np.isfinite(ser["contact_angle_deg"])
    assert [r["acquired_at"] for r in rows["acq-ser"]] == [_WHEN, _WHEN + timedelta(seconds=1)]


def test_measure_passes_over_the_emi_named_with_its_series(tmp_path):
    # before: `nwwatch measure acq/*` on a TIA acquisition refused the .emi as "not a TIFF
    # file" and exited 1 on every such folder; replay leaves it out
    from click.testing import CliRunner

    from nwwatch.measure.cli import measure

    acq = tmp_path / "acq"
    acq.mkdir()
    labels = np.zeros((48, 48), np.uint16)  # a label page: class ids 0, 1, 2
    labels[30:, 20:28] = 1
    labels[18:30, 16:32] = 2
    ser_file(acq / "run_1.ser", [labels], 1)
    (acq / "run.emi").write_bytes(b"\0" * 64)
    (acq / "other.emi").write_bytes(b"\0" * 64)  # no series of its own named
    glob = sorted(str(p) for p in acq.iterdir())  # what the shell makes of acq/*
    result = CliRunner().invoke(measure, [str(acq / "run.emi"), str(acq / "run_1.ser"),
                                          "--out", str(tmp_path / "a.parquet")])
    assert result.exit_code == 0, result.output
    assert "wrote 1 row(s)" in result.output and "emi" not in result.output
    result = CliRunner().invoke(measure, [*glob, "--out", str(tmp_path / "b.parquet")])
    assert result.exit_code == 1  # the .emi without its series is named, as before
    assert f"skipped {acq / 'other.emi'}" in result.output
    assert f"skipped {acq / 'run.emi'}" not in result.output
