"""Pixel size and time from FEI / Thermo Fisher TIFF metadata and OME plane times; what the
refusals of non-square pixels and colour pictures tell the user to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import tifffile
from structlog.testing import capture_logs

from nwwatch.io import AnisotropicPixelsError, MultichannelError, read_frames, read_volume

RNG = np.random.default_rng(20261205)
_OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _fei_text(*, date: str = "06/13/2016", clock: str = "05:06:40 PM",
              width_m: str = "2.5e-010", height_m: str = "2.5e-010",
              scan: bool = True, image: tuple[int, int] | None = (442, 512),
              databar_rows: int = 29) -> str:
    """The INI text of tag 34682 as FEI's xT software writes it (an abridged copy of the
    layout of RosettaSciIO's FEI-Helios-Ebeam-8bits.tif): CRLF lines, [Section]s, values in
    SI units with three-digit exponents, the US date and a 12-hour clock. ``image``: the
    [Image] (ResolutionY, ResolutionX), the scanned image above the ``databar_rows``
    (DatabarHeight) rows of the page; None: no [Image] section."""
    sections = [
        "[User]", f"Date={date}", f"Time={clock}", "User=supervisor",
        "UserText=in situ", "", "[System]", "Type=DualBeam", "Dnumber=9922607",
        "Software=5.5.1.3318", "Source=FEG", 'SystemType=Helios NanoLab" 660', "",
        "[Beam]", "HV=5000", "Spot=1", "Beam=EBeam", "Scan=EScan", "",
    ]
    if scan:
        sections += [
            "[Scan]", "InternalScan=true", "Dwelltime=1e-005", f"PixelWidth={width_m}",
            f"PixelHeight={height_m}", "HorFieldsize=1.28e-007", "VerFieldsize=1.105e-007",
            "Average=0", "Integrate=1", "FrameTime=2.62", "",
        ]
    else:  # a navigation camera's photograph: no scan, a field of view in metres
        sections += ["[IRBeam]", "HFW=0.202732", "VFW=0.135155", ""]
    if image is not None:
        sections += ["[Image]", "DigitalContrast=1", "DigitalBrightness=0", "Average=0",
                     "Integrate=1", f"ResolutionX={image[1]}", f"ResolutionY={image[0]}",
                     "ZoomFactor=1", "MagnificationMode=3", ""]
    sections += ["[PrivateFei]", "BitShift=0",
                 "DataBarSelected=HV curr tilt mag HFW WD Label MicronBar",
                 "TimeOfCreation=13.06.2016 17:06:40", f"DatabarHeight={databar_rows}", ""]
    return "\r\n".join(sections)


def _write_fei(path: Path, pages: list[str], shape: tuple[int, int] = (16, 16)) -> Path:
    """One page per FEI text, each with the 96 dpi resolution tags FEI's files carry."""
    with tifffile.TiffWriter(path) as tif:
        for text in pages:
            tif.write(RNG.integers(0, 255, shape, dtype=np.uint8), metadata=None,
                      resolution=(96, 96), resolutionunit="INCH",
                      extratags=[(34682, "s", 0, text, True)])
    return path


def test_fei_pixel_size_and_acquisition_time_are_read(tmp_path, local_tz):
    # The [Scan] pixel size (metres) and [User] date and time were ignored: the resolution
    # tags' 96 dpi (265 um) were read, found implausible, and the frame had no pixel size
    # and the file's mtime as its time.
    path = _write_fei(tmp_path / "fei.tif", [_fei_text()])
    assert tifffile.TiffFile(path).fei_metadata["Scan"]["PixelWidth"] == pytest.approx(2.5e-10)
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert frame.pixel_size_nm == pytest.approx(0.25)
    # 05:06:40 PM in Berlin on 13 June (summer time, UTC+2)
    assert frame.acquired_at == datetime(2016, 6, 13, 15, 6, 40, tzinfo=UTC)
    assert frame.acquired_at_source == "metadata"
    assert not [e for e in logs if e["event"] == "io.pixel_size_ignored"]
    # 24-hour clocks and a day above 12 are read too
    path = _write_fei(tmp_path / "fei24.tif", [_fei_text(date="13/06/2016", clock="17:06:40")])
    assert read_frames(path)[0].acquired_at == datetime(2016, 6, 13, 15, 6, 40, tzinfo=UTC)


