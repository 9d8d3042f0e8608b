"""Tests of nwwatch.io: TIFF round trips, metadata from other writers, typed input errors."""

from __future__ import annotations

import os
import pickle
import struct
import time
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import tifffile
from chunkkit import assert_chunks_are_the_whole_read, assert_same_frame
from structlog.testing import capture_logs
from tiffkit import first_page_only, one_ifd_for_all_pages

import nwwatch.io as nio
from nwwatch.io import (
    AnisotropicPixelsError,
    BlankImageError,
    EmptyFileError,
    ImageTooLargeError,
    InputError,
    MultichannelError,
    NotARegularFileError,
    NotATiffError,
    TruncatedTiffError,
    UnreadableFileError,
    UnsupportedCompressionError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
    check_tomogram,
    inspect_tiff,
    read_frames,
    read_volume,
    unit_to_nm,
    write_frame_tiff,
    write_stack_tiff,
    write_volume_tiff,
)
from nwwatch.io.dataset import DatasetLayoutError

RNG = np.random.default_rng(20261121)
T0 = datetime(2026, 11, 21, 7, 45, 1, 123456, tzinfo=UTC)


def _image(shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.normal(100.0, 30.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def _frames_in_utc(path: Path) -> list:
    """``read_frames(path)`` with the machine's local time zone set to UTC (zone-less times
    read as they are written); the zone is restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "UTC")
        time.tzset()
        frames = read_frames(path)
    time.tzset()
    return frames


def _assert_names_file(error: pytest.ExceptionInfo, path: Path) -> None:
    assert isinstance(error.value, InputError)
    assert error.value.path == path
    assert str(path) in str(error.value)
    assert error.value.reason and error.value.reason in str(error.value)


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_frame_round_trip_keeps_pixels_size_and_time(tmp_path, dtype):
    image = _image((37, 53), dtype)  # odd, non-square: catches transposes
    path = write_frame_tiff(tmp_path / "f.tif", image, pixel_size_nm=0.4173, acquired_at=T0)
    (frame,) = read_frames(path)
    assert frame.image.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(frame.image, image)
    assert frame.index == 0 and frame.source == path
    assert frame.pixel_size_nm == pytest.approx(0.4173, rel=1e-9)
    assert frame.acquired_at == T0 and frame.acquired_at.tzinfo is not None
    assert frame.acquired_at_source == "metadata"


def test_frame_time_is_converted_to_utc(tmp_path):
    tokyo = T0.astimezone(timezone(timedelta(hours=9)))
    path = write_frame_tiff(tmp_path / "f.tif", _image((8, 8), "uint16"), acquired_at=tokyo)
    (frame,) = read_frames(path)
    assert frame.acquired_at == T0
    assert frame.acquired_at.utcoffset() == timedelta(0)


def test_stack_round_trip_has_per_page_times(tmp_path):
    frames = _image((5, 24, 40), "uint16")
    gaps = np.cumsum([0.0, 0.25, 0.4, 1.7, 0.05])  # irregular: no interval formula fits
    times = [T0 + timedelta(seconds=float(s)) for s in gaps]
    path = write_stack_tiff(tmp_path / "s.tif", frames, pixel_size_nm=1.5, acquired_at=times)
    read = read_frames(path)
    assert [f.index for f in read] == list(range(5))
    for frame, image, when in zip(read, frames, times, strict=True):
        np.testing.assert_array_equal(frame.image, image)
        assert frame.acquired_at == when and frame.acquired_at_source == "metadata"
        assert frame.pixel_size_nm == pytest.approx(1.5)
    info = inspect_tiff(path)
    assert (info.n_pages, info.shape, info.axes) == (5, (5, 24, 40), "TYX")
    assert info.dtype == np.uint16 and info.declared_bytes == frames.nbytes
    assert info.layout == "imagej" and info.page_shape == (24, 40)
    # Fiji's frame interval: the mean step.
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["finterval"] == pytest.approx(gaps[-1] / 4)
        assert tif.imagej_metadata["unit"] == "micron"


def test_volume_round_trip_with_anisotropic_voxels(tmp_path):
    volume = _image((6, 20, 30), "float32")
    path = write_volume_tiff(tmp_path / "v.tif", volume, voxel_size_nm=(3.5, 1.25, 1.2))
    read = read_volume(path)
    np.testing.assert_array_equal(read.data, volume)
    assert read.data.dtype == np.float32 and read.source == path
    assert read.voxel_size_nm == pytest.approx((3.5, 1.25, 1.2))
    # One number means cubic voxels; a frame with x != y pixels is refused.
    cubic = write_volume_tiff(tmp_path / "c.tif", volume, voxel_size_nm=2.0)
    assert read_volume(cubic).voxel_size_nm == pytest.approx((2.0, 2.0, 2.0))
    with pytest.raises(AnisotropicPixelsError) as error:
        read_frames(path)
    _assert_names_file(error, path)


def test_volume_without_size_and_single_page(tmp_path):
    path = write_volume_tiff(tmp_path / "v.tif", _image((4, 9, 11), "uint8"))
    assert read_volume(path).voxel_size_nm is None
    single = write_frame_tiff(tmp_path / "f.tif", _image((9, 11), "uint8"), pixel_size_nm=2.0)
    vol = read_volume(single)
    assert vol.data.shape == (1, 9, 11)
    assert vol.voxel_size_nm is None  # z unknown: not guessed


def test_check_tomogram_refuses_one_slice_and_no_contrast(tmp_path):
    # read_volume reads a single page as one slice; the tomogram workflow refuses it, and a
    # volume without contrast, naming the file.
    good = read_volume(write_volume_tiff(tmp_path / "v.tif", _image((3, 9, 11), "uint16")))
    assert check_tomogram(good) is good
    single = write_frame_tiff(tmp_path / "f.tif", _image((9, 11), "uint8"))
    with pytest.raises(UnsupportedLayoutError, match="2-D image") as error:
        check_tomogram(read_volume(single))
    _assert_names_file(error, single)
    # one file per slice (an image sequence) is what such a file most often is
    assert "Image Sequence" in error.value.reason
    blank = write_volume_tiff(tmp_path / "zero.tif", np.zeros((4, 9, 11), np.uint16))
    with pytest.raises(BlankImageError, match="every voxel has the value 0") as error:
        check_tomogram(read_volume(blank))
    _assert_names_file(error, blank)
    from nwwatch.io.records import Volume

    with pytest.raises(UnsupportedLayoutError, match=r"4-D data \(shape \(2, 3, 8, 8\)\)"):
        check_tomogram(Volume(data=np.zeros((2, 3, 8, 8), np.float32), source=tmp_path / "x",
                              voxel_size_nm=None))  # it was called "a 2-D image (8 x 8 px)"
    signed = np.zeros((4, 9, 11), np.float32)
    signed[0] = -0.0  # it read "every voxel has the value -0"
    negzero = write_volume_tiff(tmp_path / "negzero.tif", signed)
    with pytest.raises(BlankImageError, match="every voxel has the value 0: "):
        check_tomogram(read_volume(negzero))
    nan = np.full((4, 9, 11), np.nan, np.float32)
    nan[1, 2, 3] = np.inf
    with pytest.raises(BlankImageError, match="no finite voxel"):
        check_tomogram(read_volume(write_volume_tiff(tmp_path / "nan.tif", nan)))
    nan[2, 2, 2], nan[3, 3, 3] = 1.5, 1.5  # finite, but one value: no contrast either
    with pytest.raises(BlankImageError) as error:
        check_tomogram(read_volume(write_volume_tiff(tmp_path / "flat.tif", nan)))
    # the voxels without data are not said to hold the value
    assert error.value.reason.startswith("every voxel with data has the value 1.5 (the other "
                                         f"{nan.size - 2:,} are NaN or infinite)")
    nan[0, 0, 0] = 2.0  # some NaN voxels in a volume with contrast are no reason to refuse
    assert check_tomogram(read_volume(write_volume_tiff(tmp_path / "some.tif", nan)))


@pytest.mark.parametrize("shape", [(5, 1, 1), (5, 4, 1), (5, 1, 4), (2, 1, 1)])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_what_the_writers_write_reads_back_whatever_the_last_axis(tmp_path, shape, dtype):
    # Was: tifffile took a trailing axis of length 1 as the samples, so write_volume_tiff wrote
    # a (5, 1, 1) volume as one page of 5 x 1 px under an ImageJ header declaring 5 images,
    # and read_volume refused our own file as "ImageJ header declares 5 images, the file
    # holds 1" (a TruncatedTiffError, a damaged file, which it was not).
    data = _image(shape, dtype)
    vol = read_volume(write_volume_tiff(tmp_path / "v.tif", data, voxel_size_nm=(2.0, 1.0, 1.0)))
    assert vol.data.shape == shape and np.array_equal(vol.data, data, equal_nan=True)
    assert vol.voxel_size_nm == (2.0, 1.0, 1.0)
    frames = read_frames(write_stack_tiff(tmp_path / "s.tif", data))
    assert len(frames) == shape[0] and np.array_equal(np.stack([f.image for f in frames]), data)


def test_a_volume_needs_two_voxels_along_every_axis_one_rule_for_reader_and_writer(tmp_path):
    # The writer writes any shape and the reader reads it back (above); what is a tomogram is
    # check_tomogram's one rule, the same for Y and X as for Z: at least 2 voxels along each
    # axis. Training, the service and replay apply it; each refusal says what the file is.
    for shape, kind in [((5, 1, 1), "a line of voxels"), ((5, 4, 1), "a 2-D section"),
                        ((5, 1, 4), "a 2-D section")]:
        path = write_volume_tiff(tmp_path / "v.tif", _image(shape, "float32"))
        with pytest.raises(UnsupportedLayoutError) as error:
            check_tomogram(read_volume(path))
        _assert_names_file(error, path)
        assert error.value.reason == (
            f"5 slices of {shape[1]} x {shape[2]} px: {kind}, not a volume: a tomogram has at "
            "least 2 voxels along each of Z, Y and X")
    smallest = read_volume(write_volume_tiff(tmp_path / "v.tif", _image((2, 2, 2), "uint8")))
    assert check_tomogram(smallest) is smallest


# ------------------------------------------------------------- metadata from other writers


@pytest.mark.parametrize(
    ("unit", "nm_per_unit"),
    [
        ("nm", 1.0),
        ("micron", 1e3),
        ("um", 1e3),
        ("\\u00B5m", 1e3),  # how ImageJ escapes µm
        ("\\u00C5", 0.1),  # Å
        ("angstrom", 0.1),
        ("mm", 1e6),
    ],
)
def test_tifffile_imagej_writer_units(tmp_path, unit, nm_per_unit):
    xy_nm, z_nm = 0.8, 2.4
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        _image((3, 16, 16), "uint16"),
        imagej=True,
        resolution=(nm_per_unit / xy_nm, nm_per_unit / xy_nm),
        metadata={"axes": "ZYX", "unit": unit, "spacing": z_nm / nm_per_unit},
    )
    assert read_volume(path).voxel_size_nm == pytest.approx((z_nm, xy_nm, xy_nm))
    assert [f.pixel_size_nm for f in read_frames(path)] == pytest.approx([xy_nm] * 3)


def test_an_imagej_stack_without_spacing_declares_no_depth_unless_its_pixels_are_one_unit(
        tmp_path):
    # ImageJ writes no `spacing` line when the voxel depth is 1 unit, which is also Fiji's
    # default: a Fiji tomogram of 0.32 nm pixels saved without a voxel depth read as
    # 1000 x 0.32 x 0.32 nm, its row stored z = 1000 and a model's check flagged it
    # voxel_size_mismatch against a training volume of 0.32 nm voxels.
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, _image((3, 8, 8), "uint8"), imagej=True,
                     resolution=(1 / 0.00032, 1 / 0.00032),
                     metadata={"axes": "ZYX", "unit": "micron"})
    with capture_logs() as logs:
        volume = read_volume(path)
    assert volume.voxel_size_nm is None
    assert volume.declared_voxel_size_nm == (None, pytest.approx(0.32), pytest.approx(0.32))
    (warning,) = [e for e in logs if e["event"] == "io.voxel_depth_implied"]
    assert warning["path"] == str(path) and warning["voxel_depth_nm"] == pytest.approx(1000)
    assert "3125 times the pixel size" in warning["reason"]
    assert "Image > Properties" in warning["reason"]
    # the unit as Fiji shows it, not as ImageJ's metadata escapes it
    micro = tmp_path / "micro.tif"
    tifffile.imwrite(micro, _image((3, 8, 8), "uint8"), imagej=True,
                     resolution=(1 / 0.00032, 1 / 0.00032),
                     metadata={"axes": "ZYX", "unit": "\\u00B5m"})
    with capture_logs() as logs:
        assert read_volume(micro).voxel_size_nm is None
    (warning,) = [e for e in logs if e["event"] == "io.voxel_depth_implied"]
    assert "the slices 1 \u00b5m apart" in warning["reason"], warning["reason"]
    # 2 x the pixel size, as undeclared as 3125 x
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, _image((3, 8, 8), "uint8"), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "unit": "nm"})
    assert read_volume(path).voxel_size_nm is None
    # pixels of 1 unit: the voxels are cubic whether the depth was set or not
    cubic = tmp_path / "cubic.tif"
    tifffile.imwrite(cubic, _image((3, 8, 8), "uint8"), imagej=True, resolution=(1.0, 1.0),
                     metadata={"axes": "ZYX", "unit": "nm"})
    with capture_logs() as logs:
        assert read_volume(cubic).voxel_size_nm == pytest.approx((1.0, 1.0, 1.0))
    assert not [e for e in logs if e["event"] == "io.voxel_depth_implied"]
    # a depth the file states, however large, is the user's: no warning
    stated = tmp_path / "stated.tif"
    tifffile.imwrite(stated, _image((3, 8, 8), "uint8"), imagej=True,
                     resolution=(500.0, 500.0),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 1.0})
    with capture_logs() as logs:
        assert read_volume(stated).voxel_size_nm == pytest.approx((1000.0, 2.0, 2.0))
    assert not [e for e in logs if e["event"] == "io.voxel_depth_implied"]
    # frames take x and y alone, as before
    assert [f.pixel_size_nm for f in read_frames(path)] == pytest.approx([0.5] * 3)


@pytest.mark.parametrize(
    ("unit", "nm_per_unit"), [("CENTIMETER", 1e7), ("INCH", 2.54e7),
                              # tifffile's own units: the pixel size was dropped without a word
                              ("MILLIMETER", 1e6), ("MICROMETER", 1e3)]
)
def test_plain_resolution_tags(tmp_path, unit, nm_per_unit):
    path = tmp_path / "plain.tif"
    per_unit = nm_per_unit / 2.5  # 2.5 nm pixels
    tifffile.imwrite(path, _image((12, 12), "uint16"), resolution=(per_unit, per_unit),
                     resolutionunit=unit, metadata=None)
    (frame,) = read_frames(path)
    assert frame.pixel_size_nm == pytest.approx(2.5, rel=1e-6)
    assert inspect_tiff(path).layout == "tiff"


def test_a_stack_with_one_damaged_page_is_refused_naming_that_page(tmp_path):
    # before: "pixel data could not be read (...)", and nothing said where to look in it
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _image((5, 16, 16), "uint16"), compression="zlib",
                     photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[3].dataoffsets[0], tif.pages[3].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = bytes(count)
    path.write_bytes(bytes(data))
    with pytest.raises(TruncatedTiffError, match=r"stack.tif: pixel data of page 3 could "
                                                 r"not be read \("):
        read_frames(path)
    with pytest.raises(TruncatedTiffError, match="pixel data of page 3 could not be read"):
        nio.tiff.read_frame_at(path, 3)


def test_a_png_or_jpeg_under_a_tiff_name_is_named_as_such(tmp_path):
    # before: only "not a TIFF file (no TIFF or BigTIFF header)"
    import cv2

    for suffix, says in ((".png", "it holds a PNG image"), (".jpg", "it holds a JPEG image")):
        ok, data = cv2.imencode(suffix, np.zeros((8, 8), np.uint8))
        path = tmp_path / f"frame{suffix}.tif"
        path.write_bytes(data.tobytes())
        with pytest.raises(NotATiffError, match=f"no TIFF or BigTIFF header\\): {says}"):
            read_frames(path)


def test_resolution_unit_none_and_desktop_dpi_give_no_size(tmp_path):
    none_unit = tmp_path / "none.tif"
    tifffile.imwrite(none_unit, _image((8, 8), "uint8"), resolution=(3.0, 3.0),
                     resolutionunit="NONE", metadata=None)
    assert read_frames(none_unit)[0].pixel_size_nm is None
    dpi72 = tmp_path / "dpi72.tif"
    tifffile.imwrite(dpi72, _image((8, 8), "uint8"), resolution=(72.0, 72.0),
                     resolutionunit="INCH", metadata=None)
    with capture_logs() as logs:
        assert read_frames(dpi72)[0].pixel_size_nm is None
    assert any(entry["event"] == "io.pixel_size_ignored" for entry in logs)


def test_a_size_below_a_picometre_is_no_calibration(tmp_path):
    # metres written without a unit, read in OME's default micrometres: 5e-10 um = 5e-7 nm,
    # which filled every *_nm column a million times too small without a word
    path = tmp_path / "metres.ome.tif"
    tifffile.imwrite(path, _image((2, 8, 8), "uint16"), metadata={
        "axes": "TYX", "PhysicalSizeX": 5e-10, "PhysicalSizeY": 5e-10})
    with capture_logs() as logs:
        assert [f.pixel_size_nm for f in read_frames(path)] == [None, None]
    assert {(e["event"], e["axis"]) for e in logs} == {
        ("io.pixel_size_ignored", "x"), ("io.pixel_size_ignored", "y")}
    assert "below" in logs[0]["reason"]
    finest = tmp_path / "finest.ome.tif"  # 5 pm, an atomic-resolution STEM image's pixel
    tifffile.imwrite(finest, _image((8, 8), "uint16"), metadata={
        "axes": "YX", "PhysicalSizeX": 5, "PhysicalSizeXUnit": "pm",
        "PhysicalSizeY": 5, "PhysicalSizeYUnit": "pm"})
    assert read_frames(finest)[0].pixel_size_nm == pytest.approx(0.005)


def test_a_pixel_size_declared_for_one_axis_only_is_no_calibration(tmp_path):
    """An OME-TIFF with PhysicalSizeX and no PhysicalSizeY was read as square pixels of x's
    size without a word; OME's missing PhysicalSizeY is unknown, as a tomogram's missing z
    is, so the frame has none, with a warning naming the file and the missing axis."""
    path = tmp_path / "x_only.ome.tif"
    tifffile.imwrite(path, _image((2, 8, 8), "uint16"), metadata={
        "axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "nm"})
    with capture_logs() as logs:
        assert [f.pixel_size_nm for f in read_frames(path)] == [None, None]
    (warning,) = logs  # one a file, not one a frame
    assert (warning["event"], warning["path"], warning["source"], warning["axis"]) == (
        "io.pixel_size_ignored", str(path), "ome", "y")
    assert "x 0.5 nm without a y size" in warning["reason"]
    # a y size ignored as implausible leaves x alone too: said for y twice, why each time
    implausible = tmp_path / "y_dpi.ome.tif"
    tifffile.imwrite(implausible, _image((8, 8), "uint16"), metadata={
        "axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 265, "PhysicalSizeYUnit": "µm"})
    with capture_logs() as logs:
        assert read_frames(implausible)[0].pixel_size_nm is None
    assert [(e["axis"], e["reason"].split(":")[0]) for e in logs] == [
        ("y", "265000 nm is above 10000 nm"), ("y", "x 0.5 nm without a y size")]
    # both declared: read, without a word
    both = tmp_path / "both.ome.tif"
    tifffile.imwrite(both, _image((8, 8), "uint16"), metadata={
        "axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.5, "PhysicalSizeYUnit": "nm"})
    with capture_logs() as logs:
        assert read_frames(both)[0].pixel_size_nm == 0.5
    assert logs == []


def test_a_calibration_converted_to_nm_is_its_decimal(tmp_path):
    """1.234 Å times 0.1 and ImageJ's 5000/617 pixels a nm both gave 0.12340000000000001."""
    ome = tmp_path / "angstrom.ome.tif"
    tifffile.imwrite(ome, _image((8, 8), "uint16"), metadata={
        "axes": "YX", "PhysicalSizeX": 1.234, "PhysicalSizeXUnit": "Å",
        "PhysicalSizeY": 1.234, "PhysicalSizeYUnit": "Å"})
    assert read_frames(ome)[0].pixel_size_nm == 0.1234
    imagej = tmp_path / "imagej.tif"
    tifffile.imwrite(imagej, _image((8, 8), "uint16"), imagej=True,
                     resolution=(1 / 0.1234, 1 / 0.1234), metadata={"unit": "nm"})
    assert tifffile.TiffFile(imagej).pages[0].tags["XResolution"].value == (5000, 617)
    assert read_frames(imagej)[0].pixel_size_nm == 0.1234


def test_ome_tiff_physical_sizes_and_acquisition_date(tmp_path):
    path = tmp_path / "tomo.ome.tif"
    volume = _image((4, 10, 12), "uint16")
    tifffile.imwrite(path, volume, metadata={
        "axes": "ZYX",
        "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.5, "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 0.002, "PhysicalSizeZUnit": "µm",
        "AcquisitionDate": "2026-11-21T07:45:01.5+00:00",
    })
    read = read_volume(path)
    np.testing.assert_array_equal(read.data, volume)
    assert read.voxel_size_nm == pytest.approx((2.0, 0.5, 0.5))
    frames = read_frames(path)
    assert frames[0].acquired_at == datetime(2026, 11, 21, 7, 45, 1, 500000, tzinfo=UTC)
    assert frames[0].acquired_at_source == "metadata"
    assert inspect_tiff(path).layout == "ome"
    default_unit = tmp_path / "um.ome.tif"  # OME's default unit is the micrometre
    tifffile.imwrite(default_unit, volume, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.001, "PhysicalSizeY": 0.001, "PhysicalSizeZ": 0.003})
    assert read_volume(default_unit).voxel_size_nm == pytest.approx((3.0, 1.0, 1.0))


def test_ome_tiff_with_singleton_channel_and_time_is_a_volume(tmp_path):
    path = tmp_path / "tczyx.ome.tif"
    volume = _image((1, 1, 3, 8, 8), "uint8")
    tifffile.imwrite(path, volume, metadata={"axes": "TCZYX"})
    read = read_volume(path)
    assert read.data.shape == (3, 8, 8)
    np.testing.assert_array_equal(read.data, volume[0, 0])


def test_datetime_tag_is_local_time(tmp_path, local_tz):
    path = tmp_path / "dt.tif"
    tifffile.imwrite(path, _image((8, 8), "uint16"), datetime="2026:03:04 05:06:07",
                     metadata=None)
    (frame,) = read_frames(path)
    # Berlin is UTC+1 in March (before the switch to summer time).
    assert frame.acquired_at == datetime(2026, 3, 4, 4, 6, 7, tzinfo=UTC)
    assert frame.acquired_at_source == "metadata"


def test_per_page_datetime_tags(tmp_path, local_tz):
    path = tmp_path / "pages.tif"
    stamps = ["2026:01:02 03:04:05", "2026:01:02 03:04:09", "2026:01:02 03:05:00"]
    with tifffile.TiffWriter(path) as tif:
        for stamp in stamps:
            tif.write(_image((8, 8), "uint16"), datetime=stamp, metadata=None)
    frames = read_frames(path)
    start = datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)  # Berlin is UTC+1 in January
    assert [f.acquired_at - start for f in frames] == [
        timedelta(0), timedelta(seconds=4), timedelta(seconds=55)]
    assert {f.acquired_at_source for f in frames} == {"metadata"}


