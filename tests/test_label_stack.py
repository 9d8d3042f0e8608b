"""Pages of a multi-page TIFF stack in the labelling session: each kept page holds its own
pixels, not the whole stack it was read from, and turning pages reads one page each, not the
metadata of every page of the stack."""

from __future__ import annotations

import gc
import shutil
import tracemalloc

import numpy as np
import pytest
import tifffile
from chunkkit import assert_same_frame
from structlog.testing import capture_logs
from test_io_vendor_metadata import _events, _fei_text, _scene_and_bar, _write_fei_pages
from tiffkit import count_parsed_pages

from nwwatch.io import write_stack_tiff
from nwwatch.label.frames import frame_refs
from nwwatch.label.geometry import Circle, LabelGeometry
from nwwatch.label.server import LabelSession
from nwwatch.label.store import save_labeled_frame


def test_pages_kept_by_the_session_do_not_keep_their_stacks(tmp_path):
    # before: every page opened was a view of the whole stack it was read from, and the
    # session keeps up to 9 frames: 9 copies of a 16-bit stack of hundreds of pages.
    rng = np.random.default_rng(0)
    pages, side = 24, 128
    stack = rng.integers(0, 4000, (pages, side, side), dtype=np.uint16)
    write_stack_tiff(tmp_path / "stack.tif", stack)
    session = LabelSession(frame_refs([tmp_path / "stack.tif"]), tmp_path / "DATA")
    assert [r.stem for r in session.frames[:2]] == ["stack_p0000", "stack_p0001"]
    gc.collect()
    tracemalloc.start()
    try:
        for k in range(6):
            image = session.image(k).image
            assert image.dtype == np.uint16 and np.array_equal(image, stack[k])
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 2 * stack.nbytes  # 6 pages (and a little); before: 6 stacks


def test_opening_a_page_reads_that_page_not_the_whole_stack(tmp_path):
    # before: each opening read the whole stack and kept one page: a page of a 40-page
    # 4096 x 4096 16-bit stack took 1.3 s and 1.4 GB (peak) before the model even ran.
    rng = np.random.default_rng(1)
    pages, side = 40, 256
    stack = rng.integers(0, 4000, (pages, side, side), dtype=np.uint16)
    write_stack_tiff(tmp_path / "stack.tif", stack)
    session = LabelSession(frame_refs([tmp_path / "stack.tif"]), tmp_path / "DATA")
    gc.collect()
    tracemalloc.start()
    try:
        image = session.image(pages - 1).image
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(image, stack[-1])
    assert peak < 4 * stack[0].nbytes  # before: the whole stack, 40 pages


def _stack_files(folder, stack):
    """The stack written as the layouts a camera or Fiji writes (TIFF kinds, MRC)."""
    import mrcfile
    import tifffile

    files = {"shaped": {"photometric": "minisblack"},
             "zlib": {"photometric": "minisblack", "compression": "zlib"},
             "imagej": {"imagej": True, "metadata": {"axes": "TYX"}},
             "ome": {"ome": True, "photometric": "minisblack", "metadata": {"axes": "TYX"}},
             "uniform": {"photometric": "minisblack", "metadata": None},
             "big_endian": {"photometric": "minisblack", "byteorder": ">"}}
    for name, kwargs in files.items():
        tifffile.imwrite(folder / f"{name}.tif", stack, **kwargs)
    with tifffile.TiffWriter(folder / "page_per_write.tif") as writer:
        for page in stack:  # one series per page, as software growing a file writes it
            writer.write(page, photometric="minisblack")
    with mrcfile.new(folder / "movie.mrc") as mrc:
        mrc.set_data(stack.astype(np.int16))
        mrc.voxel_size = 2.5
    return sorted(folder.glob("*.tif")) + [folder / "movie.mrc"]