def test_fei_pixel_sizes_pass_the_plausibility_checks(tmp_path):
    tiny = _write_fei(tmp_path / "tiny.tif", [_fei_text(width_m="2.5e-013",
                                                        height_m="2.5e-013")])
    with capture_logs() as logs:
        assert read_frames(tiny)[0].pixel_size_nm is None
    ignored = [e for e in logs if e["event"] == "io.pixel_size_ignored"]
    assert {(e["source"], e["axis"]) for e in ignored} == {("fei", "x"), ("fei", "y")}
    assert "below" in ignored[0]["reason"]
    odd = _write_fei(tmp_path / "odd.tif", [_fei_text(width_m="2.5e-010",
                                                      height_m="3e-010")])
    with pytest.raises(AnisotropicPixelsError) as error:
        read_frames(odd)
    assert "x 0.25 nm differs from y 0.3 nm" in error.value.reason
    # no [Scan] (a navigation camera's photograph): the resolution tags, 96 dpi, no size
    photo = _write_fei(tmp_path / "navcam.tif", [_fei_text(scan=False)])
    with capture_logs() as logs:
        assert read_frames(photo)[0].pixel_size_nm is None
    assert {e["source"] for e in logs if e["event"] == "io.pixel_size_ignored"} == {"tags"}


def test_fei_times_and_sizes_of_each_page(tmp_path, local_tz):
    texts = [_fei_text(clock="05:06:40 PM", width_m="2.5e-010", height_m="2.5e-010"),
             _fei_text(clock="05:06:43 PM", width_m="5e-010", height_m="5e-010"),
             _fei_text(clock="05:07:10 PM", width_m="5e-010", height_m="5e-010")]
    frames = read_frames(_write_fei(tmp_path / "pages.tif", texts))
    assert [f.pixel_size_nm for f in frames] == pytest.approx([0.25, 0.5, 0.5])
    start = datetime(2016, 6, 13, 15, 6, 40, tzinfo=UTC)
    assert [f.acquired_at - start for f in frames] == [
        timedelta(0), timedelta(seconds=3), timedelta(seconds=30)]


def test_an_unreadable_fei_time_falls_back_with_a_warning(tmp_path):
    path = _write_fei(tmp_path / "bad.tif", [_fei_text(date="00/00/0000")])
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert frame.acquired_at_source == "mtime"
    assert frame.pixel_size_nm == pytest.approx(0.25)
    assert [e["path"] for e in logs if e["event"] == "io.times_ignored"] == [str(path)]


_JEOL_PAD = b"~" * 64


def _write_jeol(path: Path, date_time: str, xml_date_time: str | None,
                optics: str = "") -> Path:
    """A TIFF as JEOL's SightX writes it (the layout of RosettaSciIO's JEOL-SightX-*-dummy.tif):
    Make "JEOL Ltd.", the DateTime tag to the minute without seconds, and, unless
    ``xml_date_time`` is None, the TemReporter XML as the description, with the acquisition
    time and zone, padded with NUL and \\x01 bytes after its end; ``optics``: XML elements
    after the time (its ``Eos`` and ``ImageFormingSystem``)."""
    extratags = [(271, "s", 0, "JEOL Ltd.", True), (306, "s", 0, date_time, True)]
    if xml_date_time is not None:
        xml = ('<?xml version="1.0"?>\r\n<TemReporter xmlns:xsi="http://www.w3.org/2001/'
               'XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">\r\n'
               '  <FormatVersion>1.0</FormatVersion>\r\n'
               '  <Instruments>JEM-ARM200F</Instruments>\r\n'
               '  <Manufacturer>JEOL Ltd.</Manufacturer>\r\n'
               f'  <DateTime>{xml_date_time}</DateTime>\r\n  <Operator>JEOL</Operator>\r\n'
               f'{optics}</TemReporter>')
        extratags.append((270, "s", 0, xml + _JEOL_PAD.decode(), True))
    with tifffile.TiffWriter(path) as tif:
        tif.write(RNG.integers(0, 4095, (16, 16), dtype=np.uint16), metadata=None,
                  resolution=(93, 93), resolutionunit="INCH", extratags=extratags)
    # tifffile writes no NUL inside a text tag: put SightX's padding in afterwards
    padding = b"\x00" * 40 + b"\x01" + b"\x00" * 22 + b"\x01"
    path.write_bytes(path.read_bytes().replace(_JEOL_PAD, padding))
    return path