def test_per_page_datetime_tags_with_fractions_of_a_second(tmp_path, local_tz):
    # Writers of fast series append milliseconds to the 20-byte TIFF DateTime; read without
    # them the frames of one second shared a time, and ".250" made the tag unreadable.
    path = tmp_path / "fast.tif"
    stamps = ["2026:01:02 03:04:05.000", "2026:01:02 03:04:05.250", "2026/01/02 03:04:05.5"]
    with tifffile.TiffWriter(path) as tif:
        for stamp in stamps:  # tifffile's datetime= takes the standard form only
            tif.write(_image((8, 8), "uint16"), metadata=None,
                      extratags=[(306, "s", 0, stamp, True)])
    frames = read_frames(path)
    start = datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)  # Berlin is UTC+1 in January
    assert [(f.acquired_at - start).total_seconds() for f in frames] == [0.0, 0.25, 0.5]


def test_own_writer_datetime_tag_agrees_with_precise_time(tmp_path, local_tz):
    path = write_frame_tiff(tmp_path / "f.tif", _image((8, 8), "uint16"), acquired_at=T0)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["DateTime"].value
    local = datetime.strptime(tag, "%Y:%m:%d %H:%M:%S").astimezone(UTC)
    assert local == T0.replace(microsecond=0)


def test_imagej_frame_interval_gives_per_frame_times(tmp_path):
    path = tmp_path / "fi.tif"
    tifffile.imwrite(path, _image((4, 8, 8), "uint16"), imagej=True,
                     datetime="2026:01:02 03:04:05",
                     metadata={"axes": "TYX", "finterval": 0.5})
    times = [f.acquired_at for f in _frames_in_utc(path)]
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert times == [start + timedelta(seconds=0.5 * i) for i in range(4)]


