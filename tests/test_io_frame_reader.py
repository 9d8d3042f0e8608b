"""nwwatch.io.FrameReader: the pages of a stack read one at a time from a file opened once,
its per-page metadata read once; read_frame_at is the same read for one page."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import tifffile
from chunkkit import assert_same_frame
from structlog.testing import capture_logs
from test_io_emd import _write as write_emd
from test_io_vendor_metadata import _events, _fei_text, _scene_and_bar, _write_fei_pages
from test_label_stack import _stack_files
from tiffkit import count_parsed_pages

from nwwatch.io import FrameReader, PageIndexError, read_frame_at, read_frames, write_stack_tiff


def test_every_page_read_through_one_reader_is_that_page_of_the_stack_read_whole(tmp_path):
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 4000, (10, 24, 40), dtype=np.uint16)
    for path in _stack_files(tmp_path, stack):
        whole = read_frames(path)
        with FrameReader(path) as reader:
            for index in (9, 0, 3, 3):  # any order, a page twice
                assert_same_frame(reader.frame(index), whole[index])
            with pytest.raises(PageIndexError, match=r"page 10 out of range \(0\.\.9\)"):
                reader.frame(10)
            assert not reader.changed()


def test_a_page_of_an_open_stack_parses_no_other_page(tmp_path, monkeypatch):
    # before: each page read opened the file and parsed every page's tags (pixel sizes,
    # times, data-bar rows): 0.22 s a page of a 3,000-page stack, 1.6 s of a 20,000-page one
    parsed_pages = count_parsed_pages(monkeypatch)
    n = 300
    stack = np.random.default_rng(4).integers(0, 4000, (n, 8, 8), dtype=np.uint16)
    for name, kwargs in (("plain.tif", {"photometric": "minisblack"}),
                         ("imagej.tif", {"imagej": True, "metadata": {"axes": "TYX"}})):
        path = tmp_path / name
        tifffile.imwrite(path, stack, **kwargs)
        parsed_pages[0] = 0
        with FrameReader(path) as reader:
            opened = parsed_pages[0]
            parsed_pages[0] = 0
            for index in (7, 150, n - 1, 8, 9):
                assert np.array_equal(reader.frame(index).image, stack[index])
            assert parsed_pages[0] <= 5, name  # the pages read, and no other
        assert opened >= n  # every page's metadata, once, when opened
        parsed_pages[0] = 0
        read_frame_at(path, 7)  # one page alone: the file opened for it
        assert parsed_pages[0] >= n


def test_a_frame_of_an_open_emd_series_parses_no_frames_metadata_again(tmp_path, monkeypatch):
    # an EMD file's frame times depend on every frame's metadata: read for each page turned,
    # a 300-frame Velox series (its real 6 kB texts) cost 0.36 s a page, 1.2 ms a frame more
    import nwwatch.io.emd as emd

    parsed = [0]
    parse = emd._metadata_text

    def counted(*args):
        parsed[0] += 1
        return parse(*args)

    monkeypatch.setattr(emd, "_metadata_text", counted)
    n = 40
    stack = np.random.default_rng(5).integers(0, 4000, (n, 8, 6), dtype=np.uint16)
    path = write_emd(tmp_path / "series.emd", stack)
    whole = read_frames(path)
    parsed[0] = 0
    with capture_logs() as logs, FrameReader(path) as reader:
        for index in (7, 20, n - 1, 8, 7):
            frame, expected = reader.frame(index), whole[index]
            assert np.array_equal(frame.image, stack[index])
            assert (frame.index, frame.pixel_size_nm, frame.acquired_at,
                    frame.acquired_at_source) == (index, expected.pixel_size_nm,
                                                  expected.acquired_at, "metadata")
        assert parsed[0] == n  # every frame's metadata, once, with the first frame
        with pytest.raises(PageIndexError):
            reader.frame(n)
    assert logs == []
    parsed[0] = 0
    read_frame_at(path, 7)  # one frame alone: every frame's metadata, for its time
    assert parsed[0] == n


def test_the_data_bar_warning_comes_once_per_opened_file(tmp_path):
    parts = [_scene_and_bar(40, 48, 12) for _ in range(3)]
    texts = [_fei_text(image=(40, 48), databar_rows=12) for _ in range(3)]
    path = _write_fei_pages(tmp_path / "fei.tif", [page for _, page in parts], texts)
    with capture_logs() as logs, FrameReader(path) as reader:
        for index in (0, 1, 2, 1):
            np.testing.assert_array_equal(reader.frame(index).image, parts[index][0])
    assert len(_events(logs, "io.databar_cropped")) == 1


def test_an_mrc_files_mdoc_is_read_with_its_first_frame_only(tmp_path):
    stack = np.arange(4 * 6 * 8, dtype=np.int16).reshape(4, 6, 8)
    path = tmp_path / "movie.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stack)
    # 3 sections described for a file of 4: not this file's mdoc, said in a warning
    (tmp_path / "movie.mrc.mdoc").write_text("".join(
        f"[ZValue = {i}]\nDateTime = 05-Dec-26  14:22:3{i}\n\n" for i in range(3)))
    with capture_logs() as logs, FrameReader(path) as reader:
        for index in (0, 3, 1):
            assert np.array_equal(reader.frame(index).image, stack[index])
        assert reader.frame(2).acquired_at_source == "mtime"
    assert len(_events(logs, "io.times_ignored")) == 1


def test_a_reader_says_when_its_file_changed(tmp_path):
    stack = np.zeros((3, 8, 8), np.uint16)
    path = write_stack_tiff(tmp_path / "stack.tif", stack)
    with FrameReader(path) as reader:
        assert not reader.changed()
        write_stack_tiff(path, np.ones((4, 8, 8), np.uint16))  # replaced: a new file
        assert reader.changed()
        assert reader.frame(2).image.max() == 0  # still the file it opened
    with FrameReader(path) as reader:
        assert reader.frame(3).image.max() == 1

    mrc_path = tmp_path / "movie.mrc"
    with mrcfile.new(mrc_path) as mrc:
        mrc.set_data(np.zeros((2, 4, 4), np.int16))
    with FrameReader(mrc_path) as reader:
        reader.frame(0)
        assert not reader.changed()
        new = tmp_path / "new.mrc"
        with mrcfile.new(new) as mrc:
            mrc.set_data(np.ones((3, 4, 4), np.int16))
        new.replace(mrc_path)  # replaced: its pixels were read with the first file's metadata
        assert reader.changed()
        assert reader.frame(1).image.max() == 0  # still the file it opened
    with FrameReader(mrc_path) as reader:
        reader.frame(0)
        assert not reader.changed()
        (tmp_path / "movie.mrc.mdoc").write_text("[ZValue = 0]\n\n[ZValue = 1]\n")
        assert reader.changed()  # its times and pixel sizes are the mdoc's


def test_a_closed_reader_reads_no_frame(tmp_path):
    path = write_stack_tiff(tmp_path / "stack.tif", np.zeros((3, 8, 8), np.uint16))
    reader = FrameReader(path)
    reader.close()
    with pytest.raises(ValueError, match="closed FrameReader"):
        reader.frame(0)


def test_a_vendor_file_is_opened_and_its_metadata_read_once_per_reader(tmp_path, monkeypatch):
    # a DigitalMicrograph, EMD or TIA file's structure and every frame's metadata were read
    # again at each page turn (an EMD file's every frame's JSON: the times depend on all)
    from test_io_dm import dm_file
    from test_io_emd import _write as emd_file
    from test_io_ser import ser_file

    import nwwatch.io.dm as dm
    import nwwatch.io.emd as emd
    import nwwatch.io.ser as ser

    stack = np.random.default_rng(4).integers(0, 4000, (5, 12, 10)).astype(np.uint16)
    files = {
        dm: dm_file(tmp_path / "s.dm4", stack, 10),
        emd: emd_file(tmp_path / "s.emd", stack),
        ser: ser_file(tmp_path / "s.ser", list(stack), datatype=2),
    }
    for module, path in files.items():
        opened = []
        real = module._layout if module is not emd else module._frame_metadata_of

        def counted(*args, real=real, opened=opened):
            opened.append(args[0])
            return real(*args)

        monkeypatch.setattr(module, "_layout" if module is not emd else "_frame_metadata_of",
                            counted)
        whole = read_frames(path)
        assert len(opened) == 1, path
        with FrameReader(path) as reader:
            for index in (4, 0, 2, 2):
                assert np.array_equal(reader.frame(index).image, whole[index].image), path
                assert reader.frame(index).acquired_at == whole[index].acquired_at
        assert len(opened) == 2, (path, len(opened))
        with pytest.raises(ValueError, match="closed FrameReader"):
            reader.frame(0)