def test_jeol_sightx_time_is_its_temreporter_time_with_its_zone(tmp_path, local_tz):
    # SightX's DateTime tag, "2019/11/27 16:11", was not read (no seconds): the frame got
    # the mtime. Its XML holds the time to the second with the PC's zone, read in any zone.
    path = _write_jeol(tmp_path / "jeol.tif", "2019/11/27 16:11",
                       "2019-11-27T16:11:26.6205405+09:00")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.description.endswith("\x01")
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert frame.acquired_at == datetime(2019, 11, 27, 7, 11, 26, 620540, tzinfo=UTC)
    assert frame.acquired_at_source == "metadata"
    assert not [e for e in logs if e["event"] == "io.times_ignored"]


def _optics(eos: str, mode: str, selector: str, unit: str) -> str:
    return (f"  <Eos><EosMode>{eos}</EosMode></Eos>\r\n  <ImageFormingSystem><ModeString>"
            f"{mode}</ModeString><SelectorValue>{selector}</SelectorValue>"
            f"<SelectorUnitString>{unit}</SelectorUnitString></ImageFormingSystem>\r\n")


def test_jeol_sightx_tem_pixel_size_is_the_cameras_over_the_magnification(tmp_path):
    # its resolution tags (93 dpi: 273 um, the camera's pixel) were ignored as implausible,
    # so the *_nm columns stayed empty; RosettaSciIO reads 1.8208 nm at 150,000 x
    tem = _write_jeol(tmp_path / "tem.tif", "2019/11/27 16:11", "2019-11-27T16:11:26+09:00",
                      _optics("eosTEM", "MAG", "150000", "X"))
    with capture_logs() as logs:
        (frame,) = read_frames(tem)
    assert frame.pixel_size_nm == pytest.approx(25.4e6 / 93 / 150000, rel=1e-9)
    assert frame.pixel_size_nm == pytest.approx(1.8208, rel=1e-3)
    assert not [e for e in logs if e["event"] == "io.pixel_size_ignored"]
    # a diffraction pattern's pixel is reciprocal, a STEM image's is not in the tags
    for eos, mode, selector, unit in (("eosTEM", "DIFF", "400", "mm"),
                                      ("eosASID", "MAG", "400000", "X")):
        other = _write_jeol(tmp_path / f"{mode}.tif", "2019/11/27 16:11",
                            "2019-11-27T16:11:26+09:00", _optics(eos, mode, selector, unit))
        with capture_logs() as logs:
            (frame,) = read_frames(other)
        assert frame.pixel_size_nm is None
        assert [(e["source"], e["log_level"]) for e in logs
                if e["event"] == "io.pixel_size_ignored"] == [("jeol", "info")]
    # a TEM image without its magnification: said so, not blamed on its mode
    bare = _write_jeol(tmp_path / "bare.tif", "2019/11/27 16:11", "2019-11-27T16:11:26+09:00",
                       _optics("eosTEM", "MAG", "", "X"))
    with capture_logs() as logs:
        assert read_frames(bare)[0].pixel_size_nm is None
    assert [e["reason"] for e in logs if e["event"] == "io.pixel_size_ignored"] == [
        "JEOL SightX TEM image without its magnification (SelectorValue)"]


@pytest.mark.parametrize("xml_date_time", [None, "not a time"])
def test_jeol_sightx_datetime_tag_to_the_minute_without_its_xml(tmp_path, local_tz,
                                                                xml_date_time):
    # Without a readable TemReporter time: the DateTime tag, local time of this machine
    # (Berlin, UTC+2 in July), "7:17" with a one-digit hour as SightX writes it.
    path = _write_jeol(tmp_path / "jeol.tif", "2015/07/30 7:17", xml_date_time)
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert frame.acquired_at == datetime(2015, 7, 30, 5, 17, tzinfo=UTC)
    assert frame.acquired_at_source == "metadata"
    warned = [e["reason"] for e in logs if e["event"] == "io.times_ignored"]
    assert warned == ([] if xml_date_time is None else
                      ["bad JEOL TemReporter DateTime 'not a time': Invalid isoformat string: "
                       "'not a time'"])