def test_imagej_frame_interval_without_a_datetime_ends_at_the_mtime(tmp_path):
    # ImageJ writes no DateTime tag: a Fiji series' frames all got the file's mtime, its
    # finterval unread. The save came after the last frame: that time point takes the mtime.
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, _image((2, 3, 8, 8), "uint16"), imagej=True,
                     metadata={"axes": "TZYX", "finterval": 0.5})
    saved = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    os.utime(path, (saved.timestamp(), saved.timestamp()))
    frames = read_frames(path)
    assert {f.acquired_at_source for f in frames} == {"mtime"}
    assert [(f.acquired_at - saved).total_seconds() for f in frames] == [-0.5] * 3 + [0.0] * 3
    damaged = tmp_path / "fiji_damaged.tif"  # back past 1990: the mtime for every frame
    tifffile.imwrite(damaged, _image((3, 8, 8), "uint16"), imagej=True,
                     metadata={"axes": "TYX", "finterval": 1e9})
    os.utime(damaged, (saved.timestamp(), saved.timestamp()))
    with capture_logs() as logs:
        frames = read_frames(damaged)
    assert {f.acquired_at for f in frames} == {saved}
    assert "before 1990" in [e for e in logs if e["event"] == "io.times_ignored"][0]["reason"]
    # a PC whose clock was never set: its mtime is kept, and so is the interval
    unset = datetime(1970, 1, 1, 0, 10, tzinfo=UTC)
    os.utime(path, (unset.timestamp(), unset.timestamp()))
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [(f.acquired_at - unset).total_seconds() for f in frames] == [-0.5] * 3 + [0.0] * 3
    assert [e["event"] for e in logs] == ["io.mtime_implausible"]


@pytest.mark.parametrize(("tunit", "step_s"), [
    ("ms", 0.04), ("msec", 0.04), ("\\u00B5s", 40e-6), ("min", 2400.0), ("sec", 40.0)])
def test_imagej_frame_interval_is_in_the_time_unit_imagej_wrote(tmp_path, tunit, step_s):
    # Fiji's Image > Properties: "Frame interval: 40 ms" is saved as finterval=40 with
    # tunit=ms (no tunit line for seconds); read as seconds, the frames lay 1000x too far apart
    path = tmp_path / "fast.tif"
    tifffile.imwrite(path, _image((3, 8, 8), "uint16"), imagej=True,
                     datetime="2026:01:02 03:04:05",
                     metadata={"axes": "TYX", "finterval": 40, "tunit": tunit})
    times = [f.acquired_at for f in _frames_in_utc(path)]
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert times == [start + timedelta(seconds=step_s * i) for i in range(3)]


def test_imagej_frame_interval_in_an_unknown_time_unit_is_not_read(tmp_path):
    path = tmp_path / "frames.tif"
    tifffile.imwrite(path, _image((3, 8, 8), "uint16"), imagej=True,
                     datetime="2026:01:02 03:04:05",
                     metadata={"axes": "TYX", "finterval": 2, "tunit": "frame"})
    with capture_logs() as logs:
        frames = read_frames(path)
    assert len({f.acquired_at for f in frames}) == 1
    assert [e["path"] for e in logs if e["event"] == "io.times_ignored"] == [str(path)]


def test_imagej_frame_interval_steps_once_per_time_point_of_a_hyperstack(tmp_path, local_tz):
    # ImageJ's finterval is the time between T frames: the Z slices of one time point of a
    # TZYX hyperstack (read as frames in file order) share its time.
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, _image((2, 3, 8, 8), "uint16"), imagej=True,
                     datetime="2026:01:02 03:04:05",
                     metadata={"axes": "TZYX", "finterval": 10.0})
    start = datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)  # Berlin is UTC+1 in January
    assert [(f.acquired_at - start).total_seconds() for f in read_frames(path)] == [
        0.0, 0.0, 0.0, 10.0, 10.0, 10.0]


_OME_DATE = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
             'Schemas/OME/2016-06"><Image ID="Image:0"><AcquisitionDate>{}</AcquisitionDate>'
             '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="8" SizeY="8" '
             'SizeZ="1" SizeC="1" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
             '<TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>')


@pytest.mark.parametrize(("name", "kind", "stamp"), [
    ("net_min.ome.tif", "ome", "0001-01-01T00:00:00"),  # .NET's DateTime.MinValue: unset
    ("net_min_zone.ome.tif", "ome", "0001-01-01T00:00:00+01:00"),
    ("net_min_utc.ome.tif", "ome", "0001-01-01T00:00:00Z"),
    ("max.ome.tif", "ome", "9999-12-31T23:59:59-05:00"),
    ("unset_clock.tif", "tag", "1970:01:01 00:00:00"),
    ("max.tif", "tag", "9999:12:31 23:59:59"),
])
def test_a_time_outside_the_plausible_years_is_ignored_not_a_refusal(tmp_path, local_tz, name,
                                                                     kind, stamp):
    # as the DigitalMicrograph, EMD and TIA readers do; before, year 1 or 9999 overflowed the
    # conversion to UTC and refused a sound frame as "corrupt TIFF structure", and year 1 in
    # UTC or 1970 (a clock never set) were rows stamped with that year as "metadata"
    path = tmp_path / name
    if kind == "ome":
        tifffile.imwrite(path, _image((8, 8), "uint16"), description=_OME_DATE.format(stamp),
                         metadata=None)
    else:
        tifffile.imwrite(path, _image((8, 8), "uint16"), metadata=None,
                         extratags=[(306, "s", 0, stamp, True)])
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert frame.acquired_at_source == "mtime"
    assert frame.acquired_at == datetime.fromtimestamp(path.stat().st_mtime, UTC)
    assert [e["path"] for e in logs if e["event"] == "io.times_ignored"] == [str(path)]


@pytest.mark.parametrize("interval_s", [1e12, 1e300])
def test_an_imagej_interval_that_puts_frames_past_the_plausible_years_is_ignored(tmp_path,
                                                                                 interval_s):
    path = tmp_path / "fi.tif"
    tifffile.imwrite(path, _image((3, 8, 8), "uint16"), imagej=True,
                     datetime="2026:01:02 03:04:05",
                     metadata={"axes": "TYX", "finterval": interval_s})
    with capture_logs() as logs:
        frames = _frames_in_utc(path)
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert [f.acquired_at for f in frames] == [start] * 3
    assert {f.acquired_at_source for f in frames} == {"metadata"}
    assert [e["path"] for e in logs if e["event"] == "io.times_ignored"] == [str(path)]


def test_mtime_fallback(tmp_path):
    path = write_stack_tiff(tmp_path / "s.tif", _image((2, 8, 8), "uint16"))
    stamp = datetime(2025, 6, 7, 8, 9, 10, 250000, tzinfo=UTC)
    os.utime(path, (stamp.timestamp(), stamp.timestamp()))
    frames = read_frames(path)
    assert [f.acquired_at_source for f in frames] == ["mtime", "mtime"]
    assert all(f.acquired_at == stamp for f in frames)
    assert frames[0].pixel_size_nm is None