def test_one_page_read_alone_is_that_page_of_the_stack_read_whole(tmp_path):
    from nwwatch.io import PageIndexError, read_frame_at, read_frames

    rng = np.random.default_rng(2)
    stack = rng.integers(0, 4000, (10, 24, 40), dtype=np.uint16)
    for path in _stack_files(tmp_path, stack):
        whole = read_frames(path)
        for index in (0, 3, 9):
            assert_same_frame(read_frame_at(path, index), whole[index])
        with pytest.raises(PageIndexError, match=r"page 10 out of range \(0\.\.9\)"):
            read_frame_at(path, 10)


def test_turning_the_pages_of_a_stack_reads_its_page_metadata_once(tmp_path, monkeypatch):
    # before: every page opened parsed the tags of every page of the stack (1.6 s a page of
    # a 20,000-page stack) and logged an FEI file's data-bar warning again
    parsed = count_parsed_pages(monkeypatch)
    n = 200
    stack = np.random.default_rng(5).integers(0, 4000, (n, 16, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    session = LabelSession(frame_refs([tmp_path / "stack.tif"]), tmp_path / "DATA")
    parsed[0] = 0
    for index in (10, 11, 12, 199, 13, 14):
        assert np.array_equal(session.image(index).image, stack[index])
    assert parsed[0] < n + 20  # the stack's pages once, and the pages shown
    session.close()

    parts = [_scene_and_bar(40, 48, 12) for _ in range(3)]
    texts = [_fei_text(image=(40, 48), databar_rows=12) for _ in range(3)]
    fei = _write_fei_pages(tmp_path / "fei.tif", [page for _, page in parts], texts)
    session = LabelSession(frame_refs([fei]), tmp_path / "DATA")
    with capture_logs() as logs:
        for index in range(3):
            np.testing.assert_array_equal(session.image(index).image, parts[index][0])
    session.close()
    assert len(_events(logs, "io.databar_cropped")) == 1


def test_a_stack_rewritten_during_the_session_opens_as_it_is_now(tmp_path):
    path = tmp_path / "stack.tif"
    first = np.full((5, 8, 8), 1, np.uint16)
    write_stack_tiff(path, first)
    session = LabelSession(frame_refs([path]), tmp_path / "DATA")
    assert session.image(0).image.max() == 1
    write_stack_tiff(path, np.full((5, 8, 8), 2, np.uint16))  # the acquisition wrote again
    assert session.image(1).image.max() == 2  # not the first file's page
    session.forget_if_changed(0)
    assert session.image(0).image.max() == 2
    path.unlink()
    session.forget_if_changed(2)
    with pytest.raises(FileNotFoundError, match="frame file not found"):
        session.image(2)
    session.close()


def test_listing_a_moved_stack_beside_its_saved_labels_opens_it_once(tmp_path, monkeypatch):
    # DATA's frames were saved from the stack in another folder: each saved stem is checked
    # against this stack's page by its pixels; before, each check opened the stack anew
    n = 200
    stack = np.random.default_rng(6).integers(0, 4000, (n, 16, 16), dtype=np.uint16)
    (tmp_path / "was").mkdir()
    (tmp_path / "now").mkdir()
    tifffile.imwrite(tmp_path / "was" / "stack.tif", stack, photometric="minisblack")
    geometry = LabelGeometry((16, 16), Circle((6.0, 8.0), 4.0),
                             ((10.0, 0.0), (10.0, 16.0), (16.0, 16.0), (16.0, 0.0)))
    for page in (3, 4, 5):
        save_labeled_frame(tmp_path / "DATA", f"stack_p{page:04d}", stack[page], geometry,
                           {"path": str(tmp_path / "was" / "stack.tif"), "page": page})
    shutil.move(tmp_path / "was" / "stack.tif", tmp_path / "now" / "stack.tif")
    parsed = count_parsed_pages(monkeypatch)
    refs = frame_refs([tmp_path / "now" / "stack.tif"], data_dir=tmp_path / "DATA")
    assert [r.stem for r in refs[3:6]] == ["stack_p0003", "stack_p0004", "stack_p0005"]
    assert parsed[0] < 2 * n  # before: once for each saved page, 3 * n