def _scene_and_bar(rows: int, columns: int, bar_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(scene, page): grey noise of ``rows`` x ``columns``, and it above a data bar as xT
    draws one: a white line, blocks of white "text" and a scale bar on black."""
    scene = RNG.integers(20, 200, (rows, columns), dtype=np.uint8)
    bar = np.zeros((bar_rows, columns), np.uint8)
    bar[0] = 255
    bar[4:10, 2:columns // 2] = RNG.choice([0, 255], (6, columns // 2 - 2))
    bar[bar_rows - 4:bar_rows - 2, columns - 20:columns - 4] = 255
    return scene, np.vstack([scene, bar])


def _write_fei_pages(path: Path, pages: list[np.ndarray], texts: list[str]) -> Path:
    with tifffile.TiffWriter(path) as tif:
        for page, text in zip(pages, texts, strict=True):
            tif.write(page, metadata=None, resolution=(96, 96), resolutionunit="INCH",
                      extratags=[(34682, "s", 0, text, True)])
    return path


def _events(logs: list[dict], name: str) -> list[dict]:
    return [e for e in logs if e["event"] == name]


def test_the_fei_data_bar_below_the_image_is_not_read(tmp_path):
    # xT's data bar (29 rows of text and a scale bar below the 442 x 512 image, a 471-row
    # page as in RosettaSciIO's Helios files) was read as part of the frame: segmented and
    # measured as if it were the scene.
    scene, page = _scene_and_bar(442, 512, 29)
    path = _write_fei_pages(tmp_path / "helios.tif", [page], [_fei_text()])
    assert tifffile.imread(path).shape == (471, 512)
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    assert frame.image.shape == (442, 512)
    np.testing.assert_array_equal(frame.image, scene)
    assert frame.image.flags.c_contiguous
    assert frame.pixel_size_nm == pytest.approx(0.25)  # the page's, unchanged
    (said,) = _events(logs, "io.databar_cropped")  # once for the file
    assert (said["path"], said["image_rows"], said["page_rows"]) == (str(path), 442, 471)
    assert "29 rows below the image" in said["reason"]
    with capture_logs() as logs:
        volume = read_volume(path)
    assert volume.data.shape == (1, 442, 512)
    np.testing.assert_array_equal(volume.data[0], scene)
    assert len(_events(logs, "io.databar_cropped")) == 1


def test_every_page_of_an_fei_stack_loses_its_data_bar(tmp_path, local_tz):
    parts = [_scene_and_bar(40, 48, 12) for _ in range(3)]
    texts = [_fei_text(clock=f"05:06:4{i} PM", image=(40, 48), databar_rows=12)
             for i in range(3)]
    path = _write_fei_pages(tmp_path / "stack.tif", [p for _, p in parts], texts)
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [f.image.shape for f in frames] == [(40, 48)] * 3
    for frame, (scene, _) in zip(frames, parts, strict=True):
        np.testing.assert_array_equal(frame.image, scene)
    assert [f.acquired_at.second for f in frames] == [40, 41, 42]
    assert len(_events(logs, "io.databar_cropped")) == 1
    volume = read_volume(path)
    assert volume.data.shape == (3, 40, 48) and volume.data.flags.c_contiguous
    np.testing.assert_array_equal(volume.data, np.stack([scene for scene, _ in parts]))


@pytest.mark.parametrize("image, databar_rows", [
    ((52, 48), 0),     # saved without the data bar: ResolutionY is the page's height
    ((60, 48), 0),     # more rows declared than the page has
    (None, 29),        # no [Image] section
])
def test_an_fei_page_without_a_bar_below_its_image_is_read_whole(tmp_path, image,
                                                                 databar_rows):
    page = RNG.integers(0, 255, (52, 48), dtype=np.uint8)
    path = _write_fei_pages(tmp_path / "whole.tif", [page],
                            [_fei_text(image=image, databar_rows=databar_rows)])
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    np.testing.assert_array_equal(frame.image, page)
    np.testing.assert_array_equal(read_volume(path).data[0], page)
    assert not [e for e in logs if e["event"].startswith("io.databar")]


def test_fei_sizes_that_do_not_fit_the_page_leave_it_whole_with_a_warning(tmp_path):
    # ResolutionX is not the page's width: the page was resampled or edited after xT saved
    # it, and its rows are not the scan's.
    _, page = _scene_and_bar(40, 48, 12)
    path = _write_fei_pages(tmp_path / "resampled.tif", [page],
                            [_fei_text(image=(40, 96), databar_rows=12)])
    with capture_logs() as logs:
        (frame,) = read_frames(path)
    np.testing.assert_array_equal(frame.image, page)
    (said,) = _events(logs, "io.databar_kept")
    assert said["path"] == str(path)
    assert "ResolutionX 96 is not the page's width 48" in said["reason"]
    assert not _events(logs, "io.databar_cropped")
    # pages of one file that declare different image sizes: every row of every page
    pages = [_scene_and_bar(40, 48, 12)[1] for _ in range(2)]
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:  # one series per page: each page its own keyframe
        for page, rows in zip(pages, (40, 44), strict=True):
            tif.write(page, metadata=None, extratags=[
                (34682, "s", 0, _fei_text(image=(rows, 48), databar_rows=52 - rows), True)])
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [f.image.shape for f in frames] == [(52, 48)] * 2
    assert "different FEI [Image] sizes" in _events(logs, "io.databar_kept")[0]["reason"]


def test_ome_plane_delta_t_gives_each_frame_its_time(tmp_path):
    # Every frame got the AcquisitionDate: a series of 3 frames had one time.
    path = tmp_path / "dt.ome.tif"
    tifffile.imwrite(path, RNG.integers(0, 4095, (3, 8, 8), dtype=np.uint16), metadata={
        "axes": "TYX", "AcquisitionDate": "2026-11-21T07:45:01+00:00",
        "Plane": {"DeltaT": [0.0, 250.0, 1500.0], "DeltaTUnit": ["ms"] * 3}})
    start = datetime(2026, 11, 21, 7, 45, 1, tzinfo=UTC)
    assert [f.acquired_at - start for f in read_frames(path)] == [
        timedelta(0), timedelta(milliseconds=250), timedelta(milliseconds=1500)]


def _ome_planes(order: str, planes: str, date: str = "2026-11-21T07:45:01Z") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{_OME_NS}"><Image '
            f'ID="Image:0"><AcquisitionDate>{date}</AcquisitionDate><Pixels ID="Pixels:0" '
            f'DimensionOrder="{order}" Type="uint16" SizeX="8" SizeY="8" SizeZ="2" SizeC="1" '
            'SizeT="3"><Channel ID="Channel:0:0" SamplesPerPixel="1"/><TiffData IFD="0" '
            f'PlaneCount="6"/>{planes}</Pixels></Image></OME>')


def test_ome_planes_are_matched_to_pages_by_the_dimension_order(tmp_path):
    # XYTZC: T varies fastest, so page t + 3 z; the planes listed in another order, in
    # minutes (t minutes apart, the second slice 6 s after the first)
    coords = [(z, t) for t in range(3) for z in range(2)]
    planes = "".join(f'<Plane TheZ="{z}" TheC="0" TheT="{t}" DeltaT="{t + 0.1 * z:g}" '
                     'DeltaTUnit="min"/>' for z, t in coords)
    path = tmp_path / "xytzc.ome.tif"
    tifffile.imwrite(path, np.zeros((6, 8, 8), np.uint16), metadata=None,
                     description=_ome_planes("XYTZC", planes), photometric="minisblack")
    start = datetime(2026, 11, 21, 7, 45, 1, tzinfo=UTC)
    offsets_s = [(f.acquired_at - start).total_seconds() for f in read_frames(path)]
    assert offsets_s == pytest.approx([0, 60, 120, 6, 66, 126])


@pytest.mark.parametrize(("planes", "why"), [
    ('<Plane TheZ="0" TheT="0" DeltaT="0"/><Plane TheZ="1" TheT="0" DeltaT="1"/>',
     "2 planes for 6 pages"),
    ("".join(f'<Plane TheZ="{z}" TheT="{t}" DeltaT="{t}" DeltaTUnit="fortnight"/>'
             for t in range(3) for z in range(2)), "unknown DeltaTUnit"),
    ("".join(f'<Plane TheZ="{z}" TheT="{t}" DeltaT="{t * 1e12}"/>'
             for t in range(3) for z in range(2)), "plausible years"),
])
def test_ome_plane_times_that_do_not_fit_give_every_frame_the_acquisition_date(tmp_path,
                                                                              planes, why):
    path = tmp_path / "bad.ome.tif"
    tifffile.imwrite(path, np.zeros((6, 8, 8), np.uint16), metadata=None,
                     description=_ome_planes("XYZCT", planes), photometric="minisblack")
    with capture_logs() as logs:
        frames = read_frames(path)
    assert {f.acquired_at for f in frames} == {datetime(2026, 11, 21, 7, 45, 1, tzinfo=UTC)}
    (warning,) = [e for e in logs if e["event"] == "io.times_ignored"]
    assert why in warning["reason"]


def test_ome_time_increment_steps_the_time_points(tmp_path):
    # Pixels/@TimeIncrement (no plane times), as tifffile's own docs write an OME series:
    # every frame got the AcquisitionDate
    path = tmp_path / "ti.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), metadata={
        "axes": "TYX", "AcquisitionDate": "2026-11-21T07:45:01+00:00",
        "TimeIncrement": 0.1, "TimeIncrementUnit": "s"})
    start = datetime(2026, 11, 21, 7, 45, 1, tzinfo=UTC)
    assert [f.acquired_at - start for f in read_frames(path)] == [
        timedelta(0), timedelta(milliseconds=100), timedelta(milliseconds=200)]


def _ome_increment(order: str, increment: str, size_t: int = 3) -> str:
    return _ome_planes(order, "").replace('SizeT="3"', f'SizeT="{size_t}" {increment}')


def test_ome_time_increment_follows_the_dimension_order(tmp_path):
    # XYTZC: T varies fastest, page t + 3 z; the slices of one time point share its time
    path = tmp_path / "xytzc_ti.ome.tif"
    tifffile.imwrite(path, np.zeros((6, 8, 8), np.uint16), metadata=None,
                     description=_ome_increment("XYTZC", 'TimeIncrement="2" '
                                                         'TimeIncrementUnit="min"'),
                     photometric="minisblack")
    start = datetime(2026, 11, 21, 7, 45, 1, tzinfo=UTC)
    offsets_s = [(f.acquired_at - start).total_seconds() for f in read_frames(path)]
    assert offsets_s == [0, 120, 240, 0, 120, 240]


@pytest.mark.parametrize(("increment", "size_t", "why"), [
    ('TimeIncrement="soon"', 3, "TimeIncrement 'soon'"),
    ('TimeIncrement="1" TimeIncrementUnit="fortnight"', 3, "unknown TimeIncrementUnit"),
    ('TimeIncrement="1e12"', 3, "plausible years"),
])
def test_ome_time_increment_that_does_not_fit_gives_every_frame_the_acquisition_date(
        tmp_path, increment, size_t, why):
    path = tmp_path / "bad_ti.ome.tif"
    tifffile.imwrite(path, np.zeros((6, 8, 8), np.uint16), metadata=None,
                     description=_ome_increment("XYZCT", increment, size_t),
                     photometric="minisblack")
    with capture_logs() as logs:
        frames = read_frames(path)
    assert {f.acquired_at for f in frames} == {datetime(2026, 11, 21, 7, 45, 1, tzinfo=UTC)}
    (warning,) = [e for e in logs if e["event"] == "io.times_ignored"]
    assert "TimeIncrement" in warning["reason"] and why in warning["reason"]


def test_non_square_pixels_are_refused_saying_what_to_check_and_do(tmp_path):
    path = tmp_path / "stretched.ome.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16), metadata={
        "axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.6, "PhysicalSizeYUnit": "nm"})
    with pytest.raises(AnisotropicPixelsError) as error:
        read_frames(path)
    reason = error.value.reason
    assert "x 0.5 nm differs from y 0.6 nm" in reason
    assert "Image > Properties" in reason  # where to check the calibration
    assert "binning" in reason  # what of the acquisition to check
    assert "Image > Scale with X scale 1 and Y scale 1.2 gives 0.5 nm both ways" in reason
    assert "label image set its Interpolation to None" in reason  # no blended class values
    assert read_volume(path).voxel_size_nm is None  # volumes keep both sizes: no refusal


@pytest.mark.parametrize("layout", ["resolution_unit_none", "imagej_unit_pixel"])
def test_non_square_pixels_without_a_length_unit_are_refused_as_calibrated_ones(tmp_path,
                                                                                 layout):
    # Resolution tags 1 : 1/1.25 with no length unit declare pixels 1.25 times as high as
    # wide but no size: measured as square without a word, where the same aspect in nm is
    # refused. Refused alike, naming the aspect.
    from nwwatch.io import FrameReader, inspect_tiff, read_frame_at

    path = tmp_path / f"{layout}.tif"
    image = np.zeros((8, 10), np.uint16)
    if layout == "imagej_unit_pixel":
        tifffile.imwrite(path, image, imagej=True, resolution=(1.0, 1 / 1.25),
                         metadata={"unit": "pixel"})
        unit = "ImageJ unit 'pixel'"
    else:
        tifffile.imwrite(path, image, resolution=(1.0, 1 / 1.25), resolutionunit="NONE",
                         metadata=None)
        unit = "ResolutionUnit NONE"
    for read in (read_frames, lambda p: read_frame_at(p, 0), FrameReader):
        with pytest.raises(AnisotropicPixelsError) as error:
            read(path)
        assert error.value.path == path
        reason = error.value.reason
        assert "pixels declared 1.25 times as high as wide" in reason and unit in reason
        assert "Image > Properties" in reason and "Y scale 1.25" in reason
    assert inspect_tiff(path).n_pages == 1  # the header check does not read sizes
    assert read_volume(path).voxel_size_nm is None  # volumes (label images) are read
    # square pixels without a unit (or an aspect within rounding) are read, without a size
    square = tmp_path / "square.tif"
    tifffile.imwrite(square, image, resolution=(3.0, 3.0003), resolutionunit="NONE",
                     metadata=None)
    assert read_frames(square)[0].pixel_size_nm is None


def test_a_colour_picture_is_told_to_give_the_raw_single_channel_data(tmp_path):
    rgb = tmp_path / "as_displayed.tif"
    tifffile.imwrite(rgb, np.zeros((10, 12, 3), np.uint8), photometric="rgb")
    with pytest.raises(MultichannelError) as error:
        read_frames(rgb)
    assert "saved as displayed" in error.value.reason
    assert "raw single-channel data" in error.value.reason
    assert ".dm4, .emd, .ser" in error.value.reason
    channels = tmp_path / "two_channels.tif"
    tifffile.imwrite(channels, np.zeros((3, 2, 10, 12), np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    with pytest.raises(MultichannelError) as error:
        read_frames(channels)
    assert "Split Channels" in error.value.reason


def test_zoneless_times_around_clock_changes_read_as_the_named_zone_reads_them(local_tz):
    """Local replay reads zone-less times in the machine's zone as a Dask worker given that
    zone by name does: in the hour skipped in spring too (the C library read 02:30 there as
    summer time, an hour from the worker's reading)."""
    from nwwatch.io.metadata import read_zoneless_in, zoneless_to_utc

    times = [datetime(2026, 3, 29, 2, 30), datetime(2026, 10, 25, 2, 30),
             datetime(2026, 7, 1, 12, 0), datetime(2026, 1, 1, 12, 0)]
    local = [zoneless_to_utc(t) for t in times]
    read_zoneless_in("Europe/Berlin")
    try:
        named = [zoneless_to_utc(t) for t in times]
    finally:
        read_zoneless_in(None)
    assert local == named == [datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                              datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # the first 02:30
                              datetime(2026, 7, 1, 10, 0, tzinfo=UTC),
                              datetime(2026, 1, 1, 11, 0, tzinfo=UTC)]