@pytest.mark.parametrize("year", [1970, 2250])
def test_an_mtime_of_an_implausible_year_is_kept_with_a_warning(tmp_path, year):
    """Nothing else tells the time: the mtime stays, and the log says the clock looks unset
    (a 1970 row was written without a word)."""
    path = write_stack_tiff(tmp_path / "s.tif", _image((2, 8, 8), "uint16"))
    stamp = datetime(year, 1, 1, 0, 0, 5, tzinfo=UTC)
    os.utime(path, (stamp.timestamp(), stamp.timestamp()))
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [(f.acquired_at, f.acquired_at_source) for f in frames] == [(stamp, "mtime")] * 2
    (warning,) = [e for e in logs if e["event"] == "io.mtime_implausible"]
    assert warning["path"] == str(path) and warning["year"] == year
    assert str(year) in warning["reason"]
    with capture_logs() as logs:
        os.utime(path, (stamp.timestamp(), datetime(2026, 1, 1, tzinfo=UTC).timestamp()))
        read_frames(path)
    assert not [e for e in logs if e["event"] == "io.mtime_implausible"]


def test_an_mrc_with_an_mtime_of_1970_warns_too(tmp_path):
    import mrcfile

    path = tmp_path / "v.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(_image((2, 8, 8), "int16"))
    os.utime(path, (0.0, 0.0))
    with capture_logs() as logs:
        frames = read_frames(path)
    assert {f.acquired_at_source for f in frames} == {"mtime"}
    assert [e["path"] for e in logs if e["event"] == "io.mtime_implausible"] == [str(path)]


def test_big_endian_and_bigtiff(tmp_path):
    image = _image((3, 10, 14), "uint16")
    big_endian = tmp_path / "be.tif"
    tifffile.imwrite(big_endian, image, byteorder=">", photometric="minisblack")
    read = read_volume(big_endian).data
    assert read.dtype.isnative
    np.testing.assert_array_equal(read, image)
    bigtiff = tmp_path / "big.tif"
    tifffile.imwrite(bigtiff, image, bigtiff=True, photometric="minisblack")
    np.testing.assert_array_equal(read_volume(bigtiff).data, image)


def test_plain_multipage_and_compressed(tmp_path):
    path = tmp_path / "pages.tif"
    pages = _image((3, 16, 16), "int16")
    with tifffile.TiffWriter(path) as tif:
        for page in pages:
            tif.write(page, compression="zlib", metadata=None)
    frames = read_frames(path)
    assert len(frames) == 3
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.image, pages[i])
    assert inspect_tiff(path).compression == "ADOBE_DEFLATE"
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, pages, tile=(16, 16), compression="zlib", predictor=True,
                     photometric="minisblack")
    np.testing.assert_array_equal(read_volume(tiled).data, pages)


def test_hyperstack_frames_in_file_order_but_not_a_volume(tmp_path):
    path = tmp_path / "tz.tif"
    data = _image((2, 3, 8, 8), "uint16")
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    frames = read_frames(path)
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), data.reshape(6, 8, 8))
    with pytest.raises(UnsupportedLayoutError) as error:
        read_volume(path)
    _assert_names_file(error, path)


def test_pages_of_another_shape_are_ignored_with_a_warning(tmp_path):
    path = tmp_path / "thumb.tif"
    pages = _image((2, 16, 16), "uint8")
    with tifffile.TiffWriter(path) as tif:
        for page in pages:
            tif.write(page, metadata=None, contiguous=False)
        tif.write(_image((4, 4), "uint8"), metadata=None)  # a thumbnail
    with capture_logs() as logs:
        frames = read_frames(path)
        inspect_tiff(path)  # described again (replay inspects, then reads): said once
    assert [f.image.shape for f in frames] == [(16, 16), (16, 16)]
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]
    assert logs[0]["ignored_shapes"] == [(4, 4)] and logs[0]["ignored_dtypes"] == ["uint8"]


def test_pages_written_one_call_each_are_all_read(tmp_path, local_tz):
    # tifffile's own (shaped) format makes one series per TiffWriter.write call: a file that
    # acquisition software grew one page at a time. Every page is a frame, with its own
    # resolution tags and DateTime.
    path = tmp_path / "grown.tif"
    pages = _image((3, 16, 16), "uint16")
    sizes_nm = [2.5, 2.5, 4.0]
    stamps = ["2026:01:02 03:04:05", "2026:01:02 03:04:09", "2026:01:02 03:05:00"]
    with tifffile.TiffWriter(path) as tif:
        for page, size_nm, stamp in zip(pages, sizes_nm, stamps, strict=True):
            tif.write(page, resolution=(1e7 / size_nm, 1e7 / size_nm),
                      resolutionunit="CENTIMETER", datetime=stamp)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series) == 3  # what the reader has to put back together
    info = inspect_tiff(path)
    assert (info.n_pages, info.shape, info.axes) == (3, (3, 16, 16), "IYX")
    with capture_logs() as logs:
        frames = read_frames(path)
    assert logs == []
    assert [f.index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), pages)
    assert [f.pixel_size_nm for f in frames] == pytest.approx(sizes_nm, rel=1e-6)
    start = datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)  # Berlin is UTC+1 in January
    assert [f.acquired_at - start for f in frames] == [
        timedelta(0), timedelta(seconds=4), timedelta(seconds=55)]
    np.testing.assert_array_equal(read_volume(path).data, pages)


@pytest.mark.parametrize(("n_pages", "kind"), [(3, "generic"), (8, "uniform")])
def test_plain_pages_each_get_their_own_pixel_size_and_time(tmp_path, local_tz, n_pages, kind):
    # a writer without tifffile's description (libtiff, camera software), one page at a time:
    # tifffile makes one series of all pages of one shape whatever their tags say ("uniform",
    # from 8 pages, gives the later pages without their tags); the magnification changed
    # halfway, and every page has its DateTime
    path = tmp_path / "zoomed.tif"
    pages = _image((n_pages, 16, 16), "uint16")
    sizes_nm = [2.5 if i < n_pages // 2 else 4.0 for i in range(n_pages)]
    with tifffile.TiffWriter(path) as tif:
        for i, (page, size_nm) in enumerate(zip(pages, sizes_nm, strict=True)):
            tif.write(page, resolution=(1e7 / size_nm, 1e7 / size_nm),
                      resolutionunit="CENTIMETER", metadata=None,
                      extratags=[(306, "s", 0, f"2026:01:02 03:04:{i:02d}.5", True)])
    with tifffile.TiffFile(path) as tif:
        assert [s.kind for s in tif.series] == [kind]
    frames = read_frames(path)
    assert [f.pixel_size_nm for f in frames] == pytest.approx(sizes_nm, rel=1e-6)
    start = datetime(2026, 1, 2, 2, 4, 0, 500000, tzinfo=UTC)  # Berlin is UTC+1 in January
    assert [f.acquired_at - start for f in frames] == [timedelta(seconds=i)
                                                        for i in range(n_pages)]
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), pages)
    anisotropic = tmp_path / "anisotropic_page.tif"
    with tifffile.TiffWriter(anisotropic) as tif:
        for i in range(n_pages):
            tif.write(pages[i], resolution=(4e6, 4e6 if i < n_pages - 1 else 2.5e6),
                      resolutionunit="CENTIMETER", metadata=None)
    with pytest.raises(AnisotropicPixelsError, match="differs from y 4 nm"):
        read_frames(anisotropic)


def test_a_page_of_another_size_inside_a_long_plain_stack_is_ignored_with_a_warning(tmp_path):
    # 8 or more plain pages make tifffile's "uniform" series, which failed on a page of
    # another size among them ("incompatible keyframe"): the file was quarantined as corrupt
    # while the same page at its end, or in a shorter stack, was passed over with a warning
    path = tmp_path / "survey_inside.tif"
    pages = _image((20, 16, 16), "uint16")
    with tifffile.TiffWriter(path) as tif:
        for i, page in enumerate(pages):
            tif.write(page, metadata=None)
            if i == 9:
                tif.write(_image((4, 4), "uint16"), metadata=None)  # a survey image
    with capture_logs() as logs:
        frames = read_frames(path)
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), pages)
    assert [f.index for f in frames] == list(range(20))
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]
    assert logs[0]["ignored_shapes"] == [(4, 4)]


def test_pages_binned_partway_are_named_not_dropped_silently(tmp_path):
    # tifffile makes the pages of a plain file a half (third, quarter) the size of the first
    # ones a pyramid level of theirs, which is not among its series: frames written after the
    # camera's binning changed were left out without a word
    path = tmp_path / "binned.tif"
    with tifffile.TiffWriter(path) as tif:
        for i in range(12):
            tif.write(_image((16, 16) if i < 6 else (8, 8), "uint16"), metadata=None)
    with tifffile.TiffFile(path) as tif:
        assert [s.shape for s in tif.series] == [(6, 16, 16)]  # what the reader is given
    with capture_logs() as logs:
        frames = read_frames(path)
    assert len(frames) == 6
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]
    assert logs[0]["ignored_shapes"] == [(6, 8, 8)]


def test_pages_written_one_call_each_skip_a_thumbnail(tmp_path):
    path = tmp_path / "grown_thumb.tif"
    pages = _image((2, 16, 16), "uint8")
    with tifffile.TiffWriter(path) as tif:
        tif.write(pages[0])
        tif.write(_image((4, 4), "uint8"))  # a thumbnail between frames
        tif.write(pages[1])
    with capture_logs() as logs:
        frames = read_frames(path)
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), pages)
    assert [f.index for f in frames] == [0, 1]
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]
    assert logs[0]["read_shape"] == (2, 16, 16) and logs[0]["ignored_shapes"] == [(4, 4)]


@pytest.mark.parametrize("first_shape", [(64, 64), (8, 8)], ids=["survey", "thumbnail"])
def test_a_first_page_of_another_size_does_not_stand_for_the_stack_after_it(
        tmp_path, local_tz, first_shape):
    # A camera SDK writing one page per call: a survey image (or a thumbnail not marked
    # reduced) first, then the in-situ frames. The first page used to decide the stack: one
    # frame read, the 12 after it dropped with a log line. Every reader gives the 12 frames.
    path = tmp_path / "survey_first.tif"
    frames_px = _image((12, 16, 16), "uint16")
    with tifffile.TiffWriter(path) as tif:
        tif.write(_image(first_shape, "uint16"), metadata=None,
                  resolution=(1e7 / 9.0, 1e7 / 9.0), resolutionunit="CENTIMETER",
                  datetime="2026:03:01 11:59:00")
        for i, page in enumerate(frames_px):
            tif.write(page, metadata=None, resolution=(1e7 / 2.5, 1e7 / 2.5),
                      resolutionunit="CENTIMETER", datetime=f"2026:03:01 12:00:{i:02d}")
    with capture_logs() as logs:
        info = inspect_tiff(path)
        frames = read_frames(path)
    assert (info.n_pages, info.shape) == (12, (12, 16, 16))
    assert [f.index for f in frames] == list(range(12))
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), frames_px)
    assert [f.pixel_size_nm for f in frames] == pytest.approx([2.5] * 12, rel=1e-6)
    start = datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC)  # Berlin is UTC+1 in March
    assert [f.acquired_at - start for f in frames] == [timedelta(seconds=i) for i in range(12)]
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]  # the first page named
    assert logs[0]["read_shape"] == (12, 16, 16) and logs[0]["ignored_shapes"] == [first_shape]
    assert_chunks_are_the_whole_read(path, [1, 5, 12], [0, 11])
    with nio.FrameReader(path) as reader:
        assert_same_frame(reader.frame(11), frames[11])
    np.testing.assert_array_equal(read_volume(path).data, frames_px)


def test_ome_image_with_the_most_frames_is_read_with_its_own_metadata(tmp_path):
    # An OME-TIFF whose Image 0 is an overview and Image 1 the time series: only the
    # overview was read. The series is read, with Image 1's pixel size and time.
    path = tmp_path / "two_images.ome.tif"
    overview, series = _image((32, 32), "uint16"), _image((6, 16, 16), "uint16")
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(overview, photometric="minisblack", metadata={
            "axes": "YX", "Name": "overview", "PhysicalSizeX": 9.0, "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 9.0, "PhysicalSizeYUnit": "nm",
            "AcquisitionDate": "2026-03-01T11:00:00+00:00"})
        tif.write(series, photometric="minisblack", metadata={
            "axes": "TYX", "Name": "in-situ", "PhysicalSizeX": 2.5, "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 2.5, "PhysicalSizeYUnit": "nm",
            "AcquisitionDate": "2026-03-01T12:00:00+00:00",
            "TimeIncrement": 2.0, "TimeIncrementUnit": "s"})
    with tifffile.TiffFile(path) as tif:
        assert [s.shape for s in tif.series] == [(32, 32), (6, 16, 16)]
    with capture_logs() as logs:
        info = inspect_tiff(path)
        frames = read_frames(path)
    assert (info.n_pages, info.shape, info.axes, info.layout) == (6, (6, 16, 16), "TYX", "ome")
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), series)
    assert [f.pixel_size_nm for f in frames] == pytest.approx([2.5] * 6)
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert [f.acquired_at for f in frames] == [start + timedelta(seconds=2 * i)
                                              for i in range(6)]
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]
    assert logs[0]["ignored_shapes"] == [(32, 32)]
    assert_chunks_are_the_whole_read(path, [1, 4], [0, 5])


def test_a_reduced_resolution_first_page_is_not_the_frame(tmp_path):
    # A preview written before the image and marked as such (NewSubfileType 1): tifffile
    # makes it a series of its own, the first one. The frame is the full-resolution page.
    path = tmp_path / "preview_first.tif"
    image = _image((16, 16), "uint16")
    with tifffile.TiffWriter(path) as tif:
        tif.write(_image((4, 4), "uint8"), subfiletype=1, metadata=None,
                  resolution=(1e7 / 10.0, 1e7 / 10.0), resolutionunit="CENTIMETER")
        tif.write(image, metadata=None, resolution=(1e7 / 2.5, 1e7 / 2.5),
                  resolutionunit="CENTIMETER")
    with capture_logs() as logs:
        frames = read_frames(path)
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0].image, image)
    assert frames[0].pixel_size_nm == pytest.approx(2.5)
    assert inspect_tiff(path).shape == (16, 16)
    np.testing.assert_array_equal(read_volume(path).data, image[None])
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]
    assert logs[0]["ignored_shapes"] == [(4, 4)]


def test_pages_written_one_call_each_are_refused_as_a_whole(tmp_path):
    # A grey first page does not make an RGB file readable; a later page of another pixel
    # type is not part of the stack.
    rgb_first = tmp_path / "rgb_first.tif"
    with tifffile.TiffWriter(rgb_first) as tif:
        tif.write(_image((16, 16, 3), "uint8"), photometric="rgb")
        tif.write(_image((16, 16), "uint8"))
    with pytest.raises(MultichannelError) as error:
        read_frames(rgb_first)
    _assert_names_file(error, rgb_first)
    # a colour picture saved before a grey stack of more frames is not the stack
    rgb_then_stack = tmp_path / "rgb_then_stack.tif"
    grey = _image((3, 16, 16), "uint8")
    with tifffile.TiffWriter(rgb_then_stack) as tif:
        tif.write(_image((16, 16, 3), "uint8"), photometric="rgb")
        for page in grey:
            tif.write(page)
    with capture_logs() as logs:
        np.testing.assert_array_equal(np.stack([f.image for f in read_frames(rgb_then_stack)]),
                                      grey)
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]
    assert logs[0]["ignored_shapes"] == [(16, 16, 3)]
    other_type = tmp_path / "other_type.tif"
    with tifffile.TiffWriter(other_type) as tif:
        tif.write(_image((16, 16), "uint8"))
        tif.write(_image((16, 16), "uint16"))
    with capture_logs() as logs:
        assert len(read_frames(other_type)) == 1
    assert [e["event"] for e in logs] == ["io.extra_series_ignored"]


def test_unit_to_nm():
    assert unit_to_nm("µm") == 1e3 and unit_to_nm("\u03bcm") == 1e3
    assert unit_to_nm("\u212b") == 0.1 and unit_to_nm(" NM ") == 1.0
    assert unit_to_nm("pixel") is None and unit_to_nm("furlong") is None


# ----------------------------------------------------------------------------- bad input


def test_not_a_tiff(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("this is a text file with a .tif name\n")
    for reader in (inspect_tiff, read_frames, read_volume):
        with pytest.raises(NotATiffError) as error:
            reader(path)
        _assert_names_file(error, path)
    assert "convert" not in str(error.value)  # a .tif: nothing to suggest


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tif"
    path.touch()
    with pytest.raises(EmptyFileError) as error:
        read_frames(path)
    _assert_names_file(error, path)
    assert "0 bytes" in str(error.value)


def _cut_points(path: Path) -> list[int]:
    """Lengths that lose header, IFDs, tag values or pixels. (Writers may leave unreferenced
    bytes at the very end; cutting those loses nothing, so size - 1 is not among them.)"""
    size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        data_end = max(
            o + c for p in tif.pages for o, c in zip(p.dataoffsets, p.databytecounts, strict=True)
        )
    return [3, 7, 100, size // 3, size // 2, size - 200, data_end - 1]


@pytest.mark.parametrize("layout", ["ours", "plain", "shaped_pages", "zlib", "ome"])
def test_truncated_files(tmp_path, layout):
    path = tmp_path / "full.tif"
    data = _image((4, 32, 32), "uint16")
    if layout == "ours":
        write_stack_tiff(path, data, pixel_size_nm=1.0, acquired_at=[T0] * 4)
    elif layout == "plain":
        with tifffile.TiffWriter(path) as tif:
            for page in data:
                tif.write(page, metadata=None)
    elif layout == "shaped_pages":  # one tifffile series per page
        with tifffile.TiffWriter(path) as tif:
            for page in data:
                tif.write(page)
    elif layout == "zlib":
        tifffile.imwrite(path, data, imagej=True, compression="zlib", metadata={"axes": "TYX"})
    else:
        path = tmp_path / "full.ome.tif"
        tifffile.imwrite(path, data, metadata={"axes": "ZYX"})
    assert len(read_frames(path)) == 4
    full = path.read_bytes()
    for cut in _cut_points(path):
        part = tmp_path / f"cut{cut}.tif"
        part.write_bytes(full[:cut])
        with pytest.raises(TruncatedTiffError) as error:
            inspect_tiff(part)
        _assert_names_file(error, part)
        # what to do: as the other formats' refusals of a file cut short say
        assert "cut short" in error.value.reason, error.value.reason
        assert "still being written?" in error.value.reason, error.value.reason
        with pytest.raises(TruncatedTiffError):
            read_frames(part)


def test_imagej_stack_with_one_image_directory_for_all_pages(tmp_path):
    # ImageJ's layout for stacks over 4 GB: one IFD, then every page's pixels back to back.
    stack = _image((4, 16, 16), "uint16")
    path = write_stack_tiff(tmp_path / "big_layout.tif", stack)
    one_ifd_for_all_pages(path)
    assert inspect_tiff(path).n_pages == 4
    np.testing.assert_array_equal(np.stack([f.image for f in read_frames(path)]), stack)


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_one_page_of_a_stack_with_one_image_directory_for_all_pages(tmp_path, byteorder):
    # read_frame_at (the labelling page, the label queue's image of a stack) reads any page
    # of ImageJ's layout for stacks over 4 GB, not only the first, from that page's bytes
    stack = _image((4, 16, 16), "uint16")
    path = tmp_path / "big_layout.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TYX"}, byteorder=byteorder)
    one_ifd_for_all_pages(path)
    for index in range(4):
        frame = nio.read_frame_at(path, index)
        assert frame.index == index
        assert frame.image.dtype.isnative
        np.testing.assert_array_equal(frame.image, stack[index])
    chunks = list(nio.read_frame_chunks(path, 2))
    np.testing.assert_array_equal(np.stack([f.image for c in chunks for f in c]), stack)


def _long_stack(path: Path, stack: np.ndarray, layout: str) -> Path:
    """``stack`` written as a recording: one IFD per page, ImageJ's one IFD for all pages
    (its layout for stacks over 4 GB), or an MRC movie stack."""
    if layout == "pages":
        tifffile.imwrite(path, stack)
    elif layout == "one_ifd":
        write_stack_tiff(path, stack)
        one_ifd_for_all_pages(path)
    else:
        import mrcfile

        with mrcfile.new(path) as mrc:
            mrc.set_data(stack)
            mrc.set_image_stack()
    return path


@pytest.mark.parametrize("layout", ["pages", "one_ifd", "mrc"])
def test_a_stack_over_the_whole_read_limit_is_read_by_page_and_refused_whole(
        tmp_path, monkeypatch, layout):
    # MAX_FILE_BYTES bounds what is read whole (all pages in memory at once); a recording
    # read a page or a chunk at a time, as the service and replay read it, may be longer:
    # it was refused by its structural check (a 20,000-frame 512 x 512 uint16 stack is 10 GiB)
    from chunkkit import assert_read_by_chunks_past_the_whole_read_limit

    stack = _image((6, 16, 16), "uint16")
    path = _long_stack(tmp_path / ("rec.mrcs" if layout == "mrc" else "rec.tif"), stack, layout)
    refused = assert_read_by_chunks_past_the_whole_read_limit(path, stack, monkeypatch)
    with pytest.raises(ImageTooLargeError) as error:  # a tomogram is read whole too
        read_volume(path)
    assert str(error.value) == refused


def test_one_page_of_a_cut_short_stack_with_one_image_directory_is_an_input_error(tmp_path):
    stack = _image((4, 16, 16), "uint16")
    path = write_stack_tiff(tmp_path / "big_layout.tif", stack)
    data_end = one_ifd_for_all_pages(path) + 4 * 16 * 16 * 2
    assert inspect_tiff(path).n_pages == 4
    with open(path, "r+b") as handle:  # the last page's pixels cut short after the check
        handle.truncate(data_end - 100)
    with pytest.raises(TruncatedTiffError) as error:
        nio.read_frame_at(path, 3)
    _assert_names_file(error, path)


def test_imagej_stack_with_only_its_first_page_written(tmp_path):
    # What a streaming writer leaves: IFD 0 ends the chain, pixels of page 0 only.
    path = first_page_only(tmp_path / "s.tif", _image((4, 16, 16), "uint16"))
    with pytest.raises(TruncatedTiffError) as error:
        inspect_tiff(path)
    _assert_names_file(error, path)
    assert "declares 4 images" in str(error.value)
    assert str(error.value).endswith("cut short (still being written?)")


def test_ome_stack_with_fewer_pages_written_than_its_header_declares(tmp_path):
    # an OME writer that puts the header first and appends planes: 3 of 5 written so far
    path = tmp_path / "growing.ome.tif"
    description = _OME_DATE.format("2026-01-02T03:04:05Z").replace(
        'SizeT="1"', 'SizeT="5"').replace('PlaneCount="1"', 'PlaneCount="5"')
    tifffile.imwrite(path, _image((3, 8, 8), "uint16"), description=description,
                     metadata=None, photometric="minisblack")
    with pytest.raises(TruncatedTiffError) as error:
        read_frames(path)
    _assert_names_file(error, path)
    assert str(error.value).endswith("page 3 is missing: cut short (still being written?)")


def _with_imagej_header(path: Path, stack: np.ndarray, dimensions: str) -> Path:
    with tifffile.TiffWriter(path) as tif:
        tif.write(stack, photometric="minisblack", metadata=None,
                  description=f"ImageJ=1.54f\n{dimensions}\nunit=nm\nfinterval=1\n")
    return path


@pytest.mark.parametrize("dimensions", ["images=abc", "images=2\nframes=2.5", "images=1e400"])
def test_malformed_imagej_header_is_refused_naming_the_file(tmp_path, dimensions):
    # Hand-edited or foreign "ImageJ=" descriptions: tifffile raises TypeError or makes a
    # series of 2.5 frames; either used to escape as a traceback (a replay ended there).
    path = _with_imagej_header(tmp_path / "bad.tif", _image((2, 8, 8), "uint16"), dimensions)
    for reader in (inspect_tiff, read_frames, read_volume):
        with pytest.raises(TruncatedTiffError) as error:
            reader(path)
        _assert_names_file(error, path)
        assert "ImageJ" in str(error.value) or "metadata" in str(error.value)
    if dimensions == "images=abc":  # what to look at, not only Python's words
        assert "ImageJ header (the ImageDescription tag: images=" in str(error.value)


def test_imagej_header_tifffile_passes_over_still_reads_the_pages(tmp_path):
    # "slices=1e400" does not fit the pages: tifffile reads them as a plain series; the
    # calibration's metadata readers must not fail on the number either.
    stack = _image((2, 8, 8), "uint16")
    path = _with_imagej_header(tmp_path / "odd.tif", stack, "images=2\nslices=1e400")
    np.testing.assert_array_equal(np.stack([f.image for f in read_frames(path)]), stack)
    assert read_volume(path).data.shape == (2, 8, 8)


_OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _multifile_ome(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A two-file OME-TIFF dataset as Micro-Manager splits one: a.ome.tif holds the metadata
    of all 4 time points and planes 0-1, b.ome.tif planes 2-3 and a BinaryOnly reference."""
    uuid_a, uuid_b = (f"urn:uuid:0000000{c}-0000-4000-8000-000000000000" for c in "ab")
    tiffdata = "".join(
        f'<TiffData FirstT="{first}" IFD="0" PlaneCount="2"><UUID FileName="{name}">{uuid}'
        "</UUID></TiffData>" for first, name, uuid in ((0, "a.ome.tif", uuid_a),
                                                       (2, "b.ome.tif", uuid_b)))
    meta_a = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{_OME_NS}" UUID="{uuid_a}">'
              '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" '
              'SizeX="12" SizeY="10" SizeZ="1" SizeC="1" SizeT="4" PhysicalSizeX="0.25" '
              'PhysicalSizeY="0.25" PhysicalSizeXUnit="nm" PhysicalSizeYUnit="nm">'
              f'<Channel ID="Channel:0:0" SamplesPerPixel="1"/>{tiffdata}</Pixels></Image></OME>')
    meta_b = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{_OME_NS}" UUID="{uuid_b}">'
              f'<BinaryOnly MetadataFile="a.ome.tif" UUID="{uuid_a}"/></OME>')
    planes_a, planes_b = _image((2, 10, 12), "uint16"), _image((2, 10, 12), "uint16")
    for name, planes, meta in (("a.ome.tif", planes_a, meta_a), ("b.ome.tif", planes_b, meta_b)):
        tifffile.imwrite(folder / name, planes, description=meta, metadata=None,
                         photometric="minisblack")
    return folder / "a.ome.tif", folder / "b.ome.tif", planes_a, planes_b


@pytest.mark.parametrize("in_its_folder", [False, True])
def test_a_file_of_a_multifile_ome_dataset_is_read_alone(tmp_path, monkeypatch, in_its_folder):
    # tifffile follows the OME TiffData to the other files by name, relative to the working
    # directory for an open handle: a.ome.tif gave 4 frames (b's too) when run from its
    # folder and was refused ("page 2 is missing") from anywhere else. Each file is its own
    # input (its readiness, its content hash): its own planes, the metadata it carries.
    (tmp_path / "acq").mkdir()
    first, second, planes_a, planes_b = _multifile_ome(tmp_path / "acq")
    monkeypatch.chdir(tmp_path / "acq" if in_its_folder else tmp_path)
    frames = read_frames(first)
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), planes_a)
    assert [f.pixel_size_nm for f in frames] == [0.25, 0.25]
    assert inspect_tiff(first).n_pages == 2
    np.testing.assert_array_equal(read_volume(first).data, planes_a)
    frames = read_frames(second)
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), planes_b)
    assert [f.pixel_size_nm for f in frames] == [None, None]


def test_corrupt_tag_of_a_later_page_is_refused_naming_the_file(tmp_path):
    # ImageJ stacks are read as one block; a later page's IFD is parsed only for its times.
    # A damaged ImageLength there (count 9: a tuple for tifffile) raised a bare TypeError.
    path = tmp_path / "damaged.tif"
    tifffile.imwrite(path, _image((3, 8, 8), "uint16"), imagej=True, metadata={"axes": "TYX"},
                     datetime="2026:01:02 03:04:05")
    with tifffile.TiffFile(path) as tif:
        count_at = tif.pages[2].tags[257].offset + 4  # entry: code, type, count, value
    raw = bytearray(path.read_bytes())
    raw[count_at : count_at + 4] = struct.pack("<I", 9)
    path.write_bytes(raw)
    with pytest.raises(TruncatedTiffError) as error:
        read_frames(path)
    _assert_names_file(error, path)
    assert "corrupt" in str(error.value)


def test_corrupt_compressed_data_passes_inspect_but_not_read(tmp_path):
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, _image((3, 64, 64), "uint16"), imagej=True, compression="zlib",
                     metadata={"axes": "TYX"})
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[1].dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[offset + 10 : offset + 200] = bytes(190)
    path.write_bytes(raw)
    assert inspect_tiff(path).n_pages == 3  # headers are fine
    with pytest.raises(TruncatedTiffError) as error:
        read_frames(path)
    _assert_names_file(error, path)


def test_rgb_and_multichannel(tmp_path):
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, _image((10, 12, 3), "uint8"), photometric="rgb")
    with pytest.raises(MultichannelError) as error:
        read_frames(rgb)
    _assert_names_file(error, rgb)
    assert "(10, 12, 3)" in str(error.value)
    channels = tmp_path / "two_channels.tif"
    tifffile.imwrite(channels, _image((3, 2, 10, 12), "uint16"), imagej=True,
                     metadata={"axes": "ZCYX"})
    for reader in (inspect_tiff, read_frames, read_volume):
        with pytest.raises(MultichannelError) as error:
            reader(channels)
        assert "(3, 2, 10, 12)" in str(error.value)


@pytest.mark.parametrize("scale", [257, 256])
def test_a_palette_of_grey_levels_equal_to_its_indices_is_read_as_stored(tmp_path, scale):
    # Zeiss SmartSEM (i * 257) and AxioVision (i * 256) save grey images as palette TIFFs
    # whose palette shows index i as grey i: such a frame was refused as a colour image
    ramp = np.arange(256, dtype=np.uint16) * scale
    stack = _image((2, 10, 12), "uint8")
    path = tmp_path / "sem.tif"
    tifffile.imwrite(path, stack, photometric="palette", colormap=np.stack([ramp] * 3))
    assert inspect_tiff(path).shape == (2, 10, 12)
    np.testing.assert_array_equal(np.stack([f.image for f in read_frames(path)]), stack)
    np.testing.assert_array_equal(read_volume(path).data, stack)
    coloured = np.stack([ramp] * 3)
    coloured[0, 9] = 65535  # one index shown red (an annotation colour): not a grey image
    for colormap in (coloured, np.stack([ramp[::-1]] * 3)):  # inverted grey: not as stored
        tifffile.imwrite(path, stack, photometric="palette", colormap=colormap)
        with pytest.raises(MultichannelError, match="palette"):
            read_frames(path)


def test_inverted_grey_is_refused(tmp_path):
    # PhotometricInterpretation MinIsWhite: 0 is white. Read as stored, the frame's contrast
    # would be inverted (a dark droplet bright) and segmented without a word.
    path = tmp_path / "min_is_white.tif"
    tifffile.imwrite(path, _image((10, 12), "uint16"), photometric="miniswhite")
    for reader in (inspect_tiff, read_frames, read_volume):
        with pytest.raises(MultichannelError) as error:
            reader(path)
        _assert_names_file(error, path)
        assert "MinIsWhite" in str(error.value)


@pytest.mark.parametrize("photometric", ["cfa", "logl", "mask"])
def test_a_single_channel_image_that_is_not_grey_levels_is_refused(tmp_path, photometric):
    # before: a camera's raw colour mosaic (CFA), a LogL or a transparency mask was read and
    # segmented as a grey frame
    path = tmp_path / f"{photometric}.tif"
    tifffile.imwrite(path, _image((10, 12), "uint16"), photometric=photometric)
    for reader in (inspect_tiff, read_frames, read_volume):
        with pytest.raises(MultichannelError) as error:
            reader(path)
        _assert_names_file(error, path)
        assert (f"not a grey image (PhotometricInterpretation {photometric.upper()})"
                in str(error.value))


def test_a_grey_image_without_photometric_interpretation_is_read_as_min_is_black(tmp_path):
    # tifffile reads the missing tag as 0, MinIsWhite's value: the frame was refused as an
    # inverted grey image
    path = tmp_path / "plain.tif"
    image = _image((10, 12), "uint16")
    tifffile.imwrite(path, image, photometric="minisblack", metadata=None)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        at = tif.pages[0].tags[262].offset
    data[at:at + 2] = struct.pack("<H", 65000)  # the tag renamed: a private one, unread
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        assert 262 not in tif.pages[0].tags
    np.testing.assert_array_equal(read_frames(path)[0].image, image)


def _crafted_tiff(path: Path, width: int, height: int, n_pages: int = 1) -> None:
    """A classic little-endian TIFF whose IFDs declare width x height uint16 pages
    but hold only 16 bytes of pixel data each."""
    entries_per_ifd = 8
    ifd_size = 2 + 12 * entries_per_ifd + 4
    first_ifd = 8
    data_at = first_ifd + n_pages * ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", first_ifd))
    for page in range(n_pages):
        next_ifd = first_ifd + (page + 1) * ifd_size if page + 1 < n_pages else 0
        tags = [  # (code, type, count, value): types 3 SHORT, 4 LONG
            (256, 4, 1, width),
            (257, 4, 1, height),
            (258, 3, 1, 16),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
            (273, 4, 1, data_at + 16 * page),
            (278, 4, 1, height),
            (279, 4, 1, 16),
        ]
        out += struct.pack("<H", len(tags))
        for code, kind, count, value in tags:
            packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack(
                "<I", value)
            out += struct.pack("<HHI", code, kind, count) + packed
        out += struct.pack("<I", next_ifd)
    out += bytes(16 * n_pages)
    path.write_bytes(bytes(out))


def test_absurd_declared_size_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.tif"
    _crafted_tiff(path, 100_000, 100_000)  # 1e10 pixels = 20 GB of uint16
    assert path.stat().st_size < 200
    tracemalloc.start()
    try:
        for reader in (inspect_tiff, read_frames, read_volume):
            with pytest.raises(ImageTooLargeError) as error:
                reader(path)
            _assert_names_file(error, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000
    assert "100000 x 100000" in str(error.value)


def test_damaged_tile_size_is_refused_before_decoding(tmp_path):
    # A TileWidth damaged to 822083600 on a 24 x 20 page: decoding one tile would allocate
    # 26 GB (a MemoryError, not an InputError, where it is refused at all).
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, _image((24, 20), "uint16"), tile=(16, 16), compression="zlib",
                     metadata=None)
    with tifffile.TiffFile(path) as tif:
        value_at = tif.pages.first.tags[322].valueoffset  # TileWidth
    raw = bytearray(path.read_bytes())
    raw[value_at : value_at + 4] = struct.pack("<I", 822083600)
    path.write_bytes(raw)
    for reader in (inspect_tiff, read_frames):
        with pytest.raises(ImageTooLargeError) as error:
            reader(path)
        _assert_names_file(error, path)
        assert "822083600 x 16" in str(error.value)


def test_crafted_small_tiff_reads_and_volume_limit(tmp_path, monkeypatch):
    path = tmp_path / "small.tif"
    _crafted_tiff(path, 4, 2, n_pages=3)  # the crafting helper itself makes valid files
    assert read_volume(path).data.shape == (3, 2, 4)
    monkeypatch.setattr(nio.limits, "MAX_FILE_BYTES", 3 * 2 * 4 * 2 - 1)
    with pytest.raises(ImageTooLargeError) as error:
        read_volume(path)
    _assert_names_file(error, path)


def test_stack_truncated_by_missing_pixels_of_crafted_file(tmp_path):
    path = tmp_path / "short.tif"
    _crafted_tiff(path, 8, 8, n_pages=2)  # declares 128 bytes per page, holds 16
    with pytest.raises(TruncatedTiffError) as error:
        inspect_tiff(path)
    _assert_names_file(error, path)


def _with_compression_code(path: Path, code: int) -> None:
    """Overwrite the Compression tag of an uncompressed single-page file."""
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["Compression"]
        value_at = tag.valueoffset
    raw = bytearray(path.read_bytes())
    raw[value_at : value_at + 2] = struct.pack("<H", code)
    path.write_bytes(raw)


def test_compression_that_cannot_be_decoded(tmp_path):
    unknown = tmp_path / "unknown.tif"
    tifffile.imwrite(unknown, _image((8, 8), "uint16"), metadata=None)
    _with_compression_code(unknown, 60001)
    with pytest.raises(UnsupportedCompressionError) as error:
        inspect_tiff(unknown)
    _assert_names_file(error, unknown)
    assert "60001" in str(error.value)


def test_lzw_compressed_frames_are_read(tmp_path):
    # imagecodecs is a runtime dependency: LZW is what many acquisition programs write.
    image = _image((32, 48), "uint16")
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, image, compression="lzw", metadata=None)
    assert inspect_tiff(path).compression == "LZW"
    np.testing.assert_array_equal(read_frames(path)[0].image, image)


@pytest.mark.parametrize(("dtype", "options"), [
    ("uint16", {"compression": "lzw", "predictor": True}),
    ("uint16", {"compression": "zlib", "predictor": True}),
    ("uint16", {"compression": "zstd"}),
    ("uint16", {"compression": "packbits"}),
    ("float32", {"compression": "zlib", "predictor": 3}),  # floating-point predictor
    ("uint16", {"compression": "zlib", "tile": (16, 16), "bigtiff": True}),
])
def test_codecs_acquisition_software_writes_are_read(tmp_path, dtype, options):
    image = _image((32, 48), dtype)
    path = tmp_path / "compressed.tif"
    tifffile.imwrite(path, image, metadata=None, **options)
    np.testing.assert_array_equal(read_frames(path)[0].image, image)


def test_packed_12_bit_frames_are_read(tmp_path):
    # Cameras with 10-, 12- or 14-bit converters may store their counts packed (1.5 bytes a
    # pixel at 12 bits); they decode to uint16. Complete files are not truncated ones.
    stack = RNG.integers(0, 4096, (3, 16, 21)).astype(np.uint16)
    path = tmp_path / "packed12.tif"
    for metadata in (None, {}):  # pages parsed one by one; later pages as tifffile frames
        tifffile.imwrite(path, stack, bitspersample=12, photometric="minisblack",
                         metadata=metadata)
        frames = read_frames(path)
        np.testing.assert_array_equal(np.stack([f.image for f in frames]), stack)
        assert inspect_tiff(path).dtype == np.uint16
    short = tmp_path / "packed12_short.tif"
    short.write_bytes(path.read_bytes()[:-100])  # the last page cut short
    with pytest.raises(TruncatedTiffError) as error:
        read_frames(short)
    _assert_names_file(error, short)


def test_jpeg_compressed_frames_are_read(tmp_path):
    image = np.tile(np.arange(48, dtype=np.uint8) * 5, (32, 1))  # smooth: JPEG keeps it
    path = tmp_path / "jpeg.tif"
    tifffile.imwrite(path, image, compression="jpeg", metadata=None)
    frame = read_frames(path)[0].image
    assert frame.dtype == np.uint8 and frame.shape == image.shape
    assert np.abs(frame.astype(int) - image).max() <= 8


@pytest.mark.parametrize(("dtype", "advice"), [
    ("complex64", ""), ("float64", "save it as float32"),
    ("uint32", "16 bits (uint16) if the values fit, else as float32; a label image: uint8"),
    ("int32", "16 bits (int16) if the values fit, else as float32; a label image: uint8"),
    ("int8", "save it as int16"), ("float16", "save it as float32"),
    ("bool", "1-bit")])
def test_unsupported_dtypes(tmp_path, dtype, advice):
    path = tmp_path / f"{dtype}.tif"
    tifffile.imwrite(path, np.zeros((8, 8), dtype), metadata=None)
    with pytest.raises(UnsupportedDtypeError) as error:
        read_frames(path)
    _assert_names_file(error, path)
    assert dtype in str(error.value)
    assert advice in str(error.value)  # a tomogram saved from numpy is often float64


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_permissions(tmp_path):
    path = write_frame_tiff(tmp_path / "secret.tif", _image((8, 8), "uint8"))
    path.chmod(0)
    try:
        with pytest.raises(UnreadableFileError) as error:
            read_frames(path)
        _assert_names_file(error, path)
    finally:
        path.chmod(0o644)


def test_permission_error_is_wrapped(tmp_path, monkeypatch):
    # Runs also as root: simulate what the kernel says to an unprivileged service user.
    path = write_frame_tiff(tmp_path / "secret.tif", _image((8, 8), "uint8"))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(nio.regular, "open_regular", denied)  # what every reader opens with
    with pytest.raises(UnreadableFileError) as error:
        inspect_tiff(path)
    _assert_names_file(error, path)
    assert "permission denied" in str(error.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "absent.tif")
    with pytest.raises(NotARegularFileError, match="not a regular file: a folder") as error:
        inspect_tiff(tmp_path)
    _assert_names_file(error, tmp_path)


def _round_trip(error: BaseException) -> BaseException:
    """``error`` pickled and read back as a process pool does, without the exception pickling
    that a Dask import installs (tblib, through ``copyreg``), which would hide a failure."""
    import io

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {}
    pickler.dump(error)
    return pickle.loads(buffer.getvalue())


@pytest.mark.parametrize("error_type", [TruncatedTiffError, DatasetLayoutError])
def test_errors_pickle_with_path_and_reason(tmp_path, error_type):
    # DatasetLayoutError (read_image_2d's) once failed to unpickle: a multiprocessing.Pool
    # mapping the reader over a bad file waited for ever on the lost result
    error = error_type(tmp_path / "a.tif", "cut short")
    again = _round_trip(error)
    assert type(again) is error_type
    assert (again.path, again.reason, str(again)) == (error.path, error.reason, str(error))


def test_dataset_reader_error_comes_back_from_a_process_pool(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    from nwwatch.io.dataset import read_image_2d

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with ProcessPoolExecutor(1) as pool:
        future = pool.submit(read_image_2d, bad)
        with pytest.raises(DatasetLayoutError) as error:
            future.result(timeout=120)  # (a broken pickle left the pool waiting for ever)
    assert error.value.path == bad and "cannot be read" in error.value.reason


# ------------------------------------------------------------------------------- writers


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "frame.tif"
    write_frame_tiff(target, _image((8, 8), "uint16"))
    before = target.read_bytes()

    def fail(handle, *args, **kwargs):
        handle.write(b"II*\x00partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", fail)
    with pytest.raises(OSError, match="No space"):
        write_frame_tiff(target, _image((8, 8), "uint16"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.tif"]
    assert target.read_bytes() == before  # the old file is untouched


def test_written_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_frame_tiff(tmp_path / "f.tif", _image((8, 8), "uint8"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_writer_rejects_bad_arguments(tmp_path):
    path = tmp_path / "x.tif"
    with pytest.raises(ValueError, match="timezone-aware"):
        write_frame_tiff(path, _image((8, 8), "uint8"), acquired_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="2 dimensions"):
        write_frame_tiff(path, _image((2, 8, 8), "uint8"))
    with pytest.raises(TypeError, match="float64"):
        write_frame_tiff(path, np.zeros((8, 8)))
    with pytest.raises(ValueError, match="positive"):
        write_frame_tiff(path, _image((8, 8), "uint8"), pixel_size_nm=-1.0)
    with pytest.raises(ValueError, match="2 times for 3 frames"):
        write_stack_tiff(path, _image((3, 8, 8), "uint8"), acquired_at=[T0, T0])
    # each of these raised an error not naming its argument, or was written (True: 1 nm)
    for size in (True, "0.5"):
        with pytest.raises(TypeError, match=f"pixel_size_nm must be a number of nm, got "
                                            f"{size!r}"):
            write_frame_tiff(path, _image((8, 8), "uint8"), pixel_size_nm=size)
    with pytest.raises(TypeError, match="voxel_size_nm must be one number or .z, y, x."):
        write_volume_tiff(path, _image((2, 8, 8), "uint8"), voxel_size_nm=(None, 1.0, 1.0))
    with pytest.raises(TypeError, match="acquired_at must be a sequence of N datetimes"):
        write_stack_tiff(path, _image((3, 8, 8), "uint8"), acquired_at=T0)
    assert not path.exists()


def test_writers_take_big_endian_pixels_as_their_values(tmp_path):
    # what mrcfile or a FITS reader hands back: refused as "dtype >u2 is not supported
    # (uint8, uint16, ...)"
    image = _image((8, 8), "uint16")
    path = write_frame_tiff(tmp_path / "be.tif", image.astype(">u2"), pixel_size_nm=0.5)
    np.testing.assert_array_equal(read_frames(path)[0].image, image)
    volume = _image((2, 8, 8), "float32")
    path = write_volume_tiff(tmp_path / "bev.tif", volume.astype(">f4"), voxel_size_nm=1.0)
    np.testing.assert_array_equal(read_volume(path).data, volume)


@pytest.mark.parametrize("frames", [3, 4])
def test_a_short_stack_that_tifffile_stored_as_rgb_says_how_to_write_it(tmp_path, frames):
    """tifffile.imwrite of 3 or 4 grey frames (N, H, W) without ``photometric`` stores them as
    one RGB(A) image with separate planes: refused as colour, and the reason said nothing of
    why a stack of frames reads as colour."""
    path = tmp_path / "stack.tif"
    with pytest.warns(DeprecationWarning):  # tifffile's own notice that it does this
        tifffile.imwrite(path, np.zeros((frames, 32, 32), np.uint16))
    with pytest.raises(MultichannelError) as error:
        read_frames(path)
    assert "photometric='minisblack'" in error.value.reason
    tifffile.imwrite(path, np.zeros((frames, 32, 32), np.uint16), photometric="minisblack")
    assert len(read_frames(path)) == frames  # as the reason says


def test_a_stack_imagej_declares_as_channels_says_how_to_declare_slices(tmp_path):
    # tifffile.imwrite(path, volume, imagej=True) writes a (Z, Y, X) array as channels
    # ("channels=64"): a tomogram saved so was refused as "64 channels per pixel", with no
    # word on how to save it as slices.
    path = tmp_path / "rec.tif"
    tifffile.imwrite(path, _image((6, 10, 12), "float32"), imagej=True)
    for reader in (read_frames, read_volume):
        with pytest.raises(MultichannelError) as error:
            reader(path)
        _assert_names_file(error, path)
        assert "6 channels per pixel" in str(error.value)
        assert "metadata={'axes': 'ZYX'}" in str(error.value)
        assert "Re-order Hyperstack" in str(error.value)
    rgb = tmp_path / "rgb.tif"  # colour is colour: no such advice
    tifffile.imwrite(rgb, _image((10, 12, 3), "uint8"), photometric="rgb")
    with pytest.raises(MultichannelError) as error:
        read_volume(rgb)
    assert "axes" not in str(error.value).split(";")[-1]


def _odd_page_stack(path: Path, odd: str, n: int = 8) -> list[np.ndarray]:
    """``n`` plain pages of 48 x 48 uint16 written one call each; page 3 differs by ``odd``."""
    rng = np.random.default_rng(5)
    pages = [rng.integers(0, 4000, (48, 48), dtype=np.uint16) for _ in range(n)]
    with tifffile.TiffWriter(path) as writer:
        for i, page in enumerate(pages):
            kw: dict = {"photometric": "minisblack", "metadata": None}
            if i == 3 and odd == "lzw":
                kw["compression"] = "lzw"
            if i == 3 and odd == "float32":
                page = pages[3] = rng.random((48, 48), dtype=np.float32)
            writer.write(page, **kw)
    return pages


def test_an_odd_page_among_eight_or_more_is_not_decoded_as_the_others(tmp_path):
    # before: tifffile took 8+ plain pages for one layout when 3 of them shared it, and page
    # 3's LZW bytes (or its float32 pixels) came back as uint16 frame 3, without a word
    path = tmp_path / "lzw.tif"
    pages = _odd_page_stack(path, "lzw")
    frames = read_frames(path)
    assert [f.index for f in frames] == list(range(8))
    for frame, page in zip(frames, pages, strict=True):
        np.testing.assert_array_equal(frame.image, page)
    path = tmp_path / "float.tif"
    pages = _odd_page_stack(path, "float32")
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [e["event"] for e in logs].count("io.extra_series_ignored") == 1
    kept = [pages[i] for i in (0, 1, 2, 4, 5, 6, 7)]  # as the same file of 7 pages does
    assert len(frames) == 7
    for frame, page in zip(frames, kept, strict=True):
        np.testing.assert_array_equal(frame.image, page)


def test_pages_of_two_storage_layouts_are_frames_in_file_order(tmp_path):
    # before: tifffile grouped pages 0, 2, 4 and 1, 3, 5 (two strip layouts) into two
    # series, read one after the other as frames 0-5
    from chunkkit import assert_chunks_are_the_whole_read

    path = tmp_path / "interleaved.tif"
    with tifffile.TiffWriter(path) as writer:
        for i in range(6):
            writer.write(np.full((64, 64), i, np.uint16), photometric="minisblack",
                         metadata=None, rowsperstrip=64 if i % 2 == 0 else 16)
    frames = read_frames(path)
    assert [int(f.image[0, 0]) for f in frames] == list(range(6))
    assert int(nio.read_frame_at(path, 1).image[0, 0]) == 1
    assert_chunks_are_the_whole_read(path, [1, 4], [1, 5])


def test_an_imagej_header_declaring_fewer_images_than_pages_is_refused_by_name(tmp_path):
    # before: "ValueError: cannot reshape array of size 320 into shape (3,8,8)", and a
    # replay counted the file as failed (tried again), not quarantined
    path = tmp_path / "appended.tif"
    with tifffile.TiffWriter(path) as writer:
        for i, page in enumerate(np.arange(5 * 8 * 8, dtype=np.uint16).reshape(5, 8, 8)):
            writer.write(page, photometric="minisblack", metadata=None, contiguous=False,
                         description="ImageJ=1.54f\nimages=3\nslices=3\n" if i == 0 else None)
    for read in (read_frames, nio.inspect_tiff):
        with pytest.raises(nio.UnsupportedLayoutError, match="declares 3 images, but the file "
                                                             "holds 5 pages"):
            read(path)


def test_imagej_axis_units_are_read_in_their_own_units(tmp_path):
    # before: zunit=micron with spacing=0.004 read as 0.004 nm slices (1000 times too
    # thin); yunit=micron refused square 2 nm pixels as "x 2 nm differs from y 0.002 nm"
    volume = np.random.default_rng(0).integers(0, 60000, (4, 16, 16), dtype=np.uint16)
    z = tmp_path / "zunit.tif"
    tifffile.imwrite(z, volume, imagej=True, resolution=(0.5, 0.5),
                     metadata={"axes": "ZYX", "unit": "nm", "zunit": "micron",
                               "spacing": 0.004})
    assert nio.read_volume(z).voxel_size_nm == pytest.approx((4.0, 2.0, 2.0))
    y = tmp_path / "yunit.tif"
    tifffile.imwrite(y, volume[0], imagej=True, resolution=(0.5, 500.0),
                     metadata={"unit": "nm", "yunit": "micron"})
    assert read_frames(y)[0].pixel_size_nm == pytest.approx(2.0)
    odd = tmp_path / "odd.tif"  # an axis unit that is no length: that axis left unread
    tifffile.imwrite(odd, volume, imagej=True, resolution=(0.5, 0.5),
                     metadata={"axes": "ZYX", "unit": "nm", "zunit": "sec", "spacing": 3})
    with capture_logs() as logs:
        size = nio.read_volume(odd).voxel_size_nm
    assert size is None or size[0] is None  # not 3 nm
    assert any(e["event"] == "io.pixel_size_ignored" and "zunit" in e["reason"] for e in logs)


def test_a_signed_12_bit_page_is_an_unsupported_pixel_format_not_float64(tmp_path):
    # before: "pixel type float64 is not supported ... save it as float32": tifffile's type
    # for a series whose page has none; the file holds no float64
    width = height = 8
    data = bytes(width * height * 12 // 8)
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 12), (259, 3, 1, 1),
            (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 3, 1, height),
            (279, 4, 1, len(data)), (339, 3, 1, 2)]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", c, t, n, v) if t == 4 else struct.pack("<HHIHH", c, t, n, v, 0)
        for c, t, n, v in tags) + b"\0\0\0\0"
    path = tmp_path / "signed12.tif"
    path.write_bytes(b"II*\0" + struct.pack("<I", 8 + len(data)) + data + ifd)
    with pytest.raises(nio.UnsupportedDtypeError, match=r"unsupported pixel format \(12 bits, "
                                                         r"sample format INT\)"):
        nio.inspect_tiff(path)


@pytest.mark.parametrize("dtype", [np.complex64, "int16-complex"])
def test_complex_tiff_pixels_are_refused_as_such(tmp_path, dtype):
    # before: a complex-integer page made tifffile raise a TypeError, refused as a "corrupt
    # TIFF structure" (what the service takes for a file still being written)
    path = tmp_path / "c.tif"
    if dtype == "int16-complex":
        data = bytes(64)
        tags = [(256, 3, 1, 4), (257, 3, 1, 4), (258, 3, 1, 16), (259, 3, 1, 1), (262, 3, 1, 1),
                (273, 4, 1, 8), (277, 3, 1, 1), (278, 3, 1, 4), (279, 4, 1, len(data)),
                (339, 3, 1, 5)]
        ifd = struct.pack("<H", len(tags)) + b"".join(
            struct.pack("<HHII", c, t, n, v) if t == 4 else struct.pack("<HHIHH", c, t, n, v, 0)
            for c, t, n, v in tags) + b"\0\0\0\0"
        path.write_bytes(b"II*\0" + struct.pack("<I", 8 + len(data)) + data + ifd)
    else:
        tifffile.imwrite(path, np.ones((8, 8), dtype))
    with pytest.raises(nio.UnsupportedDtypeError, match="complex"):
        nio.inspect_tiff(path)


def test_a_complex_page_beside_the_image_is_left_out_as_before(tmp_path):
    # a first version of the complex refusal refused the whole file for an FFT page saved
    # beside the image, which is an extra series left out
    path = tmp_path / "with_fft.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.ones((64, 64), np.float32), photometric="minisblack")
        writer.write(np.ones((64, 64), np.complex64))
    assert read_frames(path)[0].image.shape == (64, 64)
